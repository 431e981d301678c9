// One worker's message buffers, keyed by the named message key of the
// library (include/chimera/runtime/message.hpp): an output waiting for its
// SEND (key.from is this rank, key.to another), a received input, or an
// output handed over locally (key.from == key.to). Both backends keep their
// buffers here; only the buffer type differs (a host vector, a device
// pointer).
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

#include <chimera/runtime/message.hpp>

namespace chimera::runtime {

template <class Buffer>
class message_box {
public:
    // Throws std::logic_error when the message is already there (a list
    // that produces it twice).
    Buffer& put(const message_key& key, Buffer buffer) {
        const auto [it, added] = boxes_.emplace(key, std::move(buffer));
        if (!added) throw std::logic_error("message box: " + to_string(key) + " is already held");
        return it->second;
    }
    Buffer* find(const message_key& key) {
        const auto it = boxes_.find(key);
        return it == boxes_.end() ? nullptr : &it->second;
    }
    std::optional<Buffer> take(const message_key& key) {
        const auto it = boxes_.find(key);
        if (it == boxes_.end()) return std::nullopt;
        Buffer b = std::move(it->second);
        boxes_.erase(it);
        return b;
    }
    bool empty() const { return boxes_.empty(); }
    std::size_t size() const { return boxes_.size(); }
    // Messages this rank still has to send (the rest were received or handed over).
    std::size_t unsent(int rank) const {
        std::size_t n = 0;
        for (const auto& [key, buffer] : boxes_) n += key.from == rank && key.to != rank;
        return n;
    }
    template <class F>
    void for_each(F f) {
        for (auto& [key, buffer] : boxes_) f(key, buffer);
    }
    void clear() { boxes_.clear(); }

    // "worker 3: 1 unsent and 2 unconsumed message buffers at the end of the iteration"
    std::string leftover_report(int rank) const {
        return "worker " + std::to_string(rank) + ": " + std::to_string(unsent(rank)) + " unsent and " +
               std::to_string(size() - unsent(rank)) + " unconsumed message buffers at the end of the iteration";
    }

private:
    std::map<message_key, Buffer> boxes_;
};

}  // namespace chimera::runtime
