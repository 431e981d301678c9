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
from typing import Optional

from ._base import FormatError, OpKind, ScheduleError
from ._core import (CheckReport, Diagnostic, Op, Schedule, Simulation, TuneCandidate, TuneResult, WorkerReport,
                    presets, tune)
from . import _core

__all__ = [
    "CheckReport", "Diagnostic", "FormatError", "Op", "OpKind", "Schedule", "ScheduleError", "Simulation",
    "TuneCandidate", "TuneResult", "WorkerReport", "generate", "presets", "read", "parse", "schedule_names", "tune",
]

_INT32 = 2**31


def _integer(name: str, value: object, default: Optional[int] = None) -> int:
    """An int argument (None allowed where there is a default); bools and floats are refused."""
    if value is None and default is not None:
        return default
    if isinstance(value, bool) or not hasattr(type(value), "__index__"):
        raise TypeError(f"{name} must be an int (got {type(value).__name__} {value!r})")
    number = operator.index(value)
    if not -_INT32 <= number < _INT32:
        raise ValueError(f"{name} must fit in a 32-bit int (got {number})")
    return number


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
        _integer("pipelines", pipelines, 0), _string("scaling", scaling), split_backward,
        _integer("chunks", chunks, 2), _integer("group_size", group_size, 0),
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
