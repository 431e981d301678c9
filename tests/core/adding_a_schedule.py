#!/usr/bin/env python3
"""docs/adding-a-schedule.md is true: in a copy of include/, apply the doc's
worked example (the description and generator headers from the doc, one
enum value in config.hpp, one include and one line in each of registry.hpp
and generate.hpp: nothing else), then
compile and run a program that generates the new schedule by name, checks
it, round-trips it through JSON and gets its rule's message, and compile
an invalid make_fixed config that must fail with the rule's text.
Usage: adding_a_schedule.py SOURCE_ROOT CXX..."""
import os
import shutil
import subprocess
import sys
import tempfile

root, compiler = sys.argv[1], sys.argv[2:]
doc = open(os.path.join(root, "docs", "adding-a-schedule.md")).read()


def block(i):
    text = doc.split("```cpp\n")[i].split("```")[0]
    return "\n".join(line[3:] if line.startswith("   ") else line for line in text.splitlines()) + "\n"


description, generator = block(1), block(2)

PROGRAM = r"""
#include <chimera/chimera.hpp>
#include <chimera/io/json.hpp>
#include <cstdio>
constexpr auto f = chimera::make_fixed<chimera::config{.schedule = chimera::algorithm::gpipe_lifo, .stages = 4, .micro_batches = 8}>();
static_assert(chimera::check(f).ok());
int main() {
    const auto a = chimera::parse_algorithm("gpipe-lifo");
    if (!a) return 1;
    const chimera::schedule s = chimera::generate({.schedule = *a, .stages = 3, .micro_batches = 5});
    if (!chimera::check(s).ok() || chimera::io::read_json(chimera::io::write_json(s)) != s) return 2;
    if (s.ops(0)[5].kind != chimera::op_kind::B || s.ops(0)[5].micro_batch != 4) return 3;  // LIFO
    const auto error = chimera::validate({.schedule = *a, .stages = 2, .micro_batches = 9});
    std::printf("%s\n", error ? error->message.c_str() : "(valid)");
    return 0;
}
"""
INVALID = ("#include <chimera/chimera.hpp>\n"
           "constexpr auto f = chimera::make_fixed<chimera::config{.schedule = chimera::algorithm::gpipe_lifo,"
           " .stages = 1, .micro_batches = 8}>();\n")


def edit(path, old, new):
    text = open(path).read()
    if old not in text:
        print(f"FAIL: '{old.strip()}' not found in {path}: the doc's steps no longer apply")
        sys.exit(1)
    open(path, "w").write(text.replace(old, new, 1))


with tempfile.TemporaryDirectory() as tmp:
    include = os.path.join(tmp, "include")
    shutil.copytree(os.path.join(root, "include"), include)
    chimera = os.path.join(include, "chimera")
    open(os.path.join(chimera, "schedules", "gpipe_lifo.hpp"), "w").write(description)
    open(os.path.join(chimera, "generators", "gpipe_lifo.hpp"), "w").write(generator)
    edit(os.path.join(chimera, "config.hpp"), "    dualpipev,", "    dualpipev,\n    gpipe_lifo,")
    edit(os.path.join(chimera, "registry.hpp"), '#include "schedules/gpipe.hpp"\n',
         '#include "schedules/gpipe.hpp"\n#include "schedules/gpipe_lifo.hpp"\n')
    edit(os.path.join(chimera, "registry.hpp"), "    &schedules::dualpipev_entry,\n",
         "    &schedules::dualpipev_entry,\n    &schedules::gpipe_lifo_entry,\n")
    edit(os.path.join(chimera, "generate.hpp"), '#include "generators/gpipe.hpp"\n',
         '#include "generators/gpipe.hpp"\n#include "generators/gpipe_lifo.hpp"\n')
    edit(os.path.join(chimera, "generate.hpp"), "    {algorithm::dualpipev, schedules::dualpipev},\n",
         "    {algorithm::dualpipev, schedules::dualpipev},\n    {algorithm::gpipe_lifo, schedules::gpipe_lifo},\n")
    source, exe = os.path.join(tmp, "t.cpp"), os.path.join(tmp, "t")
    open(source, "w").write(PROGRAM)
    built = subprocess.run(compiler + ["-std=c++20", "-I", include, source, "-o", exe], capture_output=True, text=True)
    if built.returncode != 0:
        print("FAIL: the worked example does not compile:\n" + built.stderr[:3000])
        sys.exit(1)
    ran = subprocess.run([exe], capture_output=True, text=True)
    expected = "gpipe-lifo: N must be <= 4D (got N=9, D=2); use 1f1b for more micro-batches"
    if ran.returncode != 0 or ran.stdout.strip() != expected:
        print(f"FAIL: the worked example runs with exit {ran.returncode}, printing '{ran.stdout.strip()}'")
        sys.exit(1)
    open(source, "w").write(INVALID)
    bad = subprocess.run(compiler + ["-std=c++20", "-fsyntax-only", "-I", include, source], capture_output=True,
                         text=True)
    if bad.returncode == 0 or "chimera rule S1: gpipe-lifo needs N <= 4D" not in bad.stderr:
        print("FAIL: an invalid compile-time gpipe-lifo config does not fail with its rule:\n" + bad.stderr[:2000])
        sys.exit(1)
print("ok: the worked example of docs/adding-a-schedule.md adds a schedule with five files")
