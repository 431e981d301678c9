"""chimera.torch in one process: the action orders it hands torch (golden
cases, and torch's own validator and simulator over a grid), and bad input
(each gets an error naming the rule and the value)."""
from __future__ import annotations

import os
import socket

import pytest

if os.environ.get("CI"):
    import chimera.torch  # noqa: F401  CI installs torch: a missing one fails here instead of skipping
torch = pytest.importorskip("torch")
ct = pytest.importorskip("chimera.torch")
import chimera  # noqa: E402
import torch.distributed as dist  # noqa: E402
from torch import nn  # noqa: E402
from torch.distributed.pipelining import schedules as S  # noqa: E402

CHAIN = ["gpipe", "1f1b", "interleaved", "looped-bfs", "zb-h1", "zb-h2", "zb-v", "dualpipev"]
# Grid points the library refuses (S1): interleaved needs N mod max(1, N // D) = 0,
# dualpipev N >= 2D.
UNAVAILABLE = {("interleaved", 2, 5), ("dualpipev", 2, 2), ("dualpipev", 4, 4)}


def test_golden_1f1b_actions():
    """chimera-sched lower --schedule 1f1b --stages 2 --micro-batches 2 (docs/lowering-and-simulation.md):
    P0: F0s0 [SEND_F0s0>1] F1s0 [SEND_F1s0>1 RECV_B0s0<1] B0s0 [RECV_B1s0<1] B1s0 [REDUCE_GRADs0]"""
    actions = ct.comm_actions(chimera.generate("1f1b", 2, 2).lower(sync="end"))
    assert [str(a) for a in actions[0]] == [
        "0F0", "0SEND_F0", "0WAIT_SEND_F0", "0F1", "0SEND_F1", "0RECV_B0", "0WAIT_SEND_F1", "0B0", "0RECV_B1", "0B1",
        "0REDUCE_GRAD", "0WAIT_REDUCE_GRAD"]
    assert [str(a) for a in actions[1]] == [
        "1RECV_F0", "1F0", "1B0", "1RECV_F1", "1SEND_B0", "1WAIT_SEND_B0", "1F1", "1B1", "1SEND_B1",
        "1REDUCE_GRAD", "1WAIT_REDUCE_GRAD", "1WAIT_SEND_B1"]
    assert [str(a) for a in ct.compute_actions(chimera.generate("1f1b", 2, 2))[1]] == ["1F0", "1B0", "1F1", "1B1"]


@pytest.mark.parametrize("name", CHAIN)
@pytest.mark.parametrize("workers,n", [(2, 2), (2, 5), (4, 4), (4, 8)])
def test_torch_validates_and_simulates_our_order(name, workers, n):
    """torch's schedule validator accepts our compute order and our lowered
    order, and its lock-step simulator runs the lowered order to the end (it
    has no model for REDUCE_GRAD, which is left out there)."""
    try:
        schedule = chimera.generate(name, workers, n)
    except chimera.ScheduleError:
        if (name, workers, n) not in UNAVAILABLE:
            raise  # only the listed sizes may be refused: a wider refusal would skip the grid silently
        pytest.skip(f"{name} does not exist for D={workers} N={n}")
    compute = ct.compute_actions(schedule)
    mapping = S._validate_schedule(compute, workers, schedule.stages, n)
    assert mapping == {s: schedule.worker_of(0, s) for s in range(schedule.stages)}
    lowered = ct.comm_actions(schedule.lower(sync="eager"))
    S._validate_schedule(lowered, workers, schedule.stages, n)
    p2p = {w: [a for a in acts if a.computation_type not in (S.REDUCE_GRAD, S.WAIT_REDUCE_GRAD)]
           for w, acts in lowered.items()}
    simulated = S._simulate_comms_compute(p2p, lambda s: mapping[s], schedule.stages)
    done = {w: [a for a in acts if a is not None] for w, acts in simulated.items()}
    assert {w: sorted(map(str, acts)) for w, acts in done.items()} == {w: sorted(map(str, acts))
                                                                       for w, acts in p2p.items()}


@pytest.fixture(scope="module")
def one_rank():
    """A one-process gloo group (127.0.0.1), enough to reach every check."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def stages(count):
    return [nn.Linear(4, 4) for _ in range(count)]


def test_world_size_must_match_worker_count(one_rank):
    with pytest.raises(ValueError, match="chimera schedule has 4 workers but the process group has 1 ranks"):
        ct.ScheduleChimera(stages(4), 4, nn.functional.mse_loss)


def test_stage_count_must_match_schedule(one_rank):
    with pytest.raises(ValueError, match="model is cut into 2 stages but the gpipe schedule has 1"):
        ct.PipelineScheduleReplicated(stages(2), chimera.generate("gpipe", 1, 2), nn.functional.mse_loss)


def test_data_parallel_is_refused(one_rank):
    with pytest.raises(ValueError, match="has data_parallel=2; chimera.torch runs W=1"):
        ct.PipelineScheduleReplicated(stages(1), chimera.generate("gpipe", 1, 2, data_parallel=2),
                                      nn.functional.mse_loss)


def test_stages_must_be_modules(one_rank):
    with pytest.raises(TypeError, match=r"stages\[0\] is a str"):
        ct.PipelineScheduleReplicated(["layer"], chimera.generate("gpipe", 1, 2), nn.functional.mse_loss)


def test_chain_refuses_replicated_and_mismatched(one_rank):
    from torch.distributed.pipelining import PipelineStage
    stage = PipelineStage(nn.Linear(4, 4), 0, 4, torch.device("cpu"))
    with pytest.raises(ValueError, match="2 pipelines; PipelineScheduleChain runs single-chain"):
        ct.PipelineScheduleChain([stage], chimera.generate("chimera", 4, 4), nn.functional.mse_loss)
    with pytest.raises(ValueError, match="1f1b schedule has 4 workers but the process group has 1 ranks"):
        ct.PipelineScheduleChain([stage], chimera.generate("1f1b", 4, 4), nn.functional.mse_loss)
    with pytest.raises(ValueError, match="lowering must be 'chimera' or 'torch'"):
        ct.PipelineScheduleChain([stage], chimera.generate("1f1b", 4, 4), nn.functional.mse_loss, lowering="x")


def test_invalid_schedule_names_its_rule(one_rank):
    with pytest.raises(chimera.ScheduleError) as error:
        ct.ScheduleChimera(stages(3), 4, nn.functional.mse_loss)
    assert error.value.rule == "S1" and "3" in str(error.value)


def test_step_needs_target_and_one_tensor_per_stage(one_rank):
    runner = ct.PipelineScheduleReplicated(stages(1), chimera.generate("gpipe", 1, 2), nn.functional.mse_loss)
    with pytest.raises(ValueError, match="step needs target="):
        runner.step(torch.zeros(2, 4))

    class Pair(nn.Module):
        def forward(self, x):
            return x, x

    runner = ct.PipelineScheduleReplicated([Pair()], chimera.generate("gpipe", 1, 2), nn.functional.mse_loss)
    with pytest.raises(TypeError, match="stage 0 returned tuple"):
        runner.step(torch.zeros(2, 4), target=torch.zeros(2, 4))


def test_one_worker_run_equals_plain_training(one_rank):
    """D = 1: the executor's gradient is the mean over micro-batches, bitwise."""
    torch.manual_seed(3)
    model = nn.Linear(4, 4)
    runner = ct.PipelineScheduleReplicated([model], chimera.generate("gpipe", 1, 4), nn.functional.mse_loss)
    x, y = torch.randn(8, 4), torch.randn(8, 4)
    losses = []
    runner.step(x, target=y, losses=losses)
    replica = runner.replicas[(0, 0)]
    for xm, ym in zip(x.tensor_split(4), y.tensor_split(4)):
        nn.functional.mse_loss(model(xm), ym).backward()
    assert torch.equal(replica.weight.grad, model.weight.grad / 4)
    assert len(losses) == 4 and all(loss is not None for loss in losses)
    by_name = ct.pipeline_schedule("1f1b", [model], 4, nn.functional.mse_loss)
    by_name.step(x, target=y)
    assert by_name.schedule.name == "1f1b"
    assert torch.equal(by_name.replicas[(0, 0)].weight.grad, replica.weight.grad)


def test_split_sequential():
    model = nn.Sequential(*[nn.Linear(2, 2) for _ in range(5)])
    parts = ct.split_sequential(model, 2)
    assert [len(p) for p in parts] == [3, 2] and parts[0][0] is model[0]
    assert [len(p) for p in ct.split_sequential(model, 2, sizes=[1, 4])] == [1, 4]
    with pytest.raises(ValueError, match="cannot cut a Sequential of 5 layers into 6 stages"):
        ct.split_sequential(model, 6)
    with pytest.raises(ValueError, match=r"sizes \[2, 2\] must be 2 positive layer counts summing to the model's 5"):
        ct.split_sequential(model, 2, sizes=[2, 2])
    with pytest.raises(TypeError, match="cuts a torch.nn.Sequential"):
        ct.split_sequential(nn.Linear(2, 2), 1)


def test_missing_torch_api_is_named(monkeypatch):
    monkeypatch.delattr(S, "_PipelineScheduleRuntime")
    with pytest.raises(ct.TorchVersionError, match=r"lacks: torch.distributed.pipelining.schedules."
                                                   r"_PipelineScheduleRuntime"):
        ct.require_torch()
    monkeypatch.undo()
    from chimera.torch import _compat
    monkeypatch.setattr(_compat, "REQUIRED_ACTIONS", _compat.REQUIRED_ACTIONS + ("SEND_NOTHING",))
    assert ct.missing_api() == ["_ComputationType.SEND_NOTHING"]

