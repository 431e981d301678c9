#!/usr/bin/env python3
"""Predictions checked against runs (docs/planning.md#predictions-checked-against-runs).

Profiles the tiny GPT once (local CPU run, chimera-train --profile-out), ranks
its configurations on 4 MPI ranks with chimera-sched tune --profile, runs the
best configuration of every (schedule, D) pair with mpirun -np 4 --transport
mpi, and prints a Markdown table, Spearman's rank correlation of measured
against predicted throughput, and the measured throughput of the predicted
best against the measured best.

usage: bench/planning_check.py BUILD_DIR [--steps 6] [--global-batch 32] [--runs 8]"""
import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MPIRUN = ["mpirun", "-np", "4", "--oversubscribe", "--allow-run-as-root"]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return r.stdout


def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):  # ties share their mean rank
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for m in range(i, j + 1):
            out[order[m]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else 0.0


def train_args(row, steps):
    args = ["--schedule", row["schedule"], "--stages", str(row["D"]), "--micro-batches", str(row["N"]),
            "--data-parallel", str(row["W"]), "--batch", str(row["B"]), "--sync", "eager", "--steps", str(steps),
            "--json"]
    if row["schedule"] == "chimera":
        args += ["--pipelines", str(row["k"]), "--scaling", row["scaling"]]
    return args


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--global-batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2,
                    help="runs of every configuration, alternating forward and reverse order; the fastest counts")
    o = ap.parse_args()
    train = os.path.join(o.build, "examples", "train", "chimera-train")
    sched = os.path.join(o.build, "examples", "chimera-sched", "chimera-sched")
    profile = os.path.join(o.build, "planning-profile.json")
    run([train, "--schedule", "chimera", "--stages", "4", "--micro-batches", "8", "--batch", "4", "--steps",
         str(o.steps), "--profile-out", profile, "--json"])
    # The 4 ranks share this machine's cores: the planner bounds each step by them.
    with open(os.path.join(ROOT, "bench", "planning", "cpu-mpi-cluster.json")) as f:
        cluster_doc = json.load(f)
    cluster_doc["cores_per_node"] = os.cpu_count()
    cluster = os.path.join(o.build, "planning-cluster.json")
    with open(cluster, "w") as f:
        json.dump(cluster_doc, f, indent=2)
    tuned = json.loads(run([sched, "tune", "--model", os.path.join(ROOT, "presets", "models", "tiny-gpt.json"),
                            "--cluster", cluster,
                            "--profile", profile, "--global-batch", str(o.global_batch), "--max-micro-batch", "8",
                            "--sync", "eager", "--format", "json", "--top", "0"]))
    # The best row of every (schedule, D), then of every (schedule, D, B), in
    # predicted order: different schedules, D, W, N and B. chimera-train has
    # no recomputation: those rows are left out.
    chosen, seen = [], set()
    for key_of in [lambda r: (r["schedule"], r["D"]), lambda r: (r["schedule"], r["D"], r["B"])]:
        for row in tuned["ranked"]:
            if not row["recompute"] and key_of(row) not in seen and row not in chosen and len(chosen) < o.runs:
                seen.add(key_of(row))
                chosen.append(row)
    chosen.sort(key=lambda r: r["rank"])
    print("| predicted rank | schedule | D | W | B | N | k | scaling | predicted samples/s | measured step s (each run) |"
          " measured samples/s |")
    print("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    steps = {i: [] for i in range(len(chosen))}
    for repeat in range(o.repeats):  # reverse every other pass: a load trend does not favour the first rows
        for i in (range(len(chosen)) if repeat % 2 == 0 else reversed(range(len(chosen)))):
            out = run(MPIRUN + [train, "--transport", "mpi"] + train_args(chosen[i], o.steps))
            summary = [json.loads(line)["summary"] for line in out.splitlines() if '"summary"' in line][0]
            steps[i].append(summary["mean_step_seconds"])
    measured = []
    for i, row in enumerate(chosen):
        step = min(steps[i])
        measured.append(o.global_batch / step)
        print(f"| {row['rank']} | {row['schedule']} | {row['D']} | {row['W']} | {row['B']} | {row['N']} | {row['k']} |"
              f" {row['scaling']} | {row['samples_per_second']:.1f} | {' / '.join(f'{t:.4f}' for t in steps[i])} |"
              f" {measured[-1]:.1f} |")
    predicted = [row["samples_per_second"] for row in chosen]
    rho = spearman(predicted, measured)
    best_measured = max(measured)
    of_predicted_best = measured[predicted.index(max(predicted))]
    print(f"\nSpearman rank correlation (measured vs predicted samples/s): {rho:.3f} (target >= 0.8)")
    print(f"predicted best measured at {of_predicted_best:.1f} samples/s; measured best {best_measured:.1f}: "
          f"{100 * (1 - of_predicted_best / best_measured):.1f}% below (target <= 10%)")


if __name__ == "__main__":
    main()
