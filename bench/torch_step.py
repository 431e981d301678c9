#!/usr/bin/env python3
"""Step time of chimera.torch schedules and torch's built-in ones on CPU/gloo.

Usage: torch_step.py [--workers 4] [--micro-batches 8] [--steps 5] [--channels 64] [--layers 8] [--batch 32]
                     [--threads 1] [--only NAME,NAME]

Runs every schedule on WORKERS processes (gloo, 127.0.0.1): a GPT (the
blocks of tests/python/torch_models.py; LAYERS blocks, CHANNELS wide,
context 32) with N micro-batches; one warm-up round, then STEPS rounds of
one timed step of each schedule in turn. Prints a markdown table of the
median step time (the slowest rank's) and the spread. Record results in
bench/results/torch.md with the machine and the command.
"""
from __future__ import annotations

import argparse
import datetime
import math
import os
import socket
import statistics
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.distributed.pipelining import PipelineStage
from torch.distributed.pipelining import schedules as S

import chimera
import chimera.torch as ct

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
from torch_models import Block, Embed, Head  # noqa: E402  (the tests' GPT, at the bench's size)

VOCAB, CONTEXT, HEADS = 64, 32, 4
# name -> (runner kind, chimera.generate name and options, torch class)
RUNS = {
    "chimera k=2 (chimera.torch)": ("replicated", "chimera", {}, None),
    "chimera k=2 zero-bubble (chimera.torch)": ("replicated", "chimera", {"split_backward": True}, None),
    "dualpipe (chimera.torch)": ("replicated", "dualpipe", {}, None),
    "1f1b (chimera.torch executor)": ("replicated", "1f1b", {}, None),
    "1f1b (chimera order, torch runtime)": ("chain", "1f1b", {}, None),
    "zb-v (chimera order, torch runtime)": ("chain", "zb-v", {}, None),
    "1f1b (torch Schedule1F1B)": ("builtin", "1f1b", {}, "Schedule1F1B"),
    "gpipe (torch ScheduleGPipe)": ("builtin", "gpipe", {}, "ScheduleGPipe"),
    "interleaved (torch ScheduleInterleaved1F1B)": ("builtin", "interleaved", {}, "ScheduleInterleaved1F1B"),
    "zb-v (torch ScheduleZBVZeroBubble)": ("builtin", "zb-v", {}, "ScheduleZBVZeroBubble"),
    "dualpipev (torch ScheduleDualPipeV)": ("builtin", "dualpipev", {}, "ScheduleDualPipeV"),
}


def model(stages: int, layers: int, c: int) -> list[nn.Module]:
    """LAYERS blocks cut evenly into STAGES parts; embedding first, head last."""
    if layers % stages:
        raise SystemExit(f"--layers {layers} must be a multiple of the stage count {stages}")
    torch.manual_seed(0)
    per = layers // stages
    parts = [[Block(c, HEADS) for _ in range(per)] for _ in range(stages)]
    parts[0].insert(0, Embed(VOCAB, CONTEXT, c))
    parts[-1].append(Head(c, VOCAB))
    return [nn.Sequential(*p) for p in parts]


def loss_fn(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.reshape(-1, VOCAB), target.reshape(-1))


def runner(kind: str, name: str, options: dict, cls: str | None, args, rank: int):
    schedule = chimera.generate(name, args.workers, args.micro_batches, **options)
    parts = model(schedule.stages, args.layers, args.channels)
    if kind == "replicated":
        r = ct.PipelineScheduleReplicated(parts, schedule, loss_fn)
        return r, list(r.parameters())
    local = [s for s in range(schedule.stages) if schedule.worker_of(0, s) == rank]
    stages = [PipelineStage(parts[s], s, schedule.stages, torch.device("cpu")) for s in local]
    params = [q for s in local for q in parts[s].parameters()]
    if kind == "chain":
        return ct.PipelineScheduleChain(stages, schedule, loss_fn), params
    torch_cls = getattr(S, cls)
    single = issubclass(torch_cls, S.PipelineScheduleSingle)
    return torch_cls(stages[0] if single else stages, args.micro_batches, loss_fn), params


def timed_step(run, optimizer, x, y) -> float:
    """One step; the slowest rank's wall time."""
    dist.barrier()
    start = time.perf_counter()
    optimizer.zero_grad()
    run.step(x, target=y)
    optimizer.step()
    elapsed = torch.tensor([time.perf_counter() - start])
    dist.all_reduce(elapsed, op=dist.ReduceOp.MAX)
    return elapsed.item()


def worker(rank: int, args, port: int, names: list[str]) -> None:
    """Every schedule is built first; then each round times one step of each
    (round-robin, so that a busy spell of the machine hits all alike)."""
    torch.set_num_threads(args.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=args.workers,
                            timeout=datetime.timedelta(seconds=300))
    runs = []
    for name in names:
        run, params = runner(*RUNS[name], args, rank)
        runs.append((run, torch.optim.AdamW(params, lr=1e-3)))
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(VOCAB, (args.batch, CONTEXT + 1), generator=g)
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    times: list[list[float]] = [[] for _ in names]
    for round_ in range(args.steps + 1):
        for i, (run, optimizer) in enumerate(runs):
            elapsed = timed_step(run, optimizer, x, y)
            if round_:  # round 0 warms up
                times[i].append(elapsed)
    if rank == 0:
        print("| schedule | median ms/step | min | max |\n|---|---:|---:|---:|")
        for name, t in zip(names, times):
            print(f"| {name} | {1e3 * statistics.median(t):.1f} | {1e3 * min(t):.1f} | {1e3 * max(t):.1f} |")
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--micro-batches", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", default="", help="comma-separated substrings of the schedule names to run")
    args = parser.parse_args()
    if args.channels % HEADS or math.gcd(args.batch, args.micro_batches) != args.micro_batches:
        raise SystemExit("--channels must be a multiple of 4 and --batch a multiple of --micro-batches")
    names = [n for n in RUNS if not args.only or any(part in n for part in args.only.split(","))]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    print(f"torch {torch.__version__}, {args.workers} gloo processes x {args.threads} thread(s), {os.cpu_count()} "
          f"cores; GPT {args.layers} x {args.channels}, batch {args.batch}, {args.micro_batches} micro-batches")
    mp.spawn(worker, args=(args, port, names), nprocs=args.workers, join=True)


if __name__ == "__main__":
    main()
