"""Pipeline-parallel training schedules (Chimera, GPipe, 1F1B, zero bubble,
DualPipe, ...) from the chimera C++ library.

    >>> import chimera
    >>> s = chimera.generate("chimera", stages=4, micro_batches=4)
    >>> s.workers, [str(o.kind) for o in s.ops(0)][:3]
    (4, ['F', 'F', 'F'])

Invalid configurations raise :class:`ScheduleError` whose ``rule`` names the
rule they break (``"S1"`` for parameters); wrong argument types raise
TypeError, unknown names ValueError.
"""
from __future__ import annotations

import operator
import os
from typing import Optional, Sequence, SupportsIndex

from ._base import FormatError, OpKind, ScheduleError
from ._core import (CheckReport, Diagnostic, Op, Schedule, Simulation, TuneCandidate, TuneResult, WorkerReport,
                    build, presets)
from . import _core

__version__: str = _core.__version__

__all__ = [
    "__version__", "CheckReport", "Diagnostic", "FormatError", "Op", "OpKind", "Schedule", "ScheduleError", "Simulation",
    "TuneCandidate", "TuneResult", "WorkerReport", "build", "generate", "presets", "read", "parse", "schedule_names", "tune",
]

# Public classes report themselves as chimera.X (tracebacks, repr, pickling).
for _public in (CheckReport, Diagnostic, FormatError, Op, OpKind, Schedule, ScheduleError, Simulation, TuneCandidate,
                TuneResult, WorkerReport):
    _public.__module__ = __name__
del _public

_INT32 = 2**31


def _integer(name: str, value: object) -> int:
    """An int argument; bools, floats and strings are refused."""
    if isinstance(value, bool) or not isinstance(value, SupportsIndex):
        raise TypeError(f"{name} must be an int (got {type(value).__name__} {value!r})")
    number = operator.index(value)
    if not -_INT32 <= number < _INT32:
        raise ValueError(f"{name} must fit in a 32-bit int (got {number})")
    return number


def _optional_integer(name: str, value: object) -> Optional[int]:
    return None if value is None else _integer(name, value)


def _string(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str (got {type(value).__name__} {value!r})")
    return value


def schedule_names() -> tuple[str, ...]:
    """Every schedule name generate() takes, as the C++ library lists them."""
    return tuple(_core.schedule_names())


def generate(schedule: str, stages: int, micro_batches: int, *, pipelines: Optional[int] = None,
             scaling: str = "direct", split_backward: bool = False, chunks: Optional[int] = None,
             group_size: Optional[int] = None, data_parallel: int = 1) -> Schedule:
    """Generate a compute-only schedule (the C++ ``chimera::generate``).

    ``schedule`` is one of :func:`schedule_names`; ``pipelines`` defaults to
    the schedule's own (2 for chimera, gems, dualpipe; 1 otherwise);
    ``chunks`` (model chunks per worker) applies to interleaved and looped-bfs;
    ``group_size`` to interleaved. Raises ScheduleError (rule "S1") for an
    invalid combination, naming the values.
    """
    if not isinstance(split_backward, bool):
        raise TypeError(f"split_backward must be a bool (got {type(split_backward).__name__} {split_backward!r})")
    return _core.generate(
        _string("schedule", schedule), _integer("stages", stages), _integer("micro_batches", micro_batches),
        _optional_integer("pipelines", pipelines), _string("scaling", scaling), split_backward,
        _optional_integer("chunks", chunks), _optional_integer("group_size", group_size),
        _integer("data_parallel", data_parallel))


_READABLE = ("json", "pytorch-csv")


def parse(data: str | bytes, format: str) -> Schedule:
    """Read a schedule from text: ``format`` is "json" (chimera.schedule/1) or
    "pytorch-csv". Raises FormatError naming the place and the rule."""
    if isinstance(data, str):
        data = data.encode()
    if not isinstance(data, (bytes, bytearray)):
        raise TypeError(f"data must be str or bytes (got {type(data).__name__})")
    if format not in _READABLE:
        raise ValueError(f"unknown format {format!r} (readable: {', '.join(_READABLE)})")
    return _core.parse(bytes(data), format)


def read(path: str | os.PathLike[str], *, format: Optional[str] = None) -> Schedule:
    """Read a schedule file, strictly (as ``chimera-sched check`` does).

    The format comes from ``format``, else the extension (.json, .csv), else
    the content (a JSON document starts with '{'). Raises FormatError
    ("PATH: WHERE: [RULE] WHAT") for a file that is not a valid schedule.
    """
    with open(path, "rb") as file:
        data = file.read()
    if format is None:
        lower = os.fspath(path).lower()
        if lower.endswith(".json"):
            format = "json"
        elif lower.endswith(".csv"):
            format = "pytorch-csv"
        else:
            format = "json" if data.lstrip()[:1] == b"{" else "pytorch-csv"
    try:
        return parse(data, format)
    except FormatError as error:
        raise FormatError(f"{os.fspath(path)}: {error.message}", error.rule, error.where) from None


def tune(preset: str, devices: int, global_batch: int, *, memory_gib: Optional[float] = None,
         max_micro_batch: int = 64, schedules: Optional[Sequence[str]] = None, depths: Optional[Sequence[int]] = None,
         max_pipelines: Optional[int] = None, sync: str = "eager") -> TuneResult:
    """Rank the configurations of a preset model (:func:`presets`) on
    ``devices`` devices by simulated throughput, as ``chimera-sched tune``:
    ``TuneResult.ranked`` holds those that fit in memory, best first."""
    if memory_gib is not None and (isinstance(memory_gib, bool) or not isinstance(memory_gib, (int, float))):
        raise TypeError(f"memory_gib must be a number (got {type(memory_gib).__name__} {memory_gib!r})")
    for name, values in (("schedules", schedules), ("depths", depths)):
        if isinstance(values, (str, bytes)):
            raise TypeError(f"{name} must be a list (got {type(values).__name__} {values!r})")
    return _core.tune(
        _string("preset", preset), _integer("devices", devices), _integer("global_batch", global_batch),
        memory_gib=memory_gib, max_micro_batch=_integer("max_micro_batch", max_micro_batch),
        schedules=None if schedules is None else [_string("schedules[]", name) for name in schedules],
        depths=None if depths is None else [_integer("depths[]", depth) for depth in depths],
        max_pipelines=_optional_integer("max_pipelines", max_pipelines),
        sync=_string("sync", sync))
