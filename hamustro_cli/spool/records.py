"""What the spool hands back to a flush, `status` and `doctor`: records of rows, sessions,
attribute sets and counts. Apart from spool/__init__.py so that `track`, which needs none of
them, does not build their classes at every start."""

from __future__ import annotations

from typing import Any, NamedTuple, TypedDict

from hamustro_cli.session import Session


class QueuedEvent(NamedTuple):
    id: int
    nr: int
    at: int
    event: str
    user_id: int | None
    ip: str | None
    parameters: str | None
    is_testing: bool


class ListedEvent(NamedTuple):
    """An event as `events` and `status --events` read it (Spool.select, browsing.py): what a flush
    would send, and where it stands. Each field after `queued` is the `events` column of its
    name, but for those browsing._LISTED_FROM takes from a join."""

    queued: QueuedEvent
    session: str
    state: int
    reason: str | None
    attr_id: int
    destination: str | None


class Held(NamedTuple):
    """The events one destination holds (Spool.by_destination), from the counters."""

    live: int  # pending or being sent
    rejected: int


class SessionRow(NamedTuple):
    id: int
    attributes: Session  # the session's id attributes; system and product_git_hash are None
    last_nr: int


class AttrRow(NamedTuple):
    """One attribute set events were tracked under: what their Collection is sent with."""

    id: int
    session_row: int
    attributes: Session


class Mismatch(NamedTuple):
    """A counter that disagrees with the rows (see `Spool.check_counts`)."""

    attr_id: int
    state: int
    counted: int  # in the rows
    kept: int  # in `counts`


class Counts(NamedTuple):
    """Events of one session (or all of them) by what is happening to them."""

    pending: int = 0
    sending: int = 0  # in the batch a flush marked (still PENDING in the table)
    rejected: int = 0
    oldest_live: int | None = None  # id of the oldest pending or sending event
    oldest: int | None = None  # id of the oldest event in any state

    @property
    def live(self) -> int:
        """Not yet delivered and not set aside: what a flush will send."""
        return self.pending + self.sending


def total(counts: dict[int, Counts]) -> Counts:
    lives = [c.oldest_live for c in counts.values() if c.oldest_live is not None]
    alls = [c.oldest for c in counts.values() if c.oldest is not None]
    return Counts(
        sum(c.pending for c in counts.values()),
        sum(c.sending for c in counts.values()),
        sum(c.rejected for c in counts.values()),
        min(lives) if lives else None,
        min(alls) if alls else None,
    )


class BatchSize(NamedTuple):
    """How many events a flush sends in one request while a collector is slow or has a body
    limit (see sending.BatchSizer), and its successes in a row at that size."""

    size: int
    streak: int


# What ClientTracker.status() and session_status() return: dicts (JSON as they are, for
# `status --json` and `session --json`) whose keys and value types mypy knows.


class SessionCounts(TypedDict):
    """One session in `status()["sessions"]`, oldest queued event first."""

    session: str
    pending: int
    sending: int
    rejected: int
    last_nr: int
    oldest_at: int | None
    product_version: str
    system_version: str
    current: bool  # the session of this tracker's settings


class DestinationCounts(TypedDict):
    """One destination in `status()["destinations"]` (None: events from before destinations)."""

    destination: str | None
    pending: int
    rejected: int
    current: bool


class _StatusEvents(TypedDict, total=False):
    events: list[dict[str, Any]]  # only with status(events=True)


class Status(_StatusEvents):
    """What `ClientTracker.status()` returns: the queue, and why it is or is not being sent."""

    disabled: bool  # HAMUSTRO_DISABLED: track, exec and flush do nothing
    spool_dir: str
    pending: int
    sending: int
    rejected: int
    sessions: list[SessionCounts]
    last_sync_time: int | None
    created_at: int
    last_error: dict[str, Any] | None
    due: bool
    due_reason: str
    next_due_at: int | None
    backoff_until: int | None
    halted: str | None  # why sending stopped until a person acts
    no_room: str | None
    batch_size: int | None
    max_batch_events: int
    flush_running: bool
    queue_size: int
    queue_retention: int
    destination: str | None  # this config's fingerprint; None when the settings lack one
    destinations: list[DestinationCounts]
    other_destinations: dict[str, int] | None  # events a flush with this config leaves alone


class SessionStatus(TypedDict):
    """What `ClientTracker.session_status()` returns: the current session's attributes under
    their protocol names, its last nr and how many of its events wait."""

    session: str
    device_id: str
    client_id: str
    system_version: str
    product_version: str
    system: str | None
    product_git_hash: str | None
    last_nr: int
    pending: int
