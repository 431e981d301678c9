#!/usr/bin/env python3
"""An invalid compile-time config must fail the build, and the compiler's
message must name the broken rule. Usage: compile_fail.py INCLUDE_DIR CXX..."""
import subprocess
import sys
import tempfile
import os

include_dir, compiler = sys.argv[1], sys.argv[2:]

CASES = [
    ("chimera::config{.schedule = chimera::algorithm::chimera, .stages = 5, .micro_batches = 4}",
     "chimera rule S1: D must be even"),
    ("chimera::config{.schedule = chimera::algorithm::chimera, .stages = 8, .micro_batches = 8, .pipelines = 3}",
     "chimera rule S1: Chimera needs an even number of pipelines"),
    ("chimera::config{.schedule = chimera::algorithm::chimera, .stages = 8, .micro_batches = 8, .pipelines = 6}",
     "chimera rule S1: f = k/2 must divide D/2"),
    ("chimera::config{.schedule = chimera::algorithm::gpipe, .stages = 4, .micro_batches = 0}",
     "chimera rule S1: micro-batches N must be >= 1"),
    ("chimera::config{.schedule = chimera::algorithm::chimera, .stages = 8, .micro_batches = 8, .pipelines = 4,"
     " .scaling_mode = chimera::scaling::doubling}",
     "chimera rule S1: doubling/halving are defined for k = 2 pipelines only"),
]

# Control: a valid config compiles with the same command, so a failure below
# is the rule firing, not a broken command line.
VALID = "chimera::config{.schedule = chimera::algorithm::chimera, .stages = 4, .micro_batches = 4}"


def compile_snippet(cfg):
    source = ("#include <chimera/chimera.hpp>\n"
              f"constexpr auto s = chimera::make_fixed<{cfg}>();\n"
              "int main() { return static_cast<int>(s.op_count() % 2); }\n")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "snippet.cpp")
        with open(path, "w") as f:
            f.write(source)
        cmd = compiler + ["-std=c++20", "-fsyntax-only", "-I", include_dir, path]
        return subprocess.run(cmd, capture_output=True, text=True)


failures = 0
control = compile_snippet(VALID)
if control.returncode != 0:
    print("control snippet failed to compile:\n" + control.stderr)
    sys.exit(1)
for cfg, expected in CASES:
    result = compile_snippet(cfg)
    if result.returncode == 0:
        print(f"FAIL: compiled although invalid: {cfg}")
        failures += 1
    elif expected not in result.stderr:
        print(f"FAIL: message '{expected}' not in compiler output for {cfg}:\n{result.stderr[:2000]}")
        failures += 1
    else:
        first = next(line for line in result.stderr.splitlines() if expected in line)
        print(f"ok: {first.strip()}")
print(f"{len(CASES) - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
