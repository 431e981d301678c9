"""Pure-Python types of the chimera package: the exceptions the C++ binding
raises and the op kinds it returns (imported by _core at load time)."""
from __future__ import annotations

import enum


class ScheduleError(ValueError):
    """An invalid configuration or schedule.

    ``rule`` is the id of the rule it breaks ("S1" for parameters, "D4" for a
    deadlock, ...); ``message`` names the values that broke it.
    """

    def __init__(self, message: str, rule: str = "") -> None:
        super().__init__(message, rule)
        self.message = message
        self.rule = rule

    def __str__(self) -> str:
        return f"[{self.rule}] {self.message}" if self.rule else self.message


class FormatError(ScheduleError):
    """A file that cannot be read as a schedule; ``where`` is the JSON path or
    "line L, column C" of the first problem."""

    def __init__(self, message: str, rule: str = "", where: str = "") -> None:
        super().__init__(message, rule)
        self.where = where

    def __str__(self) -> str:
        return self.message  # the reader's message already reads "WHERE: [RULE] WHAT"


class OpKind(str, enum.Enum):
    """What an op does; the spellings of PyTorch's pipelining actions."""

    F = "F"
    B = "B"
    I = "I"  # noqa: E741 (the IR's name)
    W = "W"
    SEND_F = "SEND_F"
    RECV_F = "RECV_F"
    SEND_B = "SEND_B"
    RECV_B = "RECV_B"
    REDUCE_GRAD = "REDUCE_GRAD"

    def __str__(self) -> str:
        return self.value

    @property
    def is_compute(self) -> bool:
        return self in (OpKind.F, OpKind.B, OpKind.I, OpKind.W)

    @property
    def is_comm(self) -> bool:
        return not self.is_compute
