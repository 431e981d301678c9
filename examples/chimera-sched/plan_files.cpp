// Model and cluster files: strict JSON readers (see plan_files.hpp).
#include "plan_files.hpp"

#include <array>
#include <cmath>
#include <deque>
#include <set>

#include <nlohmann/json.hpp>

#include "cli.hpp"

namespace chimera_sched {

namespace {

using json = nlohmann::json;

// Descriptions hold names as string_view: keep the loaded ones alive.
std::string_view keep(std::string text) {
    static std::deque<std::string> names;
    return names.emplace_back(std::move(text));
}

// One JSON object of a file: typed, range-checked access by field name, and
// a final check that no field was left unread (a typo is an error).
class object_reader {
public:
    object_reader(std::string where, const json& value, std::string prefix = "")
        : where_(std::move(where)), prefix_(std::move(prefix)), value_(value) {
        if (!value_.is_object()) fail("", "must be a JSON object", value_);
    }

    [[noreturn]] void fail(const std::string& field, const std::string& rule, const json& got) const {
        const std::string name = field.empty() ? (prefix_.empty() ? "the top level" : prefix_) : "field '" + prefix_ + field + "'";
        throw usage_error(where_ + ": " + name + " " + rule + " (got " + got.dump() + ")");
    }
    [[noreturn]] void fail_missing(const std::string& field) const {
        throw usage_error(where_ + ": field '" + prefix_ + field + "' is missing");
    }

    bool has(const std::string& field) const { return value_.contains(field); }
    const json& get(const std::string& field) {
        seen_.insert(field);
        if (!value_.contains(field)) fail_missing(field);
        return value_.at(field);
    }
    std::string text(const std::string& field) {
        const json& v = get(field);
        if (!v.is_string() || v.get<std::string>().empty()) fail(field, "must be a non-empty string", v);
        return v.get<std::string>();
    }
    bool flag(const std::string& field, bool fallback) {
        if (!has(field)) return fallback;
        const json& v = get(field);
        if (!v.is_boolean()) fail(field, "must be true or false", v);
        return v.get<bool>();
    }
    // An integer >= minimum.
    long long integer(const std::string& field, long long minimum) {
        const json& v = get(field);
        if (!v.is_number_integer()) fail(field, "must be an integer", v);
        if (v.get<long long>() < minimum) fail(field, "must be >= " + std::to_string(minimum), v);
        return v.get<long long>();
    }
    long long integer_or(const std::string& field, long long minimum, long long fallback) {
        return has(field) ? integer(field, minimum) : fallback;
    }
    // A finite number > 0 (or >= 0), and <= maximum when one is given.
    double number(const std::string& field, bool zero_allowed, double maximum = INFINITY) {
        const json& v = get(field);
        if (!v.is_number() || !std::isfinite(v.get<double>())) fail(field, "must be a number", v);
        const double x = v.get<double>();
        if (zero_allowed ? x < 0 : x <= 0) fail(field, zero_allowed ? "must be >= 0" : "must be > 0", v);
        if (x > maximum) fail(field, "must be <= " + json(maximum).dump(), v);
        return x;
    }
    double number_or(const std::string& field, bool zero_allowed, double fallback, double maximum = INFINITY) {
        return has(field) ? number(field, zero_allowed, maximum) : fallback;
    }
    void expect_format(const std::string& format) {
        const json& v = get("format");
        if (v != format) fail("format", "must be \"" + format + "\"", v);
    }
    void no_other_fields() const {
        for (const auto& item : value_.items())
            if (!seen_.count(item.key()))
                throw usage_error(where_ + ": unknown field '" + prefix_ + item.key() + "' (a typo?)");
    }

private:
    std::string where_, prefix_;
    const json& value_;
    std::set<std::string> seen_;
};

json parse_json(const std::string& what, const std::string& path, const std::string& text) {
    try {
        return json::parse(text);
    } catch (const json::parse_error& e) {
        throw usage_error(what + " " + path + ": not valid JSON: " + e.what());
    }
}

int as_int(object_reader& in, const std::string& field, long long minimum) {
    const long long value = in.integer(field, minimum);
    if (value > 1'000'000'000) in.fail(field, "must be <= 1000000000", json(value));
    return static_cast<int>(value);
}

chimera::network_description read_network(object_reader& in) {
    chimera::network_description n;
    n.name = keep(in.has("name") ? in.text("name") : "");
    n.alpha = in.number("alpha", true);
    n.beta = in.number("beta", true);
    in.no_other_fields();
    return n;
}

chimera::device_description read_device(object_reader& in) {
    chimera::device_description d;
    d.name = keep(in.text("name"));
    d.peak_flops = in.number("peak_flops", false);
    d.efficiency = in.number_or("efficiency", false, d.efficiency, 1.0);
    d.half_tokens = in.number_or("half_tokens", true, d.half_tokens);
    d.memory_bytes = in.number("memory_bytes", false);
    d.bytes_per_parameter = in.number_or("bytes_per_parameter", true, d.bytes_per_parameter);
    d.gradient_bytes_per_parameter = in.number_or("gradient_bytes_per_parameter", true, d.gradient_bytes_per_parameter);
    d.optimizer_bytes_per_parameter =
        in.number_or("optimizer_bytes_per_parameter", true, d.optimizer_bytes_per_parameter);
    d.optimizer_seconds_per_parameter =
        in.number_or("optimizer_seconds_per_parameter", true, d.optimizer_seconds_per_parameter);
    in.no_other_fields();
    return d;
}

}  // namespace

chimera::model_description parse_model_file(const std::string& path, const std::string& text) {
    const json doc = parse_json("model file", path, text);
    object_reader in("model file " + path, doc);
    in.expect_format("chimera-model");
    chimera::model_description m;
    m.name = keep(in.text("name"));
    m.layers = as_int(in, "layers", 1);
    m.hidden = as_int(in, "hidden", 1);
    m.heads = as_int(in, "heads", 1);
    m.sequence = as_int(in, "sequence", 1);
    m.vocabulary = as_int(in, "vocabulary", 1);
    m.tied_head = in.flag("tied_head", true);
    m.extra_parameters = in.integer_or("extra_parameters", 0, 0);
    m.given_layer_parameters = in.integer_or("layer_parameters", 1, 0);
    m.given_layer_flops = in.number_or("layer_flops", false, 0);
    m.given_layer_activation_bytes = in.number_or("layer_activation_bytes", false, 0);
    if (m.hidden % m.heads != 0)
        in.fail("heads", "must divide field 'hidden' = " + std::to_string(m.hidden) + " (head size hidden/heads)",
                json(m.heads));
    in.no_other_fields();
    return m;
}

cluster_description parse_cluster_file(const std::string& path, const std::string& text) {
    const json doc = parse_json("cluster file", path, text);
    const std::string where = "cluster file " + path;
    object_reader in(where, doc);
    in.expect_format("chimera-cluster");
    cluster_description c;
    in.text("name");
    c.devices = as_int(in, "devices", 1);
    c.machine.devices_per_node = as_int(in, "devices_per_node", 1);
    if (c.devices % c.machine.devices_per_node != 0)
        in.fail("devices_per_node", "must divide field 'devices' = " + std::to_string(c.devices),
                json(c.machine.devices_per_node));
    if (in.has("cores_per_node")) c.machine.cores_per_node = as_int(in, "cores_per_node", 1);
    object_reader device(where, in.get("device"), "device.");
    c.machine.device = read_device(device);
    object_reader inter(where, in.get("inter_node"), "inter_node.");
    c.machine.network = read_network(inter);
    if (c.machine.devices_per_node > 1) {
        object_reader intra(where, in.get("intra_node"), "intra_node.");
        c.machine.intra_node = read_network(intra);
    } else if (in.has("intra_node")) {
        in.fail("intra_node", "is only read when devices_per_node > 1 (devices_per_node is 1)", in.get("intra_node"));
    }
    in.no_other_fields();
    return c;
}

namespace {

// A Chrome/Perfetto trace of a step: the mean duration ("dur", microseconds)
// of the F/B/I/W events of every stage ("args": {"kind", "stage"}); the
// stages are assumed cut like the performance model cuts them, and the
// micro-batch size comes from "otherData": {"micro_batch_size": B}.
chimera::measured_profile profile_from_trace(const std::string& where, const json& doc,
                                             const chimera::model_description& model) {
    const json* other = doc.contains("otherData") ? &doc.at("otherData") : nullptr;
    if (!other || !other->is_object() || !other->contains("micro_batch_size"))
        throw usage_error(where + ": a trace needs \"otherData\": {\"micro_batch_size\": B} (samples per micro-batch)");
    object_reader meta(where, *other, "otherData.");
    chimera::measured_profile p;
    p.micro_batch_size = meta.number("micro_batch_size", false);
    std::vector<std::array<double, 8>> sums;  // per stage: F, B, I, W totals then counts
    for (const json& e : doc.at("traceEvents")) {
        if (!e.is_object() || e.value("ph", "") != "X" || !e.contains("args") || !e.contains("dur")) continue;
        const json& args = e.at("args");
        const std::string kind = args.is_object() ? args.value("kind", "") : "";
        const std::size_t k = kind == "F" ? 0 : kind == "B" ? 1 : kind == "I" ? 2 : kind == "W" ? 3 : 4;
        if (k == 4 || !args.contains("stage") || !args.at("stage").is_number_unsigned() || !e.at("dur").is_number())
            continue;
        const auto stage = args.at("stage").get<std::size_t>();
        if (stage >= static_cast<std::size_t>(model.layers))
            throw usage_error(where + ": event stage " + std::to_string(stage) + " >= the model's " +
                              std::to_string(model.layers) + " layers");
        if (sums.size() <= stage) sums.resize(stage + 1, {});
        sums[stage][k] += e.at("dur").get<double>() * 1e-6;
        sums[stage][k + 4] += 1;
    }
    const std::vector<int> layers = chimera::partition_layers(model, static_cast<int>(sums.size()));
    for (std::size_t s = 0; s < sums.size(); ++s) {
        const auto mean = [&](std::size_t k) { return sums[s][k + 4] > 0 ? sums[s][k] / sums[s][k + 4] : 0.0; };
        if (mean(0) <= 0) throw usage_error(where + ": no forward (\"kind\": \"F\") event of stage " + std::to_string(s));
        p.stages.push_back({layers[s], mean(0), mean(1), mean(2), mean(3), 0});
    }
    if (p.stages.empty()) throw usage_error(where + ": no F/B/I/W events with \"args\": {\"kind\", \"stage\"}");
    return p;
}

}  // namespace

chimera::measured_profile parse_profile_file(const std::string& path, const std::string& text,
                                             const chimera::model_description& model) {
    const json doc = parse_json("profile file", path, text);
    const std::string where = "profile file " + path;
    if (doc.is_object() && doc.contains("traceEvents") && doc.at("traceEvents").is_array())
        return profile_from_trace(where, doc, model);
    object_reader in(where, doc);
    in.expect_format("chimera-profile");
    if (in.has("model")) in.text("model");
    chimera::measured_profile p;
    p.micro_batch_size = in.number("micro_batch_size", false);
    const json& stages = in.get("stages");
    if (!stages.is_array() || stages.empty()) in.fail("stages", "must be a non-empty array", stages);
    int layers = 0;
    for (std::size_t s = 0; s < stages.size(); ++s) {
        object_reader st(where, stages[s], "stages[" + std::to_string(s) + "].");
        chimera::measured_stage m;
        m.layers = as_int(st, "layers", 0);
        m.forward = st.number("forward", false);
        m.backward = st.number("backward", true);
        m.input_backward = st.number_or("input_backward", true, 0);
        m.weight_backward = st.number_or("weight_backward", true, 0);
        m.activation_bytes = st.number_or("activation_bytes", true, 0);
        st.no_other_fields();
        layers += m.layers;
        p.stages.push_back(m);
    }
    p.optimizer_seconds_per_parameter = in.number_or("optimizer_seconds_per_parameter", true, 0);
    if (layers != model.layers)
        in.fail("stages", "must hold the model's " + std::to_string(model.layers) + " layers (stages[].layers add up to " +
                              std::to_string(layers) + ")", json(layers));
    in.no_other_fields();
    return p;
}

chimera::measured_profile read_profile_file(const std::string& path, const chimera::model_description& model) {
    return parse_profile_file(path, read_file(path), model);
}

void calibrate_with(chimera::model_description& model, chimera::hardware& machine,
                    const std::vector<std::string>& profile_paths) {
    std::vector<chimera::measured_profile> profiles;
    for (const std::string& path : profile_paths) profiles.push_back(read_profile_file(path, model));
    try {
        chimera::calibrate(model, machine, profiles);
    } catch (const std::invalid_argument& e) {
        std::string files;
        for (const std::string& path : profile_paths) files += " " + path;
        throw usage_error(std::string("--profile") + files + ": " + e.what());
    }
}

chimera::model_description read_model_file(const std::string& path) { return parse_model_file(path, read_file(path)); }
cluster_description read_cluster_file(const std::string& path) { return parse_cluster_file(path, read_file(path)); }

}  // namespace chimera_sched
