// Workers blocked on an op and woken once it is done: the core of the
// linear one-pass replays (rendezvous.hpp, simulate.hpp). A worker waits on
// at most one op at a time, so the lists are intrusive (one link per worker).
#pragma once

#include <cstdint>
#include <vector>

namespace chimera::detail {

class wait_lists {
public:
    // Every worker starts runnable; worker 0 runs first.
    constexpr wait_lists(std::size_t ops, int workers)
        : first_(ops, -1), next_(static_cast<std::size_t>(workers), -1) {
        for (int w = workers - 1; w >= 0; --w) runnable_.push_back(w);
    }
    constexpr bool pop(int& worker) {
        if (runnable_.empty()) return false;
        worker = runnable_.back();
        runnable_.pop_back();
        return true;
    }
    constexpr void wait(int worker, std::int32_t op) {
        next_[static_cast<std::size_t>(worker)] = first_[static_cast<std::size_t>(op)];
        first_[static_cast<std::size_t>(op)] = worker;
    }
    constexpr void wake(std::int32_t op) {
        for (std::int32_t v = first_[static_cast<std::size_t>(op)]; v != -1;) {
            const std::int32_t after = next_[static_cast<std::size_t>(v)];
            runnable_.push_back(v);
            v = after;
        }
        first_[static_cast<std::size_t>(op)] = -1;
    }

private:
    std::vector<std::int32_t> first_, next_, runnable_;
};

}  // namespace chimera::detail
