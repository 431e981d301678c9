"""What chimera.torch reads from a chimera.Schedule, in one place."""
from __future__ import annotations

COMPUTE_KINDS = ("F", "B", "I", "W")


def is_lowered(schedule) -> bool:
    """True when the schedule already holds SEND/RECV/REDUCE_GRAD ops."""
    return bool(schedule.lowered)


def lowered(schedule, sync: str):
    """The library's lowering of a compute-only schedule (``sync``: end, eager, eager-opt)."""
    return schedule.lower(sync=sync)


class _ComputeView:
    """The compute ops of a lowered schedule, with the schedule's other fields."""

    def __init__(self, schedule) -> None:
        self._schedule = schedule
        self.lowered = False

    def __getattr__(self, name):
        return getattr(self._schedule, name)

    def ops(self, worker: int):
        return [o for o in self._schedule.ops(worker) if str(o.kind) in COMPUTE_KINDS]


def compute_only(schedule):
    """The schedule itself when compute only, else a view of its compute ops."""
    return _ComputeView(schedule) if is_lowered(schedule) else schedule


def check_single_group(schedule) -> None:
    """chimera.torch runs one data-parallel group (W = 1): one process per worker."""
    width = schedule.params.get("data_parallel", 1)
    if width != 1:
        raise ValueError(f"the {schedule.name} schedule has data_parallel={width}; chimera.torch runs W=1 (one "
                         "process per worker); generate it with data_parallel=1")


def stage_workers(schedule, pipeline: int) -> dict[int, int]:
    """stage -> worker of one pipeline."""
    return {stage: schedule.worker_of(pipeline, stage) for stage in range(schedule.stages)}


def replicas_of(schedule, worker: int) -> list[tuple[int, int]]:
    """The (pipeline, stage) replicas a worker holds, in (pipeline, stage) order."""
    return [(p, s) for p in range(schedule.pipelines) for s in range(schedule.stages)
            if schedule.worker_of(p, s) == worker]


def stage_ranks(schedule) -> dict[int, tuple[int, ...]]:
    """stage -> the sorted workers holding its replicas. A worker holding two
    replicas of one stage is refused (their gradients would need a local sum
    the lowered schedule does not describe)."""
    result = {}
    for stage in range(schedule.stages):
        holders = [schedule.worker_of(p, stage) for p in range(schedule.pipelines)]
        if len(set(holders)) != len(holders):
            raise ValueError(f"stage {stage} of {schedule.name} has two replicas on one worker (holders {holders}); "
                             "chimera.torch needs each replica of a stage on its own rank")
        result[stage] = tuple(sorted(holders))
    return result
