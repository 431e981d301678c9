// Shared body of the reader fuzz targets: a reader must either refuse the
// input with format_error or return a schedule; a schedule that passes the
// checker must survive a write/read round trip unchanged, and every writer
// must handle it. Anything else (crash, sanitizer report, other exception,
// changed round trip) is a finding.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <chimera/check.hpp>
#include <chimera/io/chrome_trace.hpp>
#include <chimera/io/csv.hpp>
#include <chimera/io/json.hpp>
#include <chimera/io/svg.hpp>
#include <chimera/io/text.hpp>

namespace chimera::fuzz {

template <class Read>
int read_and_round_trip(const std::uint8_t* data, std::size_t size, Read read) {
    const std::string_view text(reinterpret_cast<const char*>(data), size);
    schedule s;
    try {
        s = read(text);
    } catch (const io::format_error&) {
        return 0;  // refused: the expected outcome for most inputs
    }
    if (!check(s).ok()) return 0;
    if (io::read_json(io::write_json(s)) != s) __builtin_trap();
    if (!io::csv_refusal(s)) {
        const bool lowered = std::any_of(s.all_ops().begin(), s.all_ops().end(), [](const op& o) { return is_comm(o.kind); });
        const std::string csv = io::write_csv(s, lowered ? io::csv_format::compute_comms : io::csv_format::compute_only);
        const schedule back = io::read_csv(csv);
        if (io::write_csv(back, lowered ? io::csv_format::compute_comms : io::csv_format::compute_only) != csv)
            __builtin_trap();
    }
    (void)io::write_text(s);
    (void)io::write_svg(s);
    (void)io::write_chrome_trace(s);
    return 0;
}

}  // namespace chimera::fuzz
