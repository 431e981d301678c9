"""Single-chain schedules of the library run by torch's own pipelining runtime.

The schedule is generated in process and handed to
``_PipelineScheduleRuntime`` as its ``_Action`` order: either compute only
(torch lowers it) or, by default, the library's lowered order (its SEND/RECV
groups and REDUCE_GRAD points) in torch's compute_comms form.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from torch.distributed.pipelining.schedules import _Action, _ComputationType, _PipelineScheduleRuntime

from ._plan import check_single_group, compute_only, is_lowered, lowered, stage_workers

_COMPUTE = {"F": _ComputationType.FORWARD, "B": _ComputationType.FULL_BACKWARD,
            "I": _ComputationType.BACKWARD_INPUT, "W": _ComputationType.BACKWARD_WEIGHT}
_P2P = {"SEND_F": _ComputationType.SEND_F, "RECV_F": _ComputationType.RECV_F,
        "SEND_B": _ComputationType.SEND_B, "RECV_B": _ComputationType.RECV_B}
_WAIT = {"SEND_F": _ComputationType.WAIT_SEND_F, "SEND_B": _ComputationType.WAIT_SEND_B}


def compute_actions(schedule) -> dict[int, list[_Action]]:
    """Per worker, the compute ops of ``schedule`` as torch ``_Action``s."""
    return {w: [_Action(o.stage, _COMPUTE[str(o.kind)], o.micro_batch)
                for o in schedule.ops(w) if str(o.kind) in _COMPUTE]
            for w in range(schedule.workers)}


def _group_actions(group) -> list[_Action]:
    """One comm group in torch's compute_comms form: the sends and receives in
    list order, each REDUCE_GRAD followed by its wait (torch allows one pending
    reduction per rank), then one wait per send (a group completes as a whole,
    the rendezvous semantics the library's lowering is deadlock-free under)."""
    out, waits = [], []
    for o in group:
        kind = str(o.kind)
        if kind == "REDUCE_GRAD":
            out += [_Action(o.stage, _ComputationType.REDUCE_GRAD, None),
                    _Action(o.stage, _ComputationType.WAIT_REDUCE_GRAD, None)]
            continue
        out.append(_Action(o.stage, _P2P[kind], o.micro_batch))
        if kind in _WAIT:
            waits.append(_Action(o.stage, _WAIT[kind], o.micro_batch))
    return out + waits


def comm_actions(schedule) -> dict[int, list[_Action]]:
    """Per worker, a lowered schedule in torch's compute_comms form."""
    result = {}
    for w in range(schedule.workers):
        ops, actions, i = schedule.ops(w), [], 0
        while i < len(ops):
            if str(ops[i].kind) in _COMPUTE:
                actions.append(_Action(ops[i].stage, _COMPUTE[str(ops[i].kind)], ops[i].micro_batch))
                i += 1
                continue
            end = i
            while end < len(ops) and str(ops[end].kind) not in _COMPUTE:
                end += 1
            actions += _group_actions(ops[i:end])
            i = end
        result[w] = actions
    return result


class PipelineScheduleChain(_PipelineScheduleRuntime):
    """A single-chain schedule of the library (gpipe, 1f1b, interleaved,
    looped-bfs, zb-h1/h2/v, dualpipev) on torch's pipelining runtime.

    ``stages``: this rank's ``PipelineStage`` objects (the stages the
    schedule places on this rank). ``schedule``: a ``chimera.Schedule`` with
    one pipeline, compute only or lowered. ``lowering="chimera"`` (default)
    runs the library's lowered order (``sync`` picks its REDUCE_GRAD points
    when the schedule is compute only); ``"torch"`` hands torch the compute
    order and lets it add the communication. Other keyword arguments go to
    ``_PipelineScheduleRuntime`` (``scale_grads``, chunk specs, ...).
    """

    def __init__(self, stages: Sequence[Any], schedule, loss_fn: Callable | None = None, *,
                 lowering: str = "chimera", sync: str = "end", **kwargs: Any) -> None:
        if lowering not in ("chimera", "torch"):
            raise ValueError(f"lowering must be 'chimera' or 'torch' (got {lowering!r})")
        if schedule.pipelines != 1:
            raise ValueError(f"{schedule.name} has {schedule.pipelines} pipelines; PipelineScheduleChain runs "
                             "single-chain schedules; use chimera.torch.ScheduleChimera for replicated ones")
        stages = list(stages)
        if not stages:
            raise ValueError("stages must hold this rank's PipelineStage objects (got none)")
        _check_stages(stages, schedule)
        super().__init__(stages, schedule.micro_batches, loss_fn, **kwargs)
        base = compute_only(schedule)
        self.chimera_schedule = base
        self.pipeline_order = compute_actions(base)
        if lowering == "torch":
            self._prepare_schedule_with_comms(self.pipeline_order)
        else:
            plan = schedule if is_lowered(schedule) else lowered(schedule, sync)
            self._prepare_schedule_with_comms(comm_actions(plan), format="compute_comms")


def _check_stages(stages: Sequence[Any], schedule) -> None:
    """The stage count, world size and this rank's stage indices must be the
    schedule's; a mismatch names both sides."""
    check_single_group(schedule)
    first = stages[0]
    if first.num_stages != schedule.stages:
        raise ValueError(f"the model is cut into {first.num_stages} stages but the {schedule.name} schedule has "
                         f"{schedule.stages}")
    if first.group_size != schedule.workers:
        raise ValueError(f"the {schedule.name} schedule has {schedule.workers} workers but the process group has "
                         f"{first.group_size} ranks (world size must equal the worker count)")
    rank = first.group_rank
    wanted = sorted(s for s, w in stage_workers(schedule, 0).items() if w == rank)
    have = sorted(stage.stage_index for stage in stages)
    if have != wanted:
        raise ValueError(f"rank {rank} holds stages {have} but the {schedule.name} schedule places stages {wanted} "
                         "on it")
