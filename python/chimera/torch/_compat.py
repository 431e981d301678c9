"""The torch API chimera.torch relies on, checked once with a clear error."""
from __future__ import annotations

import importlib

# (module, attribute) pairs this package uses; a torch without one of them
# cannot run chimera.torch and gets a TorchVersionError naming what is missing.
REQUIRED = (
    ("torch.distributed", "batch_isend_irecv"),
    ("torch.distributed", "P2POp"),
    ("torch.distributed.pipelining", "PipelineStage"),
    ("torch.distributed.pipelining.schedules", "_Action"),
    ("torch.distributed.pipelining.schedules", "_ComputationType"),
    ("torch.distributed.pipelining.schedules", "_PipelineScheduleRuntime"),
    ("torch.distributed.pipelining.microbatch", "split_args_kwargs_into_chunks"),
    ("torch.distributed.pipelining._backward", "stage_backward_input"),
    ("torch.distributed.pipelining._backward", "stage_backward_weight"),
)
# _ComputationType members the lowered (compute_comms) path emits.
REQUIRED_ACTIONS = ("SEND_F", "RECV_F", "SEND_B", "RECV_B", "WAIT_SEND_F", "WAIT_SEND_B", "REDUCE_GRAD",
                    "WAIT_REDUCE_GRAD")
TESTED = "2.15"


class TorchVersionError(ImportError):
    """The installed torch lacks an API chimera.torch needs."""


def missing_api() -> list[str]:
    """The names of the required torch APIs this torch lacks (empty: all there)."""
    missing = []
    for module_name, attribute in REQUIRED:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            missing.append(module_name)
            continue
        if not hasattr(module, attribute):
            missing.append(f"{module_name}.{attribute}")
    if not missing:
        from torch.distributed.pipelining.schedules import _ComputationType
        missing += [f"_ComputationType.{name}" for name in REQUIRED_ACTIONS if not hasattr(_ComputationType, name)]
    return missing


def require_torch() -> None:
    """Raise TorchVersionError naming every missing API (and the torch version)."""
    try:
        import torch
    except ImportError as error:
        raise TorchVersionError(f"chimera.torch needs PyTorch (pip install torch); import torch failed: {error}") \
            from error
    missing = missing_api()
    if missing:
        raise TorchVersionError(
            f"chimera.torch needs torch.distributed.pipelining with the lowered-schedule runtime (tested with torch "
            f"{TESTED}); torch {torch.__version__} lacks: {', '.join(missing)}")
