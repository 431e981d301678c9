"""chimera.torch trains like plain single-process training, on 4 gloo
processes: every replicated schedule (Chimera k=2 and k=4, direct, doubling,
zero-bubble; DualPipe; GEMS) through PipelineScheduleReplicated, every
single-chain schedule through torch's own runtime; a Linear stack and a small
GPT. Where torch has the schedule built in, our order is bitwise equal to it.

One launch runs every case (torch_dist.py); a deadlock fails it on the
timeout (CHIMERA_TORCH_TIMEOUT seconds, default 900) instead of hanging.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

if os.environ.get("CI"):
    import chimera.torch  # noqa: F401  CI installs torch: a missing one fails here instead of skipping
torch = pytest.importorskip("torch")
pytest.importorskip("chimera.torch")

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from torch_models import reference  # noqa: E402

WORLD = 4
RTOL, ATOL = 1e-5, 1e-7  # fp32; gradients of ~1e-3 differ by ~1e-9 between summation orders


def case(id, kind, schedule, n, model="linear", **extra):
    return dict(id=id, kind=kind, schedule=schedule, micro_batches=n, model=model, batch=2 * n, steps=2, lr=0.1,
                seed=7, **extra)


REPLICATED = [
    case("chimera-k2-direct", "replicated", "chimera", 4),
    case("chimera-k2-direct-end", "replicated", "chimera", 4, sync="end"),
    case("chimera-k2-doubling", "replicated", "chimera", 8, generate={"scaling": "doubling"}),
    case("chimera-k2-zb", "replicated", "chimera", 4, generate={"split_backward": True}),
    case("chimera-k4-direct", "replicated", "chimera", 8, generate={"pipelines": 4}),
    case("chimera-k4-zb", "replicated", "chimera", 8, generate={"pipelines": 4, "split_backward": True}),
    case("dualpipe", "replicated", "dualpipe", 8),
    case("gems", "replicated", "gems", 4),
    case("chimera-k2-broadcast", "replicated", "chimera", 4, skew=True),
    case("gpt-chimera-k2-direct", "replicated", "chimera", 4, model="gpt"),
    case("gpt-chimera-k2-zb", "replicated", "chimera", 4, model="gpt", generate={"split_backward": True}),
    case("gpt-chimera-k4-direct", "replicated", "chimera", 8, model="gpt", generate={"pipelines": 4}),
]
BUILTINS = {"gpipe": 4, "1f1b": 4, "interleaved": 8, "looped-bfs": 8, "zb-h1": 4, "zb-v": 8, "dualpipev": 8}
CHAIN = [case(name, "chain", name, n) for name, n in {**BUILTINS, "zb-h2": 4}.items()] + [
    case("1f1b-torch-lowering", "chain", "1f1b", 4, lowering="torch"),
    case("zb-v-torch-lowering", "chain", "zb-v", 8, lowering="torch"),
    case("gpt-1f1b", "chain", "1f1b", 4, model="gpt"),
    case("gpt-zb-v", "chain", "zb-v", 8, model="gpt"),
    case("gpt-dualpipev", "chain", "dualpipev", 8, model="gpt"),
]
TORCH = [case("torch-" + name, "builtin", name, n) for name, n in BUILTINS.items()]
CASES = {c["id"]: c for c in REPLICATED + CHAIN + TORCH}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    """Runs every case once; {case id: [rank 0 result, ...]}."""
    outdir = tmp_path_factory.mktemp("torch-dist")
    cases_path = outdir / "cases.json"
    cases_path.write_text(json.dumps(list(CASES.values())))
    timeout = float(os.environ.get("CHIMERA_TORCH_TIMEOUT", 900))
    process = subprocess.Popen([sys.executable, os.path.join(HERE, "torch_dist.py"), str(cases_path), str(outdir),
                                str(WORLD)], start_new_session=True)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        pytest.fail(f"torch_dist.py did not finish in {timeout} s (a deadlock?)")
    found = {}
    for cid in CASES:
        paths = [outdir / f"{cid}.{rank}.pt" for rank in range(WORLD)]
        found[cid] = [torch.load(p, weights_only=False) if p.exists() else {"error": "no result"} for p in paths]
    return found


def ranks_of(results, cid):
    ranks = results[cid]
    for rank, r in enumerate(ranks):
        assert "error" not in r, f"{cid} rank {rank}: {r['error']}"
    return ranks


def merged_losses(ranks, n, steps):
    """Per step, per micro-batch, the one loss some rank computed."""
    merged = []
    for step in range(steps):
        row = []
        for m in range(n):
            held = [r["losses"][step][m] for r in ranks if r["losses"][step][m] is not None]
            assert len(held) == 1, f"step {step} micro-batch {m}: loss on {len(held)} ranks"
            row.append(held[0].detach())
        merged.append(row)
    return merged


@pytest.mark.parametrize("cid", [c["id"] for c in REPLICATED + CHAIN])
def test_equals_single_process_training(results, cid):
    c = CASES[cid]
    ranks = ranks_of(results, cid)
    stages = len(ref_stages(ranks))
    seeds = None
    if c.get("skew"):  # rank r built its model from seed + r; a stage starts as its lowest holder's copy
        import chimera
        schedule = chimera.generate(c["schedule"], WORLD, c["micro_batches"], **c.get("generate", {}))
        seeds = [c["seed"] + min(schedule.worker_of(p, s) for p in range(schedule.pipelines)) for s in range(stages)]
    ref = reference(c["model"], stages, c["seed"], c["micro_batches"], c["batch"], c["steps"], c["lr"], seeds)
    losses = merged_losses(ranks, c["micro_batches"], c["steps"])
    torch.testing.assert_close(torch.stack([torch.stack(r) for r in losses]),
                               torch.stack([torch.stack(r) for r in ref["losses"]]), rtol=RTOL, atol=0)
    for r in ranks:
        for (p, s), rep in r["replicas"].items():
            for what in ("params", "grads"):
                for name, value in rep[what].items():
                    torch.testing.assert_close(value, ref[what][s][name], rtol=RTOL, atol=ATOL,
                                               msg=lambda m: f"{cid} replica ({p}, {s}) {what} {name}: {m}")


def ref_stages(ranks):
    return {s for r in ranks for (_, s) in r["replicas"]}


@pytest.mark.parametrize("cid", [c["id"] for c in REPLICATED])
def test_replicas_identical_and_complete(results, cid):
    import chimera
    c = CASES[cid]
    ranks = ranks_of(results, cid)
    schedule = chimera.generate(c["schedule"], WORLD, c["micro_batches"], **c.get("generate", {}))
    held = {key: rank for rank, r in enumerate(ranks) for key in r["replicas"]}
    expected = {(p, s): schedule.worker_of(p, s) for p in range(schedule.pipelines) for s in range(schedule.stages)}
    assert held == expected
    assert schedule.pipelines >= 2
    for s in range(schedule.stages):
        first = ranks[expected[(0, s)]]["replicas"][(0, s)]
        for p in range(1, schedule.pipelines):
            other = ranks[expected[(p, s)]]["replicas"][(p, s)]
            for what in ("params", "grads"):
                for name in first[what]:
                    assert torch.equal(first[what][name], other[what][name]), f"stage {s} pipeline {p} {what} {name}"


@pytest.mark.parametrize("name", list(BUILTINS))
def test_bitwise_equal_to_torch_builtin(results, name):
    ours, theirs = ranks_of(results, name), ranks_of(results, "torch-" + name)
    c = CASES[name]
    placement = {s: rank for rank, r in enumerate(ours) for (_, s) in r["replicas"]}
    assert theirs[0]["stage_to_rank"] in ({}, placement), "torch places the stages differently"
    for step in range(c["steps"]):
        for a, b in zip(merged_losses(ours, c["micro_batches"], c["steps"])[step],
                        merged_losses(theirs, c["micro_batches"], c["steps"])[step]):
            assert torch.equal(a, b), f"step {step} loss {a.item()!r} != torch's {b.item()!r}"
    for mine, torchs in zip(ours, theirs):
        for key, rep in mine["replicas"].items():
            for what in ("params", "grads"):
                for pname, value in rep[what].items():
                    assert torch.equal(value, torchs["replicas"][key][what][pname]), f"stage {key[1]} {what} {pname}"
