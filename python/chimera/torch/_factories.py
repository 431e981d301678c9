"""Named schedules: generate with the library, run with the right runtime."""
from __future__ import annotations

from typing import Any, Callable, Sequence

import chimera
from torch import nn

from ._replicated import PipelineScheduleReplicated


class ScheduleChimera(PipelineScheduleReplicated):
    """Chimera (Li & Hoefler, SC'21) with ``pipelines`` = 2 or 2f
    bidirectional pipelines over ``len(stages)`` ranks; ``scaling``
    "direct"/"doubling"/"halving"; ``split_backward=True`` is zero-bubble
    Chimera. Other keywords as ``PipelineScheduleReplicated``."""

    def __init__(self, stages: Sequence[nn.Module], n_microbatches: int, loss_fn: Callable, *, pipelines: int = 2,
                 scaling: str = "direct", split_backward: bool = False, **kwargs: Any) -> None:
        schedule = chimera.generate("chimera", len(stages), n_microbatches, pipelines=pipelines, scaling=scaling,
                                    split_backward=split_backward)
        super().__init__(stages, schedule, loss_fn, **kwargs)


class ScheduleDualPipe(PipelineScheduleReplicated):
    """DualPipe (two pipelines in opposite directions, split backward)."""

    def __init__(self, stages: Sequence[nn.Module], n_microbatches: int, loss_fn: Callable, **kwargs: Any) -> None:
        super().__init__(stages, chimera.generate("dualpipe", len(stages), n_microbatches), loss_fn, **kwargs)


class ScheduleGems(PipelineScheduleReplicated):
    """GEMS (two mirrored pipelines, one micro-batch in flight per direction)."""

    def __init__(self, stages: Sequence[nn.Module], n_microbatches: int, loss_fn: Callable, **kwargs: Any) -> None:
        super().__init__(stages, chimera.generate("gems", len(stages), n_microbatches), loss_fn, **kwargs)


def pipeline_schedule(name: str, stages: Sequence[nn.Module], n_microbatches: int, loss_fn: Callable, *,
                      generate: dict | None = None, **kwargs: Any) -> PipelineScheduleReplicated:
    """Any schedule of the library by name on torch.distributed
    (``generate``: extra ``chimera.generate`` keywords, e.g. ``{"chunks": 2}``;
    ``stages``: the whole model, ``schedule.stages`` modules)."""
    options = dict(generate or {})
    workers = kwargs.pop("workers", None)
    if workers is None:
        import torch.distributed as dist
        workers = dist.get_world_size(kwargs.get("group"))
    schedule = chimera.generate(name, workers, n_microbatches, **options)
    return PipelineScheduleReplicated(stages, schedule, loss_fn, **kwargs)
