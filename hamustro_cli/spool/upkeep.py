"""The spool's room and pages: integrity, giving freed pages back, a flush's settings when
its disk is short of room."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from hamustro_cli.errors import SpoolError
from hamustro_cli.migrations import VACUUM_MAX_BYTES, switch_auto_vacuum
from hamustro_cli.spool import TrackSpool

VACUUM_STEP = 256  # pages freed per incremental_vacuum transaction at the end of a flush


class Upkeep(TrackSpool):
    """Housekeeping of the database file."""

    def integrity_problems(self, limit: int = 5) -> list[str]:
        """SQLite's own check of every page (PRAGMA quick_check): [] when the file is sound."""
        try:
            rows = self.db.execute(f"PRAGMA quick_check({int(limit)})").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found

    def relaxed_sync(self) -> AbstractContextManager[None]:
        """`synchronous = NORMAL` on this connection for the block, then back to what it was.

        For a flush: a lost mark or ack costs at most a resend, never an event, so its own
        commits need not wait for the disk. `track`'s commits, which make an event durable,
        must: hence the restore, even when the block fails."""

        @contextmanager
        def relaxed() -> Iterator[None]:
            (before,) = self._read("PRAGMA synchronous")[0]
            self.db.execute("PRAGMA synchronous = NORMAL")
            try:
                yield
            finally:
                self.db.execute(f"PRAGMA synchronous = {int(before)}")

        return relaxed()

    def reclaim(self, step: int = VACUUM_STEP) -> int:
        """Give free pages back to the file system after a flush, `step` pages per transaction so
        that `track` never waits long; then checkpoint the WAL (and journal_size_limit cuts it
        back). A file without incremental auto_vacuum is switched (a VACUUM) once it is small.
        Returns the pages freed. Failures are ignored: this is housekeeping."""
        freed = 0
        try:
            if not switch_auto_vacuum(self.db, VACUUM_MAX_BYTES):
                return 0
            with self.relaxed_sync():  # a lost step loses nothing: no need to wait for the disk
                while True:
                    (free,) = self.db.execute("PRAGMA freelist_count").fetchone()
                    if not free:
                        break
                    # executescript, not execute: the pragma frees one page per step and returns
                    # no rows, and execute steps such a statement once (one page a transaction)
                    self.db.executescript(f"PRAGMA incremental_vacuum({min(step, free)});")
                    freed += min(step, free)
            self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except (sqlite3.Error, SpoolError):
            pass
        return freed

    def checkpoint_growth(self) -> int:
        """Bytes a checkpoint would add to the database file: pages committed to the WAL past the
        file's end (a transaction that filled the disk leaves them there: the checkpoint at its
        close found no room to copy them)."""
        try:
            (pages,) = self.db.execute("PRAGMA page_count").fetchone()
            (page_size,) = self.db.execute("PRAGMA page_size").fetchone()
            return max(0, int(pages) * int(page_size) - os.path.getsize(self.path))
        except (sqlite3.Error, OSError):
            return 0

    def saving_room(self, short: bool, hold: bool) -> AbstractContextManager[None]:
        """For a flush short of room on its disk, this connection's settings for the block, then
        back to what they were. `short`: `secure_delete = FAST`, so that deleting an event does
        not write its freed pages full of zeros to the WAL (Debian builds SQLite with
        secure_delete on: the ack of 2 MB of events wrote 2 MB of WAL); the freed pages are cut
        off the file by `reclaim`. `hold`: no automatic checkpoint, for a WAL holding pages
        past the database file's end (see checkpoint_growth): a checkpoint would grow the file
        into the room the acks need, while once the events are deleted and reclaimed it only
        shrinks it."""
        changes = {"secure_delete": "FAST"} if short else {}
        if hold:
            changes["wal_autocheckpoint"] = "0"

        @contextmanager
        def saving() -> Iterator[None]:
            before = {name: self._read(f"PRAGMA {name}")[0][0] for name in changes}
            for name, value in changes.items():
                self.db.execute(f"PRAGMA {name} = {value}")
            try:
                yield
            finally:
                for name, value in before.items():
                    self.db.execute(f"PRAGMA {name} = {int(value)}")

        return saving()

    def restart_wal(self) -> None:
        """Checkpoint the whole WAL (waiting for readers) so that the next transaction writes it
        again from its start, over room the file already holds: what a flush tries when the disk
        filled under it. Failures are ignored: the write that follows says what is wrong."""
        try:
            self.db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error:
            pass
