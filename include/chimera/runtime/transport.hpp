// What a backend's comm(group) needs from a transport: point-to-point
// messages named by a message_key and replica-group gradient reductions in
// a fixed order, posted one group at a time. See docs/runtime.md.
//
// Semantics a transport must give (the lowering relies on them, and NCCL's
// grouped calls give them):
//  * post_send / post_recv / post_reduce only post; complete() returns when
//    every member posted since the previous complete() has completed. A
//    group's members may complete in any order, so a group that both sends
//    and receives never waits on itself.
//  * A send matches the receive with the same key; the payload is copied
//    (or handed over) into the receiver's buffer.
//  * A reduction completes when all `members` members of its key have
//    posted; every member's buffer then holds the sum of all members'
//    buffers, added in ascending `order`.
//  * A transport that cannot complete (a partner never posts) reports it by
//    throwing from complete(), never by hanging forever.
// `Buffer` is whatever names a payload for this transport: a std::span of
// host values, a device pointer with its stream, ...
#pragma once

#include <concepts>

#include "message.hpp"

namespace chimera::runtime {

template <class T, class SendBuffer, class RecvBuffer = SendBuffer, class ReduceBuffer = RecvBuffer>
concept transport = requires(T& t, const message_key& key, const reduce_key& reduction, SendBuffer send,
                             RecvBuffer recv, ReduceBuffer reduce) {
    t.post_send(key, send);
    t.post_recv(key, recv);
    t.post_reduce(reduction, reduce);
    t.complete();
};

}  // namespace chimera::runtime
