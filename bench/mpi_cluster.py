#!/usr/bin/env python3
"""A cluster file from the MPI benchmark's measurement (docs/planning.md#measured-inputs).

bench/mpi_bench prints "alpha A s, beta B s/byte" for its point-to-point
ping-pong; this script writes those into a cluster file: into `intra_node`
when the ranks shared a node (--link intra), into `inter_node` when they were
on two nodes (--link inter). The rest comes from a template cluster file.

  mpirun -np 2 build/bench/mpi_bench --iterations 30 > bench.txt
  bench/mpi_cluster.py bench.txt --template presets/clusters/p100-aries.json --link inter --out mine.json

usage: mpi_cluster.py BENCH_OUTPUT --template CLUSTER.json --link intra|inter [--out FILE]"""
import argparse
import json
import re
import sys

LINE = re.compile(r"^alpha\s+(\S+)\s+s,\s+beta\s+(\S+)\s+s/byte", re.M)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bench_output")
    ap.add_argument("--template", required=True)
    ap.add_argument("--link", choices=["intra", "inter"], required=True)
    ap.add_argument("--name", help="the measured network's name (default: mpi-measured)", default="mpi-measured")
    ap.add_argument("--out", default="-")
    o = ap.parse_args()
    text = open(o.bench_output).read()
    found = LINE.search(text)
    if not found:
        sys.exit(f"mpi_cluster: no 'alpha ... s, beta ... s/byte' line in {o.bench_output} (is it mpi_bench's output?)")
    alpha, beta = float(found.group(1)), float(found.group(2))
    if not (alpha >= 0 and beta >= 0):
        sys.exit(f"mpi_cluster: alpha and beta must be >= 0 (got {alpha}, {beta})")
    cluster = json.load(open(o.template))
    key = "intra_node" if o.link == "intra" else "inter_node"
    if key == "intra_node" and cluster.get("devices_per_node", 1) < 2:
        sys.exit("mpi_cluster: --link intra needs a template with devices_per_node >= 2")
    cluster[key] = {"name": o.name, "alpha": alpha, "beta": beta}
    out = json.dumps(cluster, indent=2) + "\n"
    if o.out == "-":
        sys.stdout.write(out)
    else:
        with open(o.out, "w") as f:
            f.write(out)


if __name__ == "__main__":
    main()
