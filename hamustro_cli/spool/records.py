"""What the spool hands back to a flush, `status` and `doctor`: records of rows, sessions,
attribute sets and counts. Apart from spool/__init__.py so that `track`, which needs none of
them, does not build their classes at every start."""

from __future__ import annotations

from typing import NamedTuple

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
