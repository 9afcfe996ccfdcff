"""How many events each session and destination holds, from the counters (`status`,
`doctor`, the end of a flush), and their recount."""

from __future__ import annotations

import sqlite3
from typing import Any

from hamustro_cli.spool import _PENDING, _REJECTED
from hamustro_cli.spool.claiming import Claiming
from hamustro_cli.spool.classify import spool_error
from hamustro_cli.spool.records import Counts, Held, Mismatch, total


class Counting(Claiming):
    """Counts of events by state."""

    def by_destination(self) -> dict[str | None, Held]:
        """{destination: Held} for every destination holding events (None: tracked before
        destinations were recorded), from the counters."""
        found: dict[str | None, Held] = {}
        for destination, state, n in self._read(
            "SELECT a.destination, c.state, total(c.n) FROM counts c JOIN attributes a "
            "ON a.id = c.attr_id WHERE c.n != 0 GROUP BY a.destination, c.state"
        ):
            live, rejected = found.get(destination, (0, 0))
            if state == _PENDING:
                live += int(n)
            elif state == _REJECTED:
                rejected += int(n)
            if live or rejected:
                found[destination] = Held(live, rejected)
        return found

    def counts(self) -> dict[int, Counts]:
        """{session row: Counts}, from the counters plus two index seeks per attribute set
        holding events (its oldest pending and oldest rejected event)."""
        by_session: dict[int, list[Any]] = {}
        for attr_id, session_row, state, n in self._read(
            "SELECT c.attr_id, a.session_id, c.state, c.n FROM counts c "
            "JOIN attributes a ON a.id = c.attr_id WHERE c.n != 0"
        ):
            entry = by_session.setdefault(session_row, [0, 0, 0, None, None])
            entry[0 if state == _PENDING else 2] += n
            found = self._oldest(state, attr_id)
            if found is not None:
                if state == _PENDING:
                    entry[3] = found if entry[3] is None else min(entry[3], found)
                entry[4] = found if entry[4] is None else min(entry[4], found)
        marked = self._marked()
        if marked:
            # the batch in flight is still PENDING in the table: report it apart from what waits
            owner = self._read("SELECT session_id FROM attributes WHERE id = ?", (marked[0],))
            owned = by_session.get(owner[0][0]) if owner else None
            if owned and owned[0]:
                sending = min(self._count_range(marked), owned[0])
                owned[0] -= sending
                owned[1] = sending
        return {row: Counts(*entry) for row, entry in by_session.items()}

    def totals(self) -> Counts:
        return total(self.counts())

    def check_counts(self) -> list[Mismatch]:
        """Recount the rows (in one read transaction: a consistent snapshot) and compare with the
        counters. Empty when they agree. Costs a scan of the state index: `doctor` only."""
        try:
            self.db.execute("BEGIN")
            try:
                return self._mismatches(self.db)
            finally:
                self.db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise spool_error(exc, self.path, "recounting the spool") from None

    def recount(self) -> list[Mismatch]:
        """Set every counter from the rows, in one write transaction (no change of state can
        interleave, so no lock is needed). Returns what was wrong."""
        with self.transaction("recounting the spool") as db:
            wrong = self._mismatches(db)
            db.execute("DELETE FROM counts")
            db.execute(
                "INSERT INTO counts (attr_id, state, n) SELECT attr_id, state, count(*) FROM events "
                "GROUP BY attr_id, state"
            )
        return wrong

    @staticmethod
    def _mismatches(db: sqlite3.Connection) -> list[Mismatch]:
        counted = {
            (a, st): n
            for a, st, n in db.execute("SELECT attr_id, state, count(*) FROM events GROUP BY attr_id, state")
        }
        kept = {(a, st): n for a, st, n in db.execute("SELECT attr_id, state, n FROM counts")}
        return [
            Mismatch(a, st, counted.get((a, st), 0), kept.get((a, st), 0))
            for a, st in sorted(set(counted) | set(kept))
            if counted.get((a, st), 0) != kept.get((a, st), 0)
        ]
