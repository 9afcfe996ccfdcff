"""One flush's batches: which attribute sets hold pending events, the next batch, its mark,
and what the collector's answer does to it."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from functools import partial
from typing import Any

from hamustro_cli.spool import (
    _PENDING,
    _REJECTED,
    _SCOPED_KEYS,
    _count,
    _scoped,
    _write_metas,
    raise_id_floor,
)
from hamustro_cli.spool.records import QueuedEvent
from hamustro_cli.spool.syncstate import _scoped_all
from hamustro_cli.spool.text import TextReads


class Claiming(TextReads):
    """What a flush does to the queue."""

    def claim_unrecorded(self, destination: str) -> int:
        """Give the attribute sets tracked before destinations were recorded (an upgraded
        spool) to `destination`: the first flush after the upgrade sends them, as it always did.
        Returns how many pending events they held."""
        if not self._read("SELECT 1 FROM attributes WHERE destination IS NULL LIMIT 1"):
            return 0  # the usual case: no write transaction
        with self.transaction("recording the destination of older events") as db:
            for key in _SCOPED_KEYS:  # and where sending stood: the state of their destination now
                db.execute(
                    "UPDATE OR IGNORE meta SET key = ? WHERE key = ?", (_scoped(key, destination), key)
                )
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
            return _readdress(db, None, destination, only_pending=True)

    def pending_sets(self, destination: str | None = None) -> list[int]:
        """Attribute sets with pending events, the one holding the oldest first (counters, then
        one index seek per set that has some); with a destination, only those a flush for it
        sends (as `pending`): its own and those not yet claimed."""
        oldest = []
        sql = (
            "SELECT c.attr_id FROM counts c JOIN attributes a ON a.id = c.attr_id "
            "WHERE c.state = ? AND c.n > 0"
        )
        params: tuple[Any, ...] = (_PENDING,)
        if destination is not None:
            sql += " AND (a.destination = ? OR a.destination IS NULL)"
            params += (destination,)
        for (attr_id,) in self._read(sql, params):
            first = self._oldest(_PENDING, attr_id)
            if first is not None:
                oldest.append((first, attr_id))
        return [attr_id for _, attr_id in sorted(oldest)]

    def _oldest(self, state: int, attr_id: int) -> int | None:
        """Id of the attribute set's oldest event in `state` (one index seek)."""
        found: int | None = self._read(
            "SELECT min(id) FROM events WHERE state = ? AND attr_id = ?", (state, attr_id)
        )[0][0]
        return found

    def next_batch(self, attr_id: int, limit: int, after: int = 0) -> list[QueuedEvent]:
        """The attribute set's oldest `limit` pending events with ids above `after` (a plain read:
        `mark` claims them). The SELECT is made from QueuedEvent's fields: a column added there
        is read here, and mypy sees every use of it."""
        sql = (
            f"SELECT {', '.join(QueuedEvent._fields)} FROM events "
            "WHERE state = ? AND attr_id = ? AND id > ? ORDER BY id LIMIT ?"
        )
        rows = self._read_escaped(sql, (_PENDING, attr_id, after, limit))
        # tuple.__new__ in C, without _make's length check (the SELECT has the fields): a third
        # cheaper, and a flush builds one per event
        return list(map(partial(tuple.__new__, QueuedEvent), rows))

    def mark(self, attr_id: int, first_id: int, last_id: int) -> None:
        """Claim a batch as being sent, before its request goes out.

        The mark is one meta record, the batch's id range, not a write to every row: rewriting
        1,000 rows (and their index entries) per batch cost a third of a flush's time. Only the
        flush holding the lock marks, and new events always get higher ids, so the attribute
        set's pending events in that range are exactly the batch, or what is left of it."""
        self._set_metas("marking a batch as being sent", {"sending": f"{attr_id} {first_id} {last_id}"})

    def _marked(self) -> tuple[int, int, int] | None:
        """(attribute set id, first id, last id) of the marked batch."""
        raw = self._get_metas("sending").get("sending")
        try:
            attr_id, first, last = (int(x) for x in (raw or "").split())
        except ValueError:
            return None
        return attr_id, first, last

    def _count_range(self, marked: tuple[int, int, int]) -> int:
        rows = self._read(
            "SELECT count(*) FROM events WHERE state = ? AND attr_id = ? AND id BETWEEN ? AND ?",
            (_PENDING, marked[0], marked[1], marked[2]),
        )
        found: int = rows[0][0]
        return found

    def ack(self, attr_id: int, first_id: int, last_id: int, sync_time: int, first_ack: bool = False) -> None:
        """The collector answered 200 for this slice of the marked batch: delete it and record
        the sync time. The slice that ends the batch drops its mark in the same transaction (after
        it, new events may take ids inside the range). The first 200 of a flush also ends any
        backoff or stop: the collector is up and the secret is right."""
        with self.transaction("deleting delivered events") as db:
            deleted = db.execute(
                "DELETE FROM events WHERE state = ? AND attr_id = ? AND id BETWEEN ? AND ?",
                (_PENDING, attr_id, first_id, last_id),
            ).rowcount
            _count(db, attr_id, _PENDING, -deleted)
            raise_id_floor(db, last_id)
            row = db.execute("SELECT value FROM meta WHERE key = 'sending'").fetchone()
            if row and row[0].split()[::2] == [str(attr_id), str(last_id)]:
                db.execute("DELETE FROM meta WHERE key = 'sending'")
            changes: dict[str, str | None] = {"last_sync_time": str(sync_time)}
            if first_ack:
                changes.update(backoff_until=None, failures=None, halted=None, failed_at=None)
            found = db.execute("SELECT destination FROM attributes WHERE id = ?", (attr_id,)).fetchone()
            _write_metas(db, _scoped_all(changes, found[0] if found else None))

    def release(self) -> int:
        """Drop the mark: the batch is pending again. Returns how many events it still held.

        Also how the next flush, holding the lock, puts back what a dead flush left marked."""
        marked = self._marked()
        count = self._count_range(marked) if marked else 0
        self._set_metas("releasing a batch", {"sending": None})
        return count

    def reject(self, attr_id: int, ids: Sequence[int], reason: str) -> None:
        """Set events of one attribute set aside: the collector refused them (400). They stay
        until retry_rejected."""
        with self.transaction("setting rejected events aside") as db:
            cursor = db.executemany(
                "UPDATE events SET state = ?, reason = ? WHERE id = ? AND attr_id = ? AND state = ?",
                [(_REJECTED, reason, i, attr_id, _PENDING) for i in ids],
            )
            _count(db, attr_id, _PENDING, -cursor.rowcount)
            _count(db, attr_id, _REJECTED, cursor.rowcount)

    def retry_rejected(self, destination: str | None = None) -> int:
        """Rejected events back to pending: only those a flush for `destination` sends (as
        `pending`) when given, else every one."""
        moved = 0
        with self.transaction("moving rejected events back to the queue") as db:
            sql = "SELECT id FROM attributes"  # not the counters: rows decide
            if destination is not None:
                sql += " WHERE destination = ? OR destination IS NULL"
            sets = db.execute(sql, () if destination is None else (destination,)).fetchall()
            for (attr_id,) in sets:
                changed: int = db.execute(
                    "UPDATE events SET state = ?, reason = NULL WHERE state = ? AND attr_id = ?",
                    (_PENDING, _REJECTED, attr_id),
                ).rowcount
                _count(db, attr_id, _REJECTED, -changed)
                _count(db, attr_id, _PENDING, changed)
                moved += changed
        return moved

    def fill_unknown_ip(self, ip: str) -> None:
        """Events tracked before the route was known get the address this flush found.

        Finding them is a scan of every row, under the write lock (60 ms at 1M events, which a
        `track` would wait for): it runs only when `enqueue` has flagged such events (or the
        flag was never written: a spool from before it)."""
        if self._get_metas("unknown_ip").get("unknown_ip") == "0":
            return
        with self.transaction("filling in addresses") as db:
            db.execute("UPDATE events SET ip = ? WHERE ip = ''", (ip,))
            _write_metas(db, {"unknown_ip": "0"})


def _readdress(db: sqlite3.Connection, other: str | None, destination: str, only_pending: bool) -> int:
    """Give the attribute sets of destination `other` (None: not recorded) to `destination`,
    inside the caller's transaction. Returns how many events they held (pending ones only, or
    in any state): the counters, read in the same transaction."""
    sql = "SELECT total(c.n) FROM counts c JOIN attributes a ON a.id = c.attr_id WHERE a.destination IS ?"
    (held,) = db.execute(sql + (f" AND c.state = {_PENDING}" if only_pending else ""), (other,)).fetchone()
    db.execute("UPDATE attributes SET destination = ? WHERE destination IS ?", (destination, other))
    return int(held)
