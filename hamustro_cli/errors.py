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
    UNSAFE = 9  # another user owns or can write the spool, or a link sits at a spool file name
    NOT_OURS = 10  # a database, but not a hamustro spool (or a schema version no hamustro wrote)


class SpoolError(HamustroError):
    """The spool directory or database cannot be used. Nothing in it was changed."""

    def __init__(self, message: str, kind: SpoolProblem = SpoolProblem.OTHER, fix: str | None = None):
        super().__init__(message)
        self.kind = kind
        self.fix = fix  # the command that fixes it, when there is one
