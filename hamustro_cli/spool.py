"""The durable queue: one SQLite database (WAL) in the spool directory. Every SQL statement
and every state of an event lives in this module.

A session (its id attributes and its `nr` counter) lives in `sessions`; each event references
the exact attribute set it was tracked under (`attributes`: the session plus `system` and
`product_git_hash`, which are not part of the session id), so a later `track` under other
values never changes what queued events are sent with, and a flush sends one attribute set per
Collection. An attribute set also records its destination (a keyed fingerprint of the collector
URL, client_id and secret: destination.py), and a flush sends only its own destination's sets.
An event is PENDING until the collector takes it (it is then deleted) or refuses it with a 400
(REJECTED: kept, never deleted). The batch a flush is sending is not a state of its rows but one
mark, the batch's id range (see `mark`); `counts` reports those events as sending.

How many events each attribute set has in each state is kept in `counts`, changed only by
`_count` in the same transaction as the rows, so no command counts rows (`track`'s trigger
check, `status` and `flush --if-due` cost the same at any backlog). `check_counts` recounts.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from collections.abc import Iterator, Sequence
from enum import IntEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from hamustro_cli.errors import FlushBusy, InputError, SpoolError
from hamustro_cli.events import UINT32_MAX, NewEvent
from hamustro_cli.session import Session
from hamustro_cli.spooldir import (
    DB_NAME,
    SCHEMA_VERSION,
    FlushLock,
    check_database_files,
    flush_running,
    ignore_file_size_signal,
    on_read_only_mount,
    prepare_dir,
    private_file,
    problem_kinds,
    read_only_reason,
    space_advice,
)

if TYPE_CHECKING:
    from collections.abc import Callable
    from contextlib import AbstractContextManager
    from typing import TypeVar

    from hamustro_cli.queue import Change, EventFilter
    from hamustro_cli.records import (
        AttrRow,
        BatchSize,
        Counts,
        Held,
        ListedEvent,
        Mismatch,
        QueuedEvent,
        SessionRow,
    )

    _T = TypeVar("_T")

__all__ = ["DB_NAME", "SCHEMA_VERSION", "NewEvent", "Spool", "State", "SyncState"]


class State(IntEnum):
    """The `state` column of an event. (Being sent is the mark, not a state: see `mark`.)"""

    PENDING = 0
    REJECTED = 2


_PENDING, _REJECTED = int(State.PENDING), int(State.REJECTED)

MAX_NR = UINT32_MAX  # nr is a uint32 on the wire
VACUUM_STEP = 256  # pages freed per incremental_vacuum transaction at the end of a flush
WAL_LIMIT = 4 * 1024 * 1024  # bytes of WAL kept after a checkpoint (journal_size_limit)
BUSY_TIMEOUT = 60  # seconds a statement waits for another connection's lock
# the reason of a halt that came without one (or whose stored reason is empty): still a halt
HALTED_UNSAID = "the collector gave an answer only a person can fix, and no reason"


class SyncState(NamedTuple):
    """Where sending stands, as the flushes left it. Values from the file are not trusted:
    a malformed one reads as unset."""

    created_at: int = 0
    last_sync_time: int | None = None
    backoff_until: int | None = None
    failures: int = 0
    halted: bool = False  # sending stopped until a person acts (an answer of Kind.PERSON)
    halt_reason: str = ""  # why, when halted: what the collector answered (never empty then)
    failed_at: int | None = None  # when the last failure was recorded (the clock then)

    @property
    def last_sync_or_creation(self) -> int:
        return self.last_sync_time or self.created_at


# What flushes record about sending to one destination (SyncState's fields and the last error):
# kept per destination in meta, as KEY@FINGERPRINT, so that one collector's failure (a backoff,
# a refused signature) never holds another destination's events. A caller that names no
# destination (a spool from before destinations, until its first flush claims it) uses KEY.
_SYNC_KEYS = ("last_sync_time", "backoff_until", "failures", "halted", "failed_at", "last_error")
_SCOPED_KEYS = (*_SYNC_KEYS, "batch_size")  # all that moves with a destination's events


def _scoped(key: str, destination: str | None) -> str:
    return key if destination is None else f"{key}@{destination}"


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


# SQLite's primary result codes (the low byte of an extended one), grouped as _spool_error
# tells them apart: FULL and IOERR (a write failed: a full disk, a file-size limit), CORRUPT
# and NOTADB, READONLY and PERM, CANTOPEN, BUSY and LOCKED.
_PRIMARY_CODES = {
    13: "full", 10: "full",
    11: "corrupt", 26: "corrupt",
    8: "readonly", 3: "readonly",
    14: "cantopen",
    5: "busy", 6: "busy",
}  # fmt: skip
# The same groups by SQLite's words, in this order, for a Python (3.10) that gives no code.
_WORDS = (
    ("full", ("disk is full", "disk i/o error")),
    ("corrupt", ("not a database", "malformed")),
    ("readonly", ("readonly", "permission")),
    ("cantopen", ("unable to open",)),
    ("busy", ("locked", "busy")),
)


def _error_group(exc: BaseException, low: str) -> str | None:
    """The group of _PRIMARY_CODES an error belongs to: by SQLite's result code where Python
    gives it (3.11+; an unknown code is "other", whatever the words say), else by its words."""
    errorcode: int | None = getattr(exc, "sqlite_errorcode", None)
    if errorcode is not None:
        return _PRIMARY_CODES.get(errorcode & 0xFF, "other")
    return next((group for group, words in _WORDS if any(w in low for w in words)), None)


def _spool_error(exc: BaseException, path: str, doing: str) -> SpoolError:
    """Turn a sqlite3/OS error into a message that says what is wrong and what to do."""
    from hamustro_cli.problems import SpoolProblem

    text = str(exc)
    group = _error_group(exc, text.lower())
    no_room = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
    if no_room or group == "full":
        kind = SpoolProblem.NO_SPACE
        what = f"{text}: the disk is full or a file-size limit was hit" if group == "full" else text
        why = f"cannot write {path} ({what}); {space_advice(os.path.dirname(path))}"
    elif group == "corrupt":
        kind = SpoolProblem.CORRUPT
        why = (
            f"{path} is corrupt ({text}); move it aside to start a new spool "
            "(its events can then be inspected with sqlite3)"
        )
    elif group == "readonly" or isinstance(exc, PermissionError):
        kind, why = SpoolProblem.NOT_WRITABLE, f"{path} is not writable ({text})"
    elif group == "cantopen":
        from hamustro_cli.limits import few_descriptors

        kind = SpoolProblem.CANNOT_OPEN
        # SQLite says only "unable to open": out of descriptors (ulimit -n) is one reason
        why = f"cannot open {path} ({text}): " + (
            few_descriptors() or "check that the spool directory exists and is writable"
        )
    elif group == "busy":
        from hamustro_cli.spooldir import lock_holders

        holders = ", ".join(lock_holders(path)) or "another connection"
        kind = SpoolProblem.LOCKED
        why = f"{path} is locked by {holders}, which held it past the {BUSY_TIMEOUT} s wait ({text})"
    else:
        kind, why = SpoolProblem.OTHER, f"{path}: {text}"
    return SpoolError(f"spool error while {doing}: {why}", kind)


# connections a forked child found open, abandoned by Spool.close: never closed nor finalized
_ABANDONED: list[sqlite3.Connection] = []

# where a ListedEvent field comes from when it is not the `events` column of its name
_LISTED_FROM = {"session": "s.session", "destination": "a.destination"}
_TABLES = {"sessions", "events", "meta"}
_ABSURD_VERSION = 10_000  # no hamustro will ever have written this many migrations


def _check_ours(db: sqlite3.Connection, path: str) -> None:
    """Refuse a database hamustro did not write: tables of its own at schema version 0, our
    tables missing at a later one, or a schema version no hamustro ever wrote (negative or
    absurd). Nothing is changed in it."""
    from hamustro_cli.problems import SpoolProblem

    # One snapshot for both reads: another process may be creating the spool this very moment,
    # and its tables read after its version was read would look like a database not ours.
    db.execute("BEGIN")
    try:
        version = _user_version(db)
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        db.execute("COMMIT")
    fix = f"move {path} away (or set spool_dir elsewhere); hamustro starts a new spool there"
    if version < 0 or version >= _ABSURD_VERSION:
        why = f"has schema version {version}, which no hamustro ever wrote: it is damaged or not a spool"
    elif version == 0 and tables:
        names = ", ".join(sorted(tables)[:5])
        why = f"is an SQLite database with tables of its own ({names}), not a hamustro spool"
    elif version > 0 and not _TABLES <= tables:
        why = f"has schema version {version} but lacks the spool's tables: it is not a hamustro spool"
    else:
        return
    raise SpoolError(f"{path} {why}; fix: {fix}", SpoolProblem.NOT_OURS, fix)


class _Transaction:
    def __init__(self, spool: Spool, doing: str):
        self.spool, self.doing = spool, doing

    def __enter__(self) -> sqlite3.Connection:
        self.spool.check_writable(self.doing)
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


class Spool:
    """One connection to the spool database, used by one thread at a time (any thread: a
    ClientTracker shared by threads serializes their use), in the process that opened it."""

    def __init__(self, directory: str | os.PathLike[str]):
        self.directory = os.fspath(directory)
        self.path = os.path.join(self.directory, DB_NAME)
        # Why the spool can only be read (a read-only mount, a directory this user cannot write),
        # or None. Reading commands work; every write refuses, saying this (see transaction).
        self.read_only: str | None = None
        ignore_file_size_signal()
        try:
            prepare_dir(self.directory)
        except SpoolError as exc:
            self.read_only = (
                read_only_reason(self.directory) if exc.kind is problem_kinds().NOT_WRITABLE else None
            )
            if self.read_only is None:
                raise
        # Nothing at the database's names may be a link, a FIFO, a device or another's file:
        # SQLite would follow or open it. (The directory is ours alone, so nobody can plant
        # one between this check and the open.)
        check_database_files(self.path, tighten=self.read_only is None)
        self.pid = os.getpid()  # a connection is never used in another process (see close)
        if self.read_only is not None:
            self.db = self._connect_read_only()
        else:
            if not os.path.lexists(self.path):
                private_file(self.path)
            try:
                self.db = sqlite3.connect(
                    self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False
                )
                # a connection setting: the WAL is cut back to this after each checkpoint
                self.db.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
            except sqlite3.Error as exc:
                raise _spool_error(exc, self.path, "opening the spool") from None
        try:
            if self.read_only is not None and _user_version(self.db) != SCHEMA_VERSION:
                raise self._refusal("bringing its schema up to date")
            if _user_version(self.db) != SCHEMA_VERSION:  # new, older, or not ours at all
                from hamustro_cli.migrations import migrate

                _check_ours(self.db, self.path)
                migrate(self.db, self.path)
        except SpoolError:
            self.db.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            self.db.close()
            raise _spool_error(exc, self.path, "opening the spool") from None

    def _connect_read_only(self) -> sqlite3.Connection:
        """A read-only connection to a spool that cannot be written. A WAL database needs its
        -shm (SQLite's wal.html, "Read-only databases"): `mode=ro` uses the -wal and -shm a live
        spool has. Without them on a read-only mount (the last writer closed cleanly, so every
        change is in the database file and nothing can change it through this mount) the file
        is opened `immutable`; with a -wal but no -shm the changes it holds cannot be read, and
        that is said."""
        from urllib.parse import quote

        uri = "file:" + quote(self.path)
        try:
            db = sqlite3.connect(
                uri + "?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
            )
            _user_version(db)  # the open itself is lazy: this is where it fails
            return db
        except sqlite3.Error as exc:
            first = exc
        if not os.path.lexists(self.path + "-wal") and on_read_only_mount(self.directory):
            try:
                db = sqlite3.connect(
                    uri + "?mode=ro&immutable=1", uri=True, isolation_level=None, check_same_thread=False
                )
                _user_version(db)
                return db
            except sqlite3.Error as exc:
                raise _spool_error(exc, self.path, "opening the spool read-only") from None
        raise SpoolError(
            f"cannot read the spool {self.path}: {self.read_only}, and SQLite cannot read a WAL "
            f"database there without its -shm file ({first}); run the command as the spool's "
            "owner or where it can be written",
            problem_kinds().NOT_WRITABLE,
        )

    def _refusal(self, doing: str) -> SpoolError:
        return SpoolError(
            f"the spool can only be read: {self.read_only}; {doing} would write to it, so nothing "
            "was changed (status, events list, events show and doctor still work; make the spool "
            "writable, e.g. remount it read-write, to queue and send)",
            problem_kinds().NOT_WRITABLE,
        )

    def check_writable(self, doing: str) -> None:
        """SpoolError (NOT_WRITABLE) saying why, when the spool can only be read."""
        if self.read_only is not None:
            raise self._refusal(doing)

    @property
    def schema_version(self) -> int:
        try:
            return _user_version(self.db)
        except sqlite3.Error as exc:
            raise _spool_error(exc, self.path, "reading the spool") from None

    def close(self) -> None:
        """Close the connection; in another process than the one that opened it (a child of a
        fork), abandon it instead: closing it there releases the opener's POSIX locks and can
        checkpoint and reset a WAL that other processes are writing (sqlite.org/howtocorrupt.html,
        2.6). The abandoned connection is kept so that it is never finalized either."""
        if self.pid == os.getpid():
            self.db.close()
        else:
            _ABANDONED.append(self.db)

    def integrity_problems(self, limit: int = 5) -> list[str]:
        """SQLite's own check of every page (PRAGMA quick_check): [] when the file is sound."""
        try:
            rows = self.db.execute(f"PRAGMA quick_check({int(limit)})").fetchall()
        except sqlite3.DatabaseError as exc:
            return [str(exc)]
        found = [str(r[0]) for r in rows]
        return [] if found == ["ok"] else found

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transactions -----------------------------------------------------------------------

    def transaction(self, doing: str = "updating the spool") -> _Transaction:
        """BEGIN IMMEDIATE ... COMMIT, rolled back whole on any error."""
        return _Transaction(self, doing)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _spool_error(exc, self.path, "reading the spool") from None

    def relaxed_sync(self) -> AbstractContextManager[None]:
        """`synchronous = NORMAL` on this connection for the block, then back to what it was.

        For a flush: a lost mark or ack costs at most a resend, never an event, so its own
        commits need not wait for the disk. `track`'s commits, which make an event durable,
        must: hence the restore, even when the block fails."""
        from contextlib import contextmanager

        @contextmanager
        def relaxed() -> Iterator[None]:
            (before,) = self._read("PRAGMA synchronous")[0]
            self.db.execute("PRAGMA synchronous = NORMAL")
            try:
                yield
            finally:
                self.db.execute(f"PRAGMA synchronous = {int(before)}")

        return relaxed()

    # -- meta (private: the typed records below are the interface) ---------------------------

    def _get_metas(self, *keys: str) -> dict[str, str]:
        marks = ",".join("?" * len(keys))
        return dict(self._read(f"SELECT key, value FROM meta WHERE key IN ({marks})", keys))

    def _set_metas(self, doing: str, values: dict[str, str | None]) -> None:
        with self.transaction(doing) as db:
            _write_metas(db, values)

    # -- queuing ----------------------------------------------------------------------------

    def enqueue(
        self, session: Session, events: Sequence[NewEvent], destination: str | None = None
    ) -> tuple[int, int]:
        """Queue events in one transaction, for `destination` (a fingerprint; None: not recorded,
        the next flush claims them); returns the first and last nr given to them."""
        count = len(events)
        if not count:
            raise ValueError("no events to queue")
        with self.transaction("queuing events") as db:
            row = db.execute(
                "UPDATE sessions SET last_nr = last_nr + ? WHERE session = ? RETURNING id, last_nr",
                (count, session.id),
            ).fetchone()
            if row is None:
                row = db.execute(
                    "INSERT INTO sessions (session, device_id, client_id, system_version, "
                    "product_version, last_nr) VALUES (?, ?, ?, ?, ?, ?) RETURNING id, last_nr",
                    (*session[:5], count),
                ).fetchone()
            session_row, last = row
            attr_key = (session_row, session.system, session.product_git_hash, destination)
            found = db.execute(
                "SELECT id FROM attributes WHERE session_id = ? AND system IS ? AND product_git_hash IS ? "
                "AND destination IS ?",
                attr_key,
            ).fetchone()
            if found is None:
                found = db.execute(
                    "INSERT INTO attributes (session_id, system, product_git_hash, destination) "
                    "VALUES (?, ?, ?, ?) RETURNING id",
                    attr_key,
                ).fetchone()
            attr_id: int = found[0]
            first = last - count + 1
            if last > MAX_NR:  # raised inside the transaction: rolled back, nothing queued
                raise InputError(
                    f"session {session.id} has numbered {first - 1} events; {count} more would pass "
                    f"{MAX_NR}, the largest nr the wire carries. Nothing was queued: start a new "
                    "session (a new client_id or product_version)"
                )
            db.executemany(
                "INSERT INTO events (session_id, attr_id, nr, at, event, user_id, ip, parameters, "
                "is_testing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                # by position: NewEvents, or the plain tuples parse_lines makes in the same layout
                [
                    (session_row, attr_id, nr, at, event, user_id, ip, parameters, is_testing)
                    for nr, (event, at, user_id, ip, parameters, is_testing) in enumerate(events, first)
                ],
            )
            _count(db, attr_id, _PENDING, count)
            if any(e[3] == "" for e in events):  # the route was not known: a flush fills it in
                _write_metas(db, {"unknown_ip": "1"})
        return first, last

    def pending(self, destination: str | None = None) -> int:
        """How many events wait to be sent, from the counters (one row per attribute set); with
        a destination, those a flush for it sends: its own and those not yet claimed.

        The marked batch counts too (its rows stay PENDING), so a batch a dead flush left marked
        still makes `flush --if-due` run and put it back."""
        if destination is None:
            rows = self._read("SELECT total(n) FROM counts WHERE state = ?", (_PENDING,))
        else:
            rows = self._read(
                "SELECT total(c.n) FROM counts c JOIN attributes a ON a.id = c.attr_id "
                "WHERE c.state = ? AND (a.destination = ? OR a.destination IS NULL)",
                (_PENDING, destination),
            )
        return int(rows[0][0])

    def by_destination(self) -> dict[str | None, Held]:
        """{destination: Held} for every destination holding events (None: tracked before
        destinations were recorded), from the counters."""
        from hamustro_cli.records import Held  # here, not at the top: keeps `track` light

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

    # -- one flush's batches ----------------------------------------------------------------

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
        from functools import partial  # both here, not at the top: keep `track` light

        from hamustro_cli.records import QueuedEvent

        sql = (
            f"SELECT {', '.join(QueuedEvent._fields)} FROM events "
            "WHERE state = ? AND attr_id = ? AND id > ? ORDER BY id LIMIT ?"
        )
        rows = self._read_escaped(sql, (_PENDING, attr_id, after, limit))
        # tuple.__new__ in C, without _make's length check (the SELECT has the fields): a third
        # cheaper, and a flush builds one per event
        return list(map(partial(tuple.__new__, QueuedEvent), rows))

    def _read_escaped(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows for the sender. Text that is not UTF-8 (a tampered or damaged file) is read with
        its bad bytes as lone surrogates, which the sender finds and sets aside as rejected:
        one damaged row must not stop every flush. Read strictly first (the fast path)."""
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.OperationalError as exc:
            # sqlite3 says only in words that a column did not decode
            if "decode" not in str(exc).lower():
                raise _spool_error(exc, self.path, "reading the spool") from None
        return self._decoding("surrogateescape", lambda: self._read(sql, params))

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

    # -- sync state -------------------------------------------------------------------------

    def sync_state(self, destination: str | None = None) -> SyncState:
        """Where sending to `destination` stands (see _SYNC_KEYS)."""
        keys = {key: _scoped(key, destination) for key in _SYNC_KEYS[:-1]}
        found = self._get_metas("created_at", *keys.values())
        metas = {key: found.get(name) for key, name in keys.items()}
        return SyncState(
            failed_at=_int(metas["failed_at"]),
            created_at=_int(found.get("created_at")) or 0,
            last_sync_time=_int(metas["last_sync_time"]),
            backoff_until=_int(metas["backoff_until"]),
            failures=_int(metas["failures"]) or 0,
            halted=metas["halted"] is not None,
            halt_reason="" if metas["halted"] is None else metas["halted"] or HALTED_UNSAID,
        )

    def record_failure(
        self,
        error: dict[str, Any],
        failures: int,
        *,
        backoff_until: int | None = None,
        halt_reason: str | None = None,
        destination: str | None = None,
    ) -> None:
        """A flush for `destination` could not deliver: count it, keep its error, and back off
        or stop (given a `halt_reason`: halted until a person acts)."""
        changes: dict[str, str | None] = {"failures": str(failures), "last_error": _to_json(error)}
        if type(error.get("at")) is int:  # when it failed, by the clock then (see triggers.trusted_times)
            changes["failed_at"] = str(error["at"])
        if halt_reason is not None:
            changes["halted"] = halt_reason or HALTED_UNSAID
        if backoff_until is not None:
            changes["backoff_until"] = str(backoff_until)
        self._set_metas("recording a failed send", _scoped_all(changes, destination))

    def record_error(self, error: dict[str, Any], destination: str | None = None) -> None:
        """Keep an error (a refused batch, an unusable protobuf) for `status`, without counting
        a failed flush: it holds no backoff."""
        self._set_metas("recording an error", _scoped_all({"last_error": _to_json(error)}, destination))

    def record_success(self, keep_error: bool, destination: str | None = None) -> None:
        """A flush for `destination` delivered (or set aside) what it took up: no backoff, no
        stop, and unless something was rejected, no last error."""
        clear: dict[str, str | None] = {
            "backoff_until": None,
            "failures": None,
            "halted": None,
            "failed_at": None,
        }
        if not keep_error:
            clear["last_error"] = None
        self._set_metas("recording state", _scoped_all(clear, destination))

    def last_error(self, destination: str | None = None) -> dict[str, Any] | None:
        import json

        key = _scoped("last_error", destination)
        raw = self._get_metas(key).get(key)
        try:
            error = json.loads(raw) if raw else None
        except ValueError:
            return None
        return error if isinstance(error, dict) else None

    def resolved_address(self, host: str) -> str | None:
        """The address the last flush resolved `host` to (`track` never waits on DNS)."""
        return self._get_metas(f"resolved:{host}").get(f"resolved:{host}")

    def remember_address(self, host: str, address: str) -> None:
        if self.resolved_address(host) != address:
            self._set_metas("recording the collector's address", {f"resolved:{host}": address})

    def batch_size(self, destination: str | None = None) -> BatchSize | None:
        """The batch size a 413 or a timeout taught the sender for `destination`, and its
        successes in a row since (sending.BatchSizer); None when none holds (then
        max_batch_events)."""
        from hamustro_cli.records import BatchSize

        key = _scoped("batch_size", destination)
        raw = (self._get_metas(key).get(key) or "").split()
        if len(raw) != 2 or not all(part.isascii() and part.isdigit() and len(part) < 10 for part in raw):
            return None  # never set, or not what this code writes: start from max_batch_events
        size, streak = int(raw[0]), int(raw[1])
        return BatchSize(size, streak) if size >= 1 else None

    def remember_batch_size(self, learned: BatchSize | None, destination: str | None = None) -> None:
        value = None if learned is None else f"{learned.size} {learned.streak}"
        self._set_metas("recording the batch size", {_scoped("batch_size", destination): value})

    # -- looking ----------------------------------------------------------------------------

    def session_rows(self) -> dict[int, SessionRow]:
        """{session row: SessionRow}, to show (`status`, `session`): text that is not UTF-8 is
        shown with its bad bytes escaped rather than failing the command."""
        rows = self._leniently(
            lambda: self._read(
                "SELECT id, session, device_id, client_id, system_version, product_version, last_nr "
                "FROM sessions"
            )
        )
        from hamustro_cli.records import SessionRow

        return {r[0]: SessionRow(id=r[0], attributes=Session(*r[1:6]), last_nr=r[6]) for r in rows}

    def attr_rows(self) -> dict[int, AttrRow]:
        """{attribute set id: AttrRow}: the full attributes each set's events are sent with
        (text that is not UTF-8 as lone surrogates: see _read_escaped)."""
        rows = self._read_escaped(
            "SELECT a.id, s.id, s.session, s.device_id, s.client_id, s.system_version, "
            "s.product_version, a.system, a.product_git_hash FROM attributes a "
            "JOIN sessions s ON s.id = a.session_id"
        )
        from hamustro_cli.records import AttrRow

        return {r[0]: AttrRow(id=r[0], session_row=r[1], attributes=Session(*r[2:9])) for r in rows}

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
        from hamustro_cli.records import Counts

        return {row: Counts(*entry) for row, entry in by_session.items()}

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
            raise _spool_error(exc, self.path, "recounting the spool") from None

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
        from hamustro_cli.records import Mismatch

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

    def reclaim(self, step: int = VACUUM_STEP) -> int:
        """Give free pages back to the file system after a flush, `step` pages per transaction so
        that `track` never waits long; then checkpoint the WAL (and journal_size_limit cuts it
        back). A file without incremental auto_vacuum is switched (a VACUUM) once it is small.
        Returns the pages freed. Failures are ignored: this is housekeeping."""
        from hamustro_cli.migrations import VACUUM_MAX_BYTES, switch_auto_vacuum

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
        from contextlib import contextmanager

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

    def totals(self) -> Counts:
        from hamustro_cli.records import total

        return total(self.counts())

    def at_of(self, event_id: int) -> int | None:
        rows = self._read("SELECT at FROM events WHERE id = ?", (event_id,))
        return rows[0][0] if rows else None

    def iter_events(self, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Every queued event, oldest first, for `status --events`."""
        from hamustro_cli.queue import EventFilter

        return self.select(EventFilter(limit=limit))

    @staticmethod
    def _listing() -> str:
        """The SELECT of ListedEvent's fields, `events e` joined to its session and attribute set."""
        from hamustro_cli.records import ListedEvent, QueuedEvent  # not at the top: keeps `track` light

        names = (*QueuedEvent._fields, *ListedEvent._fields[1:])
        columns = ", ".join(_LISTED_FROM.get(name, f"e.{name}") for name in names)
        return (
            f"SELECT {columns} FROM events e JOIN sessions s ON s.id = e.session_id "
            "LEFT JOIN attributes a ON a.id = e.attr_id"
        )

    def _where(self, chosen: EventFilter, dead_mark: bool = False) -> tuple[str, list[Any]]:
        """The filter as a WHERE clause over `events e` joined to `sessions s` and `attributes a`."""
        from hamustro_cli.queue import Shown

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
            raise _spool_error(exc, self.path, "reading the spool") from None

    def _leniently(self, read: Callable[[], _T]) -> _T:
        """read() with text that is not UTF-8 (a tampered or damaged spool) decoded with its bad
        bytes escaped (\\xff), so that `events` and `status --events` show such a row instead of
        failing. Only around the reads that show rows, never between them: everything else
        (the sender above all) reads text strictly."""
        return self._decoding("backslashreplace", read)

    def _decoding(self, errors: str, read: Callable[[], _T]) -> _T:
        """read() with the connection's text decoded as UTF-8 with `errors` (a codec error
        handler), then the connection's own decoding back. A C-level factory keeps a million
        rows fast."""
        import functools

        before = self.db.text_factory
        self.db.text_factory = functools.partial(str, encoding="utf-8", errors=errors)
        try:
            return read()
        finally:
            self.db.text_factory = before

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

    # -- the queue by hand: every change `hamustro events` makes goes through here ------------

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
        from hamustro_cli.queue import Change

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
            changed: int = db.execute(sql, params).rowcount
        return changed


def _listed(r: Sequence[Any]) -> ListedEvent:
    """A row of Spool._listing as its record."""
    from hamustro_cli.records import ListedEvent, QueuedEvent  # not at the top: keeps `track` light

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


def _user_version(db: sqlite3.Connection) -> int:
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def _count(db: sqlite3.Connection, attr_id: int, state: int, delta: int) -> None:
    """Add `delta` to the number of the attribute set's events in `state`, inside the caller's
    transaction. Every change of an event's state goes through here, in the transaction that
    changes the rows."""
    if delta:
        db.execute(
            "INSERT INTO counts (attr_id, state, n) VALUES (?, ?, ?) "
            "ON CONFLICT (attr_id, state) DO UPDATE SET n = n + excluded.n",
            (attr_id, state, delta),
        )


def _readdress(db: sqlite3.Connection, other: str | None, destination: str, only_pending: bool) -> int:
    """Give the attribute sets of destination `other` (None: not recorded) to `destination`,
    inside the caller's transaction. Returns how many events they held (pending ones only, or
    in any state): the counters, read in the same transaction."""
    sql = "SELECT total(c.n) FROM counts c JOIN attributes a ON a.id = c.attr_id WHERE a.destination IS ?"
    (held,) = db.execute(sql + (f" AND c.state = {_PENDING}" if only_pending else ""), (other,)).fetchone()
    db.execute("UPDATE attributes SET destination = ? WHERE destination IS ?", (destination, other))
    return int(held)


def _scoped_all(values: dict[str, str | None], destination: str | None) -> dict[str, str | None]:
    return {_scoped(key, destination): value for key, value in values.items()}


def _write_metas(db: sqlite3.Connection, values: dict[str, str | None]) -> None:
    """Set (or with None, delete) meta keys inside the caller's transaction."""
    for key, value in values.items():
        if value is None:
            db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


def _to_json(error: dict[str, Any]) -> str:
    import json

    return json.dumps(error)


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
