"""The Python API against the C++ library and chimera-sched.

Every schedule name the library generates, over a grid of D, N and options:
valid configs give the same JSON bytes as `chimera-sched generate`, invalid
ones raise ScheduleError with the rule and message the CLI prints; lowered
schedules, simulations and tune agree with the CLI's figures; bad arguments
raise TypeError/ValueError/IndexError with a message naming them.
"""
import copy
import itertools
import json
import math
import pathlib
import pickle
import re

import pytest

import chimera

# The schedules the README documents; the library may add more (all are tested).
DOCUMENTED = {"gpipe", "1f1b", "chimera", "interleaved", "looped-bfs", "gems", "zb-h1", "zb-h2", "zb-v",
              "dualpipe", "dualpipev"}
SHAPES = [(d, n) for d in (1, 2, 3, 4, 8) for n in (1, 2, 4, 7, 16)]
# Options per schedule, each tried on a few shapes (valid and invalid ones).
OPTIONS = {
    "chimera": [{"pipelines": 4}, {"scaling": "doubling"}, {"scaling": "halving"}, {"split_backward": True},
                {"pipelines": 4, "scaling": "doubling"}, {"pipelines": 3}, {"data_parallel": 2}],
    "interleaved": [{"chunks": 3}, {"group_size": 4}, {"group_size": 3}],
    "looped-bfs": [{"chunks": 3}, {"chunks": 0}],
    "gpipe": [{"pipelines": 2}, {"chunks": 3}, {"scaling": "halving"}],
    "1f1b": [{"data_parallel": 2}, {"data_parallel": 0}, {"split_backward": True}],
    "gems": [{"pipelines": 1}],
    "dualpipe": [{"pipelines": 4}],
}
OPTION_SHAPES = [(2, 4), (4, 8), (8, 16)]
FLAGS = {"pipelines": "--pipelines", "scaling": "--scaling", "chunks": "--chunks", "group_size": "--group-size",
         "data_parallel": "--data-parallel"}


def grid():
    for name in chimera.schedule_names():
        for d, n in SHAPES:
            yield name, d, n, {}
        for options in OPTIONS.get(name, []):
            for d, n in OPTION_SHAPES:
                yield name, d, n, options


GRID = list(grid())


def case_id(case):
    name, d, n, options = case
    return f"{name}-d{d}-n{n}" + "".join(f"-{k}={v}" for k, v in options.items())


def cli_args(name, d, n, options):
    args = ["--schedule", name, "--stages", d, "--micro-batches", n]
    for key, value in options.items():
        args += ["--split-backward"] if key == "split_backward" else [FLAGS[key], value]
    return args


def try_generate(name, d, n, options):
    try:
        return chimera.generate(name, d, n, **options)
    except chimera.ScheduleError:
        return None


# A valid config of every schedule with N >= 2D (dualpipe needs it), for the
# lowering, simulation and file tests.
VALID = [(name, 4, 8, {}) for name in chimera.schedule_names()] + [
    ("chimera", 8, 16, {"pipelines": 4}), ("chimera", 4, 8, {"split_backward": True}),
    ("chimera", 4, 8, {"scaling": "doubling"}), ("chimera", 4, 8, {"scaling": "halving"}),
    ("interleaved", 4, 8, {"chunks": 3}), ("1f1b", 4, 8, {"data_parallel": 2})]


def test_schedule_names_cover_the_documented_ones():
    names = chimera.schedule_names()
    assert DOCUMENTED <= set(names)
    assert len(set(names)) == len(names)
    assert sum(try_generate(*case) is not None for case in GRID) > len(names) * 5  # the grid is not all refusals


@pytest.mark.parametrize("case", GRID, ids=case_id)
def test_generate_equals_cli(cli, case):
    """Same bytes as chimera-sched generate --format json, or the same refusal."""
    name, d, n, options = case
    result = cli.run("generate", *cli_args(name, d, n, options), "--format", "json")
    try:
        schedule = chimera.generate(name, d, n, **options)
    except chimera.ScheduleError as error:
        assert result.returncode == 2, result.stdout[:200]
        assert error.rule == "S1"
        assert f"[{error.rule}] {error.message}" in result.stderr
        return
    assert result.returncode == 0, result.stderr
    assert schedule.to_json() == result.stdout


@pytest.mark.parametrize("case", [c for c in GRID if try_generate(*c) is not None], ids=case_id)
def test_schedule_shape(case):
    """Properties agree with each other, the checker accepts, JSON round-trips."""
    name, d, n, options = case
    s = chimera.generate(name, d, n, **options)
    assert s.name == name and s.stages >= d and not s.lowered
    assert s.params["schedule"] == name and s.params["stages"] == d and s.params["micro_batches"] == n
    assert s.params["pipelines"] == s.pipelines
    assert len(s.placement) == s.pipelines and all(len(row) == s.stages for row in s.placement)
    assert {w for row in s.placement for w in row} == set(range(s.workers))
    assert all(s.worker_of(p, st) == s.placement[p][st] for p in range(s.pipelines) for st in range(s.stages))
    assert all(0 <= s.pipeline_of(m) < s.pipelines for m in range(s.micro_batches))
    ops = [op for w in range(s.workers) for op in s.ops(w)]
    assert len(ops) == s.op_count
    assert all(isinstance(op.kind, chimera.OpKind) and op.kind.is_compute for op in ops)
    assert all(op.peer is None and 0 <= op.micro_batch < s.micro_batches for op in ops)
    assert all(s.pipeline_of(op.micro_batch) == op.pipeline for op in ops)
    for m in range(s.micro_batches):  # every micro-batch runs forward once per stage
        p = s.pipeline_of(m)
        forwards = [op for w in range(s.workers) for op in s.ops(w) if op.kind == "F" and op.micro_batch == m]
        assert sorted(op.stage for op in forwards) == list(range(s.stages))
        assert all(op in s.ops(s.worker_of(p, op.stage)) for op in forwards)
    report = s.check()
    assert report.ok and bool(report) and report.diagnostics == [] and report.rules == []
    assert chimera.parse(s.to_json(), "json") == s
    assert s.to_json() == chimera.generate(name, d, n, **options).to_json()  # deterministic


@pytest.mark.parametrize("sync", ["end", "eager", "eager-opt"])
@pytest.mark.parametrize("case", VALID, ids=case_id)
def test_lower_equals_cli(cli, case, sync):
    name, d, n, options = case
    lowered = chimera.generate(name, d, n, **options).lower(sync=sync)
    assert lowered.lowered and lowered.check().ok
    assert any(op.kind.is_comm for w in range(lowered.workers) for op in lowered.ops(w))
    assert all(op.peer is not None for w in range(lowered.workers) for op in lowered.ops(w)
               if op.kind in ("SEND_F", "RECV_F", "SEND_B", "RECV_B"))
    assert lowered.to_json() == cli.out("lower", *cli_args(name, d, n, options), "--sync", sync, "--format", "json")


def assert_simulation_equals(sim, expected):
    assert sim.makespan == expected["makespan"]
    assert sim.bubble_ratio == expected["bubble_ratio"]
    assert sim.critical_path == (expected["critical_path"]["forward"], expected["critical_path"]["backward"])
    assert len(sim.workers) == len(expected["workers"])
    for got, want in zip(sim.workers, expected["workers"]):
        assert (got.busy, got.idle, got.communication, got.peak_activations, got.memory_bytes) == (
            want["busy"], want["idle"], want["communication"], want["peak_activations"], want["memory_bytes"])
    for w, row in enumerate(expected["timeline"]):
        timeline = sim.timeline(w)
        assert len(timeline) == len(row)
        for (op, start, end), want in zip(timeline, row):
            assert (str(op.kind), op.stage, op.pipeline, start, end) == (
                want["kind"], want["stage"], want["pipeline"], want["start"], want["end"])
            assert op.micro_batch == want.get("micro_batch")


SIMULATIONS = [
    ({}, None, "end", {}),
    ({"F": 1, "B": 2, "I": 1, "W": 1}, None, "end", {}),
    ({"F": 1.5, "B": 3, "I": 1.25, "W": 1.75}, (0.5, 0.001), "eager", {"message_bytes": 1000, "gradient_bytes": 4096}),
    ({"F": 2, "B": 4}, (0.25, 0), "eager-opt", {"recompute": True}),
]


@pytest.mark.parametrize("setting", range(len(SIMULATIONS)))
@pytest.mark.parametrize("case", VALID, ids=case_id)
def test_simulate_equals_cli(cli, case, setting):
    name, d, n, options = case
    costs, p2p, sync, extra = SIMULATIONS[setting]
    sim = chimera.generate(name, d, n, **options).simulate(costs=costs, p2p=p2p, sync=sync, **extra)
    args = ["simulate", *cli_args(name, d, n, options), "--sync", sync, "--format", "json"]
    if costs:
        args += ["--cost", ",".join(f"{k}={v}" for k, v in costs.items())]
    if p2p:
        args += ["--p2p", f"{p2p[0]},{p2p[1]}"]
    args += ["--message-bytes", extra.get("message_bytes", 0), "--gradient-bytes", extra.get("gradient_bytes", 0)]
    if extra.get("recompute"):
        args += ["--recompute"]
    assert_simulation_equals(sim, cli.json(*args))
    assert sim.schedule.lowered and sim.makespan > 0 and 0 <= sim.bubble_ratio < 1


def test_simulate_formula():
    """Chimera k=2, unit costs, N a multiple of D: span 2N + D - 2 (README's table)."""
    for d, units in itertools.product((2, 4, 8), (1, 2, 4)):
        n = units * d
        assert chimera.generate("chimera", d, n).simulate().makespan == 2 * n + d - 2
    # A lowered schedule is timed as it is.
    s = chimera.generate("1f1b", 4, 8).lower(sync="eager")
    assert s.simulate().makespan == chimera.generate("1f1b", 4, 8).simulate(sync="eager").makespan


def test_per_stage_costs():
    """A list of cost dicts, one per stage; a uniform list equals the dict."""
    s = chimera.generate("1f1b", 4, 8)
    uniform = s.simulate(costs={"F": 1, "B": 2})
    assert s.simulate(costs=[{"F": 1, "B": 2}] * 4).makespan == uniform.makespan
    slow_last = s.simulate(costs=[{"F": 1, "B": 2}] * 3 + [{"F": 2, "B": 4}])
    assert slow_last.makespan > uniform.makespan
    assert slow_last.workers[3].busy == 2 * uniform.workers[3].busy
    with pytest.raises(chimera.ScheduleError) as error:
        s.simulate(costs=[{"F": 1}] * 3)
    assert error.value.rule == "S0" and "describes 3 stages, the schedule has 4" in str(error.value)


def test_tune_equals_cli(cli):
    result = chimera.tune("gpt2-1.3b-p100", 2048, 2048)
    table = cli.out("tune", "--preset", "gpt2-1.3b-p100", "--devices", 2048, "--global-batch", 2048, "--top", 5)
    header, _, *rows = table.splitlines()
    assert f"; {len(result.ranked)} of {result.evaluated} configurations fit" in header
    for candidate, row in zip(result.ranked, rows):
        rank, throughput, iteration, memory, bubble, name, d, w, b, n, k, scaling, recompute = row.split()
        c = candidate.config
        assert (c["schedule"], c["stages"], c["data_parallel"], candidate.micro_batch_size, c["micro_batches"],
                c["pipelines"], c["scaling"], candidate.recompute) == (
            name, int(d), int(w), int(b), int(n), int(k), scaling, recompute == "yes")
        assert f"{candidate.throughput:.1f}" == throughput and f"{candidate.iteration_time:.4f}" == iteration
        assert f"{candidate.bubble_ratio:.3f}" == bubble
    ranked = [c.throughput for c in result.ranked]
    assert ranked == sorted(ranked, reverse=True)


def test_tune_options():
    only = chimera.tune("gpt2-124m-h100", 8, 64, schedules=["gpipe", "1f1b"], depths=[2, 4], max_micro_batch=8)
    assert only.ranked and {c.config["schedule"] for c in only.ranked} <= {"gpipe", "1f1b"}
    assert {c.config["stages"] for c in only.ranked} <= {2, 4}
    assert all(c.micro_batch_size <= 8 for c in only.ranked)
    k2 = chimera.tune("gpt2-1.3b-p100", 64, 64, schedules=["chimera"], max_pipelines=2)
    assert k2.ranked and all(c.config["pipelines"] == 2 for c in k2.ranked)
    tight = chimera.tune("gpt2-1.3b-p100", 64, 64, memory_gib=1e-3)
    assert tight.ranked == [] and tight.evaluated > 0
    assert "gpt2-1.3b-p100" in chimera.presets()


def test_files_round_trip(tmp_path, cli):
    s = chimera.generate("1f1b", 4, 8)
    (tmp_path / "s.json").write_text(s.to_json())
    (tmp_path / "s.csv").write_text(s.to_csv())
    (tmp_path / "sniffed").write_text(s.to_json())
    assert chimera.read(tmp_path / "s.json") == s
    assert chimera.read(str(tmp_path / "sniffed")) == s
    from_csv = chimera.read(tmp_path / "s.csv")
    assert [from_csv.ops(w) for w in range(s.workers)] == [s.ops(w) for w in range(s.workers)]
    assert s.to_csv() == cli.out("export", "--schedule", "1f1b", "--stages", 4, "--micro-batches", 8,
                                 "--format", "pytorch-csv")
    lowered = s.lower()
    assert chimera.parse(lowered.to_csv(), "pytorch-csv").to_csv() == lowered.to_csv()
    assert s.to_text() == cli.out("generate", "--schedule", "1f1b", "--stages", 4, "--micro-batches", 8,
                                  "--format", "text")
    with pytest.raises(chimera.ScheduleError) as error:  # two pipelines have no PyTorch CSV spelling
        chimera.generate("chimera", 4, 8).to_csv()
    assert error.value.rule == "CSV7" and "2 pipelines" in str(error.value)


def test_check_reports_rules_like_cli(tmp_path, cli):
    """A schedule with a dropped backward: the checker's rule ids, as check FILE prints them."""
    document = json.loads(chimera.generate("1f1b", 4, 4).to_json())
    document["ops"][2] = [op for op in document["ops"][2] if not (op["kind"] == "B" and op["micro_batch"] == 1)]
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(document))
    s = chimera.read(path)
    report = s.check()
    assert not report.ok and not bool(report)
    printed = cli.run("check", path)
    assert printed.returncode == 1
    lines = [f"{d.rule}: {d.message}" for d in report.diagnostics]
    assert printed.stdout.splitlines()[:len(lines)] == lines
    assert all(d.rule[0] in "SDTMCG" for d in report.diagnostics) and report.rules
    assert report.rules == ["S5"] and report.diagnostics[0].worker is None
    document["ops"][2] = json.loads(chimera.generate("1f1b", 4, 4).to_json())["ops"][2]
    document["ops"][1][0], document["ops"][1][1] = document["ops"][1][1], document["ops"][1][0]
    swapped = chimera.parse(json.dumps(document), "json").check()
    assert swapped.rules == ["D3"] and [d.worker for d in swapped.diagnostics] == [1, 2]
    assert len(s.check(max_diagnostics=1).diagnostics) == 1
    with pytest.raises(chimera.ScheduleError) as error:
        s.lower()
    assert error.value.rule


# ---- bad input ------------------------------------------------------------

@pytest.mark.parametrize("args, kwargs, rule, text", [
    (("chimera", 3, 4), {}, "S1", "got 3"),
    (("chimera", 0, 4), {}, "S1", "got 0"),
    (("gpipe", 4, 0), {}, "S1", "got 0"),
    (("chimera", 8, 8), {"pipelines": 3}, "S1", "k=3"),
    (("chimera", 6, 8), {"pipelines": 4}, "S1", "f=2 must divide D/2=3"),
    (("gpipe", 4, 4), {"pipelines": 2}, "S1", "k=2"),
    (("1f1b", 4, 4), {"scaling": "doubling"}, "S1", "doubling"),
    (("dualpipe", 4, 6), {}, "S1", "N=6, P=4"),
    (("zb-h1", 4, 4), {"split_backward": True}, "S1", "split backward"),
    (("interleaved", 4, 6), {"group_size": 5}, "S1", "g=5"),
    (("looped-bfs", 4, 4), {"chunks": 0}, "S1", "got 0"),
    (("1f1b", 4, 4), {"data_parallel": 0}, "S1", "got 0"),
])
def test_invalid_config_raises_schedule_error(args, kwargs, rule, text):
    with pytest.raises(chimera.ScheduleError) as error:
        chimera.generate(*args, **kwargs)
    assert error.value.rule == rule
    assert text in error.value.message and text in str(error.value)
    assert str(error.value).startswith(f"[{rule}] ")
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("kwargs, error_type, text", [
    ({"stages": "4"}, TypeError, "stages must be an int (got str '4')"),
    ({"stages": 4.0}, TypeError, "stages must be an int (got float 4.0)"),
    ({"stages": True}, TypeError, "stages must be an int (got bool True)"),
    ({"micro_batches": None}, TypeError, "micro_batches must be an int (got NoneType None)"),
    ({"pipelines": 2.5}, TypeError, "pipelines must be an int"),
    ({"schedule": 3}, TypeError, "schedule must be a str"),
    ({"split_backward": 1}, TypeError, "split_backward must be a bool"),
    ({"scaling": None}, TypeError, "scaling must be a str"),
    ({"schedule": "pipedream"}, ValueError, "unknown schedule 'pipedream' (known: gpipe, 1f1b, chimera"),
    ({"scaling": "tripling"}, ValueError, "unknown scaling 'tripling'"),
    ({"pipelines": -2}, ValueError, "pipelines must be >= 1 or None (got -2)"),
    ({"pipelines": 0}, ValueError, "pipelines must be >= 1 or None (got 0)"),
    ({"schedule": "interleaved", "group_size": 0}, ValueError, "group_size must be >= 1 or None (got 0)"),
    ({"stages": 2**40}, ValueError, "stages must fit in a 32-bit int (got 1099511627776)"),
])
def test_bad_arguments(kwargs, error_type, text):
    arguments = {"schedule": "chimera", "stages": 4, "micro_batches": 4, **kwargs}
    with pytest.raises(error_type) as error:
        chimera.generate(**arguments)
    assert text in str(error.value)
    assert not isinstance(error.value, chimera.ScheduleError)


def test_bad_arguments_of_methods(tmp_path):
    s = chimera.generate("chimera", 4, 4)
    with pytest.raises(TypeError):
        chimera.generate("chimera", 4, 4, 2)  # options are keyword-only
    with pytest.raises(TypeError, match="unexpected keyword|incompatible"):
        chimera.generate("chimera", 4, 4, pipeline=2)
    for call, error_type, text in [
        (lambda: s.ops(4), IndexError, "worker 4 out of range (the schedule has 4 workers)"),
        (lambda: s.ops(-1), IndexError, "worker -1 out of range"),
        (lambda: s.pipeline_of(4), IndexError, "micro-batch 4 out of range"),
        (lambda: s.worker_of(2, 0), IndexError, "(pipeline 2, stage 0) out of range"),
        (lambda: s.lower(sync="later"), ValueError, "unknown sync policy 'later' (known: end, eager, eager-opt)"),
        (lambda: s.lower(sync="eager-opt", min_window=-1), ValueError, "min_window must be >= 1 or None (got -1)"),
        # 0 would silently mean the default D - 1 (the C++ option's reading), not "always eager".
        (lambda: s.lower(sync="eager-opt", min_window=0), ValueError, "min_window must be >= 1 or None (got 0)"),
        (lambda: s.simulate(sync="eager-opt", min_window=0), ValueError, "min_window must be >= 1 or None (got 0)"),
        (lambda: s.simulate(costs={"X": 1}), ValueError, "costs: unknown op kind 'X' (expected F, B, I, W)"),
        (lambda: s.simulate(costs=3), TypeError, "costs must be a dict like {'F': 1, 'B': 2} (got int)"),
        (lambda: s.simulate(costs=[{"F": 1}, 2]), TypeError, "costs[1] must be a dict"),
        (lambda: s.simulate(costs=[{}, {"F": -2}]), ValueError, "costs[1]['F'] must be a finite number >= 0 (got -2)"),
        (lambda: s.simulate(costs={"F": "1"}), TypeError, "costs['F'] must be a number (got str)"),
        (lambda: s.simulate(costs={"B": -1}), ValueError, "costs['B'] must be a finite number >= 0 (got -1)"),
        (lambda: s.simulate(costs={"F": math.nan}), ValueError, "costs['F'] must be a finite number >= 0 (got nan)"),
        (lambda: s.simulate(p2p=(1, -0.5)), ValueError, "p2p beta must be a finite number >= 0 (got -0.5)"),
        (lambda: s.simulate(message_bytes=-1), ValueError, "message_bytes must be a finite number >= 0"),
        (lambda: s.to_csv(format="xml"), ValueError, "unknown csv format 'xml'"),
        (lambda: chimera.parse("{}", "yaml"), ValueError, "unknown format 'yaml' (readable: json, pytorch-csv)"),
        (lambda: chimera.parse(42, "json"), TypeError, "data must be str or bytes (got int)"),
        (lambda: chimera.Op("X", 0), ValueError, "unknown op kind 'X'"),
        (lambda: chimera.tune("gpt5", 8, 8), ValueError, "unknown preset 'gpt5' (known: gpt2-1.3b-p100"),
        (lambda: chimera.tune("gpt2-124m-p100", 0, 8), ValueError, "devices must be >= 1 (got 0)"),
        (lambda: chimera.tune("gpt2-124m-p100", 8, 0), ValueError, "global_batch must be >= 1 (got 0)"),
        (lambda: chimera.tune("gpt2-124m-p100", 8, 8, memory_gib=0), ValueError, "memory_gib must be > 0 (got 0)"),
        (lambda: chimera.tune("gpt2-124m-p100", 8, 8, schedules=["zb-v"]), ValueError, "gpipe, 1f1b and chimera only"),
        (lambda: chimera.tune("gpt2-124m-p100", 8, 8, sync="now"), ValueError, "unknown sync policy 'now'"),
        # B doubles up to the bound in an int: 2^30 would overflow (the process died of SIGFPE).
        (lambda: chimera.tune("gpt2-124m-p100", 8, 8, max_micro_batch=2**30), ValueError,
         "max_micro_batch must be < 1073741824 (got 1073741824)"),
        (lambda: chimera.tune("gpt2-124m-p100", 8.5, 8), TypeError, "devices must be an int (got float 8.5)"),
        (lambda: chimera.tune("gpt2-124m-p100", 8, True), TypeError, "global_batch must be an int (got bool True)"),
        (lambda: chimera.tune("gpt2-124m-p100", 8, 8, schedules="chimera"), TypeError, "schedules must be a list"),
        (lambda: chimera.tune("gpt2-124m-p100", 8, 8, depths=[2.0]), TypeError, "depths[] must be an int"),
        (lambda: chimera.tune("gpt2-124m-p100", 8, 8, memory_gib="8"), TypeError, "memory_gib must be a number"),
        (lambda: chimera.tune(None, 8, 8), TypeError, "preset must be a str (got NoneType None)"),
        (lambda: chimera.tune("gpt2-124m-p100", 8, 8, max_pipelines=0), ValueError,
         "max_pipelines must be >= 1 or None (got 0)"),
    ]:
        with pytest.raises(error_type) as error:
            call()
        assert text in str(error.value), str(error.value)
    for call, text in [(lambda: s.simulate(p2p=(1,)), "p2p"), (lambda: s.lower(sync=3), "sync"),
                       (lambda: s.ops("0"), "worker"), (lambda: s.check(max_diagnostics="all"), "max_diagnostics"),
                       ]:
        with pytest.raises(TypeError) as error:  # pybind11's message names the parameters and their types
            call()
        assert text in str(error.value) and "incompatible function arguments" in str(error.value)
    with pytest.raises(chimera.ScheduleError) as error:
        s.lower().lower()
    assert error.value.rule == "C0" and "already holds communication ops" in str(error.value)


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        chimera.read(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format":"chimera.schedule/1",')
    with pytest.raises(chimera.FormatError) as error:
        chimera.read(bad)
    assert error.value.rule and str(error.value).startswith(f"{bad}: ")
    assert f"[{error.value.rule}]" in str(error.value) and isinstance(error.value, chimera.ScheduleError)
    document = json.loads(chimera.generate("gpipe", 2, 2).to_json())
    document["stages"] = -1
    bad.write_text(json.dumps(document))
    with pytest.raises(chimera.FormatError) as error:
        chimera.read(bad)
    assert "stages" in error.value.where
    csv = tmp_path / "bad.csv"
    csv.write_text("0F0,1X0\n")
    with pytest.raises(chimera.FormatError) as error:
        chimera.read(csv)
    assert error.value.rule.startswith("CSV")


def test_op_objects():
    op = chimera.Op("F", 1, micro_batch=2, pipeline=0)
    assert (op.kind, op.stage, op.micro_batch, op.pipeline, op.peer) == (chimera.OpKind.F, 1, 2, 0, None)
    assert op.kind == "F" and str(op.kind) == "F" and op.kind is chimera.OpKind.F
    assert op == chimera.Op(chimera.OpKind.F, 1, 2) and hash(op) == hash(chimera.Op("F", 1, 2))
    assert op != chimera.Op("B", 1, 2)
    assert repr(op) == "Op(F, stage=1, micro_batch=2, pipeline=0)"
    reduce = [o for o in chimera.generate("gpipe", 2, 2).lower().ops(0) if o.kind == "REDUCE_GRAD"]
    assert reduce and all(o.micro_batch is None and o.peer is None for o in reduce)
    assert chimera.generate("gpipe", 2, 2).ops(0)[0] in {chimera.Op("F", 0, 0)}


def test_pickle_and_copy():
    """Schedules and ops survive pickling (torch.multiprocessing hands them to workers)."""
    for s in (chimera.generate("chimera", 4, 8, pipelines=4), chimera.generate("zb-v", 4, 8).lower(sync="eager")):
        for clone in (pickle.loads(pickle.dumps(s)), copy.deepcopy(s), copy.copy(s)):
            assert clone == s and clone.to_json() == s.to_json() and clone.params == s.params
    op = chimera.Op("SEND_F", 2, micro_batch=3, pipeline=1, peer=0)
    assert pickle.loads(pickle.dumps(op)) == op
    reduce = chimera.Op("REDUCE_GRAD", 1)
    assert pickle.loads(pickle.dumps(reduce)) == reduce and pickle.loads(pickle.dumps(reduce)).micro_batch is None
    # A schedule built by hand is not validated: it keeps ops that check()
    # flags (out-of-range stage, micro-batch, pipeline, peer), and so do its copies.
    Op = chimera.Op
    odd = chimera.build("odd", stages=2, micro_batches=2, workers=2, ops=[
        [Op("F", 7, 0), Op("F", 0, 9, pipeline=3), Op("SEND_F", 0, 0, peer=9)], [Op("RECV_F", 1, 0), Op("B", -1, 0)]])
    assert not odd.check().ok
    for clone in (pickle.loads(pickle.dumps(odd)), copy.deepcopy(odd), copy.copy(odd)):
        assert clone == odd and [clone.ops(w) for w in range(2)] == [odd.ops(w) for w in range(2)]
        assert clone.name == "odd" and clone.params == odd.params


def test_version_is_the_projects():
    meson_build = (pathlib.Path(__file__).resolve().parents[2] / "meson.build").read_text()
    assert chimera.__version__ == re.search(r"version : '([^']+)'", meson_build).group(1)


@pytest.mark.parametrize("case", VALID, ids=case_id)
def test_build_by_hand_equals_generated(case):
    """build() from a generated schedule's own parts gives the same structure; check() judges it alike."""
    s = chimera.generate(*case[:3], **case[3])
    built = chimera.build("by-hand", stages=s.stages, micro_batches=s.micro_batches, workers=s.workers,
                          pipelines=s.pipelines, placement=s.placement,
                          routing=[s.pipeline_of(m) for m in range(s.micro_batches)],
                          ops=[s.ops(w) for w in range(s.workers)])
    assert built.name == "by-hand" and built.params["schedule"] == "custom"
    assert built.placement == s.placement and [built.ops(w) for w in range(s.workers)] == [
        s.ops(w) for w in range(s.workers)]
    assert built.check().ok and built.simulate().makespan == s.simulate().makespan


def test_build_errors():
    F, B = (lambda m, st: chimera.Op("F", st, m)), (lambda m, st: chimera.Op("B", st, m))
    two = dict(stages=2, micro_batches=1, workers=2)
    ok = chimera.build("mine", **two, ops=[[F(0, 0), B(0, 0)], [F(0, 1), B(0, 1)]])
    assert ok.check().ok and ok.placement == [[0, 1]] and ok.pipeline_of(0) == 0
    broken = chimera.build("mine", **two, ops=[[B(0, 0), F(0, 0)], [F(0, 1), B(0, 1)]])
    assert not broken.check().ok and broken.check().rules
    for kwargs, error_type, text in [
        ({**two, "ops": [[]]}, ValueError, "ops must hold one list per worker: 2 (got 1)"),
        ({**two, "ops": [[], []], "placement": [[0]]}, ValueError, "placement must be 1 rows (pipelines) of 2"),
        ({**two, "ops": [[], []], "routing": [0, 0]}, ValueError, "routing must give a pipeline for each of the 1"),
        ({**two, "ops": [[], []], "placement": [[0, 2]]}, chimera.ScheduleError, "worker 2 is not in [0, 2)"),
        ({**two, "ops": [[], []], "routing": [1]}, chimera.ScheduleError, "pipeline 1 is not in [0, 1)"),
        ({**two, "workers": 0, "ops": []}, chimera.ScheduleError, "must be >= 1 (got 2, 1, 1, 0)"),
        ({**two, "workers": 2**31 - 1, "ops": []}, chimera.ScheduleError,
         "workers must be <= 16777216 (got 2147483647)"),
        ({**two, "ops": [["F"], []]}, TypeError, "incompatible function arguments"),
    ]:
        with pytest.raises(error_type) as error:
            chimera.build("mine", **kwargs)
        assert text in str(error.value), str(error.value)
    with pytest.raises(chimera.ScheduleError) as error:
        chimera.build("mine", **two, ops=[[], []], placement=[[0, 2]])
    assert error.value.rule == "S0"
