"""`status --check`'s thresholds: how old the oldest pending event may be (`--max-age`) and how
many events may wait (`--max-pending`). Click-free: the rule and its DURATION syntax live here."""

from __future__ import annotations

import re
from typing import NamedTuple

from hamustro_cli.errors import InputError

UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = 100 * 365 * 86400  # a century: beyond it no clock or event is
_DURATION = re.compile(r"([0-9]+)([smhd]?)", re.ASCII)


def parse_duration(text: str, where: str = "--max-age") -> int:
    """Seconds, from bare seconds or a number with one unit: 90s, 15m, 2h, 1d (cli.md)."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise InputError(
            f"{where}: expected seconds or a number with a unit (90s, 15m, 2h, 1d), got {text!r}"
        )
    seconds = int(found[1]) * UNITS[found[2]]
    if seconds > MAX_DURATION:
        raise InputError(f"{where}: {text} is more than a century")
    return seconds


class Breach(NamedTuple):
    """A threshold `status --check` found passed: which (the option's name), its limit, what
    was found, and the words for people."""

    threshold: str  # "max_age" or "max_pending"
    limit: int
    value: int
    message: str


def breaches(
    oldest_at: int | None, waiting: int, now: int, max_age: int | None, max_pending: int | None
) -> list[Breach]:
    """The thresholds passed: the oldest event still to be sent (by its `at`) older than
    `max_age` seconds, or more than `max_pending` events waiting (pending or being sent)."""
    found = []
    if max_age is not None and oldest_at is not None and now - oldest_at > max_age:
        found.append(
            Breach(
                "max_age",
                max_age,
                now - oldest_at,
                f"the oldest pending event is {now - oldest_at} s old (at {oldest_at}), "
                f"more than --max-age ({max_age} s)",
            )
        )
    if max_pending is not None and waiting > max_pending:
        found.append(
            Breach(
                "max_pending",
                max_pending,
                waiting,
                f"{waiting} {'event waits' if waiting == 1 else 'events wait'} to be sent, "
                f"more than --max-pending ({max_pending})",
            )
        )
    return found
