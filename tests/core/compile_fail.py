#!/usr/bin/env python3
"""An invalid compile-time config must fail the build, and the compiler's
message must name the broken rule, with the text of the registry's rule:
for each case a small run-time program asks the registry for the first rule
the config breaks (chimera::first_broken_rule), and that rule's summary
must appear in the output of the failed make_fixed compile.
Usage: compile_fail.py INCLUDE_DIR CXX..."""
import os
import subprocess
import sys
import tempfile

include_dir, compiler = sys.argv[1], sys.argv[2:]

# (config, words the message must contain): shared rules, Chimera's rules
# and rules of the zoo.
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
    ("chimera::config{.schedule = chimera::algorithm::gpipe, .stages = 4, .micro_batches = 4, .pipelines = 2}",
     "chimera rule S1: this schedule has exactly one pipeline"),
    ("chimera::config{.schedule = chimera::algorithm::interleaved, .stages = 4, .micro_batches = 9}",
     "chimera rule S1: interleaved needs N mod max(1, N/P) = 0"),
    ("chimera::config{.schedule = chimera::algorithm::dualpipe, .stages = 4, .micro_batches = 6}",
     "chimera rule S1: dualpipe and dualpipev need N >= 2P"),
]

# Controls: valid configs compile with the same command, so a failure below
# is the rule firing, not a broken command line. (clang 14 with libstdc++ 12
# cannot evaluate Chimera's generator in constant expressions: the gpipe
# control is the one every compiler must pass.)
CONTROLS = ["chimera::config{.schedule = chimera::algorithm::gpipe, .stages = 4, .micro_batches = 4}",
            "chimera::config{.schedule = chimera::algorithm::chimera, .stages = 4, .micro_batches = 4}"]


def compile_source(source, tmp, run=False):
    path = os.path.join(tmp, "snippet.cpp")
    with open(path, "w") as f:
        f.write(source)
    if not run:
        cmd = compiler + ["-std=c++20", "-fsyntax-only", "-I", include_dir, path]
        return subprocess.run(cmd, capture_output=True, text=True)
    exe = os.path.join(tmp, "rules")
    built = subprocess.run(compiler + ["-std=c++20", "-I", include_dir, path, "-o", exe], capture_output=True, text=True)
    if built.returncode != 0:
        return built
    return subprocess.run([exe], capture_output=True, text=True)


def make_fixed_snippet(cfg):
    return ("#include <chimera/chimera.hpp>\n"
            f"constexpr auto s = chimera::make_fixed<{cfg}>();\n"
            "int main() { return static_cast<int>(s.op_count() % 2); }\n")


def registry_summaries(tmp):
    """The summary of the first rule each case breaks, asked of the registry at run time."""
    lines = "".join(f"    print({cfg});\n" for cfg, _ in CASES)
    source = ("#include <chimera/chimera.hpp>\n#include <cstdio>\n#include <string>\n"
              "static void print(const chimera::config& c) {\n"
              "    const chimera::config_rule* r = chimera::first_broken_rule(c);\n"
              "    std::puts(r ? std::string(r->summary).c_str() : \"(valid)\");\n}\n"
              f"int main() {{\n{lines}}}\n")
    result = compile_source(source, tmp, run=True)
    if result.returncode != 0:
        print("the registry program failed:\n" + result.stdout + result.stderr)
        sys.exit(1)
    return result.stdout.splitlines()


failures = 0
with tempfile.TemporaryDirectory() as tmp:
    summaries = registry_summaries(tmp)
    controls = [compile_source(make_fixed_snippet(cfg), tmp).returncode == 0 for cfg in CONTROLS]
    is_clang = "clang" in subprocess.run(compiler + ["--version"], capture_output=True, text=True).stdout
    for cfg, ok in zip(CONTROLS, controls):
        if not ok and not (is_clang and "chimera::algorithm::chimera" in cfg):
            print("control snippet failed to compile: " + cfg)
            sys.exit(1)
    for (cfg, expected), summary in zip(CASES, summaries):
        result = compile_source(make_fixed_snippet(cfg), tmp)
        if not summary.startswith(expected):
            print(f"FAIL: the registry's rule for {cfg} is '{summary}', expected it to start with '{expected}'")
            failures += 1
        elif result.returncode == 0:
            print(f"FAIL: compiled although invalid: {cfg}")
            failures += 1
        elif summary not in result.stderr:
            print(f"FAIL: rule text '{summary}' not in compiler output for {cfg}:\n{result.stderr[:2000]}")
            failures += 1
        else:
            print(f"ok: {summary}")
print(f"{len(CASES) - failures} passed, {failures} failed")
sys.exit(1 if failures else 0)
