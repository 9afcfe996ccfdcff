"""The library's exceptions. Only cli.py maps them to exit codes."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hamustro_cli.problems import SpoolProblem


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
