"""The spool's bounds: how many events it keeps (`spool_max_events`), how much of its file they
take (`spool_max_mb`), how much room it leaves its file system (`spool_keep_free_mb`), and what
`track` does when one is reached (`when_full`). The rule is here; `Spool.enqueue` applies it in
its transaction from figures it has at no cost (the counters, the file's header, one statvfs),
and counts every event it drops by `Reason` in that transaction.

On `track`'s path: plain NamedTuples and one Enum, nothing else imported."""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, NamedTuple

from hamustro_cli.errors import HamustroError, SpoolError
from hamustro_cli.log import count as counted

MIB = 1024 * 1024
CAP_KEYS = ("spool_max_events", "spool_max_mb", "spool_keep_free_mb", "when_full")


class Reason(Enum):
    """Why events left the spool without being delivered (`dropped_by_reason`'s keys)."""

    SPOOL_MAX_EVENTS = "spool_max_events"  # the events cap, under when_full drop_*
    SPOOL_MAX_MB = "spool_max_mb"  # the size cap, under when_full drop_*
    KEEP_FREE = "keep_free"  # the file system's keep-free floor, under when_full drop_*
    EVENTS_DROP = "events_drop"  # a person ran `hamustro events drop`


class Caps(NamedTuple):
    """The bounds in force (0: none), and where each key's value came from (for messages)."""

    max_events: int = 0
    max_bytes: int = 0
    keep_free: int = 0
    when_full: str = "refuse"
    sources: tuple[tuple[str, str], ...] = ()  # (key, source) for CAP_KEYS

    def source(self, key: str) -> str:
        return dict(self.sources).get(key, "default")


class Full(NamedTuple):
    """A bound that queuing `count` more events would pass: which, and how many events the
    oldest-first policy drops to make room (for the size bounds: as many as are queued)."""

    reason: Reason
    excess: int
    held: str  # what the spool or its file system holds, for people: "it holds 5 events"


def from_values(values: Mapping[str, Any], sources: Mapping[str, str]) -> Caps:
    """The bounds a config sets (config.Config's values and sources)."""
    return Caps(
        max_events=int(values["spool_max_events"]),
        max_bytes=int(values["spool_max_mb"]) * MIB,
        keep_free=int(values["spool_keep_free_mb"]) * MIB,
        when_full=str(values["when_full"]),
        sources=tuple((key, sources.get(key, "default")) for key in CAP_KEYS),
    )


def full(caps: Caps, count: int, held: int, used: int, free: int) -> Full | None:
    """The first bound that `count` more events would pass, given the events the spool holds
    (`held`), the bytes its pages in use take (`used`) and the bytes free on its file system
    (`free`); None when they fit. A figure the caller did not read (its bound is off) is never
    looked at."""
    if caps.max_events and held + count > caps.max_events:
        return Full(Reason.SPOOL_MAX_EVENTS, held + count - caps.max_events, f"it holds {held} events")
    if caps.max_bytes and used >= caps.max_bytes:
        return Full(Reason.SPOOL_MAX_MB, count, f"its events take {used / MIB:.1f} MiB")
    if caps.keep_free and free < caps.keep_free:
        return Full(Reason.KEEP_FREE, count, f"its file system has {free / MIB:.1f} MiB free")
    return None


_LIMIT_KEY = {
    Reason.SPOOL_MAX_EVENTS: "spool_max_events",
    Reason.SPOOL_MAX_MB: "spool_max_mb",
    Reason.KEEP_FREE: "spool_keep_free_mb",
}


def _bound(caps: Caps, why: Full) -> str:
    key = _LIMIT_KEY[why.reason]
    limit = {
        Reason.SPOOL_MAX_EVENTS: f"{caps.max_events}",
        Reason.SPOOL_MAX_MB: f"{caps.max_bytes // MIB}",
        Reason.KEEP_FREE: f"{caps.keep_free // MIB}",
    }[why.reason]
    return f"{key} = {limit} (from {caps.source(key)})"


class SpoolFull(SpoolError):
    """`when_full = "refuse"` (or nothing left to drop): a bound is reached; nothing was queued."""

    def __init__(self, caps: Caps, why: Full, count: int, advice: str = ""):
        self.reason = why.reason
        text = (
            f"the spool is full: {why.held}, at its bound {_bound(caps, why)}; "
            f"{counted(count, 'event')} not queued "
            f"(when_full = {caps.when_full!r}, from {caps.source('when_full')})"
        )
        fix = (
            "send the queue (hamustro flush), raise the bound, or set when_full to drop_oldest or drop_newest"
        )
        super().__init__(f"{text}; {advice or fix}")


class EventsDropped(HamustroError):
    """`when_full = "drop_newest"`: a bound is reached and the events given were dropped (and
    counted). Not a failure of `track` (exit 0): what the config asked for."""

    def __init__(self, caps: Caps, why: Full, count: int):
        self.caps, self.why, self.count = caps, why, count
        super().__init__(
            f"the spool is full ({why.held}, at its bound {_bound(caps, why)}): "
            f"{counted(count, 'new event')} dropped and counted "
            f"(when_full = 'drop_newest', from {caps.source('when_full')})"
        )


def dropped_text(dropped: Mapping[str, int]) -> str:
    """Events dropped undelivered, for people: '5 events dropped undelivered (spool_max_events: 5)'."""
    by_reason = ", ".join(f"{reason}: {n}" for reason, n in dropped.items())
    return f"{counted(sum(dropped.values()), 'event')} dropped undelivered ({by_reason})"
