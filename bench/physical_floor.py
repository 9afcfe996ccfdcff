"""The least a Python program can do to queue one event durably: the yardstick for `track`.

Run it with the interpreter the client is installed with, started bare:

    VENV/bin/python -I -S shared/bench/physical_floor.py DIR

It opens (creating once) DIR/floor.sqlite3 in WAL mode with synchronous=FULL, and commits one
row in one BEGIN IMMEDIATE transaction: what `track` must do at the least, minus everything
else. Time it as a whole process, alternated with `hamustro track` (pairs), and compare medians.
"""

import os
import sqlite3
import sys
import time

path = os.path.join(sys.argv[1] if len(sys.argv) > 1 else ".", "floor.sqlite3")
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
db.execute("CREATE TABLE IF NOT EXISTS events (id INTEGER PRIMARY KEY, event TEXT, at INTEGER, params TEXT)")
db.execute("BEGIN IMMEDIATE")
db.execute(
    "INSERT INTO events (event, at, params) VALUES (?, ?, ?)", ("floor.event", int(time.time()), '{"k":"v"}')
)
db.execute("COMMIT")
db.close()
