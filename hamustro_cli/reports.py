"""What one flush did, as the CLI prints it and the Python API returns it. Loaded only when a
flush runs (track's own result, TrackResult, is in tracker.py)."""

from __future__ import annotations

from collections.abc import Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from hamustro_cli.answers import Kind
from hamustro_cli.errors import ExitStatus
from hamustro_cli.session import Session

if TYPE_CHECKING:
    from hamustro_cli.spool.records import QueuedEvent


class Skip(IntEnum):
    """Why a flush attempted nothing (FlushReport.skip)."""

    NOT_DUE = 1
    LOCKED = 2  # another flush holds the lock


class FlushReport:
    """What one flush did; filled in as it goes."""

    def __init__(self, dry_run: bool = False):
        self.sent = 0
        self.failed = 0
        self.rejected = 0
        self.pending = 0  # this destination's events still queued
        self.elsewhere = 0  # other destinations' events (pending or rejected), left alone (destination.py)
        self.claimed = 0  # events from before destinations were recorded, now this one's
        self.batches: list[dict[str, Any]] = []
        self.skip: Skip | None = None  # set when nothing was attempted
        self.skipped: str | None = None  # why, for people
        self.error: str | None = None
        self.halted = False  # sending is stopped (an answer of Kind.PERSON): a person must act
        self.halted_reason: str | None = None  # why, for people (set with `halted`: halt())
        self.dry_run = dry_run
        self.would_reject = 0  # a dry run: stored rows the wire cannot carry, which a flush sets aside

    def skipped_because(self, skip: Skip, why: str) -> FlushReport:
        self.skip, self.skipped = skip, why
        return self

    def halt(self, reason: str | None) -> FlushReport:
        """Sending is stopped until a person acts; `reason` says why (the stored stop's text)."""
        self.halted, self.halted_reason = True, reason
        return self

    def add_batch(
        self,
        session: Session,
        batch: Sequence[QueuedEvent],
        size: int,
        status: int | None,
        attempts: int | None,
    ) -> None:
        """One batch and the collector's answer to it."""
        entry: dict[str, Any] = {
            "session": session.id,
            "events": len(batch),
            "bytes": size,
            "first_nr": batch[0].nr,
            "last_nr": batch[-1].nr,
            "status": status,
        }
        if attempts is not None:
            entry["attempts"] = attempts
        self.batches.append(entry)

    @property
    def ok(self) -> bool:
        """Everything this flush took up was delivered. (Events tracked while it finished may
        be pending: they are not undelivered, just new.)"""
        return self.failed == 0 and self.rejected == 0 and self.error is None

    @property
    def exit_status(self) -> ExitStatus:
        """`flush`'s exit code (and the background flush's), from the kinds of answer it met."""
        if self.dry_run:
            return ExitStatus.OK
        met = [ExitStatus.OK]
        if self.halted:
            met.append(Kind.PERSON.exit_status)
        if self.rejected:
            met.append(Kind.SPLIT.exit_status)
        if not self.ok and self.skip is None:
            met.append(Kind.TRY_LATER.exit_status)
        return max(met)

    def to_json(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"would_reject": self.would_reject} if self.dry_run else {}
        return {
            "sent": self.sent,
            "failed": self.failed,
            "rejected": self.rejected,
            "pending": self.pending,
            "left_for_other_destinations": self.elsewhere,
            "claimed": self.claimed,
            "batches": self.batches,
            "skipped": self.skipped,
            "error": self.error,
            "halted": self.halted,
            "dry_run": self.dry_run,
            **shown,
        }
