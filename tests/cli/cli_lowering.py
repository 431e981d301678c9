#!/usr/bin/env python3
"""chimera-sched lower / simulate / tune: outputs, exit codes, error lines.

Usage: cli_lowering.py PATH_TO_CHIMERA_SCHED
"""
import json
import os
import subprocess
import sys
import tempfile

EXE = sys.argv[1]
failures = []


def run(*args):
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120)


def expect(condition, what):
    if not condition:
        failures.append(what)
        print("FAIL:", what)


def expect_usage_error(args, needle):
    r = run(*args)
    lines = r.stderr.strip().splitlines()
    expect(r.returncode == 2, f"{args}: exit 2 (got {r.returncode})")
    expect(len(lines) == 1 and needle in lines[0], f"{args}: one error line containing {needle!r} (got {r.stderr!r})")
    expect(r.stdout == "", f"{args}: nothing on stdout")


# lower: JSON per docs/design/formats.md, comm ops carry peer, and the checker accepts it.
r = run("lower", "--stages", "4", "--micro-batches", "8", "--sync", "eager")
expect(r.returncode == 0, "lower exits 0")
doc = json.loads(r.stdout)
expect(doc["format"] == "chimera.schedule/1", "lower writes chimera.schedule/1")
kinds = {op["kind"] for ops in doc["ops"] for op in ops}
expect(kinds == {"F", "B", "SEND_F", "RECV_F", "SEND_B", "RECV_B", "REDUCE_GRAD"}, f"lowered op kinds {kinds}")
expect(all(("peer" in op) == (op["kind"] in ("SEND_F", "RECV_F", "SEND_B", "RECV_B")) for ops in doc["ops"] for op in ops),
       "exactly the p2p ops carry a peer")
expect(sum(op["kind"] == "REDUCE_GRAD" for ops in doc["ops"] for op in ops) == 8, "one REDUCE_GRAD per replica")
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    f.write(r.stdout)
checked = run("check", f.name)
os.unlink(f.name)
expect(checked.returncode == 0 and checked.stdout.startswith("valid"), f"check accepts the lowered file: {checked.stdout}")
for schedule in ("gpipe", "1f1b"):
    for sync in ("end", "eager", "eager-opt"):
        r = run("lower", "--schedule", schedule, "--stages", "3", "--micro-batches", "5", "--sync", sync, "--format", "text")
        expect(r.returncode == 0 and "[" in r.stdout and "REDUCE_GRAD" in r.stdout, f"lower text {schedule} {sync}")
expect_usage_error(["lower", "--stages", "5", "--micro-batches", "4"], "D must be even")
expect_usage_error(["lower", "--stages", "4", "--micro-batches", "4", "--sync", "sometimes"], "--sync")

# simulate: the spec's D=4 N=4 numbers
# (docs/design/chimera-closed-form.md#worked-example-four-stages-four-micro-batches, #iteration-time).
r = run("simulate", "--stages", "4", "--micro-batches", "4", "--cost", "F=1,B=2")
expect(r.returncode == 0, "simulate exits 0")
sim = json.loads(r.stdout)
expect(sim["makespan"] == 16, f"makespan 16 (got {sim['makespan']})")
expect(abs(sim["bubble_ratio"] - 0.25) < 1e-12, "bubble ratio 4/16")
expect(sim["critical_path"] == {"forward": 4, "backward": 6}, f"C_f = D, C_b = 2D - 2 (got {sim['critical_path']})")
expect([w["peak_activations"] for w in sim["workers"]] == [3, 4, 4, 3], "peak activations [3, 4, 4, 3]")
expect(all(w["busy"] == 12 and w["idle"] == 4 for w in sim["workers"]), "busy 12, idle 4 per worker")
expect(r.stdout == run("simulate", "--stages", "4", "--micro-batches", "4", "--cost", "F=1,B=2").stdout, "deterministic")
r = run("simulate", "--stages", "4", "--micro-batches", "4", "--cost", "F=1,B=2", "--p2p", "0.5,0.001",
        "--message-bytes", "100", "--format", "text")
expect(r.returncode == 0 and "makespan" in r.stdout and "timeline" in r.stdout and "P3" in r.stdout, "simulate text")
r = run("simulate", "--schedule", "gpipe", "--stages", "2", "--micro-batches", "2", "--cost", "F=1,B=2", "--p2p", "0.5,0")
expect(json.loads(r.stdout)["makespan"] == 10, "GPipe D=2 N=2 with alpha 0.5: makespan 10 (tests/core/test_simulate.cpp)")
# --message-bytes reaches the cost model: lowered 1F1B D=2 N=2 with unit
# compute and one message cost c = alpha + bytes * beta per transfer runs
# F0 [0,1], its send [1,1+c], stage 1's F0 B0 [1+c,3+c], the crossing pair
# (F1 forward, B0 back) [3+c,3+2c], stage 0's B0 and stage 1's F1 B1
# [3+2c,5+2c], B1's gradient [5+2c,5+3c] and stage 0's B1: makespan 6 + 3c.
for alpha, beta, size in ((0, 0, 0), (1, 0.01, 0), (1, 0.01, 100), (1, 0.01, 300), (0, 0.5, 4)):
    r = run("simulate", "--schedule", "1f1b", "--stages", "2", "--micro-batches", "2",
            "--p2p", f"{alpha},{beta}", "--message-bytes", str(size))
    c = alpha + size * beta
    got = json.loads(r.stdout)["makespan"] if r.returncode == 0 else None
    expect(got is not None and abs(got - (6 + 3 * c)) < 1e-9,
           f"1F1B D=2 N=2, alpha {alpha}, beta {beta}, {size} bytes: makespan 6 + 3c = {6 + 3 * c} (got {got})")
    comm = [w["communication"] for w in json.loads(r.stdout)["workers"]] if r.returncode == 0 else None
    expect(comm is not None and all(abs(x - 4 * c) < 1e-9 for x in comm),
           f"each worker's comm stream is busy 4 transfers x c = {4 * c} (got {comm})")
expect_usage_error(["simulate", "--stages", "4", "--micro-batches", "4", "--cost", "F=1,X=2"], "bad --cost")
expect_usage_error(["simulate", "--stages", "4", "--micro-batches", "4", "--cost", "F=-1"], "bad --cost")
expect_usage_error(["simulate", "--stages", "4", "--micro-batches", "4", "--cost", "F=1,,B=2"], "bad --cost")
expect_usage_error(["simulate", "--stages", "4", "--micro-batches", "4", "--cost", "F=nan"], "bad --cost")
expect_usage_error(["simulate", "--stages", "4", "--micro-batches", "4", "--p2p", "1"], "bad --p2p")
expect_usage_error(["simulate", "--stages", "4", "--micro-batches", "4", "--p2p", "1,x"], "bad --p2p")
expect_usage_error(["lower", "--stages", "4", "--micro-batches", "4", "--sync", "eager-opt", "--min-window", "0"], "--min-window")

# tune: a ranked table; clear errors for unknown presets and impossible requests.
r = run("tune", "--preset", "gpt2-124m-h100", "--devices", "8", "--global-batch", "32", "--top", "3")
expect(r.returncode == 0, f"tune exits 0 ({r.stderr})")
rows = r.stdout.strip().splitlines()
expect(len(rows) == 5 and rows[1].startswith("rank") and rows[2].split()[0] == "1", f"tune prints 3 ranked rows: {rows}")
expect(r.stderr == "", "no progress bar when stderr is not a terminal")
# B doubles up to --max-micro-batch without overflowing (2^30 used to end in SIGFPE);
# sizes past the global batch add no rows.
huge = run("tune", "--preset", "gpt2-124m-h100", "--devices", "8", "--global-batch", "32", "--top", "3",
           "--max-micro-batch", "1073741824")
expect(huge.returncode == 0 and huge.stdout == r.stdout, f"tune --max-micro-batch 2^30: rc {huge.returncode} {huge.stderr}")
expect_usage_error(["tune", "--preset", "gpt3", "--devices", "8", "--global-batch", "8"], "unknown preset 'gpt3'")
expect_usage_error(["tune", "--preset", "gpt2-1.3b-p100", "--devices", "2", "--global-batch", "2", "--memory", "1"],
                   "no configuration")
expect_usage_error(["tune", "--preset", "gpt2-124m-p100", "--devices", "0", "--global-batch", "2"], "--devices")
expect_usage_error(["tune", "--preset", "gpt2-124m-p100", "--devices", "4"], "global-batch")

print(f"{len(failures)} failure(s)")
sys.exit(1 if failures else 0)
