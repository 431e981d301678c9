#!/usr/bin/env python3
"""Measured step time of multi-process runs next to the simulator
(bench/results/distributed.md, docs/distributed.md#measured-this-machine).

Each configuration runs `--repeats` times under `mpirun --transport mpi`,
the configurations in turn (so slow spells of the machine spread over all
of them). A run's measured step is chimera-train's median_step_seconds (the
median after step 0); its prediction is the simulator fed with that run's
own op costs (CPU time per op after step 0) and its link, measured by a
ping-pong between ranks (p2p alpha and beta). With a core per rank the
prediction to meet is the one-core-per-worker makespan
(predicted_step_seconds); with more ranks than cores it is the same
timeline with the cores shared (predicted_step_seconds_core_bound). The
table gives every run and, per configuration, the median of the ratios.

usage: bench/step_time_check.py BUILD_DIR [--repeats 5] [--steps 12] [--ranks 2] [--mpirun TEMPLATE]

--ranks N: only the configurations of N ranks. --mpirun: the launch command
instead of `mpirun -np {np} --oversubscribe --allow-run-as-root`, with {np}
and {half} (np / 2) filled in: e.g. the two namespace nodes of
bench/results/distributed.md."""
import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys

CONFIGS = [  # (ranks, chimera-train arguments)
    (2, "--schedule chimera --stages 2 --micro-batches 8 --batch 4 --sync eager"),
    (2, "--schedule 1f1b --stages 2 --micro-batches 8 --batch 4 --sync eager"),
    (2, "--schedule 1f1b --stages 1 --data-parallel 2 --micro-batches 8 --batch 4 --sync eager"),
    (4, "--schedule chimera --stages 4 --micro-batches 8 --batch 4 --sync eager"),
    (4, "--schedule 1f1b --stages 4 --micro-batches 8 --batch 4 --sync eager"),
]


def run_once(exe, ranks, args, steps, mpirun):
    launch = shlex.split(mpirun.format(np=ranks, half=ranks // 2))
    cmd = [*launch, exe, "--transport", "mpi", *args.split(), "--steps", str(steps), "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        sys.exit(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr[-2000:]}")
    return [json.loads(line)["summary"] for line in r.stdout.splitlines() if line.startswith('{"summary"')][0]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--ranks", type=int, default=0)
    ap.add_argument("--mpirun", default="mpirun -np {np} --oversubscribe --allow-run-as-root")
    a = ap.parse_args()
    configs = [c for c in CONFIGS if a.ranks in (0, c[0])]
    exe = os.path.join(a.build, "examples", "train", "chimera-train")
    cores = os.cpu_count()
    runs = {i: [] for i in range(len(configs))}
    for _ in range(a.repeats):
        for i, (ranks, args) in enumerate(configs):
            runs[i].append(run_once(exe, ranks, args, a.steps, a.mpirun))
    print(f"{cores} cores, load average before the last run {os.getloadavg()[0]:.1f}; {a.repeats} runs of "
          f"{a.steps} steps each\n")
    print("| ranks | configuration | measured median step (ms) | predicted (ms) | measured / predicted "
          "| median ratio | alpha (us) | beta (ns/B) | CPU in / outside ops per step (ms) |")
    print("|---:|---|---|---|---|---:|---:|---:|---|")
    for i, (ranks, args) in enumerate(configs):
        key = "predicted_step_seconds" if ranks <= cores else "predicted_step_seconds_core_bound"
        measured = [s["median_step_seconds"] for s in runs[i]]
        predicted = [s[key] for s in runs[i]]
        ratios = [m / p for m, p in zip(measured, predicted)]
        link = [s["p2p"] for s in runs[i]]
        cpu = [s["cpu_seconds_per_step"] for s in runs[i]]
        ms = lambda xs: " / ".join(f"{x * 1e3:.1f}" for x in xs)
        print(f"| {ranks} | `{args}` | {ms(measured)} | {ms(predicted)} | "
              f"{' / '.join(f'{r:.3f}' for r in ratios)} | **{statistics.median(ratios):.3f}** | "
              f"{statistics.median(x['alpha_seconds'] for x in link) * 1e6:.1f} | "
              f"{statistics.median(x['beta_seconds_per_byte'] for x in link) * 1e9:.2f} | "
              f"{statistics.median(c['ops'] for c in cpu) * 1e3:.0f} / "
              f"{statistics.median(c['outside_ops'] for c in cpu) * 1e3:.0f} |")
    print(f"\n(predicted: {'one core per worker' if max(r for r, _ in configs) <= cores else 'one core per worker where ranks <= cores, shared cores (shared_core_time) otherwise'})")


if __name__ == "__main__":
    main()
