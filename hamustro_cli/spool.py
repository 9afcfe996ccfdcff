"""The durable queue: one SQLite database (WAL) in the spool directory.

Each session's collection attributes live in `sessions` beside its `nr` counter, so events
of an old session are sent later under their own attributes. Events move through states:
pending -> sending (claimed by the one running flush) -> deleted after a 200, or back to
pending, or to rejected (the collector refused them with a 400; kept, never deleted).
"""

from __future__ import annotations

import errno
import os
import sqlite3
import stat
import time
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

from hamustro_cli.errors import SpoolError
from hamustro_cli.session import Session

DB_NAME = "spool.sqlite3"
LOCK_NAME = "flush.lock"
LOG_NAME = "flush.log"

PENDING, SENDING, REJECTED = 0, 1, 2
STATE_NAMES = {PENDING: "pending", SENDING: "sending", REJECTED: "rejected"}

# Numbered migrations: MIGRATIONS[i] brings the schema from version i to i + 1. Each runs in
# one transaction together with the new PRAGMA user_version, so it is applied whole or not at all.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """CREATE TABLE sessions (
            id INTEGER PRIMARY KEY,
            session TEXT NOT NULL UNIQUE,
            device_id TEXT NOT NULL,
            client_id TEXT NOT NULL,
            system_version TEXT NOT NULL,
            product_version TEXT NOT NULL,
            system TEXT,
            product_git_hash TEXT,
            last_nr INTEGER NOT NULL DEFAULT 0
        )""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id),
            nr INTEGER NOT NULL,
            at INTEGER NOT NULL,
            event TEXT NOT NULL,
            user_id INTEGER,
            ip TEXT,
            parameters TEXT,
            is_testing INTEGER NOT NULL DEFAULT 0,
            state INTEGER NOT NULL DEFAULT 0,
            reason TEXT,
            UNIQUE (session_id, nr)
        )""",
        "CREATE INDEX events_by_state ON events (state, session_id, id)",
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        "INSERT INTO meta (key, value) VALUES ('created_at', CAST(strftime('%s','now') AS TEXT))",
    ),
]
SCHEMA_VERSION = len(MIGRATIONS)


# NamedTuples rather than frozen dataclasses: far cheaper to create at import, which `track`
# pays on every call.
class NewEvent(NamedTuple):
    event: str
    at: int
    user_id: int | None = None
    ip: str | None = None
    parameters: str | None = None
    is_testing: bool = False


ID, NR = 0, 1  # columns of a claimed row (laid out as QueuedEvent)


class QueuedEvent(NamedTuple):
    id: int
    nr: int
    at: int
    event: str
    user_id: int | None
    ip: str | None
    parameters: str | None
    is_testing: bool


class SessionRow(NamedTuple):
    id: int
    attributes: Session
    last_nr: int


def _spool_error(exc: BaseException, path: str, doing: str) -> SpoolError:
    """Turn a sqlite3/OS error into a message that says what is wrong and what to do."""
    text = str(exc)
    low = text.lower()
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
        why = f"no space left to write {path} ({os.strerror(exc.errno)})"
    elif "disk is full" in low or "disk i/o error" in low:
        why = f"cannot write {path}: the disk is full or a file-size limit was hit ({text})"
    elif "not a database" in low or "malformed" in low:
        why = (
            f"{path} is corrupt ({text}); move it aside to start a new spool "
            "(its events can then be inspected with sqlite3)"
        )
    elif "readonly" in low or "permission" in low or (isinstance(exc, PermissionError)):
        why = f"{path} is not writable ({text})"
    elif "unable to open" in low:
        why = f"cannot open {path} ({text}): check that the spool directory exists and is writable"
    elif "locked" in low or "busy" in low:
        why = f"{path} stayed locked by another process for too long ({text})"
    else:
        why = f"{path}: {text}"
    return SpoolError(f"spool error while {doing}: {why}")


def prepare_dir(directory: str) -> None:
    """Create the spool directory 0700, or tighten it if we own it."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
    except FileExistsError:
        raise SpoolError(f"spool path {directory} exists and is not a directory") from None
    except PermissionError:
        raise SpoolError(f"cannot create spool directory {directory}: permission denied") from None
    except NotADirectoryError:
        raise SpoolError(f"cannot create spool directory {directory}: a parent is not a directory") from None
    except OSError as exc:
        raise SpoolError(f"cannot create spool directory {directory}: {exc.strerror}") from None
    st = os.stat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise SpoolError(f"spool path {directory} exists and is not a directory")
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.chmod(directory, 0o700)
    if not os.access(directory, os.W_OK | os.X_OK):
        raise SpoolError(f"spool directory {directory} is not writable by this user")


def private_file(path: str) -> None:
    """Create path 0600 if missing (SQLite gives its -wal and -shm files the same mode)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    except IsADirectoryError:
        raise SpoolError(f"spool file {path} is a directory") from None
    except OSError as exc:
        raise SpoolError(f"cannot create spool file {path}: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def tighten(path: str) -> None:
    """An existing spool file others can read (an older version, a copy) becomes owner-only.

    Never adds a permission: a read-only file stays read-only."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.geteuid():
        try:
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
        except OSError:
            pass


class Spool:
    """One connection to the spool database. Not shared between threads."""

    def __init__(self, directory: str | os.PathLike[str]):
        # plain strings, not pathlib: see config.py
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, DB_NAME)
        try:
            # _signal, not signal: signal.py's enum set-up costs track ~0.7 ms for one call.
            import _signal

            # Under a file-size limit, let writes fail with EFBIG instead of killing us.
            _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)
        except (AttributeError, ValueError):  # pragma: no cover - no SIGXFSZ, or not main thread
            pass
        prepare_dir(self.directory)
        if not os.path.exists(self.path):
            private_file(self.path)
        else:
            # SQLite gives new -wal/-shm files the database's mode: tighten them all.
            for suffix in ("", "-wal", "-shm"):
                tighten(self.path + suffix)
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise _spool_error(exc, self.path, "opening the spool") from None
        try:
            self._migrate()
        except SpoolError:
            self.db.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            self.db.close()
            raise _spool_error(exc, self.path, "opening the spool") from None

    # -- schema -----------------------------------------------------------------------------

    def _migrate(self) -> None:
        version = self.db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise SpoolError(
                f"spool {self.path} has schema version {version}, newer than this hamustro "
                f"understands ({SCHEMA_VERSION}); upgrade hamustro, or use another --spool-dir. "
                "Nothing was changed."
            )
        if version == 0:
            # WAL is a property of the file: set it once, outside any transaction.
            self.db.execute("PRAGMA journal_mode=WAL")
        with self.transaction():
            version = self.db.execute("PRAGMA user_version").fetchone()[0]
            for number in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[number]:
                    self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {number + 1}")

    @property
    def schema_version(self) -> int:
        return self.db.execute("PRAGMA user_version").fetchone()[0]

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------------------

    class _Txn:
        def __init__(self, spool: Spool, doing: str):
            self.spool, self.doing = spool, doing

        def __enter__(self) -> sqlite3.Connection:
            try:
                self.spool.db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise _spool_error(exc, self.spool.path, self.doing) from None
            return self.spool.db

        def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
            db = self.spool.db
            if exc_type is None:
                try:
                    db.execute("COMMIT")
                    return
                except sqlite3.Error as err:
                    exc = err
            if db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise _spool_error(exc, self.spool.path, self.doing) from None

    def transaction(self, doing: str = "updating the spool") -> Spool._Txn:
        """BEGIN IMMEDIATE ... COMMIT, rolled back whole on any error."""
        return Spool._Txn(self, doing)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _spool_error(exc, self.path, "reading the spool") from None

    # -- meta -------------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._read("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def get_metas(self, *keys: str) -> dict[str, str]:
        marks = ",".join("?" * len(keys))
        return dict(self._read(f"SELECT key, value FROM meta WHERE key IN ({marks})", keys))

    def set_meta(self, **values: str | None) -> None:
        """Set (or with None, delete) meta keys in one transaction of their own."""
        with self.transaction("recording state") as db:
            self._set_meta(db, values)

    @staticmethod
    def _set_meta(db: sqlite3.Connection, values: dict[str, str | None]) -> None:
        for key, value in values.items():
            if value is None:
                db.execute("DELETE FROM meta WHERE key = ?", (key,))
            else:
                db.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    (key, value),
                )

    # -- queuing ----------------------------------------------------------------------------

    def enqueue(self, session: Session, events: Sequence[NewEvent]) -> tuple[int, int]:
        """Queue events in one transaction; returns the first and last nr given to them."""
        count = len(events)
        if not count:
            raise ValueError("no events to queue")
        with self.transaction("queuing events") as db:
            row = db.execute(
                "UPDATE sessions SET last_nr = last_nr + ?, system = ?, product_git_hash = ? "
                "WHERE session = ? RETURNING id, last_nr",
                (count, session.system, session.product_git_hash, session.session),
            ).fetchone()
            if row is None:
                row = db.execute(
                    "INSERT INTO sessions (session, device_id, client_id, system_version, "
                    "product_version, system, product_git_hash, last_nr) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id, last_nr",
                    (
                        session.session,
                        session.device_id,
                        session.client_id,
                        session.system_version,
                        session.product_version,
                        session.system,
                        session.product_git_hash,
                        count,
                    ),
                ).fetchone()
            session_row, last = row
            first = last - count + 1
            db.executemany(
                "INSERT INTO events (session_id, nr, at, event, user_id, ip, parameters, is_testing) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                # by position: NewEvents, or the plain tuples parse_lines makes in the same layout
                [
                    (session_row, nr, at, event, user_id, ip, parameters, is_testing)
                    for nr, (event, at, user_id, ip, parameters, is_testing) in enumerate(events, first)
                ],
            )
        return first, last

    def pending_at_least(self, n: int) -> bool:
        """True when n or more events wait to be sent; reads at most n index entries.

        Events marked as sending count too (see claim: they stay in state 0), so events a dead
        flush left marked still make `flush --if-due` run and put them back."""
        rows = self._read("SELECT count(*) FROM (SELECT 1 FROM events WHERE state = 0 LIMIT ?)", (n,))
        return rows[0][0] >= n

    # -- flushing ---------------------------------------------------------------------------

    def sending_range(self) -> tuple[int, int, int] | None:
        """(session row, first id, last id) of the batch a flush marked as being sent."""
        raw = self.get_meta("sending")
        if not raw:
            return None
        session_row, first, last = (int(x) for x in raw.split())
        return session_row, first, last

    def _count_range(self, marked: tuple[int, int, int]) -> int:
        rows = self._read(
            "SELECT count(*) FROM events WHERE session_id = ? AND state = 0 AND id BETWEEN ? AND ?", marked
        )
        return rows[0][0]

    def retry_rejected(self) -> int:
        with self.transaction("moving rejected events back to the queue") as db:
            return db.execute("UPDATE events SET state = 0, reason = NULL WHERE state = 2").rowcount

    def session_rows(self) -> dict[int, SessionRow]:
        rows = self._read(
            "SELECT id, session, device_id, client_id, system_version, product_version, system, "
            "product_git_hash, last_nr FROM sessions"
        )
        return {r[0]: SessionRow(id=r[0], attributes=Session(*r[1:8]), last_nr=r[8]) for r in rows}

    def claim(self, session_row: int, limit: int, after: int = 0) -> list[tuple[Any, ...]]:
        """The session's oldest `limit` pending events with ids above `after`, as row tuples laid
        out like QueuedEvent (index them with ID, NR, ...: building a QueuedEvent per row costs
        a flush 6% of its time)."""
        return self._read(
            "SELECT id, nr, at, event, user_id, ip, parameters, is_testing FROM events "
            "WHERE state = 0 AND session_id = ? AND id > ? ORDER BY id LIMIT ?",
            (session_row, after, limit),
        )

    def mark(self, session_row: int, first_id: int, last_id: int) -> None:
        """Mark a claimed batch as being sent, before its request goes out.

        The mark is one meta record, the batch's id range, not a write to every row: rewriting
        1,000 rows (and their index entries) per batch cost a third of a flush's time. Only the
        flush holding the lock claims, and new events always get higher ids, so the session's
        pending events in that range are exactly the batch, or what is left of it."""
        self.set_meta(sending=f"{session_row} {first_id} {last_id}")

    def ack(
        self, session_row: int, first_id: int, last_id: int, sync_time: int, first_ack: bool = False
    ) -> None:
        """The collector answered 200 for this slice of the marked batch: delete it and record
        the sync time. The slice that ends the batch drops its mark in the same transaction (after
        it, new events may take ids inside the range). The first 200 of a flush also ends any
        backoff or stop: the collector is up and the secret is right."""
        with self.transaction("deleting delivered events") as db:
            db.execute(
                "DELETE FROM events WHERE session_id = ? AND state = 0 AND id BETWEEN ? AND ?",
                (session_row, first_id, last_id),
            )
            row = db.execute("SELECT value FROM meta WHERE key = 'sending'").fetchone()
            if row and row[0].split()[::2] == [str(session_row), str(last_id)]:
                db.execute("DELETE FROM meta WHERE key = 'sending'")
            changes: dict[str, str | None] = {"last_sync_time": str(sync_time)}
            if first_ack:
                changes.update(backoff_until=None, failures=None, halted=None)
            self._set_meta(db, changes)

    def release(self) -> int:
        """Drop the mark: the batch is pending again. Returns how many events it still held.

        Also how the next flush, holding the lock, puts back what a dead flush left marked."""
        marked = self.sending_range()
        count = self._count_range(marked) if marked else 0
        self.set_meta(sending=None)
        return count

    def pending_sessions(self) -> list[int]:
        """Sessions with pending events, the one holding the oldest first (index seeks only)."""
        oldest = []
        for (row_id,) in self._read("SELECT id FROM sessions"):
            rows = self._read("SELECT min(id) FROM events WHERE state = 0 AND session_id = ?", (row_id,))
            if rows[0][0] is not None:
                oldest.append((rows[0][0], row_id))
        return [row_id for _, row_id in sorted(oldest)]

    def reject(self, ids: Sequence[int], reason: str) -> None:
        with self.transaction("setting rejected events aside") as db:
            db.executemany("UPDATE events SET state = 2, reason = ? WHERE id = ?", [(reason, i) for i in ids])

    def fill_unknown_ip(self, ip: str) -> None:
        """Events tracked before the route was known get the address this flush found."""
        with self.transaction("filling in addresses") as db:
            db.execute("UPDATE events SET ip = ? WHERE ip = ''", (ip,))

    # -- looking ----------------------------------------------------------------------------

    def counts(self) -> dict[int, dict[int, tuple[int, int]]]:
        """{session_row: {state: (count, oldest id)}}, from the index alone."""
        out: dict[int, dict[int, tuple[int, int]]] = {}
        for state, session_row, count, oldest in self._read(
            "SELECT state, session_id, count(*), min(id) FROM events GROUP BY state, session_id"
        ):
            out.setdefault(session_row, {})[state] = (count, oldest)
        marked = self.sending_range()
        if marked and PENDING in out.get(marked[0], {}):
            # the batch in flight is still in state 0: report it apart from what waits
            sending = self._count_range(marked)
            count, oldest = out[marked[0]][PENDING]
            if sending:
                out[marked[0]][SENDING] = (sending, oldest)
                if count > sending:
                    out[marked[0]][PENDING] = (count - sending, oldest)
                else:
                    del out[marked[0]][PENDING]
        return out

    def at_of(self, event_id: int) -> int | None:
        rows = self._read("SELECT at FROM events WHERE id = ?", (event_id,))
        return rows[0][0] if rows else None

    def iter_events(
        self, limit: int | None = None, states: Sequence[int] = (0, 1, 2)
    ) -> Iterator[dict[str, Any]]:
        marks = ",".join("?" * len(states))
        sql = (
            "SELECT e.id, s.session, e.nr, e.at, e.event, e.user_id, e.ip, e.parameters, "
            f"e.is_testing, e.state, e.reason FROM events e JOIN sessions s ON s.id = e.session_id "
            f"WHERE e.state IN ({marks}) ORDER BY e.id"
        )
        params: list[Any] = list(states)
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        for r in self._read(sql, params):
            yield {
                "id": r[0],
                "session": r[1],
                "nr": r[2],
                "at": r[3],
                "event": r[4],
                "user_id": r[5],
                "ip": r[6] or None,
                "parameters": r[7],
                "is_testing": bool(r[8]),
                "state": STATE_NAMES[r[9]],
                "reason": r[10],
            }

    # -- errors and backoff -----------------------------------------------------------------

    def record_error(self, error: dict[str, Any] | None, **extra: str | None) -> None:
        import json

        self.set_meta(last_error=None if error is None else json.dumps(error), **extra)

    def last_error(self) -> dict[str, Any] | None:
        import json

        raw = self.get_meta("last_error")
        return json.loads(raw) if raw else None


def now() -> int:
    return int(time.time())
