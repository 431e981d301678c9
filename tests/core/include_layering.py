#!/usr/bin/env python3
"""Data flows one way: parameters -> generator -> IR -> passes -> output.
Walks the #include "..." graph of include/chimera/ and fails when a pass
header reaches a generator file, or a generator file reaches a pass header.
A generator file is one under generators/ or one that defines a generator
(`constexpr schedule NAME(const config& c) {`). dependencies.hpp (the
dependency index and peak activations of the IR) must reach no generator
either, but generators may read it: the Chimera generator and the
zero-bubble pass it runs need the data dependencies of the ops they order.
Usage: include_layering.py INCLUDE_DIR"""
import os
import re
import sys

PASSES = ["check.hpp", "lower.hpp", "simulate.hpp", "analysis.hpp", "slots.hpp", "rendezvous.hpp",
          "dependencies.hpp"]
IR_READ_BY_GENERATORS = {"dependencies.hpp"}
GENERATOR = re.compile(r"^constexpr schedule \w+\(const config& \w+\) \{", re.M)
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)

root = os.path.join(sys.argv[1], "chimera")
graph, generators = {}, set()
for folder, _, files in os.walk(root):
    for name in files:
        if not name.endswith(".hpp"):
            continue
        path = os.path.join(folder, name)
        key = os.path.relpath(path, root)
        text = open(path, encoding="utf-8").read()
        graph[key] = [os.path.normpath(os.path.join(os.path.dirname(key), i)) for i in INCLUDE.findall(text)]
        if key.startswith("generators" + os.sep) or GENERATOR.search(text):
            generators.add(key)


def reach(start):
    """Every header start includes, directly or not, with the chain to it."""
    seen, todo = {start: [start]}, [start]
    while todo:
        here = todo.pop()
        for there in graph.get(here, []):
            if there not in seen:
                seen[there] = seen[here] + [there]
                todo.append(there)
    return seen


missing = [p for p in PASSES if p not in graph]
if missing or not generators:
    print(f"FAIL: the rule has nothing to check: missing pass headers {missing}, generator files {sorted(generators)}")
    sys.exit(1)
broken = []
for p in PASSES:
    for target, chain in sorted(reach(p).items()):
        if target in generators:
            broken.append(f"pass {p} includes generator {target}: {' -> '.join(chain)}")
for g in sorted(generators):
    for target, chain in sorted(reach(g).items()):
        if target in PASSES and target not in IR_READ_BY_GENERATORS:
            broken.append(f"generator {g} includes pass {target}: {' -> '.join(chain)}")
for line in broken:
    print("FAIL: " + line)
if broken:
    print(f"{len(broken)} include(s) break the one-way rule (passes include no generator, no generator includes a pass)")
    sys.exit(1)
print(f"ok: {len(PASSES)} pass headers reach none of {len(generators)} generator files, and none of those reaches a pass")
