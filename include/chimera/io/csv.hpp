// PyTorch pipelining CSV (docs/design/formats.md#pytorch-pipelining-csv,
// docs/design/schedule-zoo.md#pytorch-naming-and-csv): the files that
// `torch.distributed.pipelining._PipelineScheduleRuntime._load_csv` reads.
//
// Row r is pipeline rank r, one cell per action, no header. Two flavours:
//   compute_only   F/B/I/W cells in unit-time slot columns, empty cells idle;
//   compute_comms  a lowered schedule: every op of the worker's list in
//                  order, no empty cells, each send followed by its
//                  WAIT_SEND_x and each REDUCE_GRAD by its WAIT_REDUCE_GRAD
//                  (PyTorch >= 2.9 refuses compute_comms rows without them).
//
// Only single stage chains (one pipeline, every stage on one rank) can be
// written: PyTorch infers stage -> rank from the rows, so a replicated stage
// (Chimera, DualPipe) has no spelling. The writer refuses those.
//
// The reader is strict (rules CSV1-CSV6 of docs/formats-io.md; CSV7 is the
// writer's refusal) and reports the first problem as
// "line L, column C: [CSVn] ...". It builds a schedule named
// "pytorch-csv" (algorithm::custom, one pipeline); dependency order, exact
// multisets and deadlock freedom are the checker's job (chimera::check).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "../analysis.hpp"
#include "../detail/text.hpp"
#include "../error.hpp"
#include "../op.hpp"
#include "../schedule.hpp"
#include "../slots.hpp"
#include "json.hpp"  // format_error

namespace chimera::io {

enum class csv_format : std::uint8_t { compute_only, compute_comms };

constexpr std::string_view to_string(csv_format f) {
    return f == csv_format::compute_only ? "compute_only" : "compute_comms";
}
constexpr std::optional<csv_format> parse_csv_format(std::string_view name) {
    if (name == "compute_only") return csv_format::compute_only;
    if (name == "compute_comms") return csv_format::compute_comms;
    return std::nullopt;
}

inline constexpr std::string_view csv_schedule_name = "pytorch-csv";

// Why PyTorch's CSV cannot express `s`, or nullopt when it can.
template <schedule_like S>
std::optional<std::string> csv_refusal(const S& s) {
    using ::chimera::detail::cat;
    const std::string why =
        " PyTorch's CSV names an op by its stage alone and infers stage -> rank from the rows, so a stage that "
        "exists on several workers, with micro-batches routed to different stage chains, has no spelling there. "
        "Use the chimera.schedule/1 JSON form (--format json), which is lossless.";
    if (s.pipelines() != 1)
        return cat("cannot write '", s.name(), "' as PyTorch CSV: it has ", s.pipelines(),
                   " pipelines, so every stage is replicated on ", s.pipelines(), " workers.", why);
    for (const op& o : s.all_ops())
        if (o.pipeline != 0)
            return cat("cannot write '", s.name(), "' as PyTorch CSV: an op names pipeline ", o.pipeline,
                       " but the schedule has one.", why);
    return std::nullopt;
}

namespace detail {

inline std::string csv_cell(const op& o) {
    using ::chimera::detail::cat;
    if (o.kind == op_kind::REDUCE_GRAD) return cat(o.stage, "REDUCE_GRAD");
    return cat(o.stage, to_string(o.kind), o.micro_batch);
}

template <schedule_like S>
void require_chain(const S& s) {
    if (auto why = csv_refusal(s)) throw schedule_error("CSV7", *why);
}

template <schedule_like S>
std::string write_compute_only(const S& s) {
    using ::chimera::detail::cat;
    const unit_slots u = make_unit_slots(s);
    if (!u.complete)
        throw schedule_error("D4", cat("cannot place '", s.name(),
                                       "' in unit-time slot columns: its op lists deadlock (run check)"));
    std::string out;
    std::size_t position = 0;
    for (int w = 0; w < s.workers(); ++w) {
        std::vector<std::string> row(static_cast<std::size_t>(u.span));
        for (const op& o : s.ops(w)) {
            const int slot = u.slot[position++];
            if (is_compute(o.kind)) row[static_cast<std::size_t>(slot)] = csv_cell(o);
        }
        for (std::size_t i = 0; i < row.size(); ++i) out += (i ? "," : "") + row[i];
        out += "\n";
    }
    return out;
}

template <schedule_like S>
std::string write_compute_comms(const S& s) {
    using ::chimera::detail::cat;
    if (std::none_of(s.all_ops().begin(), s.all_ops().end(), [](const op& o) { return is_comm(o.kind); }))
        throw schedule_error("CSV7", cat("compute_comms needs a lowered schedule (with SEND/RECV/REDUCE_GRAD ops); '",
                                       s.name(), "' is compute-only: lower it first, or write compute_only"));
    std::string out;
    for (int w = 0; w < s.workers(); ++w) {
        const auto list = s.ops(w);
        std::vector<std::string> cells;
        std::vector<std::string> pending_waits;  // sends of the current gap
        auto flush = [&] {
            for (auto& wait : pending_waits) cells.push_back(std::move(wait));
            pending_waits.clear();
        };
        for (const op& o : list) {
            // Our comm ops between two compute ops form one group that
            // completes before the next compute op: wait for the sends there.
            if (is_compute(o.kind)) flush();
            cells.push_back(csv_cell(o));
            if (o.kind == op_kind::SEND_F || o.kind == op_kind::SEND_B)
                pending_waits.push_back(cat(o.stage, o.kind == op_kind::SEND_F ? "WAIT_SEND_F" : "WAIT_SEND_B",
                                            o.micro_batch));
            if (o.kind == op_kind::REDUCE_GRAD) cells.push_back(cat(o.stage, "WAIT_REDUCE_GRAD"));
        }
        flush();
        for (std::size_t i = 0; i < cells.size(); ++i) out += (i ? "," : "") + cells[i];
        out += "\n";
    }
    return out;
}

}  // namespace detail

// Writes `s` as PyTorch CSV; throws schedule_error (rule CSV7) when PyTorch
// cannot express it, D4 when it deadlocks.
template <schedule_like S>
std::string write_csv(const S& s, csv_format format = csv_format::compute_only) {
    detail::require_chain(s);
    return format == csv_format::compute_only ? detail::write_compute_only(s) : detail::write_compute_comms(s);
}

struct csv_read_options {
    // compute_only refuses communication actions (rule CSV5), as PyTorch's
    // loader does; nullopt accepts either flavour.
    std::optional<csv_format> format;
};

namespace detail {

inline constexpr long long csv_index_limit = (1LL << 24) - 1;  // stages and micro-batches, as in read_json

struct csv_token {
    op_kind kind = op_kind::F;
    // Read but not kept: WAIT_SEND_F/B and WAIT_REDUCE_GRAD (this IR's comm
    // groups complete before the next compute op, which implies them) and
    // UNSHARD/RESHARD (FSDP parameter residency, not modelled here).
    bool dropped = false;
    int stage = 0;
    int micro_batch = no_micro_batch;
};

struct csv_cursor {
    std::size_t line = 1;
    std::size_t column = 1;  // of the cell being read
    std::string where() const { return ::chimera::detail::cat("line ", line, ", column ", column); }
    [[noreturn]] void fail(std::string_view rule, const std::string& what) const {
        throw format_error(where(), what, rule);
    }
};

inline std::string quoted(std::string_view text) {
    constexpr std::size_t shown = 40;
    std::string out = "'";
    for (char ch : text.substr(0, shown)) {
        if (static_cast<unsigned char>(ch) < 0x20 || static_cast<unsigned char>(ch) >= 0x7f) {
            constexpr char hex[] = "0123456789abcdef";
            out += "\\x";
            out += hex[(static_cast<unsigned char>(ch) >> 4) & 0xf];
            out += hex[ch & 0xf];
        } else {
            out += ch;
        }
    }
    return out + (text.size() > shown ? "...'" : "'");
}

// Digits at the front of `text` as an index in [0, csv_index_limit].
inline std::optional<int> leading_index(std::string_view& text, const csv_cursor& at, const char* what,
                                        std::string_view cell) {
    std::size_t n = 0;
    long long value = 0;
    while (n < text.size() && text[n] >= '0' && text[n] <= '9') {
        value = std::min(value * 10 + (text[n] - '0'), csv_index_limit + 1);
        ++n;
    }
    if (n == 0) return std::nullopt;
    if (value > csv_index_limit)
        at.fail("CSV3", ::chimera::detail::cat("in ", quoted(cell), ": ", what, " index is too large (at most ",
                                             csv_index_limit, ")"));
    text.remove_prefix(n);
    return static_cast<int>(value);
}

// One action `STAGE KIND [MB]`.
inline csv_token parse_action(std::string_view text, const csv_cursor& at, std::string_view cell) {
    using ::chimera::detail::cat;
    const std::string grammar =
        "expected STAGE KIND MB such as 0F0, 3I7, 2SEND_F4, or STAGE REDUCE_GRAD, or (a;b)OVERLAP_F_B";
    std::string_view rest = text;
    const auto stage = leading_index(rest, at, "stage", cell);
    if (!stage) at.fail("CSV2", cat("bad action ", quoted(cell), ": ", grammar));
    struct spelling {
        std::string_view name;
        op_kind kind;
        bool dropped;
        bool has_micro_batch;
    };
    // Longest names first, so that SEND_F is not read as an S... prefix.
    constexpr spelling spellings[] = {
        {"WAIT_REDUCE_GRAD", op_kind::REDUCE_GRAD, true, false},
        {"WAIT_SEND_F", op_kind::SEND_F, true, true},
        {"WAIT_SEND_B", op_kind::SEND_B, true, true},
        {"REDUCE_GRAD", op_kind::REDUCE_GRAD, false, false},
        {"UNSHARD", op_kind::REDUCE_GRAD, true, false},
        {"RESHARD", op_kind::REDUCE_GRAD, true, false},
        {"SEND_F", op_kind::SEND_F, false, true},
        {"RECV_F", op_kind::RECV_F, false, true},
        {"SEND_B", op_kind::SEND_B, false, true},
        {"RECV_B", op_kind::RECV_B, false, true},
        {"F", op_kind::F, false, true},
        {"I", op_kind::I, false, true},
        {"W", op_kind::W, false, true},
        {"B", op_kind::B, false, true},
    };
    if (rest.starts_with("BW"))
        at.fail("CSV5", cat("action ", quoted(cell), ": the legacy token BW is not accepted; write B (full backward)"));
    const spelling* found = nullptr;
    for (const spelling& sp : spellings)
        if (rest.starts_with(sp.name)) {
            found = &sp;
            break;
        }
    if (!found) at.fail("CSV2", cat("unknown action kind in ", quoted(cell), ": ", grammar));
    rest.remove_prefix(found->name.size());
    csv_token token{found->kind, found->dropped, *stage, no_micro_batch};
    if (found->has_micro_batch) {
        const auto micro_batch = leading_index(rest, at, "micro-batch", cell);
        if (!micro_batch) at.fail("CSV2", cat("action ", quoted(cell), " needs a micro-batch number after ", found->name));
        token.micro_batch = *micro_batch;
    }
    if (!rest.empty())
        at.fail("CSV2", cat("unexpected ", quoted(rest), " after the action in ", quoted(cell), ": ", grammar));
    return token;
}

// A cell: one action, or `(a;b;...)OVERLAP_F_B` read as its actions in order.
inline void parse_cell(std::string_view cell, const csv_cursor& at, std::vector<csv_token>& out) {
    using ::chimera::detail::cat;
    for (char ch : cell)
        if (ch == ' ' || ch == '\t' || ch == '"' || ch == '\r')
            at.fail("CSV2", cat("cell ", quoted(cell), " contains ", ch == '"' ? "a quote" : "white space",
                              "; cells are bare actions such as 1F0"));
    constexpr std::string_view overlap = ")OVERLAP_F_B";
    if (cell.starts_with('(')) {
        if (!cell.ends_with(overlap) || cell.size() == 1 + overlap.size())
            at.fail("CSV2", cat("bad compound cell ", quoted(cell), ": expected (a;b)OVERLAP_F_B"));
        std::string_view inner = cell.substr(1, cell.size() - 1 - overlap.size());
        while (true) {
            const auto semicolon = inner.find(';');
            const csv_token t = parse_action(inner.substr(0, semicolon), at, cell);
            if (!is_compute(t.kind) || t.dropped)
                at.fail("CSV2", cat("compound cell ", quoted(cell), " may hold only F, B, I and W actions"));
            out.push_back(t);
            if (semicolon == std::string_view::npos) break;
            inner.remove_prefix(semicolon + 1);
        }
        return;
    }
    out.push_back(parse_action(cell, at, cell));
}

struct csv_placed {
    op value;
    std::size_t line = 0, column = 0;
};

inline std::uint64_t csv_key(const op& o) {
    return (static_cast<std::uint64_t>(o.kind) << 56) | (static_cast<std::uint64_t>(o.stage) << 28) |
           static_cast<std::uint64_t>(o.micro_batch + 1);
}

// Reader phase 1, one line: its cells' actions (waits and UNSHARDs read
// and dropped) appended to `row`; CSV1 when none is kept.
inline void read_row(std::string_view line, const csv_read_options& options, csv_cursor& at, std::size_t rank,
                     std::vector<csv_placed>& row) {
    using ::chimera::detail::cat;
    std::vector<csv_token> tokens;
    bool any_action = false;
    std::size_t cell_begin = 0;
    while (true) {
        const std::size_t comma = line.find(',', cell_begin);
        const std::string_view cell =
            line.substr(cell_begin, comma == std::string_view::npos ? std::string_view::npos : comma - cell_begin);
        at.column = cell_begin + 1;
        if (!cell.empty()) {
            tokens.clear();
            parse_cell(cell, at, tokens);
            for (const auto& t : tokens) {
                if (is_comm(t.kind) && options.format == csv_format::compute_only)
                    at.fail("CSV5", cat(detail::quoted(cell),
                                        " is a communication action, not allowed in a compute_only file"));
                if (t.dropped) continue;
                any_action = true;  // a row of waits and UNSHARDs alone would write back as a blank line
                row.push_back({op{t.kind, t.stage, t.micro_batch, 0, no_peer}, at.line, at.column});
            }
        }
        if (comma == std::string_view::npos) break;
        cell_begin = comma + 1;
    }
    if (!any_action) {
        at.column = 1;
        at.fail("CSV1", cat("row ", rank, " (rank ", rank, ") holds no action: every rank must run at least one stage"));
    }
}

// Reader phase 1: the file as rows of actions, one row per rank, with the
// line and column each action came from.
inline std::vector<std::vector<csv_placed>> read_rows(std::string_view text, const csv_read_options& options,
                                                      csv_cursor& at) {
    if (text.empty()) at.fail("CSV1", "empty file: expected one row per pipeline rank");
    if (text.starts_with("\xef\xbb\xbf")) at.fail("CSV1", "the file starts with a UTF-8 byte-order mark; remove it");
    std::vector<std::vector<csv_placed>> rows;
    for (std::size_t begin = 0; begin < text.size(); ++at.line) {
        const std::size_t end = text.find('\n', begin);
        std::string_view line = text.substr(begin, end == std::string_view::npos ? std::string_view::npos : end - begin);
        if (line.ends_with('\r')) line.remove_suffix(1);  // CRLF, as Python's csv.writer writes
        at.column = 1;
        if (line.empty()) at.fail("CSV1", "blank line: expected one row per pipeline rank and no blank lines");
        rows.emplace_back();
        read_row(line, options, at, rows.size() - 1, rows.back());
        if (end == std::string_view::npos) break;
        begin = end + 1;
    }
    return rows;
}

// What the rows say about the shape: the rank of every stage and which
// micro-batches occur.
struct csv_layout {
    std::vector<int> rank_of;  // -1: stage not seen
    std::vector<bool> micro_batch_seen;
};

// Grows `seen` to hold index `value`; CSV4 when the index is larger than the
// file could number densely (which bounds every size by the file's length).
inline void grow_to(std::vector<bool>& seen, int value, std::size_t text_size, const csv_cursor& at) {
    if (static_cast<std::size_t>(value) < seen.size()) return;
    if (static_cast<std::size_t>(value) > text_size)
        at.fail("CSV4", ::chimera::detail::cat("micro-batch ", value, " cannot be a micro-batch of this file: "
                                               "micro-batches 0 to ", value, " must each appear"));
    seen.resize(static_cast<std::size_t>(value) + 1, false);
}

// Reader phase 2, one action on rank r: its stage's rank (CSV4 when the
// stage is on two ranks), its micro-batch, and no duplicate (CSV6).
inline void place_action(csv_layout& layout, std::unordered_set<std::uint64_t>& seen, const op& o, std::size_t r,
                         std::size_t text_size, const csv_cursor& at) {
    using ::chimera::detail::cat;
    if (static_cast<std::size_t>(o.stage) >= layout.rank_of.size()) {
        if (static_cast<std::size_t>(o.stage) > text_size)
            at.fail("CSV4", cat("stage ", o.stage, " cannot be a stage of this file: stages 0 to ", o.stage,
                                " must each appear"));
        layout.rank_of.resize(static_cast<std::size_t>(o.stage) + 1, -1);
    }
    int& rank = layout.rank_of[static_cast<std::size_t>(o.stage)];
    if (rank == -1) rank = static_cast<int>(r);
    if (rank != static_cast<int>(r))
        at.fail("CSV4", cat("stage ", o.stage, " appears on rank ", r, " but also on rank ", rank,
                            ": in PyTorch's CSV each stage lives on exactly one rank (replicated stages need "
                            "the chimera.schedule/1 JSON form)"));
    if (o.micro_batch >= 0) {
        grow_to(layout.micro_batch_seen, o.micro_batch, text_size, at);
        layout.micro_batch_seen[static_cast<std::size_t>(o.micro_batch)] = true;
    }
    if (!seen.insert(csv_key(o)).second)
        at.fail("CSV6", cat("duplicate action ", detail::quoted(csv_cell(o)),
                            ": each (kind, stage, micro-batch) occurs once"));
}

// Reader phase 2: stage -> rank and the micro-batches, from every action.
inline csv_layout infer_layout(const std::vector<std::vector<csv_placed>>& rows, std::size_t text_size,
                               csv_cursor& at) {
    csv_layout layout;
    std::unordered_set<std::uint64_t> seen;
    for (std::size_t r = 0; r < rows.size(); ++r)
        for (const auto& placed : rows[r]) {
            at.line = placed.line;
            at.column = placed.column;
            place_action(layout, seen, placed.value, r, text_size, at);
        }
    return layout;
}

// Reader phase 3: stages and micro-batches are numbered 0 to D-1 and 0 to
// N-1 with no gap (CSV4), and D x N is within the limit (CSV3).
inline void require_dense_numbering(const csv_layout& layout, csv_cursor& at) {
    using ::chimera::detail::cat;
    at.line = 1;
    at.column = 1;
    for (std::size_t st = 0; st < layout.rank_of.size(); ++st)
        if (layout.rank_of[st] == -1)
            at.fail("CSV4", cat("stage ", st, " appears in no row, but stage ", layout.rank_of.size() - 1,
                                " does: stages must be numbered 0 to D-1"));
    const auto& seen = layout.micro_batch_seen;
    for (std::size_t m = 0; m < seen.size(); ++m)
        if (!seen[m])
            at.fail("CSV4", cat("micro-batch ", m, " appears in no row, but micro-batch ", seen.size() - 1,
                                " does: micro-batches must be numbered 0 to N-1"));
    if (seen.empty()) at.fail("CSV4", "no action names a micro-batch");
    const long long product = static_cast<long long>(layout.rank_of.size()) * static_cast<long long>(seen.size());
    if (product > max_stage_micro_batch_product)
        at.fail("CSV3", cat("stages x micro-batches = ", product, " exceeds the limit ", max_stage_micro_batch_product));
}

// Reader phase 4, one p2p action on rank r: the rank holding the stage it
// talks to (SEND_F/RECV_B the next stage, RECV_F/SEND_B the previous one).
inline int peer_of(const op& o, std::size_t r, const csv_layout& layout, const csv_cursor& at) {
    using ::chimera::detail::cat;
    const int stages = static_cast<int>(layout.rank_of.size());
    const bool next = o.kind == op_kind::SEND_F || o.kind == op_kind::RECV_B;
    const int other = o.stage + (next ? 1 : -1);
    if (other < 0 || other >= stages)
        at.fail("CSV4", cat(detail::quoted(csv_cell(o)), " talks to stage ", other, ", which does not exist (stages 0 to ",
                            stages - 1, ")"));
    const int peer = layout.rank_of[static_cast<std::size_t>(other)];
    if (peer == static_cast<int>(r))
        at.fail("CSV4", cat(detail::quoted(csv_cell(o)), ": stages ", o.stage, " and ", other, " are both on rank ", r,
                            "; a hand-over on one rank needs no communication"));
    return peer;
}

// Reader phase 4: the schedule, one pipeline, with the peers of p2p ops.
inline schedule build_csv_schedule(const std::vector<std::vector<csv_placed>>& rows, const csv_layout& layout,
                                   csv_cursor& at) {
    const int stages = static_cast<int>(layout.rank_of.size());
    schedule s;
    s.set_shape(csv_schedule_name, stages, static_cast<int>(layout.micro_batch_seen.size()), 1);
    for (int st = 0; st < stages; ++st) s.set_placement(0, st, layout.rank_of[static_cast<std::size_t>(st)]);
    for (std::size_t r = 0; r < rows.size(); ++r) {
        s.add_worker();
        for (const auto& placed : rows[r]) {
            op o = placed.value;
            at.line = placed.line;
            at.column = placed.column;
            if (is_p2p(o.kind)) o.peer = peer_of(o, r, layout, at);
            s.push_op(o);
        }
    }
    return s;
}

}  // namespace detail

// Reads a PyTorch pipelining CSV; throws format_error ("line L, column C:
// [Cn] ..."). Accepts LF or CRLF line ends and a missing final newline.
inline schedule read_csv(std::string_view text, const csv_read_options& options = {}) {
    detail::csv_cursor at;
    const auto rows = detail::read_rows(text, options, at);
    const detail::csv_layout layout = detail::infer_layout(rows, text.size(), at);
    detail::require_dense_numbering(layout, at);
    return detail::build_csv_schedule(rows, layout, at);
}

}  // namespace chimera::io
