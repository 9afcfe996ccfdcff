"""The spool's schema: numbered migrations, each applied whole or not at all.

MIGRATIONS[i] brings the schema from version i to i + 1. Each runs in one transaction together
with the new PRAGMA user_version, so a crash never leaves one half-applied."""

from __future__ import annotations

import sqlite3

from hamustro_cli.errors import SpoolError
from hamustro_cli.problems import SpoolProblem

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
        # WAL is a property of the file: set it once, outside any transaction.
        db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN IMMEDIATE")
    try:
        version = schema_version(db)  # another process may have migrated meanwhile
        for number in range(version, SCHEMA_VERSION):
            for statement in MIGRATIONS[number]:
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number + 1}")
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
