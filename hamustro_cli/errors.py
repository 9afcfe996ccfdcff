"""The library's exceptions and the contract's exit codes, click-free: `exit_status` gives the
code of an exception or of a report (a flush's code comes from the kinds of the collector's
answers: answers.py), for every command and for the background flush."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from hamustro_cli.spool.problems import SpoolProblem


class ExitStatus(enum.IntEnum):
    """The contract's exit codes (README: Exit codes). 1 means "try later", 4 "a person must act"."""

    OK = 0
    UNDELIVERED = 1  # try later: not delivered (still queued): unreachable, 5xx, timeout; a flush runs
    USAGE = 2  # usage, configuration or input error: nothing was queued or sent
    SPOOL = 3  # the spool cannot be used: nothing was lost
    ATTENTION = 4  # a person must act: an answer only a person can fix (sending halted), events rejected


class HamustroError(Exception):
    """Base of everything the library raises on purpose."""


class ConfigError(HamustroError):
    """A config value is missing, unknown or malformed; the message names the key and its source."""


class InputError(HamustroError):
    """An event or option given on the command line or on stdin is invalid."""


class SpoolError(HamustroError):
    """The spool directory or database cannot be used. Nothing in it was changed."""

    def __init__(self, message: str, kind: SpoolProblem | None = None, fix: str | None = None):
        super().__init__(message)
        if kind is None:
            from hamustro_cli.spool.problems import SpoolProblem

            kind = SpoolProblem.OTHER
        self.kind: SpoolProblem = kind
        self.fix = fix  # the command that fixes it, when there is one


class FlushBusy(HamustroError):
    """A flush holds the lock, so changing the queue by hand now could touch what it sends."""


class DependencyError(HamustroError):
    """An installed library hamustro needs (protobuf) is missing, too old or broken."""


class Reported(Protocol):
    """What a command did, as far as its exit code goes (reports.FlushReport)."""

    @property
    def exit_status(self) -> ExitStatus: ...


EXIT_FOR: tuple[tuple[type[HamustroError], ExitStatus], ...] = (
    (FlushBusy, ExitStatus.UNDELIVERED),
    (ConfigError, ExitStatus.USAGE),
    (InputError, ExitStatus.USAGE),
    (SpoolError, ExitStatus.SPOOL),
)


def exit_status(outcome: BaseException | Reported) -> ExitStatus:
    """The exit code of how a command ended: a library error by its class (another library
    error: USAGE), local trouble (no memory, no descriptors, a full disk: limits.short_of) as
    SPOOL, a report by what it met."""
    if not isinstance(outcome, BaseException):
        return outcome.exit_status
    if isinstance(outcome, HamustroError):
        return next((code for kind, code in EXIT_FOR if isinstance(outcome, kind)), ExitStatus.USAGE)
    return ExitStatus.SPOOL
