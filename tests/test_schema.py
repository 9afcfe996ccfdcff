"""The spool's schema version 2: events keep the attribute set they were tracked under, and
per-set counters per state that every change of state keeps. Real SQLite files, a real
collector on loopback, real processes for the races and for a migration killed half-way."""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SETTINGS, invoke, start_collector, write_config
from specschema import decode

from hamustro_cli.events import NewEvent
from hamustro_cli.migrations import MIGRATIONS
from hamustro_cli.session import Session
from hamustro_cli.spool import State
from hamustro_cli.spool.filters import Change, EventFilter
from hamustro_cli.spool.full import Spool
from hamustro_cli.spool.rows import Counts
from hamustro_cli.spooldir import SCHEMA_VERSION
from hamustro_cli.tracker import ClientTracker

A = Session.from_settings("dev", "client", "1", "2", "a", "hash-a")
B = A._replace(system="b")
OTHER = Session.from_settings("dev", "client", "1", "3", "x", None)
ROOT = Path(__file__).resolve().parent.parent


def queue(spool: Spool, n: int, session: Session = A) -> tuple[int, int]:
    return spool.enqueue(session, [NewEvent(f"e{i}", 1_700_000_000 + i) for i in range(n)])


def consistent(spool: Spool) -> None:
    assert spool.check_counts() == []


# -- attributes travel with the event --------------------------------------------------------


def test_events_keep_the_attributes_they_were_tracked_under(isolated, collector, monkeypatch):
    write_config(isolated / "config.toml", collector_url=collector.url, **SETTINGS)
    monkeypatch.setenv("HAMUSTRO_SYSTEM", "a")
    invoke("track", "under-a-1")
    invoke("track", "under-a-2")
    monkeypatch.setenv("HAMUSTRO_SYSTEM", "b")
    monkeypatch.setenv("HAMUSTRO_PRODUCT_GIT_HASH", "fff999")
    invoke("track", "under-b")
    monkeypatch.setenv("HAMUSTRO_SYSTEM", "a")
    monkeypatch.delenv("HAMUSTRO_PRODUCT_GIT_HASH")
    invoke("track", "under-a-3")
    invoke("flush")
    bodies = [decode(r["body"]) for r in collector.requests if r["status"] == 200]
    assert len({b.session for b in bodies}) == 1  # one session...
    sent = {}
    for body in bodies:  # ...but no Collection mixes attribute sets
        for p in body.payloads:
            sent[p.event] = (body.system, body.product_git_hash, p.nr)
    assert sent == {
        "under-a-1": ("a", "abc123", 1),
        "under-a-2": ("a", "abc123", 2),
        "under-b": ("b", "fff999", 3),
        "under-a-3": ("a", "abc123", 4),
    }
    assert [decode(r["body"]).system for r in collector.requests] == ["a", "b"]  # oldest first
    received = {e["event"]: e.get("system") for e in collector.received()}
    assert received == {"under-a-1": "a", "under-a-2": "a", "under-b": "b", "under-a-3": "a"}


def test_one_session_under_two_attribute_sets_keeps_one_nr_counter(tmp_path):
    with Spool(tmp_path) as spool:
        assert queue(spool, 2, A) == (1, 2)
        assert queue(spool, 2, B) == (3, 4)
        assert queue(spool, 1, A) == (5, 5)
        sets = spool.attr_rows()
        order = spool.pending_sets()
        assert [sets[r].attributes for r in order] == [A, B]
        assert len({sets[r].session_row for r in order}) == 1
        (counts,) = spool.counts().values()
        assert counts[:3] == (5, 0, 0)
        consistent(spool)


# -- the migration -----------------------------------------------------------------------------


def make_v1_spool(directory: Path) -> Path:
    """A spool as version 1 made it: two sessions, events pending, rejected and marked."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / "spool.sqlite3"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("BEGIN")
    for statement in MIGRATIONS[0]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 1")
    for row, (s, n) in enumerate([(A, 6), (OTHER, 3)], 1):
        db.execute(
            "INSERT INTO sessions (id, session, device_id, client_id, system_version, "
            "product_version, system, product_git_hash, last_nr) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row, *s, n),
        )
        for nr in range(1, n + 1):
            db.execute(
                "INSERT INTO events (session_id, nr, at, event, state, reason) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    row,
                    nr,
                    1_700_000_000 + nr,
                    f"s{row}e{nr}",
                    2 if nr == 2 else 0,
                    "bad" if nr == 2 else None,
                ),
            )
    # session 1's events 3..4 (ids 3, 4) are the batch a dead flush left marked
    db.execute("INSERT INTO meta (key, value) VALUES ('sending', '1 3 4')")
    db.execute("COMMIT")
    db.close()
    os.chmod(path, 0o600)
    return path


def test_ids_are_never_reused_in_an_old_spool_once_it_deletes(tmp_path):
    """From an old spool (events ids 1..9, no id floor): the newest events dropped, then an
    event queued, then everything delivered and one more queued: no id is handed out twice."""
    spool_dir = tmp_path / "spool"
    make_v1_spool(spool_dir)
    with Spool(spool_dir) as spool:
        assert spool.change(Change.DROP, EventFilter(ids=(8, 9))) == 2
        queue(spool, 1)
        ids = [r[0] for r in spool.db.execute("SELECT id FROM events ORDER BY id")]
        assert ids == [1, 2, 3, 4, 5, 6, 7, 10]
        spool.release()  # the batch the v1 spool left marked: pending again
        assert spool.change(Change.DROP, EventFilter(ids=tuple(ids))) == 8
        queue(spool, 2)
        assert [r[0] for r in spool.db.execute("SELECT id FROM events ORDER BY id")] == [11, 12]
        consistent(spool)


def test_a_version_1_spool_is_upgraded_with_its_events_in_every_state(tmp_path, collector):
    spool_dir = tmp_path / "spool"
    make_v1_spool(spool_dir)
    with Spool(spool_dir) as spool:
        assert spool.schema_version == SCHEMA_VERSION
        consistent(spool)
        sets = spool.attr_rows()
        assert sorted(r.attributes for r in sets.values()) == sorted([A, OTHER])
        counts = spool.counts()
        assert counts[1][:3] == (3, 2, 1)  # 5 pending rows, 2 of them in the marked batch
        assert counts[2][:3] == (2, 0, 1)
        assert spool.pending() == 7
        assert [e["state"] for e in spool.iter_events()].count("rejected") == 2
        assert spool.db.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # small: vacuumed
    with ClientTracker(collector_url=collector.url, spool_dir=str(spool_dir), **SETTINGS) as tracker:
        report = tracker.flush()
        assert report.sent == 7 and tracker.spool.totals()[:3] == (0, 0, 2)
        consistent(tracker.spool)
    sent = {
        (decode(r["body"]).system, p.event) for r in collector.requests for p in decode(r["body"]).payloads
    }
    assert sent == {("a", f"s1e{n}") for n in (1, 3, 4, 5, 6)} | {("x", f"s2e{n}") for n in (1, 3)}


HANG = """
import os, sqlite3, sys, time
from hamustro_cli import migrations
flag = sys.argv[2]
def hang():
    open(flag, "w").close()
    time.sleep(600)
    return 0
migrations.MIGRATIONS[-1] = (*migrations.MIGRATIONS[-1], "SELECT test_hang()")
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.create_function("test_hang", 0, hang)
migrations.migrate(db, sys.argv[1])
"""


def kill_migration_at_its_end(path: Path, flag: Path) -> None:
    """Upgrade the spool at `path` in a real process, SIGKILLed once it has run the last
    migration's last statement: inside the transaction, before its COMMIT."""
    child = subprocess.Popen([sys.executable, "-c", HANG, str(path), str(flag)], cwd=ROOT)
    try:
        for _ in range(3000):
            if flag.exists() or child.poll() is not None:
                break
            time.sleep(0.01)
        assert flag.exists(), "the migration never reached its last statement"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def test_a_migration_killed_half_way_leaves_version_1_intact(tmp_path):
    spool_dir = tmp_path / "spool"
    path = make_v1_spool(spool_dir)
    with sqlite3.connect(path) as db:
        before = db.execute("SELECT * FROM events ORDER BY id").fetchall()
    kill_migration_at_its_end(path, tmp_path / "inside")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {"sessions", "events", "meta"}
        assert db.execute("SELECT * FROM events ORDER BY id").fetchall() == before
    with Spool(spool_dir) as spool:  # and the next open upgrades it whole
        assert spool.schema_version == SCHEMA_VERSION
        assert spool.pending() == 7
        consistent(spool)


# -- the counters under every change of state ------------------------------------------------


def test_counters_follow_every_change_of_state(tmp_path):
    with Spool(tmp_path) as spool:
        queue(spool, 6, A)  # track
        queue(spool, 2, B)
        consistent(spool)
        (a, b) = spool.pending_sets()
        batch = spool.next_batch(a, 6)
        spool.mark(a, batch[0].id, batch[-1].id)
        spool.ack(a, batch[0].id, batch[1].id, sync_time=1)  # partial ack
        consistent(spool)
        assert spool.totals()[:3] == (2, 4, 0)
        spool.reject(a, [batch[2].id, batch[3].id], "refused")  # reject
        consistent(spool)
        assert spool.release() == 2  # release
        consistent(spool)
        assert spool.totals()[:3] == (4, 0, 2)
        spool.reject(a, [batch[2].id], "again")  # already rejected: counted once
        consistent(spool)
        assert spool.retry_rejected() == 2  # retry_rejected
        consistent(spool)
        rest = spool.next_batch(a, 10)
        spool.mark(a, rest[0].id, rest[-1].id)
        spool.ack(a, rest[0].id, rest[-1].id, sync_time=2)  # the ack that ends the batch
        consistent(spool)
        spool.mark(b, *[r.id for r in spool.next_batch(b, 10)])  # a flush that dies here...
    with Spool(tmp_path) as spool:
        assert spool.totals()[:2] == (0, 2)
        assert spool.release() == 2  # ...its mark recovered by the next
        consistent(spool)
        assert spool.totals() == Counts(2, 0, 0, spool.totals().oldest_live, spool.totals().oldest)


def test_a_wrong_counter_is_found_and_recounted(tmp_path):
    with Spool(tmp_path) as spool:
        queue(spool, 3)
        spool.db.execute("UPDATE counts SET n = 99")
        (wrong,) = spool.check_counts()
        assert (wrong.state, wrong.counted, wrong.kept) == (State.PENDING, 3, 99)
        assert spool.recount() == [wrong]
        consistent(spool)
        assert spool.pending() == 3


def _track_and_flush(spool_dir: str, url: str, system: str, rounds: int) -> None:
    settings = {**SETTINGS, "system": system}
    with ClientTracker(collector_url=url, spool_dir=spool_dir, **settings) as tracker:
        for i in range(rounds):
            tracker.track_many([NewEvent(f"{system}-{i}-{j}", 1_700_000_000) for j in range(5)])
            if i % 3 == 0:
                tracker.flush()


@pytest.mark.heavy
def test_processes_tracking_and_flushing_concurrently_keep_the_counters_right(tmp_path):
    collector = start_collector(tmp_path)
    try:
        spool_dir = str(tmp_path / "spool")
        ctx = multiprocessing.get_context("spawn")
        procs = [
            ctx.Process(target=_track_and_flush, args=(spool_dir, collector.url, s, 30)) for s in ("a", "b")
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        with Spool(spool_dir) as spool:
            consistent(spool)
            left = spool.pending()
        received = collector.received()
        assert len(received) + left == 300
        assert all(e["event"].startswith(e["system"] + "-") for e in received)
    finally:
        collector.server.stop()
        collector.server.out.close()


def test_doctor_recounts_counters_that_disagree(isolated, collector):
    write_config(isolated / "config.toml", collector_url=collector.url, **SETTINGS)
    invoke("track", "one")
    with sqlite3.connect(isolated / "spool" / "spool.sqlite3") as db:
        db.execute("UPDATE counts SET n = 7")
    out = json.loads(invoke("doctor", "--json", expect=None).stdout)
    (spool_check,) = [c for c in out["checks"] if c["name"] == "spool"]
    assert spool_check["state"] == "warn"
    assert "recounted" in spool_check["hint"]
    assert spool_check["details"]["pending"] == 1
    assert spool_check["details"]["recounted"] == [
        {"attr_id": 1, "state": "pending", "counted": 1, "kept": 7}
    ]
    with Spool(isolated / "spool") as spool:
        consistent(spool)


def test_reclaim_gives_pages_back_a_step_per_transaction(tmp_path):
    """After a flush, free pages go back to the file system `step` pages per transaction: few
    transactions, each short. (Python's execute steps a statement that returns no rows once,
    and `PRAGMA incremental_vacuum(N)` frees one page per step: the flush used to commit one
    transaction per page.)"""
    with Spool(tmp_path) as spool:
        for _ in range(4):
            spool.enqueue(A, [NewEvent("e", 1_700_000_000, parameters="x" * 500) for _ in range(500)])
        (row,) = spool.pending_sets()
        batch = spool.next_batch(row, 2000)
        spool.mark(row, batch[0].id, batch[-1].id)
        spool.ack(row, batch[0].id, batch[-1].id, sync_time=1)
        (free,) = spool.db.execute("PRAGMA freelist_count").fetchone()
        (pages,) = spool.db.execute("PRAGMA page_count").fetchone()
        assert free > 200, (free, pages)  # a million bytes of events deleted
        statements: list[str] = []
        spool.db.set_trace_callback(statements.append)
        try:
            freed = spool.reclaim(step=64)
        finally:
            spool.db.set_trace_callback(None)
        steps = [s for s in statements if "incremental_vacuum" in s]
        # without waiting for the disk (a lost step loses nothing), and FULL again after
        assert statements.index("PRAGMA synchronous = NORMAL") < statements.index(steps[0])
        assert spool.db.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert freed == free
        assert len(steps) == -(-free // 64), (len(steps), free)
        assert spool.db.execute("PRAGMA freelist_count").fetchone()[0] == 0
        assert spool.db.execute("PRAGMA page_count").fetchone()[0] == pages - free
        consistent(spool)


def test_another_connections_lock_is_told_by_the_file_not_by_words(tmp_path):
    """How a new spool's switch to WAL tells "busy" where Python (3.10) gives no result code:
    by asking the file (BEGIN EXCLUSIVE without waiting), never by an error's words. The
    asking connection is left as it was: no transaction, its busy timeout back."""
    from hamustro_cli.migrations import held_by_another

    path = tmp_path / "x.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    asker = sqlite3.connect(path, isolation_level=None, timeout=60)
    assert not held_by_another(asker)
    holder.execute("BEGIN")
    holder.execute("SELECT * FROM t").fetchall()  # a reader's lock: enough to stop the switch
    assert held_by_another(asker)
    holder.execute("COMMIT")
    assert not held_by_another(asker)
    assert not asker.in_transaction
    assert asker.execute("PRAGMA busy_timeout").fetchone() == (60000,)
