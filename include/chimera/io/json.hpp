// `chimera.schedule/1` JSON (docs/design/formats.md#the-native-json-form): the native, lossless form.
//
// The writer needs only the standard library and prints one op per line
// with a fixed key order, so the same schedule always gives the same bytes.
// The reader is strict and uses nlohmann/json: the first problem is reported
// with its JSON path (or line and column for syntax errors), the rule it
// breaks and what was expected; nothing is half-loaded.
#pragma once

#include <cstdint>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "../config.hpp"
#include "../detail/text.hpp"
#include "../op.hpp"
#include "../registry.hpp"
#include "../schedule.hpp"
#include "../schedule_entry.hpp"

namespace chimera::io {

inline constexpr std::string_view schedule_format = "chimera.schedule/1";

// A file that cannot be read as a schedule. The message reads
// "WHERE: [RULE] WHAT": the JSON path or "line L, column C", the rule id of
// docs/formats-io.md, and what was expected.
class format_error : public std::runtime_error {
public:
    format_error(std::string where, const std::string& what, std::string_view rule = {})
        : std::runtime_error(compose(where, what, rule)), where_(std::move(where)), rule_(rule) {}
    const std::string& where() const noexcept { return where_; }
    // Rule id ("JSON2", "CSV4", ...); a string literal, so the view stays valid.
    std::string_view rule() const noexcept { return rule_; }

private:
    static std::string compose(const std::string& where, const std::string& what, std::string_view rule) {
        std::string text;
        if (!where.empty()) text.append(where).append(": ");
        if (!rule.empty()) text.append("[").append(rule).append("] ");
        return text.append(what);
    }
    std::string where_;
    std::string_view rule_;
};

namespace detail {
inline void write_json_string(std::string& out, std::string_view text) {
    out += '"';
    for (char ch : text) {
        if (ch == '"' || ch == '\\') {
            out += '\\';
            out += ch;
        } else if (static_cast<unsigned char>(ch) < 0x20) {
            constexpr char hex[] = "0123456789abcdef";
            out += "\\u00";
            out += hex[(ch >> 4) & 0xf];
            out += hex[ch & 0xf];
        } else {
            out += ch;
        }
    }
    out += '"';
}
}  // namespace detail

// Generator parameters echoed under "params" (docs/design/chimera-closed-form.md#what-the-generator-emits): the shared
// ones, then the fields the schedule's registry entry lists.
inline std::string write_params(const config& c) {
    using ::chimera::detail::cat;
    const schedule_entry* e = find_schedule(c.schedule);
    if (!e) return "{}";
    std::string out = cat("{\"schedule\":\"", e->name, "\",\"stages\":", c.stages,
                          ",\"micro_batches\":", c.micro_batches, ",\"pipelines\":", pipeline_count(c, *e));
    for (const param_field& p : e->params) {
        switch (p.kind) {
            case param_field::type::integer: out += cat(",\"", p.key, "\":", c.*p.integer); break;
            case param_field::type::flag_if_set:
                if (c.*p.flag) out += cat(",\"", p.key, "\":true");
                break;
            case param_field::type::scaling_mode: out += cat(",\"", p.key, "\":\"", to_string(c.scaling_mode), "\""); break;
            case param_field::type::derived: out += cat(",\"", p.key, "\":", p.derive(c)); break;
        }
    }
    out += cat(",\"data_parallel\":", c.data_parallel, "}");
    return out;
}

inline void write_op(std::string& out, const op& o) {
    using ::chimera::detail::cat;
    out += cat("{\"kind\":\"", to_string(o.kind), "\",\"stage\":", o.stage);
    if (o.kind != op_kind::REDUCE_GRAD) out += cat(",\"micro_batch\":", o.micro_batch);
    out += cat(",\"pipeline\":", o.pipeline);
    if (is_p2p(o.kind)) out += cat(",\"peer\":", o.peer);
    out += "}";
}

template <schedule_like S>
std::string write_json(const S& s) {
    using ::chimera::detail::cat;
    std::string out = cat("{\"format\":\"", schedule_format, "\",\"name\":");
    detail::write_json_string(out, s.name());
    out += cat(",\"params\":", write_params(s.params()), ",\n \"stages\":", s.stages(),
               ",\"micro_batches\":", s.micro_batches(), ",\"pipelines\":", s.pipelines(),
               ",\"workers\":", s.workers(), ",\n \"placement\":[");
    for (int p = 0; p < s.pipelines(); ++p) {
        out += p ? ",[" : "[";
        for (int st = 0; st < s.stages(); ++st) out += cat(st ? "," : "", s.placement(p, st));
        out += "]";
    }
    out += "],\n \"micro_batch_pipeline\":[";
    for (int m = 0; m < s.micro_batches(); ++m) out += cat(m ? "," : "", s.pipeline_of(m));
    out += "],\n \"ops\":[";
    for (int w = 0; w < s.workers(); ++w) {
        out += w ? ",\n  [" : "\n  [";
        bool first = true;
        for (const op& o : s.ops(w)) {
            out += first ? "" : ",\n   ";
            first = false;
            write_op(out, o);
        }
        out += "]";
    }
    out += "]}\n";
    return out;
}

namespace detail {

using nlohmann::json;

inline std::string line_column(std::string_view text, std::size_t byte) {
    std::size_t line = 1, column = 1;
    for (std::size_t i = 0; i < byte && i < text.size(); ++i) {
        if (text[i] == '\n') ++line, column = 1;
        else ++column;
    }
    return ::chimera::detail::cat("line ", line, ", column ", column);
}

inline const json& member(const json& object, const char* key, const std::string& path) {
    auto it = object.find(key);
    if (it == object.end()) throw format_error(path, ::chimera::detail::cat("missing required key \"", key, "\""), "JSON2");
    return *it;
}

inline int integer(const json& value, const std::string& path, long long low = std::numeric_limits<int>::min(),
                   long long high = std::numeric_limits<int>::max()) {
    using ::chimera::detail::cat;
    if (!value.is_number_integer())
        throw format_error(path, cat("expected an integer, got ", value.type_name(), " ", value.dump()), "JSON2");
    // Unsigned values above LLONG_MAX clamp to it: still out of any range we accept.
    const long long number = value.is_number_unsigned()
                                 ? static_cast<long long>(std::min<unsigned long long>(
                                       value.get<unsigned long long>(), std::numeric_limits<long long>::max()))
                                 : value.get<long long>();
    if (number < low || number > high)
        throw format_error(path, cat("expected an integer in [", low, ", ", high, "], got ", value.dump()), "JSON3");
    return static_cast<int>(number);
}

inline const json& array(const json& value, const std::string& path, std::size_t expected_size, const char* what) {
    using ::chimera::detail::cat;
    if (!value.is_array()) throw format_error(path, cat("expected an array, got ", value.type_name()), "JSON2");
    if (value.size() != expected_size)
        throw format_error(path, cat("expected ", expected_size, " entries (", what, "), got ", value.size()), "JSON4");
    return value;
}

// One field of the entry's params into `c`; false when it is malformed.
inline bool read_param(const json& p, const param_field& field, config& c) {
    auto f = p.find(std::string(field.key));
    if (f == p.end() || field.kind == param_field::type::derived) return true;  // absent: the default
    switch (field.kind) {
        case param_field::type::integer:
            if (!f->is_number_integer()) return false;
            if (f->get<long long>() < std::numeric_limits<int>::min() || f->get<long long>() > std::numeric_limits<int>::max())
                return false;
            c.*field.integer = static_cast<int>(f->get<long long>());
            return true;
        case param_field::type::flag_if_set:
            if (!f->is_boolean()) return false;
            c.*field.flag = f->get<bool>();
            return true;
        case param_field::type::scaling_mode: {
            const auto mode = f->is_string() ? parse_scaling(f->get<std::string>()) : std::nullopt;
            if (mode) c.scaling_mode = *mode;
            return mode.has_value();
        }
        case param_field::type::derived: return true;
    }
    return false;
}

inline config read_params(const json& root, std::string_view name) {
    auto it = root.find("params");
    const schedule_entry* e = find_schedule(name);
    if (it == root.end() || !it->is_object() || !e || e->name != name) return config{algorithm::custom};
    const json& p = *it;
    // Params are free form: use them only when they describe a config completely.
    config c{e->id};
    const param_field shared[] = {{"stages", param_field::type::integer, &config::stages},
                                  {"micro_batches", param_field::type::integer, &config::micro_batches},
                                  {"pipelines", param_field::type::integer, &config::pipelines},
                                  {"data_parallel", param_field::type::integer, &config::data_parallel}};
    for (const param_field& field : shared)
        if (!p.contains(std::string(field.key)) || !read_param(p, field, c)) return config{algorithm::custom};
    for (const param_field& field : e->params)
        if (!read_param(p, field, c)) return config{algorithm::custom};
    // As the writer echoes it (pipelines 0 = the algorithm's default), so
    // that reading what was written gives back the same schedule.
    return normalized(c, *e);
}

// Reader phase 1: the text as a JSON object (JSON1 on a syntax error, an
// out-of-range number or another top-level value).
inline json parse_document(std::string_view text) {
    using ::chimera::detail::cat;
    json root;
    try {
        root = json::parse(text.begin(), text.end());
    } catch (const json::out_of_range& e) {
        // A number too large for any JSON number type (1e999, 9 x 10^400).
        throw format_error("$", cat("invalid JSON: a number is out of range (", e.what(), ")"), "JSON1");
    } catch (const json::parse_error& e) {
        std::string reason = e.what();
        if (auto colon = reason.rfind(": "); colon != std::string::npos) reason = reason.substr(colon + 2);
        throw format_error(line_column(text, e.byte == 0 ? 0 : e.byte - 1), cat("invalid JSON: ", reason), "JSON1");
    }
    if (!root.is_object()) throw format_error("$", cat("expected a JSON object, got ", root.type_name()), "JSON1");
    return root;
}

// The document's format tag, name and sizes.
struct json_header {
    std::string name;
    int stages = 0, micro_batches = 0, pipelines = 0, workers = 0;
};

// Reader phase 2: format tag (JSON1), name (JSON2/JSON3) and sizes, each
// in [1, 2^24] with stages x micro_batches and stages x pipelines bounded.
inline json_header read_header(const json& root) {
    using ::chimera::detail::cat;
    const json& format = member(root, "format", "$");
    if (!format.is_string() || format.get<std::string>() != schedule_format)
        throw format_error("$.format", cat("expected \"", schedule_format, "\", got ", format.dump()), "JSON1");
    const json& name_value = member(root, "name", "$");
    if (!name_value.is_string()) throw format_error("$.name", cat("expected a string, got ", name_value.type_name()), "JSON2");
    json_header h;
    h.name = name_value.get<std::string>();
    if (h.name.empty() || h.name.size() > schedule_name::max_length)
        throw format_error("$.name", cat("expected 1 to ", schedule_name::max_length, " characters, got ", h.name.size()),
                           "JSON3");
    const int limit = 1 << 24;
    h.stages = integer(member(root, "stages", "$"), "$.stages", 1, limit);
    h.micro_batches = integer(member(root, "micro_batches", "$"), "$.micro_batches", 1, limit);
    h.pipelines = integer(member(root, "pipelines", "$"), "$.pipelines", 1, limit);
    h.workers = integer(member(root, "workers", "$"), "$.workers", 1, limit);
    if (static_cast<long long>(h.stages) * h.micro_batches > max_stage_micro_batch_product ||
        static_cast<long long>(h.stages) * h.pipelines > max_stage_micro_batch_product)
        throw format_error("$", cat("stages x micro_batches and stages x pipelines must be <= ",
                                    max_stage_micro_batch_product), "JSON3");
    return h;
}

// The document's arrays, their sizes checked against the header.
struct json_arrays {
    const json& placement;
    const json& routing;
    const json& ops;
};

// Reader phase 3: the sizes of placement, routing and op lists. Every size
// is checked before anything is allocated, so memory stays proportional to
// the input (a 20-byte file cannot ask for 2^24 placement entries).
inline json_arrays read_array_sizes(const json& root, const json_header& h) {
    using ::chimera::detail::cat;
    const json& placement = array(member(root, "placement", "$"), "$.placement",
                                  static_cast<std::size_t>(h.pipelines), "one row per pipeline");
    for (int p = 0; p < h.pipelines; ++p)
        array(placement[static_cast<std::size_t>(p)], cat("$.placement[", p, "]"), static_cast<std::size_t>(h.stages),
              "one worker per stage");
    const json& routing = array(member(root, "micro_batch_pipeline", "$"), "$.micro_batch_pipeline",
                                static_cast<std::size_t>(h.micro_batches), "one pipeline per micro-batch");
    const json& ops = array(member(root, "ops", "$"), "$.ops", static_cast<std::size_t>(h.workers),
                            "one op list per worker");
    return {placement, routing, ops};
}

// Reader phase 4: placement and routing values into `s` (shape already set).
inline void read_frame(const json_arrays& in, const json_header& h, schedule& s) {
    using ::chimera::detail::cat;
    for (int p = 0; p < h.pipelines; ++p) {
        const json& row = in.placement[static_cast<std::size_t>(p)];
        for (int st = 0; st < h.stages; ++st)
            s.set_placement(p, st, integer(row[static_cast<std::size_t>(st)], cat("$.placement[", p, "][", st, "]"), 0,
                                           h.workers - 1));
    }
    for (int m = 0; m < h.micro_batches; ++m)
        s.set_pipeline_of(m, integer(in.routing[static_cast<std::size_t>(m)], cat("$.micro_batch_pipeline[", m, "]"), 0,
                                     h.pipelines - 1));
}

// Reader phase 5, one op at `path`: kind (JSON5), stage, pipeline and
// micro-batch in range (JSON3), and a peer exactly on communication ops.
inline op read_op(const json& item, const std::string& path, const json_header& h) {
    using ::chimera::detail::cat;
    if (!item.is_object()) throw format_error(path, cat("expected an op object, got ", item.type_name()), "JSON2");
    const json& kind_value = member(item, "kind", path);
    const auto kind = kind_value.is_string() ? parse_op_kind(kind_value.get<std::string>()) : std::nullopt;
    if (!kind)
        throw format_error(path + ".kind",
                           cat("unknown op kind ", kind_value.dump(),
                               " (expected F, B, I, W, SEND_F, RECV_F, SEND_B, RECV_B or REDUCE_GRAD)"), "JSON5");
    op o;
    o.kind = *kind;
    o.stage = integer(member(item, "stage", path), path + ".stage", 0, h.stages - 1);
    o.pipeline = integer(member(item, "pipeline", path), path + ".pipeline", 0, h.pipelines - 1);
    if (o.kind != op_kind::REDUCE_GRAD)
        o.micro_batch = integer(member(item, "micro_batch", path), path + ".micro_batch", 0, h.micro_batches - 1);
    if (is_p2p(o.kind))
        o.peer = integer(member(item, "peer", path), path + ".peer", 0, h.workers - 1);
    else if (item.contains("peer"))
        throw format_error(path + ".peer", cat("only communication ops have a peer (this op is ", to_string(o.kind), ")"),
                           "JSON5");
    return o;
}

// Reader phase 5: one op list per worker into `s`.
inline void read_op_lists(const json& ops, const json_header& h, schedule& s) {
    using ::chimera::detail::cat;
    for (int w = 0; w < h.workers; ++w) {
        const std::string list_path = cat("$.ops[", w, "]");
        const json& list = ops[static_cast<std::size_t>(w)];
        if (!list.is_array()) throw format_error(list_path, cat("expected an array of ops, got ", list.type_name()), "JSON2");
        s.add_worker();
        for (std::size_t i = 0; i < list.size(); ++i) s.push_op(read_op(list[i], cat(list_path, "[", i, "]"), h));
    }
}

}  // namespace detail

// Reads a `chimera.schedule/1` document; throws format_error.
inline schedule read_json(std::string_view text) {
    const detail::json root = detail::parse_document(text);
    const detail::json_header h = detail::read_header(root);
    const detail::json_arrays arrays = detail::read_array_sizes(root, h);
    schedule s;
    s.set_shape(h.name, h.stages, h.micro_batches, h.pipelines, detail::read_params(root, h.name));
    detail::read_frame(arrays, h, s);
    detail::read_op_lists(arrays.ops, h, s);
    return s;
}

}  // namespace chimera::io
