#include <chimera/chimera.hpp>

constexpr auto s = chimera::make_fixed<chimera::config{.stages = 4, .micro_batches = 4}>();
static_assert(chimera::check(s).ok());

int main() {
    const auto t = chimera::generate({.schedule = chimera::algorithm::chimera, .stages = 6, .micro_batches = 12});
    return chimera::check(t).ok() && t.op_count() == 144 ? 0 : 1;
}
