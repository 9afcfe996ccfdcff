"""The library's exceptions. Only cli.py maps them to exit codes."""

from __future__ import annotations

from enum import IntEnum


class HamustroError(Exception):
    """Base of everything the library raises on purpose."""


class ConfigError(HamustroError):
    """A config value is missing, unknown or malformed; the message names the key and its source."""


class InputError(HamustroError):
    """An event or option given on the command line or on stdin is invalid."""


class SpoolProblem(IntEnum):
    """What kind of trouble a SpoolError is: what to do about it depends on this, not on its text."""

    OTHER = 0
    NOT_A_DIRECTORY = 1
    NOT_A_FILE = 2
    NOT_WRITABLE = 3
    CANNOT_OPEN = 4
    NO_SPACE = 5
    CORRUPT = 6
    NEWER_SCHEMA = 7
    LOCKED = 8


class SpoolError(HamustroError):
    """The spool directory or database cannot be used. Nothing in it was changed."""

    def __init__(self, message: str, kind: SpoolProblem = SpoolProblem.OTHER):
        super().__init__(message)
        self.kind = kind


class FlushBusy(HamustroError):
    """A flush holds the lock, so changing the queue by hand now could touch what it sends."""
