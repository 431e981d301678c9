#!/usr/bin/env python3
"""Predictions checked against runs (docs/planning.md#predictions-checked-against-runs).

Profiles the tiny GPT once per micro-batch size B (1, 2, 4, 8) on the runtime
the runs use (mpirun -np 4 --transport mpi, chimera-train --profile-out: CPU
seconds per op), ranks its configurations on 4 MPI ranks with chimera-sched
tune --profile (every size; the cluster file gets this machine's core count
as cores_per_node), runs `--runs` of the ranked configurations spread evenly
from the predicted best to the predicted worst, and prints a Markdown table,
Spearman's rank correlation of measured against predicted throughput, and
the measured throughput of the predicted best against the measured best.
A run's step time is the median of its per-step times after step 0; each
configuration runs `--repeats` times in alternating order, the fastest counts.

usage: bench/planning_check.py BUILD_DIR [--steps 12] [--global-batch 32] [--runs 10] [--repeats 3]"""
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


def step_seconds(train, row, steps):
    """Median step time of one mpirun, step 0 (warm-up) left out."""
    out = run(MPIRUN + [train, "--transport", "mpi"] + train_args(row, steps))
    seconds = [json.loads(line)["seconds"] for line in out.splitlines() if line.startswith('{"loss"')]
    seconds = sorted(seconds[1:])
    return seconds[len(seconds) // 2]


def profiles(o, train):
    """One profile per micro-batch size, on the runtime the runs use."""
    paths = []
    for b in (1, 2, 4, 8):
        path = os.path.join(o.build, f"planning-profile-{b}.json")
        run(MPIRUN + [train, "--transport", "mpi", "--schedule", "1f1b", "--stages", "4", "--micro-batches",
                      str(o.global_batch // b), "--batch", str(b), "--sync", "eager", "--steps", str(o.steps),
                      "--profile-out", path, "--json"])
        paths.append(path)
    return paths


def choose(ranked, count):
    """Configurations chimera-train runs (no recomputation; halving's B/2
    micro-batches are the tuner's), one per (schedule, D, W, B, k, scaling),
    spread evenly over the predicted ranking."""
    rows, seen = [], set()
    for row in ranked:
        key = (row["schedule"], row["D"], row["W"], row["B"], row["k"], row["scaling"])
        if not row["recompute"] and row["scaling"] != "halving" and key not in seen:
            seen.add(key)
            rows.append(row)
    if count >= len(rows):
        return rows
    return [rows[round(i * (len(rows) - 1) / (count - 1))] for i in range(count)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--global-batch", type=int, default=32)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3,
                    help="runs of every configuration, alternating forward and reverse order; the fastest counts")
    o = ap.parse_args()
    train = os.path.join(o.build, "examples", "train", "chimera-train")
    sched = os.path.join(o.build, "examples", "chimera-sched", "chimera-sched")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    profile_args = [a for path in profiles(o, train) for a in ("--profile", path)]
    # The 4 ranks share this machine's cores: the planner shares them too.
    with open(os.path.join(ROOT, "bench", "planning", "cpu-mpi-cluster.json")) as f:
        cluster_doc = json.load(f)
    cluster_doc["cores_per_node"] = os.cpu_count()
    cluster = os.path.join(o.build, "planning-cluster.json")
    with open(cluster, "w") as f:
        json.dump(cluster_doc, f, indent=2)
    tuned = json.loads(run([sched, "tune", "--model", os.path.join(ROOT, "presets", "models", "tiny-gpt.json"),
                            "--cluster", cluster] + profile_args +
                           ["--global-batch", str(o.global_batch), "--max-micro-batch", "8", "--sync", "eager",
                            "--format", "json", "--top", "0"]))
    chosen = choose(tuned["ranked"], o.runs)
    steps = {i: [] for i in range(len(chosen))}
    for repeat in range(o.repeats):  # reverse every other pass: a load trend does not favour the first rows
        for i in (range(len(chosen)) if repeat % 2 == 0 else reversed(range(len(chosen)))):
            steps[i].append(step_seconds(train, chosen[i], o.steps))
    print("| predicted rank | schedule | D | W | B | N | k | scaling | predicted s | predicted samples/s |"
          " measured step s (each run) | measured samples/s |")
    print("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
    measured = []
    for i, row in enumerate(chosen):
        measured.append(o.global_batch / min(steps[i]))
        print(f"| {row['rank']} | {row['schedule']} | {row['D']} | {row['W']} | {row['B']} | {row['N']} | {row['k']} |"
              f" {row['scaling']} | {row['iteration_seconds']:.4f} | {row['samples_per_second']:.1f} |"
              f" {' / '.join(f'{t:.4f}' for t in steps[i])} | {measured[-1]:.1f} |")
    predicted = [row["samples_per_second"] for row in chosen]
    rho = spearman(predicted, measured)
    best_measured = max(measured)
    of_predicted_best = measured[predicted.index(max(predicted))]
    print(f"\nSpearman rank correlation (measured vs predicted samples/s): {rho:.3f} (target >= 0.8)")
    print(f"predicted best measured at {of_predicted_best:.1f} samples/s; measured best {best_measured:.1f}: "
          f"{100 * (1 - of_predicted_best / best_measured):.1f}% below (target <= 10%)")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
