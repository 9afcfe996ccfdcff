"""Clocks lie: times stored while the clock ran ahead (or far behind) never hold sending beyond
the documented caps from the current clock. Rules with a fixed clock; end to end with real
processes and the real collector."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from conftest import invoke, run

from hamustro_cli import triggers
from hamustro_cli.spool import SyncState
from hamustro_cli.spool.full import Spool
from hamustro_cli.tracker import ClientTracker

NOW = 1_700_000_000
YEAR = 365 * 24 * 3600
RETENTION_MIN = 60


def due_at(sync: SyncState, now: int = NOW, pending: int = 1) -> triggers.Due:
    return triggers.due(sync, pending, queue_size=20, queue_retention=RETENTION_MIN, now=now)


def test_a_last_sync_in_the_future_counts_as_due():
    d = due_at(SyncState(created_at=NOW - 10, last_sync_time=NOW + YEAR))
    assert d.fires and d.why is triggers.Why.RETENTION


def test_a_creation_time_in_the_future_counts_as_due():
    assert due_at(SyncState(created_at=NOW + YEAR)).fires


def test_a_recent_last_sync_still_waits():
    d = due_at(SyncState(created_at=NOW - 10, last_sync_time=NOW - 60))
    assert not d.fires and d.next_at == NOW - 60 + RETENTION_MIN * 60


def test_a_backoff_beyond_every_cap_is_void():
    sync = SyncState(created_at=NOW - YEAR, backoff_until=NOW + YEAR, failures=3)
    assert due_at(sync).fires


def test_a_backoff_recorded_under_a_clock_ahead_is_void():
    # two hours ahead: within the caps, but the failure is dated after now
    sync = SyncState(created_at=NOW - YEAR, backoff_until=NOW + 7200, failures=1, failed_at=NOW + 7000)
    assert due_at(sync).fires


def test_an_honest_backoff_still_holds():
    sync = SyncState(created_at=NOW - YEAR, backoff_until=NOW + 600, failures=4, failed_at=NOW - 300)
    d = due_at(sync)
    assert not d.fires and d.why is triggers.Why.BACKING_OFF
    # a Retry-After of a day is honoured in full
    sync = sync._replace(backoff_until=NOW + triggers.RETRY_AFTER_CAP - 60)
    assert not due_at(sync).fires


@pytest.mark.parametrize("now", [-1, -YEAR, -(2**40)])
def test_a_clock_before_1970(now):
    sync = SyncState(created_at=NOW, last_sync_time=NOW, backoff_until=NOW + 60, failed_at=NOW)
    d = due_at(sync, now=now)
    assert d.fires  # every stored time is "in the future": none holds sending
    # and a stored time far outside any calendar still formats
    assert "seconds since 1970" in triggers._clock(2**62)


def _destination() -> str:
    """The configured destination, whose sync state a flush records."""
    with ClientTracker.from_config() as tracker:
        return tracker.destination


def _future_state(spool_dir, ahead: int) -> None:
    """What a flush under a clock `ahead` seconds fast leaves after failing: a backoff and a
    last sync (from an earlier batch) in the future."""
    t = int(time.time()) + ahead
    mine = _destination()
    with Spool(spool_dir) as spool:
        spool.db.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (f"last_sync_time@{mine}", str(t))
        )
        spool.record_failure(
            {"at": t, "status": 503, "message": "down"}, 2, backoff_until=t + 120, destination=mine
        )


@pytest.mark.parametrize("ahead", [YEAR, 7200])
def test_flush_if_due_sends_after_the_clock_is_set_right(config, collector, spool_dir, ahead):
    invoke("track", "first")
    _future_state(spool_dir, ahead)
    result = run("flush", "--if-due")
    assert result.returncode == 0, result
    assert [e["event"] for e in collector.received()] == ["first"]


def test_track_flushes_inline_after_the_clock_is_set_right(config, collector, spool_dir):
    invoke("track", "first")
    _future_state(spool_dir, YEAR)
    result = run("track", "second", env={"HAMUSTRO_FLUSH": "inline"})
    assert result.returncode == 0, result
    assert sorted(e["event"] for e in collector.received()) == ["first", "second"]


def test_doctor_does_not_report_a_void_backoff(config, collector, spool_dir):
    invoke("track", "first")
    _future_state(spool_dir, YEAR)
    result = invoke("doctor", "--json", expect=None)
    spool_check = next(c for c in json.loads(result.output)["checks"] if c["name"] == "spool")
    assert "backoff_until" not in spool_check["details"], spool_check


def _stored_backoff(spool_dir, failed_at: int, until: int) -> None:
    mine = _destination()
    with Spool(spool_dir) as spool:
        spool.record_failure(
            {"at": failed_at, "status": 503, "message": "down"}, 2, backoff_until=until, destination=mine
        )


@pytest.mark.parametrize(
    "failed_ahead,until_ahead",
    [(YEAR, YEAR + 120), (7000, 7200), (0, YEAR)],
    ids=["clock-a-year-ahead", "clock-2h-ahead", "beyond-every-cap"],
)
def test_status_does_not_show_a_void_backoff_as_holding(config, spool_dir, failed_ahead, until_ahead):
    """`status --json` showed the raw stored backoff and `status --check` exited 1 on it."""
    invoke("track", "first")
    now = int(time.time())
    _stored_backoff(spool_dir, now + failed_ahead, now + until_ahead)
    assert json.loads(invoke("status", "--json").stdout)["backoff_until"] is None
    invoke("status", "--check", expect=0)
    assert "backing off" not in invoke("status").stdout


def test_status_still_shows_an_honest_backoff(config, spool_dir):
    invoke("track", "first")
    now = int(time.time())
    _stored_backoff(spool_dir, now - 10, now + 600)
    assert json.loads(invoke("status", "--json").stdout)["backoff_until"] == now + 600
    invoke("status", "--check", expect=1)
    assert "backing off" in invoke("status").stdout


# -- a clock before 1970 -------------------------------------------------------------------------


@pytest.fixture
def clock_before_1970(tmp_path):
    """The environment of a real `hamustro` process whose time.time() reads an hour before 1970
    (a sitecustomize on PYTHONPATH: faketime is not installed here)."""
    shim = tmp_path / "clock-shim"
    shim.mkdir()
    (shim / "sitecustomize.py").write_text("import time\n\ntime.time = lambda: -3600.5\n")
    return {"PYTHONPATH": str(shim)}


def _queued(spool_dir) -> list[tuple[str, int]]:
    if not (spool_dir / "spool.sqlite3").exists():
        return []
    with sqlite3.connect(spool_dir / "spool.sqlite3") as db:
        return db.execute("SELECT event, at FROM events ORDER BY id").fetchall()


def _one_clock_error(result) -> str:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hamustro: error:") and "Traceback" not in result.stderr, (
        lines
    )
    assert "before 1970" in lines[0]
    return lines[0]


def test_track_refuses_a_clock_before_1970(config, spool_dir, clock_before_1970):
    """It queued the event with a negative `at` (which no flush can send)."""
    line = _one_clock_error(run("track", "e", env=clock_before_1970))
    assert "--at" in line
    assert _queued(spool_dir) == []
    assert run("track", "e", "--at", "1700000000", env=clock_before_1970).returncode == 0
    assert _queued(spool_dir) == [("e", 1700000000)]


def test_track_stdin_refuses_a_line_without_at_before_1970(config, spool_dir, clock_before_1970):
    lines = '{"event": "a", "at": 1700000000}\n{"event": "b"}\n'
    line = _one_clock_error(run("track", "--stdin", input=lines, env=clock_before_1970))
    assert "stdin line 2" in line and '"at"' in line
    assert _queued(spool_dir) == []
    every_line_timed = '{"event": "a", "at": 1700000000}\n{"event": "b", "at": 1700000001}\n'
    assert run("track", "--stdin", input=every_line_timed, env=clock_before_1970).returncode == 0
    assert _queued(spool_dir) == [("a", 1700000000), ("b", 1700000001)]
