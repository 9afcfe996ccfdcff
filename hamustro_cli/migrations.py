"""The spool's schema: numbered migrations, each applied whole or not at all.

MIGRATIONS[i] brings the schema from version i to i + 1. Each runs in one transaction together
with the new PRAGMA user_version, so a crash never leaves one half-applied.

Version 2: events reference the exact attribute set they were tracked under (`attributes`:
session, system, product_git_hash), and `counts` keeps how many events each attribute set has
in each state, so no command counts rows. Existing events get their session's attributes as
the old schema stored them (the only ones known); the counters are computed from the rows.

Version 3: each attribute set records its destination (`destination`: a keyed fingerprint of
collector_url, client_id and shared_secret_key, see destination.py; never the secret), so a
flush sends only the events tracked for its own collector. Existing sets get NULL: tracked
before destinations were recorded; the next flush claims them (Spool.claim_unrecorded).

Besides the schema, the file should reclaim disk (`auto_vacuum = INCREMENTAL`). A new spool
gets it before its first table; an existing one needs a VACUUM, which cannot run inside the
migration's transaction: `migrate` runs it after, only on a small spool (see VACUUM_MAX_BYTES),
and a flush that leaves the spool small runs it later otherwise (see `Spool.reclaim`)."""

from __future__ import annotations

import sqlite3

from hamustro_cli.errors import SpoolError
from hamustro_cli.spool.problems import SpoolProblem
from hamustro_cli.spooldir import SCHEMA_VERSION

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
    (
        # One row per (session, system, product_git_hash) events were tracked under; the nr
        # counter stays on the session. Migrated sets keep their session's row id.
        """CREATE TABLE attributes (
            id INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions(id),
            system TEXT,
            product_git_hash TEXT
        )""",
        "CREATE INDEX attributes_by_session ON attributes (session_id, system, product_git_hash)",
        "INSERT INTO attributes (id, session_id, system, product_git_hash) "
        "SELECT id, id, system, product_git_hash FROM sessions",
        "ALTER TABLE sessions DROP COLUMN system",
        "ALTER TABLE sessions DROP COLUMN product_git_hash",
        "ALTER TABLE events ADD COLUMN attr_id INTEGER REFERENCES attributes(id)",
        "UPDATE events SET attr_id = session_id",
        "DROP INDEX events_by_state",
        "CREATE INDEX events_by_state ON events (state, attr_id, id)",
        # Events of one attribute set in one state: kept by Spool._count in the transaction of
        # every change of state, recounted by `hamustro doctor` if they ever disagree.
        """CREATE TABLE counts (
            attr_id INTEGER NOT NULL REFERENCES attributes(id),
            state INTEGER NOT NULL,
            n INTEGER NOT NULL,
            PRIMARY KEY (attr_id, state)
        ) WITHOUT ROWID""",
        "INSERT INTO counts (attr_id, state, n) SELECT attr_id, state, count(*) FROM events "
        "GROUP BY attr_id, state",
    ),
    (
        "ALTER TABLE attributes ADD COLUMN destination TEXT",
        "DROP INDEX attributes_by_session",
        "CREATE INDEX attributes_by_session ON attributes "
        "(session_id, system, product_git_hash, destination)",
    ),
]
VACUUM_MAX_BYTES = 16 * 1024 * 1024  # a spool this small is vacuumed at once when it is upgraded


def schema_version(db: sqlite3.Connection) -> int:
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    return version


def migrate(db: sqlite3.Connection, path: str) -> None:
    """Bring the database at `path` (opened with isolation_level=None) to SCHEMA_VERSION.

    Refuses a newer schema, changing nothing. sqlite3 errors propagate to the caller."""
    version = schema_version(db)
    if version == SCHEMA_VERSION:
        return
    if version > SCHEMA_VERSION:
        raise SpoolError(
            f"spool {path} has schema version {version}, newer than this hamustro "
            f"understands ({SCHEMA_VERSION}); upgrade hamustro, or use another --spool-dir. "
            "Nothing was changed.",
            SpoolProblem.NEWER_SCHEMA,
        )
    if version == 0:
        # Both are properties of the file: set once, outside any transaction, auto_vacuum
        # before the first table.
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        _switch_to_wal(db)
    db.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(db)  # another process may have migrated meanwhile
        for number in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[number]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")
        if version == 0:
            # a new spool holds no event without an address: no flush need scan for them
            # (Spool.fill_unknown_ip; an upgraded spool is scanned once)
            db.execute("INSERT INTO meta (key, value) VALUES ('unknown_ip', '0')")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    switch_auto_vacuum(db, VACUUM_MAX_BYTES)


SQLITE_BUSY = 5
WAL_SWITCH_WAIT = 60.0  # seconds, the busy timeout the spool's connections are opened with


def _switch_to_wal(db: sqlite3.Connection) -> None:
    """`PRAGMA journal_mode=WAL` on a new spool. When other connections are creating the same
    spool this moment (many threads or processes tracking at once into a new spool dir),
    SQLite answers SQLITE_BUSY at once, without waiting in its busy handler (two connections
    both waiting to upgrade their lock would deadlock): try again, briefly, until the wait a
    busy connection would have had."""
    import time

    deadline = time.monotonic() + WAL_SWITCH_WAIT
    pause = 0.001
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL").fetchall()
            return
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            busy = (code & 0xFF) == SQLITE_BUSY if code is not None else "locked" in str(exc)
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


def switch_auto_vacuum(db: sqlite3.Connection, max_bytes: int) -> bool:
    """Give the file `auto_vacuum = INCREMENTAL` if it has not got it, by a VACUUM (outside any
    transaction), but only if the file is at most `max_bytes`: a VACUUM rewrites the database
    and holds the write lock while it does, so `track` would wait that long. True when the file
    has it now. A busy or failed VACUUM changes nothing and is tried again later."""
    if db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        return True
    (pages,) = db.execute("PRAGMA page_count").fetchone()
    (free,) = db.execute("PRAGMA freelist_count").fetchone()
    (size,) = db.execute("PRAGMA page_size").fetchone()
    if (pages - free) * size > max_bytes:  # a VACUUM copies what is in use, not the free pages
        return False
    try:
        db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        db.execute("VACUUM")
    except sqlite3.OperationalError:
        return False
    return bool(db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2)
