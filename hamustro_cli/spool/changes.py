"""The queue by hand: every change `hamustro events` makes goes through here."""

from __future__ import annotations

from collections.abc import Callable

from hamustro_cli.errors import FlushBusy
from hamustro_cli.spool import _PENDING, _count, _write_metas, raise_id_floor
from hamustro_cli.spool.browsing import Browsing
from hamustro_cli.spool.claiming import _readdress
from hamustro_cli.spool.queue import Change, EventFilter
from hamustro_cli.spooldir import FlushLock


class ManualChanges(Browsing):
    """Requeuing, dropping and claiming events by hand."""

    def change(self, action: Change, chosen: EventFilter) -> int:
        """Requeue (rejected back to pending) or drop the chosen events, in one transaction;
        returns how many changed. The one place these state changes happen.

        Never touches the batch a flush is sending: it takes the flush lock (FlushBusy when a
        flush holds it), so a mark found meanwhile is a dead flush's and is dropped first, as
        the next flush would drop it."""
        return self._without_flush(f"{action.value} events", lambda: self._change(action, chosen))

    def _without_flush(self, doing: str, work: Callable[[], int]) -> int:
        """work() holding the flush lock; FlushBusy, changing nothing, when a flush holds it (and
        a read-only spool refuses, saying why)."""
        self.check_writable(doing)
        lock = FlushLock(self.directory)
        if not lock.acquire(wait=False):
            raise FlushBusy(
                f"a flush is running in {self.directory}: nothing was changed; "
                f"try again when it ends ('hamustro status' shows it)"
            )
        try:
            return work()
        finally:
            lock.release()

    def claim(self, other: str, destination: str) -> int:
        """Give every event queued for the destination `other` to `destination` (a collector
        that moved, a secret that changed): the next flush for it sends them. Returns how many
        events (pending or rejected) moved; holds the flush lock as `change` does."""

        def move() -> int:
            with self.transaction("recording the events' new destination") as db:
                return _readdress(db, other, destination, only_pending=False)

        return self._without_flush("claiming events", move)

    def _change(self, action: Change, chosen: EventFilter) -> int:
        with self.transaction(f"{action.value} events") as db:
            # the dead flush's mark goes first: its batch is pending again for the filters below
            _write_metas(db, {"sending": None})
            ids_sql, params = self._chosen_ids(chosen, only_rejected=action is Change.REQUEUE)
            # the counters move in the same transaction as the rows (the same ids, read twice)
            for attr_id, state, n in db.execute(
                f"SELECT attr_id, state, count(*) FROM events WHERE id IN ({ids_sql}) "
                "GROUP BY attr_id, state",
                params,
            ).fetchall():
                _count(db, attr_id, state, -n)
                if action is Change.REQUEUE:
                    _count(db, attr_id, _PENDING, n)
            if action is Change.REQUEUE:
                sql = f"UPDATE events SET state = {_PENDING}, reason = NULL WHERE id IN ({ids_sql})"
            else:
                sql = f"DELETE FROM events WHERE id IN ({ids_sql})"
                (top,) = db.execute(f"SELECT max(id) FROM events WHERE id IN ({ids_sql})", params).fetchone()
                raise_id_floor(db, top)
            changed: int = db.execute(sql, params).rowcount
        return changed
