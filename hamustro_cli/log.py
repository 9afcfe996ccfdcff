"""How the library reports what it does: a `Log` callable taking a level and a message.

Levels are plain ints so that any `(int, str)` function serves: ERROR is shown even with -q,
WARNING unless -q, INFO with -v, DEBUG (requests and answers) with -vv."""

from __future__ import annotations

from collections.abc import Callable

ERROR, WARNING, INFO, DEBUG = -1, 0, 1, 2

Log = Callable[[int, str], None]


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
