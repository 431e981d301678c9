"""chimera schedules on torch.distributed.pipelining.

    import chimera, chimera.torch
    stages = chimera.torch.split_sequential(model, 4)            # the whole model, on every rank
    schedule = chimera.torch.ScheduleChimera(stages, n_microbatches=8, loss_fn=loss_fn)
    optimizer = torch.optim.SGD(schedule.parameters(), lr=0.1)
    schedule.step(inputs, target=labels)                         # every rank, the whole batch
    optimizer.step()

* ``PipelineScheduleChain``: single-chain schedules (gpipe, 1f1b,
  interleaved, looped-bfs, zb-h1/h2/v, dualpipev) run by torch's own
  ``_PipelineScheduleRuntime`` from the library's order.
* ``PipelineScheduleReplicated`` (``ScheduleChimera``, ``ScheduleDualPipe``,
  ``ScheduleGems``): every schedule, replicated ones included, on
  torch.distributed point-to-point and all-reduce.

Raises TorchVersionError on import when torch lacks an API it needs.
"""
from __future__ import annotations

from ._compat import TorchVersionError, missing_api, require_torch

require_torch()

from ._replicated import PipelineScheduleReplicated  # noqa: E402
from ._single import PipelineScheduleChain, comm_actions, compute_actions  # noqa: E402
from ._split import split_sequential  # noqa: E402
from ._factories import ScheduleChimera, ScheduleDualPipe, ScheduleGems, pipeline_schedule  # noqa: E402

__all__ = [
    "PipelineScheduleChain", "PipelineScheduleReplicated", "ScheduleChimera", "ScheduleDualPipe", "ScheduleGems",
    "TorchVersionError", "comm_actions", "compute_actions", "missing_api", "pipeline_schedule", "require_torch",
    "split_sequential",
]
