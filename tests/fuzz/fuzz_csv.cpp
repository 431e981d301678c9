// libFuzzer target: the PyTorch pipelining CSV reader.
#include "fuzz_readers.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    return chimera::fuzz::read_and_round_trip(data, size, [](std::string_view text) { return chimera::io::read_csv(text); });
}
