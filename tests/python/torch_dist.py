#!/usr/bin/env python3
"""Runs chimera.torch cases on WORLD gloo processes (127.0.0.1, a free port)
and saves what each rank computed; the pytest side compares it with plain
single-process training and with torch's own schedules.

Usage: torch_dist.py CASES.json OUTDIR [WORLD]

Each case (a dict) trains a few steps and writes OUTDIR/ID.RANK.pt:
{"losses": [[loss or None per micro-batch] per step], "replicas":
{(pipeline, stage): {"params": ..., "grads": ...}}, "placement": ...} or
{"error": traceback}. A rank stops at its first error (the others then fail
on gloo's timeout instead of hanging).
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.distributed.pipelining import PipelineStage
from torch.distributed.pipelining import schedules as torch_schedules

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import chimera  # noqa: E402
import chimera.torch as ct  # noqa: E402
from torch_models import MODELS, state  # noqa: E402

BUILTIN = {"gpipe": "ScheduleGPipe", "1f1b": "Schedule1F1B", "interleaved": "ScheduleInterleaved1F1B",
           "looped-bfs": "ScheduleLoopedBFS", "zb-h1": "ScheduleInterleavedZeroBubble",
           "zb-v": "ScheduleZBVZeroBubble", "dualpipev": "ScheduleDualPipeV"}
SINGLE_STAGE = ("gpipe", "1f1b")


def generate(case: dict, world: int):
    return chimera.generate(case["schedule"], world, case["micro_batches"], **case.get("generate", {}))


def train(case: dict, rank: int, run_step, modules: dict) -> dict:
    """The common training loop: SGD over ``modules``' parameters."""
    _, _, data = MODELS[case["model"]]
    params = [q for key in sorted(modules) for q in modules[key].parameters()]
    optimizer = torch.optim.SGD(params, lr=case["lr"])
    losses = []
    for step in range(case["steps"]):
        optimizer.zero_grad(set_to_none=True)
        x, y = data(step, case["batch"])
        step_losses: list = []
        run_step(x, y, step_losses)
        losses.append(step_losses)
        optimizer.step()
    replicas = {key: {"params": state(m, grads=False), "grads": state(m, grads=True)} for key, m in modules.items()}
    return {"losses": losses, "replicas": replicas}


def run_replicated(case: dict, rank: int, world: int) -> dict:
    build, loss_fn, _ = MODELS[case["model"]]
    schedule = generate(case, world)
    seed = case["seed"] + (rank if case.get("skew") else 0)  # skew: every rank builds another model
    runner = ct.PipelineScheduleReplicated(build(schedule.stages, seed), schedule, loss_fn,
                                           sync=case.get("sync", "eager"))

    def run_step(x, y, losses):
        runner.step(x, target=y, losses=losses)
    return train(case, rank, run_step, runner.replicas)


def _pipeline_stages(case: dict, schedule_stages: int, local: list[int]) -> tuple[list, dict]:
    build, _, _ = MODELS[case["model"]]
    parts = build(schedule_stages, case["seed"])
    stages = [PipelineStage(parts[s], s, schedule_stages, torch.device("cpu")) for s in local]
    return stages, {(0, s): parts[s] for s in local}


def _torch_step(runner, has_last: bool, n: int):
    def run_step(x, y, losses):
        got: list = []
        runner.step(x, target=y, losses=got)
        losses.extend(got if has_last else [None] * n)
    return run_step


def run_chain(case: dict, rank: int, world: int) -> dict:
    _, loss_fn, _ = MODELS[case["model"]]
    schedule = generate(case, world)
    local = [s for s in range(schedule.stages) if schedule.worker_of(0, s) == rank]
    stages, modules = _pipeline_stages(case, schedule.stages, local)
    runner = ct.PipelineScheduleChain(stages, schedule, loss_fn, lowering=case.get("lowering", "chimera"),
                                      sync=case.get("sync", "end"))
    has_last = schedule.stages - 1 in local
    return train(case, rank, _torch_step(runner, has_last, schedule.micro_batches), modules)


def run_builtin(case: dict, rank: int, world: int) -> dict:
    """torch's own class for the schedule, with the library's placement
    (which the pytest side checks is torch's)."""
    _, loss_fn, _ = MODELS[case["model"]]
    schedule = generate(case, world)
    local = [s for s in range(schedule.stages) if schedule.worker_of(0, s) == rank]
    stages, modules = _pipeline_stages(case, schedule.stages, local)
    cls = getattr(torch_schedules, BUILTIN[case["schedule"]])
    runner = cls(stages[0] if case["schedule"] in SINGLE_STAGE else stages, schedule.micro_batches, loss_fn)
    order = {r: [str(a) for a in actions if a is not None] for r, actions in (runner.pipeline_order or {}).items()}
    has_last = schedule.stages - 1 in local
    result = train(case, rank, _torch_step(runner, has_last, schedule.micro_batches), modules)
    result["stage_to_rank"] = dict(getattr(runner, "stage_index_to_group_rank", {}))
    result["order"] = order
    return result


RUNNERS = {"replicated": run_replicated, "chain": run_chain, "builtin": run_builtin}


def worker(rank: int, world: int, port: int, cases: list[dict], outdir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=float(os.environ.get("CHIMERA_TORCH_GLOO_TIMEOUT", 60))))
    try:
        for case in cases:
            path = os.path.join(outdir, f"{case['id']}.{rank}.pt")
            try:
                torch.save(RUNNERS[case["kind"]](case, rank, world), path)
            except Exception:
                torch.save({"error": traceback.format_exc()}, path)
                return
            dist.barrier()
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    cases_path, outdir = sys.argv[1], sys.argv[2]
    world = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    with open(cases_path) as f:
        cases = json.load(f)
    mp.spawn(worker, args=(world, free_port(), cases, outdir), nprocs=world, join=True)


if __name__ == "__main__":
    main()
