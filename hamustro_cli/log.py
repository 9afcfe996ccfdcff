"""How the library reports what it does: a `Log` callable taking a level and a message.

Levels are plain ints so that any `(int, str)` function serves: ERROR is shown even with -q,
WARNING unless -q, INFO with -v, DEBUG (requests and answers) with -vv."""

from __future__ import annotations

from collections.abc import Callable

ERROR, WARNING, INFO, DEBUG = -1, 0, 1, 2

Log = Callable[[int, str], None]

# How every command labels what it prints on stderr (`hamustro: error: ...`, as well-made Unix
# tools do): messages carry no label of their own, the level gives it (one home: line()).
PROGRAM = "hamustro"
LABELS = {ERROR: "error: ", WARNING: "warning: "}


def line(level: int, message: str) -> str:
    """One stderr line as every command prints it: the program, the level's label, the message."""
    return f"{PROGRAM}: {LABELS.get(level, '')}{message}"


def no_log(level: int, message: str) -> None:
    pass


def to_logging(level: int, message: str) -> None:
    """The Python API's default: the standard `logging.getLogger("hamustro")`, as Segment's and
    PostHog's clients do. logging is imported on the first message, not by `track`."""
    import logging

    logging.getLogger("hamustro").log(
        {ERROR: logging.ERROR, WARNING: logging.WARNING, INFO: logging.INFO}.get(level, logging.DEBUG),
        message,
    )


def count(n: int, noun: str, plural: str = "") -> str:
    """A number with its noun as a person writes it: "1 event", "2 events", "1 batch"."""
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


NOTHING = "-"  # how a value that is not there (None, an empty text) is printed, everywhere


def shown(value: object) -> str:
    """A stored value for people: never Python's None/True/False."""
    if value is None or value == "":
        return NOTHING
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)
