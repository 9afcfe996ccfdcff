"""Looking at the queue: sessions, attribute sets and events as `events`, `status --events`
and `session` show them, chosen by an EventFilter."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from typing import Any

from hamustro_cli.session import Session
from hamustro_cli.spool import _PENDING, _REJECTED
from hamustro_cli.spool.claiming import Claiming
from hamustro_cli.spool.classify import spool_error
from hamustro_cli.spool.queue import EventFilter, Shown
from hamustro_cli.spool.records import AttrRow, ListedEvent, QueuedEvent, SessionRow
from hamustro_cli.spooldir import DB_NAME, flush_running


class Browsing(Claiming):
    """Reads that show the queue."""

    def session_rows(self) -> dict[int, SessionRow]:
        """{session row: SessionRow}, to show (`status`, `session`): text that is not UTF-8 is
        shown with its bad bytes escaped rather than failing the command."""
        rows = self._leniently(
            lambda: self._read(
                "SELECT id, session, device_id, client_id, system_version, product_version, last_nr "
                "FROM sessions"
            )
        )
        return {r[0]: SessionRow(id=r[0], attributes=Session(*r[1:6]), last_nr=r[6]) for r in rows}

    def attr_rows(self) -> dict[int, AttrRow]:
        """{attribute set id: AttrRow}: the full attributes each set's events are sent with
        (text that is not UTF-8 as lone surrogates: see _read_escaped)."""
        rows = self._read_escaped(
            "SELECT a.id, s.id, s.session, s.device_id, s.client_id, s.system_version, "
            "s.product_version, a.system, a.product_git_hash FROM attributes a "
            "JOIN sessions s ON s.id = a.session_id"
        )
        return {r[0]: AttrRow(id=r[0], session_row=r[1], attributes=Session(*r[2:9])) for r in rows}

    def at_of(self, event_id: int) -> int | None:
        rows = self._read("SELECT at FROM events WHERE id = ?", (event_id,))
        return rows[0][0] if rows else None

    def iter_events(self, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every queued event, oldest first, for `status --events`."""
        return self.select(EventFilter(limit=limit))

    @staticmethod
    def _listing() -> str:
        """The SELECT of ListedEvent's fields, `events e` joined to its session and attribute set."""
        names = (*QueuedEvent._fields, *ListedEvent._fields[1:])
        columns = ", ".join(_LISTED_FROM.get(name, f"e.{name}") for name in names)
        return (
            f"SELECT {columns} FROM events e JOIN sessions s ON s.id = e.session_id "
            "LEFT JOIN attributes a ON a.id = e.attr_id"
        )

    def _where(self, chosen: EventFilter, dead_mark: bool = False) -> tuple[str, list[Any]]:
        """The filter as a WHERE clause over `events e` joined to `sessions s` and `attributes a`."""
        clauses: list[str] = []
        params: list[Any] = []
        if chosen.ids is not None:
            clauses.append(f"e.id IN ({','.join('?' * len(chosen.ids))})" if chosen.ids else "0")
            params.extend(chosen.ids)
        if chosen.state is Shown.REJECTED:
            clauses.append("e.state = ?")
            params.append(_REJECTED)
        elif chosen.state is not None:
            # no mark (or a dead flush's, as if released): an empty range
            marked = (None if dead_mark else self._marked()) or (0, 1, 0)
            in_batch = "(e.attr_id = ? AND e.id BETWEEN ? AND ?)"
            clauses.append(f"e.state = ? AND {'' if chosen.state is Shown.SENDING else 'NOT '}{in_batch}")
            params.extend((_PENDING, *marked))
        for clause, value in (
            ("s.session = ?", chosen.session),
            ("a.destination = ?", chosen.destination),
            ("e.event GLOB ?", chosen.event),
            ("e.at >= ?", chosen.since),
            ("e.at <= ?", chosen.until),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), params

    def select(self, chosen: EventFilter) -> Iterator[dict[str, Any]]:
        """The chosen events, oldest first, one at a time from the cursor: memory stays flat
        whatever the spool holds (`events list --json` on a million events)."""
        where, params = self._where(chosen)
        sql = self._listing() + where + " ORDER BY e.id"
        if chosen.limit is not None:
            sql += " LIMIT ?"
            params.append(chosen.limit)
        marked = self._marked()
        try:
            cursor = self._leniently(lambda: self.db.execute(sql, params))
            while True:
                rows = self._leniently(lambda: cursor.fetchmany(500))
                if not rows:
                    break
                for r in rows:
                    yield _event_dict(_listed(r), marked)
        except sqlite3.Error as exc:
            raise spool_error(exc, self.path, "reading the spool") from None

    def count(self, chosen: EventFilter) -> int:
        """How many events `change` would touch now: a mark that no running flush holds is a dead
        flush's, which `change` drops before choosing, so it is left out here too."""
        sql, params = self._chosen_ids(chosen, dead_mark=not flush_running(self.directory))
        found: int = self._read(f"SELECT count(*) FROM ({sql})", params)[0][0]
        return found

    def _chosen_ids(
        self, chosen: EventFilter, only_rejected: bool = False, dead_mark: bool = False
    ) -> tuple[str, list[Any]]:
        """A SELECT of the chosen events' ids, oldest first (and at most `limit` of them)."""
        where, params = self._where(chosen, dead_mark)
        if only_rejected:
            where += (" AND " if where else " WHERE ") + "e.state = ?"
            params.append(_REJECTED)
        sql = (
            "SELECT e.id FROM events e JOIN sessions s ON s.id = e.session_id "
            "LEFT JOIN attributes a ON a.id = e.attr_id" + where + " ORDER BY e.id"
        )
        if chosen.limit is not None:
            sql += " LIMIT ?"
            params.append(chosen.limit)
        return sql, params

    def event(self, event_id: int) -> tuple[dict[str, Any], Session] | None:
        """One event and the attributes it was tracked under (what its Collection carries), or None."""
        rows = self._leniently(lambda: self._read(self._listing() + " WHERE e.id = ?", (event_id,)))
        if not rows:
            return None
        row = _listed(rows[0])
        attrs = self._leniently(self.attr_rows)[row.attr_id].attributes
        return _event_dict(row, self._marked()), attrs


# where a ListedEvent field comes from when it is not the `events` column of its name
_LISTED_FROM = {"session": "s.session", "destination": "a.destination"}


def _listed(r: Sequence[Any]) -> ListedEvent:
    """A row of Spool._listing as its record."""
    n = len(QueuedEvent._fields)
    session, state, reason, attr_id, destination = r[n:]
    return ListedEvent(QueuedEvent._make(r[:n]), session, state, reason, attr_id, destination)


def _event_dict(listed: ListedEvent, marked: tuple[int, int, int] | None) -> dict[str, Any]:
    """An event as `events list --json` and `status --events` show it."""
    e = listed.queued
    if listed.state == _REJECTED:
        shown = "rejected"
    elif marked and listed.attr_id == marked[0] and marked[1] <= e.id <= marked[2]:
        shown = "sending"
    else:
        shown = "pending"
    return {
        "id": e.id,
        "session": listed.session,
        "nr": e.nr,
        "at": e.at,
        "event": e.event,
        "user_id": e.user_id,
        "ip": e.ip or None,
        "parameters": e.parameters,
        "is_testing": bool(e.is_testing),
        "state": shown,  # a queue.Shown value
        "reason": listed.reason,
        "destination": listed.destination,  # its fingerprint (None: tracked before they were kept)
    }


def session_ids(directory: str, timeout: float = 0.2) -> list[str]:
    """The sessions the spool in `directory` holds, newest first, for a shell's completion: read
    only (a TAB creates, migrates and locks nothing), and nothing rather than an error or a wait
    longer than `timeout` (a missing spool, a busy or foreign file)."""
    from urllib.parse import quote

    path = os.path.join(directory, DB_NAME)
    if not os.path.isfile(path):
        return []
    try:
        db = sqlite3.connect(f"file:{quote(path)}?mode=ro", uri=True, timeout=timeout)
        try:
            rows = db.execute("SELECT session FROM sessions ORDER BY id DESC").fetchall()
        finally:
            db.close()
    except sqlite3.Error:
        return []
    return [row[0] for row in rows if isinstance(row[0], str)]
