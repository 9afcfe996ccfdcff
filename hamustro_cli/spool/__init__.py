"""The durable queue: one SQLite database (WAL) in the spool directory. Every SQL statement
and every state of an event lives in this package.

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

This module holds only what `track` needs (opening the spool, its transactions, queuing, and
the reads its trigger check makes: `TrackSpool`), so that `track` loads one module of it. The
other jobs are mixins in the package's other modules, brought together in `full.Spool`, which
the commands that need them import: `claiming` (one flush's batches), `syncstate` (what flushes
record), `counting` (counts and recounts), `browsing` (`events`, `status --events`), `changes`
(the queue by hand), `upkeep` (space and pages), `text` (reading text that is not UTF-8),
`classify` (what a failure is). Their types: `records`, `queue` (filters), `problems`.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from enum import IntEnum
from typing import Any, NamedTuple, TypeVar

from hamustro_cli.errors import InputError, SpoolError
from hamustro_cli.events import UINT32_MAX, NewEvent
from hamustro_cli.session import Session
from hamustro_cli.spooldir import (
    BUSY_TIMEOUT,
    DB_NAME,
    SCHEMA_VERSION,
    check_database_files,
    ignore_file_size_signal,
    on_read_only_mount,
    prepare_dir,
    private_file,
    problem_kinds,
    read_only_reason,
)

__all__ = ["BUSY_TIMEOUT", "DB_NAME", "SCHEMA_VERSION", "NewEvent", "State", "SyncState", "TrackSpool"]


_Opened = TypeVar("_Opened", bound="TrackSpool")


class State(IntEnum):
    """The `state` column of an event. (Being sent is the mark, not a state: see `mark`.)"""

    PENDING = 0
    REJECTED = 2


_PENDING, _REJECTED = int(State.PENDING), int(State.REJECTED)

MAX_NR = UINT32_MAX  # nr is a uint32 on the wire
WAL_LIMIT = 4 * 1024 * 1024  # bytes of WAL kept after a checkpoint (journal_size_limit)
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


# connections a forked child found open, abandoned by Spool.close: never closed nor finalized
_ABANDONED: list[sqlite3.Connection] = []

_TABLES = {"sessions", "events", "meta"}
_ABSURD_VERSION = 10_000  # no hamustro will ever have written this many migrations


def _check_ours(db: sqlite3.Connection, path: str) -> None:
    """Refuse a database hamustro did not write: tables of its own at schema version 0, our
    tables missing at a later one, or a schema version no hamustro ever wrote (negative or
    absurd). Nothing is changed in it. (Here, not in a module of its own: the `track` that
    finds no spool creates it.)"""
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
    raise SpoolError(f"{path} {why}; fix: {fix}", problem_kinds().NOT_OURS, fix)


class _Transaction:
    def __init__(self, spool: TrackSpool, doing: str):
        self.spool, self.doing = spool, doing

    def __enter__(self) -> sqlite3.Connection:
        self.spool.check_writable(self.doing)
        try:
            self.spool.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise _failed(exc, self.spool.path, self.doing) from None
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
            raise _failed(exc, self.spool.path, self.doing) from None


class TrackSpool:
    """One connection to the spool database, used by one thread at a time (any thread: a
    ClientTracker shared by threads serializes their use), in the process that opened it.
    What `track` does with it; full.Spool adds every other job."""

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
                raise _failed(exc, self.path, "opening the spool") from None
        try:
            if self.read_only is not None and _user_version(self.db) != SCHEMA_VERSION:
                raise self._refusal("bringing its schema up to date")
            if _user_version(self.db) != SCHEMA_VERSION:  # new, older, or not ours at all
                from hamustro_cli.migrations import migrate  # a new or older spool only: keeps `track` light

                _check_ours(self.db, self.path)
                migrate(self.db, self.path)
        except SpoolError:
            self.db.close()
            raise
        except (sqlite3.Error, OSError) as exc:
            self.db.close()
            raise _failed(exc, self.path, "opening the spool") from None

    def _connect_read_only(self) -> sqlite3.Connection:
        """A read-only connection to a spool that cannot be written. A WAL database needs its
        -shm (SQLite's wal.html, "Read-only databases"): `mode=ro` uses the -wal and -shm a live
        spool has. Without them on a read-only mount (the last writer closed cleanly, so every
        change is in the database file and nothing can change it through this mount) the file
        is opened `immutable`; with a -wal but no -shm the changes it holds cannot be read, and
        that is said."""
        from urllib.parse import quote  # a read-only spool only: keeps `track` light

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
                raise _failed(exc, self.path, "opening the spool read-only") from None
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
            raise _failed(exc, self.path, "reading the spool") from None

    def close(self) -> None:
        """Close the connection; in another process than the one that opened it (a child of a
        fork), abandon it instead: closing it there releases the opener's POSIX locks and can
        checkpoint and reset a WAL that other processes are writing (sqlite.org/howtocorrupt.html,
        2.6). The abandoned connection is kept so that it is never finalized either."""
        if self.pid == os.getpid():
            self.db.close()
        else:
            _ABANDONED.append(self.db)

    def __enter__(self: _Opened) -> _Opened:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transaction(self, doing: str = "updating the spool") -> _Transaction:
        """BEGIN IMMEDIATE ... COMMIT, rolled back whole on any error."""
        return _Transaction(self, doing)

    def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self.db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise _failed(exc, self.path, "reading the spool") from None

    def _get_metas(self, *keys: str) -> dict[str, str]:
        marks = ",".join("?" * len(keys))
        return dict(self._read(f"SELECT key, value FROM meta WHERE key IN ({marks})", keys))

    def _set_metas(self, doing: str, values: dict[str, str | None]) -> None:
        with self.transaction(doing) as db:
            _write_metas(db, values)

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
            next_id = _next_id(db, count)
            db.executemany(
                "INSERT INTO events (id, session_id, attr_id, nr, at, event, user_id, ip, parameters, "
                "is_testing) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                # by position: NewEvents, or the plain tuples parse_lines makes in the same layout
                [
                    (next_id + i, session_row, attr_id, nr, at, event, user_id, ip, parameters, is_testing)
                    for i, (nr, (event, at, user_id, ip, parameters, is_testing)) in enumerate(
                        enumerate(events, first)
                    )
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

    def resolved_address(self, host: str) -> str | None:
        """The address the last flush resolved `host` to (`track` never waits on DNS)."""
        return self._get_metas(f"resolved:{host}").get(f"resolved:{host}")


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


# Ids are never reused: SQLite alone gives max(id) + 1, so deleting the newest events (a flush's
# ack, a drop) would hand their ids out again, and an id from an older listing could name
# another event by the time `events drop ID` ran. Every deletion raises `id_floor` in meta to
# the largest id it removed (in its transaction: raise_id_floor), and every insert starts above
# it (_next_id). Cheaper for `track` than AUTOINCREMENT, whose sqlite_sequence row is rewritten
# for every row inserted (10% of a 100,000-line `track --stdin`): one seek a transaction here.
# A spool from before the floor has none until its first deletion: only what is deleted from
# then on is known.
_ID_MAX = 2**63 - 1  # SQLite's largest rowid


def _next_id(db: sqlite3.Connection, count: int) -> int:
    """The first of `count` ids for new events: above every id in the table and every id ever
    deleted. A floor from the file that is not a number, or leaves no room, is not trusted."""
    top, floor = db.execute(
        "SELECT (SELECT max(id) FROM events), (SELECT value FROM meta WHERE key = 'id_floor')"
    ).fetchone()
    start = (top or 0) + 1
    try:
        above = int(floor) + 1
    except (TypeError, ValueError):
        return start
    return above if start < above <= _ID_MAX - count + 1 else start


def raise_id_floor(db: sqlite3.Connection, deleted_max: int | None) -> None:
    """Record, in the caller's deleting transaction, that ids up to `deleted_max` were used."""
    if deleted_max is None:
        return
    db.execute(
        "INSERT INTO meta (key, value) VALUES ('id_floor', ?) ON CONFLICT (key) DO UPDATE SET "
        "value = CASE WHEN CAST(value AS INTEGER) >= CAST(excluded.value AS INTEGER) "
        "AND value GLOB '[0-9]*' THEN value ELSE excluded.value END",
        (str(deleted_max),),
    )


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


def _failed(exc: BaseException, path: str, doing: str) -> SpoolError:
    """classify.spool_error, imported only when something failed: keeps `track` light."""
    from hamustro_cli.spool.classify import spool_error

    return spool_error(exc, path, doing)
