// chimera._core: a thin pybind11 binding of the header-only library.
// It converts arguments, calls the C++ functions and wraps their results;
// every rule about what is valid stays in the C++ headers, whose
// schedule_error (rule id + message) becomes chimera.ScheduleError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <charconv>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <chimera/builder.hpp>
#include <chimera/chimera.hpp>
#include <chimera/io/csv.hpp>
#include <chimera/io/text.hpp>
#include <chimera/io/json.hpp>
#include <chimera/tune.hpp>

namespace py = pybind11;
using chimera::detail::cat;

namespace {

// Shortest round-trip decimal (detail::cat prints integers only).
std::string number(double value) {
    char buffer[64];
    const auto result = std::to_chars(buffer, buffer + sizeof buffer, value);
    return std::string(buffer, result.ptr);
}

// ---- Pure-Python types from chimera._base, looked up once. ----------------

py::object base_attr(const char* name) { return py::module_::import("chimera._base").attr(name); }

const py::object& op_kind_member(chimera::op_kind kind) {
    // Leaked on purpose: Python objects must not be destroyed after the interpreter.
    static const auto* members = [] {
        auto* list = new std::array<py::object, chimera::op_kind_count>;
        const py::object op_kind = base_attr("OpKind");
        for (int i = 0; i < chimera::op_kind_count; ++i)
            (*list)[static_cast<std::size_t>(i)] = op_kind(std::string(to_string(static_cast<chimera::op_kind>(i))));
        return list;
    }();
    return (*members)[static_cast<std::size_t>(kind)];
}

void translate_exceptions(std::exception_ptr error) {
    try {
        if (error) std::rethrow_exception(error);
    } catch (const chimera::io::format_error& e) {
        const py::object type = base_attr("FormatError");
        PyErr_SetObject(type.ptr(), type(std::string(e.what()), std::string(e.rule()), e.where()).ptr());
    } catch (const chimera::schedule_error& e) {
        const py::object type = base_attr("ScheduleError");
        PyErr_SetObject(type.ptr(), type(std::string(e.what()), std::string(e.rule())).ptr());
    }
}

// ---- Names (the C++ spellings, as chimera-sched takes them). -------------

template <class Range, class Name>
std::string joined(const Range& values, Name name) {
    std::string out;
    for (const auto& v : values) out += (out.empty() ? "" : ", ") + std::string(name(v));
    return out;
}

std::string algorithm_names() {
    return joined(chimera::generated_algorithms, [](chimera::algorithm a) { return to_string(a); });
}

chimera::algorithm parse_algorithm(const std::string& name) {
    if (auto a = chimera::parse_algorithm(name)) return *a;
    throw py::value_error(cat("unknown schedule '", name, "' (known: ", algorithm_names(), ")"));
}

chimera::scaling parse_scaling(const std::string& name) {
    if (auto s = chimera::parse_scaling(name)) return *s;
    throw py::value_error(cat("unknown scaling '", name, "' (known: direct, doubling, halving)"));
}

chimera::sync_policy parse_sync(const std::string& name) {
    if (auto s = chimera::parse_sync_policy(name)) return *s;
    throw py::value_error(cat("unknown sync policy '", name, "' (known: end, eager, eager-opt)"));
}

chimera::op_kind parse_kind(const std::string& name) {
    if (auto k = chimera::parse_op_kind(name)) return *k;
    throw py::value_error(cat("unknown op kind '", name,
                              "' (known: F, B, I, W, SEND_F, RECV_F, SEND_B, RECV_B, REDUCE_GRAD)"));
}

// ---- Values: -1 in the IR is None in Python. -----------------------------

py::object optional_index(std::int32_t value) { return value < 0 ? py::none() : py::object(py::int_(value)); }

py::dict params_dict(const chimera::config& c) {
    py::dict d;
    d["schedule"] = std::string(to_string(c.schedule));
    d["stages"] = c.stages;
    d["micro_batches"] = c.micro_batches;
    d["pipelines"] = chimera::pipeline_count(c);
    d["scaling"] = std::string(to_string(c.scaling_mode));
    d["data_parallel"] = c.data_parallel;
    d["chunks"] = c.chunks;
    d["group_size"] = c.group_size;
    d["split_backward"] = c.split_backward;
    return d;
}

// None means the schedule's default (0 in the C++ config); an explicit 0 is refused.
int optional_count(const std::optional<int>& value, const char* what) {
    if (value && *value < 1) throw py::value_error(cat(what, " must be >= 1 or None (got ", *value, ")"));
    return value.value_or(0);
}

chimera::schedule generate(const std::string& name, int stages, int micro_batches, std::optional<int> pipelines,
                           const std::string& scaling, bool split_backward, std::optional<int> chunks,
                           std::optional<int> group_size, int data_parallel) {
    chimera::config c;
    c.schedule = parse_algorithm(name);
    c.stages = stages;
    c.micro_batches = micro_batches;
    c.pipelines = optional_count(pipelines, "pipelines");
    c.scaling_mode = parse_scaling(scaling);
    c.split_backward = split_backward;
    c.chunks = chunks.value_or(c.chunks);
    c.group_size = optional_count(group_size, "group_size");
    c.data_parallel = data_parallel;
    return chimera::generate(c);  // schedule_error (rule S1) for an invalid config
}

int checked_worker(const chimera::schedule& s, int worker) {
    if (worker < 0 || worker >= s.workers())
        throw py::index_error(cat("worker ", worker, " out of range (the schedule has ", s.workers(), " workers)"));
    return worker;
}

py::list op_list(std::span<const chimera::op> ops) {
    py::list out(ops.size());
    for (std::size_t i = 0; i < ops.size(); ++i) out[i] = py::cast(ops[i]);
    return out;
}

py::list placement_list(const chimera::schedule& s) {
    py::list out;
    for (int p = 0; p < s.pipelines(); ++p) {
        py::list row;
        for (int st = 0; st < s.stages(); ++st) row.append(s.placement(p, st));
        out.append(row);
    }
    return out;
}

// ---- simulate: the numbers of chimera-sched simulate. --------------------

struct simulation_result {
    chimera::schedule schedule;  // the lowered schedule that was timed
    chimera::simulation result;
    chimera::critical_path path;
};

double cost_value(const py::handle& value, const std::string& what) {
    if (!py::isinstance<py::float_>(value) && !py::isinstance<py::int_>(value))
        throw py::type_error(cat(what, " must be a number (got ", Py_TYPE(value.ptr())->tp_name, ")"));
    const double v = value.cast<double>();
    if (!std::isfinite(v) || v < 0) throw py::value_error(cat(what, " must be a finite number >= 0 (got ", number(v), ")"));
    return v;
}

// {"F": 1, "B": 2, "I": 1, "W": 1}: op times of one stage; missing keys keep 1.
chimera::stage_profile stage_costs(const py::handle& costs, const std::string& what, double message_bytes,
                                   double gradient_bytes) {
    if (!py::isinstance<py::dict>(costs))
        throw py::type_error(cat(what, " must be a dict like {'F': 1, 'B': 2} (got ", Py_TYPE(costs.ptr())->tp_name, ")"));
    chimera::stage_profile p;
    for (const auto& [key, value] : costs.cast<py::dict>()) {
        const std::string k = py::str(key);
        double* field = k == "F" ? &p.forward : k == "B" ? &p.backward : k == "I" ? &p.input_backward
                      : k == "W" ? &p.weight_backward : nullptr;
        if (field == nullptr) throw py::value_error(cat(what, ": unknown op kind '", k, "' (expected F, B, I, W)"));
        *field = cost_value(value, cat(what, "['", k, "']"));
    }
    p.message_bytes = message_bytes;
    p.gradient_bytes = gradient_bytes;
    return p;
}

// costs: None (unit), one dict for every stage, or a list of dicts, one per
// stage (the simulator refuses a list of another length, rule S0).
chimera::cost_model make_costs(const py::object& costs, const std::optional<std::pair<py::object, py::object>>& p2p,
                               double message_bytes, double gradient_bytes, bool recompute) {
    chimera::cost_model m;
    message_bytes = cost_value(py::float_(message_bytes), "message_bytes");
    gradient_bytes = cost_value(py::float_(gradient_bytes), "gradient_bytes");
    if (py::isinstance<py::list>(costs) || py::isinstance<py::tuple>(costs)) {
        std::size_t stage = 0;
        for (const py::handle& entry : costs)
            m.per_stage.push_back(stage_costs(entry, cat("costs[", stage++, "]"), message_bytes, gradient_bytes));
    } else {
        m.uniform = stage_costs(costs.is_none() ? py::dict() : costs, "costs", message_bytes, gradient_bytes);
    }
    if (p2p) {
        m.alpha = cost_value(p2p->first, "p2p alpha");
        m.beta = cost_value(p2p->second, "p2p beta");
    }
    m.recompute = recompute;
    return m;
}

// min_window None is the default (D - 1); the C++ option reads 0 as that
// default too, so an explicit 0 (which would read as "always eager") is refused.
chimera::lower_options lower_options(const std::string& sync, std::optional<int> min_window) {
    static_assert(chimera::default_min_window == 0);
    return {.sync = parse_sync(sync), .min_window = optional_count(min_window, "min_window")};
}

simulation_result simulate(const chimera::schedule& s, const py::object& costs,
                           const std::optional<std::pair<py::object, py::object>>& p2p, const std::string& sync,
                           std::optional<int> min_window, double message_bytes, double gradient_bytes, bool recompute) {
    chimera::cost_model m = make_costs(costs, p2p, message_bytes, gradient_bytes, recompute);
    m.data_parallel = s.params().data_parallel;
    const chimera::lower_options options = lower_options(sync, min_window);
    simulation_result r;
    {
        py::gil_scoped_release release;
        r.schedule = chimera::is_lowered(s) ? s : chimera::lower(s, options);
        r.result = chimera::simulate(r.schedule, m);
        r.path = chimera::critical_path_counts(s);
    }
    if (!r.result.complete)
        throw chimera::schedule_error("D4", "simulate: the lowered schedule does not run to completion");
    return r;
}

py::list timeline(const simulation_result& r, int worker) {
    checked_worker(r.schedule, worker);
    py::list out;
    for (std::size_t i = r.schedule.first_op_index(worker); i < r.schedule.first_op_index(worker) + r.schedule.ops(worker).size(); ++i)
        out.append(py::make_tuple(r.schedule.all_ops()[i], r.result.start[i], r.result.finish[i]));
    return out;
}

// ---- Files. --------------------------------------------------------------

chimera::schedule parse(const py::bytes& data, const std::string& format) {
    const std::string text = data;
    if (format == "pytorch-csv") return chimera::io::read_csv(text);
    if (format == "json") return chimera::io::read_json(text);
    throw py::value_error(cat("unknown format '", format, "' (readable: json, pytorch-csv)"));
}

std::string to_csv(const chimera::schedule& s, std::optional<std::string> format) {
    const std::string name = format.value_or(chimera::is_lowered(s) ? "compute_comms" : "compute_only");
    const auto f = chimera::io::parse_csv_format(name);
    if (!f) throw py::value_error(cat("unknown csv format '", name, "' (known: compute_only, compute_comms)"));
    return chimera::io::write_csv(s, *f);
}

// ---- build: a schedule by hand (chimera::schedule_builder). -------------

chimera::schedule build(const std::string& name, int stages, int micro_batches, int workers, int pipelines,
                        const std::optional<std::vector<std::vector<int>>>& placement,
                        const std::optional<std::vector<int>>& routing, const std::vector<std::vector<chimera::op>>& ops) {
    chimera::schedule_builder b(name, {.stages = stages, .micro_batches = micro_batches, .pipelines = pipelines,
                                       .workers = workers});  // S0 for sizes < 1
    if (ops.size() != static_cast<std::size_t>(workers))
        throw py::value_error(cat("ops must hold one list per worker: ", workers, " (got ", ops.size(), ")"));
    if (placement) {
        bool shaped = placement->size() == static_cast<std::size_t>(pipelines);
        for (const auto& row : *placement) shaped = shaped && row.size() == static_cast<std::size_t>(stages);
        if (!shaped)
            throw py::value_error(cat("placement must be ", pipelines, " rows (pipelines) of ", stages,
                                      " workers (stages); got ", placement->size(), " rows"));
        for (int p = 0; p < pipelines; ++p)
            for (int st = 0; st < stages; ++st)
                b.place(p, st, (*placement)[static_cast<std::size_t>(p)][static_cast<std::size_t>(st)]);
    }
    if (routing) {
        if (routing->size() != static_cast<std::size_t>(micro_batches))
            throw py::value_error(cat("routing must give a pipeline for each of the ", micro_batches,
                                      " micro-batches (got ", routing->size(), ")"));
        for (int m = 0; m < micro_batches; ++m) b.route(m, (*routing)[static_cast<std::size_t>(m)]);
    }
    for (int w = 0; w < workers; ++w)
        for (const chimera::op& o : ops[static_cast<std::size_t>(w)]) b.append(w, o);
    return b.build();
}

// ---- Pickling (and so copy.copy / copy.deepcopy). -------------------------

// An op as (kind, stage, micro_batch, pipeline, peer), -1 for none.
py::tuple op_state(const chimera::op& o) {
    return py::make_tuple(std::string(to_string(o.kind)), o.stage, o.micro_batch, o.pipeline, o.peer);
}

chimera::op op_from_state(const py::tuple& t) {
    if (t.size() != 5) throw py::value_error(cat("an Op's state holds 5 values (got ", t.size(), ")"));
    return chimera::op{parse_kind(t[0].cast<std::string>()), t[1].cast<int>(), t[2].cast<int>(), t[3].cast<int>(),
                       t[4].cast<int>()};
}

// A schedule as its frame in chimera.schedule/1 JSON (name, params, shape,
// placement, routing: read back strictly) and its op lists as raw op
// states: a schedule built by hand keeps ops that check() would flag, and
// must survive pickling and copying as it is.
py::tuple schedule_state(const chimera::schedule& s) {
    py::list lists;
    for (int w = 0; w < s.workers(); ++w) {
        py::list ops;
        for (const chimera::op& o : s.ops(w)) ops.append(op_state(o));
        lists.append(ops);
    }
    const chimera::schedule frame = chimera::filter_ops(s, [](const chimera::op&) { return false; });
    return py::make_tuple(py::bytes(chimera::io::write_json(frame)), lists);
}

chimera::schedule schedule_from_state(const py::tuple& state) {
    if (state.size() != 2) throw py::value_error(cat("a Schedule's state holds 2 values (got ", state.size(), ")"));
    const chimera::schedule frame = chimera::io::read_json(std::string(state[0].cast<py::bytes>()));
    std::vector<std::vector<chimera::op>> lists;
    for (const py::handle list : state[1].cast<py::list>()) {
        lists.emplace_back();
        for (const py::handle o : list.cast<py::list>()) lists.back().push_back(op_from_state(o.cast<py::tuple>()));
    }
    if (lists.size() != static_cast<std::size_t>(frame.workers()))
        throw py::value_error(cat("a Schedule's state holds ", lists.size(), " op lists for ", frame.workers(),
                                  " workers"));
    return chimera::with_ops(frame, lists);
}

// ---- tune: chimera-sched tune's search. ----------------------------------

template <class Array>
auto find_named(const Array& array, std::string_view name, const char* what) {
    if (auto entry = chimera::find_preset(array, name)) return *entry;
    throw py::value_error(cat("unknown ", what, " '", name, "' (known: ", joined(array, [](const auto& e) { return e.name; }), ")"));
}

chimera::tune_result tune(const std::string& preset, int devices, int global_batch, std::optional<double> memory_gib,
                          int max_micro_batch, const std::optional<std::vector<std::string>>& schedules,
                          const std::optional<std::vector<int>>& depths, std::optional<int> max_pipelines,
                          const std::string& sync) {
    const chimera::preset p = find_named(chimera::presets, preset, "preset");
    if (devices < 1) throw py::value_error(cat("devices must be >= 1 (got ", devices, ")"));
    if (global_batch < 1) throw py::value_error(cat("global_batch must be >= 1 (got ", global_batch, ")"));
    if (memory_gib && !(*memory_gib > 0)) throw py::value_error(cat("memory_gib must be > 0 (got ", number(*memory_gib), ")"));
    if (max_micro_batch < 1) throw py::value_error(cat("max_micro_batch must be >= 1 (got ", max_micro_batch, ")"));
    // tune() doubles an int B up to this bound: from 2^30 on the doubling
    // overflows and the process dies (SIGFPE); no real micro-batch is that large.
    if (max_micro_batch >= (1 << 30))
        throw py::value_error(cat("max_micro_batch must be < 1073741824 (got ", max_micro_batch, ")"));
    chimera::tune_request r{
        .model = find_named(chimera::model_presets, p.model, "model"),
        .machine = {find_named(chimera::device_presets, p.device, "device"),
                    find_named(chimera::network_presets, p.network, "network")},
        .devices = devices,
        .global_batch = global_batch,
        .memory_limit_bytes = memory_gib.value_or(0) * double(1LL << 30),
        .max_micro_batch_size = max_micro_batch,
        .max_pipelines = optional_count(max_pipelines, "max_pipelines"),
        .depths = depths.value_or(std::vector<int>{}),
        .sync = parse_sync(sync)};
    if (schedules) {
        r.algorithms.clear();
        for (const auto& name : *schedules) {
            const chimera::algorithm a = parse_algorithm(name);
            if (std::find(chimera::tune_algorithms.begin(), chimera::tune_algorithms.end(), a) == chimera::tune_algorithms.end())
                throw py::value_error(cat("tune searches gpipe, 1f1b and chimera only (got '", name, "')"));
            r.algorithms.push_back(a);
        }
    }
    py::gil_scoped_release release;
    return chimera::tune(r);
}

// ---- Bindings. -----------------------------------------------------------

void bind_op(py::module_& m) {
    py::class_<chimera::op>(m, "Op", "One operation of a schedule")
        .def(py::init([](const std::string& kind, int stage, std::optional<int> micro_batch, int pipeline,
                         std::optional<int> peer) {
                 return chimera::op{parse_kind(kind), stage, micro_batch.value_or(chimera::no_micro_batch), pipeline,
                                    peer.value_or(chimera::no_peer)};
             }),
             py::arg("kind"), py::arg("stage"), py::arg("micro_batch") = py::none(), py::arg("pipeline") = 0,
             py::arg("peer") = py::none())
        .def_property_readonly("kind", [](const chimera::op& o) { return op_kind_member(o.kind); })
        .def_readonly("stage", &chimera::op::stage)
        .def_property_readonly("micro_batch", [](const chimera::op& o) { return optional_index(o.micro_batch); })
        .def_readonly("pipeline", &chimera::op::pipeline)
        .def_property_readonly("peer", [](const chimera::op& o) { return optional_index(o.peer); })
        .def("__eq__", [](const chimera::op& a, const chimera::op& b) { return a == b; }, py::is_operator())
        .def(py::pickle(&op_state, [](const py::tuple& t) { return op_from_state(t); }))
        .def("__hash__", [](const chimera::op& o) {
            return py::hash(py::make_tuple(static_cast<int>(o.kind), o.stage, o.micro_batch, o.pipeline, o.peer));
        })
        .def("__repr__", [](const chimera::op& o) {
            std::string text = cat("Op(", to_string(o.kind), ", stage=", o.stage);
            if (o.micro_batch >= 0) text += cat(", micro_batch=", o.micro_batch);
            text += cat(", pipeline=", o.pipeline);
            if (o.peer >= 0) text += cat(", peer=", o.peer);
            return text + ")";
        });
}

void bind_check(py::module_& m) {
    py::class_<chimera::diagnostic>(m, "Diagnostic", "One problem the checker found, with the rule it breaks")
        .def_property_readonly("rule", [](const chimera::diagnostic& d) { return std::string(d.rule); })
        .def_property_readonly("worker", [](const chimera::diagnostic& d) { return optional_index(d.worker); })
        .def_property_readonly("index", [](const chimera::diagnostic& d) { return optional_index(d.index); })
        .def_readonly("message", &chimera::diagnostic::message)
        .def("__str__", [](const chimera::diagnostic& d) { return cat("[", d.rule, "] ", d.message); })
        .def("__repr__", [](const chimera::diagnostic& d) { return cat("Diagnostic(", d.rule, ": ", d.message, ")"); });
    py::class_<chimera::check_report>(m, "CheckReport", "The checker's verdict: ok, or diagnostics with rule ids")
        .def_property_readonly("ok", &chimera::check_report::ok)
        .def_readonly("diagnostics", &chimera::check_report::diagnostics)
        .def_readonly("truncated", &chimera::check_report::truncated)
        .def_property_readonly("rules", [](const chimera::check_report& r) {
            std::vector<std::string> rules;
            for (const auto& d : r.diagnostics)
                if (std::find(rules.begin(), rules.end(), d.rule) == rules.end()) rules.emplace_back(d.rule);
            return rules;
        })
        .def("__bool__", &chimera::check_report::ok)
        .def("__repr__", [](const chimera::check_report& r) {
            return r.ok() ? std::string("CheckReport(ok)") : cat("CheckReport(", r.diagnostics.size(), " problems)");
        });
}

void bind_simulation(py::module_& m) {
    py::class_<chimera::worker_report>(m, "WorkerReport", "One worker's time and memory in a simulation")
        .def_readonly("busy", &chimera::worker_report::busy)
        .def_readonly("idle", &chimera::worker_report::idle)
        .def_readonly("communication", &chimera::worker_report::communication)
        .def_readonly("peak_activations", &chimera::worker_report::peak_activations)
        .def_readonly("weight_bytes", &chimera::worker_report::weight_bytes)
        .def_readonly("optimizer_bytes", &chimera::worker_report::optimizer_bytes)
        .def_readonly("peak_activation_bytes", &chimera::worker_report::peak_activation_bytes)
        .def_property_readonly("memory_bytes", &chimera::worker_report::memory_bytes);
    py::class_<simulation_result>(m, "Simulation", "A lowered schedule timed with a cost model")
        .def_property_readonly("makespan", [](const simulation_result& r) { return r.result.makespan; })
        .def_property_readonly("bubble_ratio", [](const simulation_result& r) { return r.result.bubble_ratio(); })
        .def_property_readonly("critical_path", [](const simulation_result& r) {
            return py::make_tuple(r.path.forward, r.path.backward);
        })
        .def_property_readonly("workers", [](const simulation_result& r) { return r.result.workers; })
        .def_readonly("schedule", &simulation_result::schedule)
        .def("timeline", &timeline, py::arg("worker"),
             "(op, start, end) for each op of the worker, in list order")
        .def("__repr__", [](const simulation_result& r) {
            return cat("Simulation(makespan=", number(r.result.makespan), ", bubble_ratio=", number(r.result.bubble_ratio()), ")");
        });
}

void bind_schedule_shape(py::class_<chimera::schedule>& c) {
    c.def_property_readonly("name", [](const chimera::schedule& s) { return std::string(s.name()); })
        .def_property_readonly("params", [](const chimera::schedule& s) { return params_dict(s.params()); })
        .def_property_readonly("stages", &chimera::schedule::stages)
        .def_property_readonly("micro_batches", &chimera::schedule::micro_batches)
        .def_property_readonly("pipelines", &chimera::schedule::pipelines)
        .def_property_readonly("workers", &chimera::schedule::workers)
        .def_property_readonly("op_count", &chimera::schedule::op_count)
        .def_property_readonly("lowered", [](const chimera::schedule& s) { return chimera::is_lowered(s); })
        .def_property_readonly("placement", &placement_list)
        .def("worker_of", [](const chimera::schedule& s, int pipeline, int stage) {
            if (pipeline < 0 || pipeline >= s.pipelines() || stage < 0 || stage >= s.stages())
                throw py::index_error(cat("(pipeline ", pipeline, ", stage ", stage, ") out of range (", s.pipelines(),
                                          " pipelines, ", s.stages(), " stages)"));
            return s.placement(pipeline, stage);
        }, py::arg("pipeline"), py::arg("stage"))
        .def("pipeline_of", [](const chimera::schedule& s, int micro_batch) {
            if (micro_batch < 0 || micro_batch >= s.micro_batches())
                throw py::index_error(cat("micro-batch ", micro_batch, " out of range (the schedule has ",
                                          s.micro_batches(), " micro-batches)"));
            return s.pipeline_of(micro_batch);
        }, py::arg("micro_batch"))
        .def("ops", [](const chimera::schedule& s, int worker) { return op_list(s.ops(checked_worker(s, worker))); },
             py::arg("worker"));
}

void bind_schedule(py::module_& m) {
    py::class_<chimera::schedule> c(m, "Schedule", "A pipeline schedule: placement, routing, per-worker op lists");
    bind_schedule_shape(c);
    c.def("check", [](const chimera::schedule& s, std::size_t max_diagnostics, bool chimera_invariants) {
            py::gil_scoped_release release;
            return chimera::check(s, {.max_diagnostics = max_diagnostics, .chimera_invariants = chimera_invariants});
        }, py::kw_only(), py::arg("max_diagnostics") = 64, py::arg("chimera_invariants") = true)
        .def("lower", [](const chimera::schedule& s, const std::string& sync, std::optional<int> min_window) {
            const chimera::lower_options options = lower_options(sync, min_window);
            py::gil_scoped_release release;
            return chimera::lower(s, options);
        }, py::kw_only(), py::arg("sync") = "end", py::arg("min_window") = py::none())
        .def("simulate", &simulate, py::kw_only(), py::arg("costs") = py::none(), py::arg("p2p") = py::none(),
             py::arg("sync") = "end", py::arg("min_window") = py::none(), py::arg("message_bytes") = 0.0,
             py::arg("gradient_bytes") = 0.0, py::arg("recompute") = false)
        .def("to_json", [](const chimera::schedule& s) { return chimera::io::write_json(s); })
        .def("to_csv", &to_csv, py::kw_only(), py::arg("format") = py::none())
        .def("to_text", [](const chimera::schedule& s) { return chimera::io::write_text(s); })
        .def("__eq__", [](const chimera::schedule& a, const chimera::schedule& b) { return a == b; }, py::is_operator())
        .def(py::pickle(&schedule_state, &schedule_from_state))
        .def("__repr__", [](const chimera::schedule& s) {
            return cat("Schedule(", s.name(), ", stages=", s.stages(), ", micro_batches=", s.micro_batches(),
                       ", pipelines=", s.pipelines(), ", workers=", s.workers(), ", ops=", s.op_count(), ")");
        });
}

void bind_tune(py::module_& m) {
    py::class_<chimera::tune_candidate>(m, "TuneCandidate", "One configuration that fits, with its simulated cost")
        .def_property_readonly("config", [](const chimera::tune_candidate& c) { return params_dict(c.point.schedule); })
        .def_property_readonly("micro_batch_size", [](const chimera::tune_candidate& c) { return c.point.micro_batch_size; })
        .def_property_readonly("recompute", [](const chimera::tune_candidate& c) { return c.point.recompute; })
        .def_readonly("memory_bytes", &chimera::tune_candidate::memory_bytes)
        .def_readonly("iteration_time", &chimera::tune_candidate::iteration_time)
        .def_readonly("throughput", &chimera::tune_candidate::throughput)
        .def_readonly("bubble_ratio", &chimera::tune_candidate::bubble_ratio)
        .def("__repr__", [](const chimera::tune_candidate& c) {
            const chimera::config& s = c.point.schedule;
            return cat("TuneCandidate(", to_string(s.schedule), " D=", s.stages, " W=", s.data_parallel,
                       " B=", c.point.micro_batch_size, " N=", s.micro_batches, ", throughput=", number(c.throughput), ")");
        });
    py::class_<chimera::tune_result>(m, "TuneResult", "The configurations that fit, best first")
        .def_readonly("ranked", &chimera::tune_result::ranked)
        .def_readonly("evaluated", &chimera::tune_result::evaluated);
    m.def("tune", &tune, py::arg("preset"), py::arg("devices"), py::arg("global_batch"), py::kw_only(),
          py::arg("memory_gib") = py::none(), py::arg("max_micro_batch") = 64, py::arg("schedules") = py::none(),
          py::arg("depths") = py::none(), py::arg("max_pipelines") = py::none(), py::arg("sync") = "eager");
    m.def("presets", [] {
        std::vector<std::string> names;
        for (const auto& p : chimera::presets) names.emplace_back(p.name);
        return names;
    });
}

}  // namespace

PYBIND11_MODULE(_core, m) {
    m.doc() = "chimera's C++ library (use the chimera package, not this module)";
    m.attr("__version__") = CHIMERA_PY_VERSION;
    py::register_exception_translator(&translate_exceptions);
    bind_op(m);
    bind_check(m);
    bind_simulation(m);
    bind_schedule(m);
    bind_tune(m);
    m.def("generate", &generate, py::arg("schedule"), py::arg("stages"), py::arg("micro_batches"),
          py::arg("pipelines"), py::arg("scaling"), py::arg("split_backward"), py::arg("chunks"),
          py::arg("group_size"), py::arg("data_parallel"));
    m.def("parse", &parse, py::arg("data"), py::arg("format"));
    m.def("build", &build, py::arg("name"), py::kw_only(), py::arg("stages"), py::arg("micro_batches"),
          py::arg("workers"), py::arg("pipelines") = 1, py::arg("placement") = py::none(),
          py::arg("routing") = py::none(), py::arg("ops"),
          "A schedule by hand (chimera::schedule_builder): ops[w] is worker w's op list in execution order,\n"
          "placement[pipeline][stage] its worker (default: stage s on worker s mod workers), routing[m] the\n"
          "pipeline of micro-batch m (default 0). Not validated here: call .check() as for a generated one.");
    m.def("schedule_names", [] {
        std::vector<std::string> names;
        for (auto a : chimera::generated_algorithms) names.emplace_back(to_string(a));
        return names;
    });
}
