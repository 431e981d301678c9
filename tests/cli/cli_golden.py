#!/usr/bin/env python3
"""chimera-sched generate / lower / simulate / export write the same bytes as
before the schedule registry: tests/golden/cli-bytes.txt holds the SHA-256 of
each command's output over a grid of schedules, settings and formats, written
by the pre-registry build. Usage: cli_golden.py CHIMERA_SCHED [--write]"""
import hashlib
import os
import subprocess
import sys

exe = sys.argv[1]
golden = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "golden", "cli-bytes.txt")

SETTINGS = [[s] for s in ["gpipe", "1f1b", "chimera", "interleaved", "looped-bfs", "gems", "zb-h1", "zb-h2", "zb-v",
                          "dualpipe", "dualpipev"]]
SETTINGS += [["chimera", "--scaling", "doubling"], ["chimera", "--scaling", "halving"], ["chimera", "--pipelines", "4"],
             ["chimera", "--split-backward"], ["interleaved", "--chunks", "3"], ["interleaved", "--group-size", "4"]]
SHAPES = [("4", "8"), ("8", "16"), ("6", "7")]
COMMANDS = [["generate"], ["generate", "--format", "text"], ["lower"], ["simulate"]]
COMMANDS += [["export", "--format", f] for f in ["json", "pytorch-csv", "chrome-trace", "svg", "text"]]


def lines():
    for setting in SETTINGS:
        for d, n in SHAPES:
            for command in COMMANDS:
                args = command + ["--schedule", *setting, "--stages", d, "--micro-batches", n]
                r = subprocess.run([exe, *args], capture_output=True, timeout=120)
                digest = hashlib.sha256(r.stdout + r.stderr + str(r.returncode).encode()).hexdigest()
                yield f"{digest} {' '.join(args)}"


if len(sys.argv) > 2 and sys.argv[2] == "--write":
    with open(golden, "w") as f:
        f.write("\n".join(lines()) + "\n")
    sys.exit(0)
expected = open(golden).read().splitlines()
actual = list(lines())
failures = [a.split(" ", 1)[1] for a, e in zip(actual, expected) if a != e]
if len(actual) != len(expected):
    failures.append(f"{len(actual)} commands, golden file has {len(expected)}")
for f in failures:
    print("FAIL: other bytes than before for chimera-sched " + f)
print(f"{len(actual) - len(failures)} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
