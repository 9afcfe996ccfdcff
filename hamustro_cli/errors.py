"""The library's exceptions and the contract's exit codes. The CLI maps exceptions to codes
(cliparts.EXIT_FOR); a flush's code comes from the kind of the collector's answer (answers.py)."""

from __future__ import annotations

import enum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hamustro_cli.problems import SpoolProblem


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
            from hamustro_cli.problems import SpoolProblem

            kind = SpoolProblem.OTHER
        self.kind: SpoolProblem = kind
        self.fix = fix  # the command that fixes it, when there is one


class FlushBusy(HamustroError):
    """A flush holds the lock, so changing the queue by hand now could touch what it sends."""


class DependencyError(HamustroError):
    """An installed library hamustro needs (protobuf) is missing, too old or broken."""
