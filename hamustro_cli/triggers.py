"""When to send: the protocol's triggers (queue size, retention), the backoff after failed
sends and the stop after an answer only a person can fix (answers.Kind.PERSON). Pure rules:
the caller passes the spool's sync state, the pending count and the clock."""

from __future__ import annotations

import time
from enum import IntEnum
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from hamustro_cli.spool import SyncState

BACKOFF_CAP = 3600  # seconds: the longest persisted backoff after failures
RETRY_AFTER_CAP = 24 * 3600  # seconds: the longest Retry-After honoured
HOLD_CAP = max(BACKOFF_CAP, RETRY_AFTER_CAP)  # the longest any stored time may hold sending


class Why(IntEnum):
    """Why a send is or is not due."""

    HALTED = 1
    NOTHING_PENDING = 2
    BACKING_OFF = 3
    QUEUE_SIZE = 4
    RETENTION = 5
    WAITING = 6  # below queue_size, last sync within queue_retention


class Due(NamedTuple):
    fires: bool  # send now
    why: Why
    reason: str  # the same, for people
    next_at: int | None  # when it fires next if nothing changes (None: not by itself)


def due(sync: SyncState, pending: int, queue_size: int, queue_retention: int, now: int) -> Due:
    """Do the triggers fire at `now`, and if not, when next? `pending` comes from the spool's
    counters (Spool.pending)."""
    if sync.halted:
        return Due(
            False, Why.HALTED, f"halted: {sync.halt_reason} (run 'hamustro flush' after fixing it)", None
        )
    if pending < 1:
        return Due(False, Why.NOTHING_PENDING, "nothing pending", None)
    last_sync, backoff_until = trusted_times(sync, now)
    retention_at = now if last_sync is None else last_sync + queue_retention * 60
    full = pending >= queue_size
    # before any sync, the retention counts from the spool's creation: said so, since `status`
    # prints "last sync: never" beside it
    since = "the last sync" if sync.last_sync_time else "the spool was created (no sync yet)"
    if backoff_until is not None:  # later than now
        next_at = backoff_until if full else max(backoff_until, retention_at)
        then = (
            ""
            if next_at == backoff_until
            else f"; then sending once queue_size ({queue_size}) is reached or "
            f"{queue_retention} min after {since}"
        )
        return Due(
            False, Why.BACKING_OFF, f"backing off after failures until {_clock(backoff_until)}{then}", next_at
        )
    if full:
        return Due(True, Why.QUEUE_SIZE, f"queue_size reached ({queue_size} or more pending)", now)
    if now >= retention_at:
        return Due(
            True, Why.RETENTION, f"queue_retention ({queue_retention} min) has passed since {since}", now
        )
    return Due(
        False,
        Why.WAITING,
        f"below queue_size ({queue_size}), and queue_retention ({queue_retention} min) "
        f"has not passed since {since}",
        retention_at,
    )


def trusted_times(sync: SyncState, now: int) -> tuple[int | None, int | None]:
    """(last sync, backoff until) as far as they can hold sending at `now`. The clock lies:
    times written while it ran ahead must not stop sending once it is set right.

    - A last sync (or, before any, the spool's creation) later than now was written under a
      clock ahead of this one: how long ago it really was is unknown, so the retention
      trigger counts it as due (it reads as None).
    - A backoff is void when the failure that set it is recorded later than now (the clock was
      ahead then), or when it ends more than HOLD_CAP from now (no backoff is ever that long):
      a backoff holds at most its cap from the current clock. (None: none holds.)"""
    last_sync: int | None = sync.last_sync_or_creation
    if last_sync is not None and last_sync > now:
        last_sync = None
    backoff_until = sync.backoff_until
    if backoff_until is not None and (
        backoff_until <= now
        or backoff_until - now > HOLD_CAP
        or (sync.failed_at is not None and sync.failed_at > now)
    ):
        backoff_until = None
    return last_sync, backoff_until


def backoff_until(failures: int, now: int, retry_after: float | None, jitter: float) -> int:
    """When to try again after `failures` failed flushes in a row: 1, 2, 4 ... minutes (times
    `jitter`, from 0.75 to 1), capped at an hour, and at least the collector's Retry-After."""
    wait = min(BACKOFF_CAP, 60 * 2 ** min(max(failures, 1) - 1, 6)) * jitter
    if retry_after:
        wait = max(wait, min(retry_after, RETRY_AFTER_CAP))
    return int(now + wait)


def _clock(epoch: int) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
    except (OverflowError, OSError, ValueError):  # a time no calendar holds
        return f"{epoch} (seconds since 1970)"
