"""Kinds of trouble, for code that must act on them (never on the text of a message).

Not on the track path: these classes are created only when something goes wrong."""

from __future__ import annotations

from enum import IntEnum


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
