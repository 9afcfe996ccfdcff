"""The queue by hand (`hamustro events`): which events a command works on and what it does to
them. The SQL is in browsing.py and changes.py (`Spool.select`, `.event`, `.change`); this
module is its vocabulary, kept apart so that `track` never defines these classes."""

from __future__ import annotations

from enum import Enum
from typing import NamedTuple


class Shown(str, Enum):
    """What `events list` and `--state` call an event: its State, or SENDING for the PENDING
    rows in the batch a flush has marked."""

    PENDING = "pending"
    SENDING = "sending"
    REJECTED = "rejected"


class EventFilter(NamedTuple):
    """Which events a `hamustro events` command works on; every field narrows (None: any)."""

    ids: tuple[int, ...] | None = None
    state: Shown | None = None
    session: str | None = None  # the session id (32 hex)
    event: str | None = None  # a glob over the event name (GLOB: case-sensitive, * ? [...])
    since: int | None = None  # at >= since
    until: int | None = None  # at <= until
    limit: int | None = None
    destination: str | None = None  # a destination's fingerprint (see destination.py)


class Change(Enum):
    """What `Spool.change` does to the chosen events."""

    REQUEUE = "requeuing"  # rejected back to pending, without sending
    DROP = "dropping"  # deleted
