"""Limits of the wire: nr is a uint32, stored rows the wire cannot carry are set aside while the
rest is delivered, and a collector that refuses everything costs a bounded number of requests."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
from conftest import SETTINGS, invoke, run, start_collector, write_config

from hamustro_cli.sending import BATCH_SPLIT_BUDGET, FLUSH_SPLIT_BUDGET
from hamustro_cli.spool import MAX_NR
from hamustro_cli.spool.full import Spool

DB = "spool.sqlite3"


def _set_last_nr(spool_dir, value: int) -> None:
    with sqlite3.connect(spool_dir / DB) as db:
        db.execute("UPDATE sessions SET last_nr = ?", (value,))


def _rows(spool_dir) -> list[tuple[int, str, int]]:
    with sqlite3.connect(spool_dir / DB) as db:
        return db.execute("SELECT nr, event, state FROM events ORDER BY id").fetchall()


def _rejected(spool_dir) -> list[str]:
    with sqlite3.connect(spool_dir / DB) as db:
        return [r for (r,) in db.execute("SELECT reason FROM events WHERE state = 2")]


def _states(spool_dir) -> dict[int, int]:
    with sqlite3.connect(spool_dir / DB) as db:
        return dict(db.execute("SELECT state, count(*) FROM events GROUP BY state").fetchall())


def test_track_refuses_an_nr_past_the_wire_limit(config, spool_dir):
    invoke("track", "first")
    _set_last_nr(spool_dir, MAX_NR - 1)
    invoke("track", "last")  # nr 2^32-1: still fits
    before = _rows(spool_dir)
    result = run("track", "one-too-many")
    assert result.returncode == 2, result
    assert result.stderr.startswith("hamustro: error:") and str(MAX_NR) in result.stderr
    assert "Traceback" not in result.stderr
    assert _rows(spool_dir) == before
    assert before[-1][0] == MAX_NR


def test_track_stdin_refuses_a_batch_that_would_pass_the_limit(config, spool_dir):
    invoke("track", "first")
    _set_last_nr(spool_dir, MAX_NR - 2)
    before = _rows(spool_dir)
    result = run("track", "--stdin", input='{"event": "a"}\n{"event": "b"}\n{"event": "c"}\n')
    assert result.returncode == 2, result
    assert str(MAX_NR) in result.stderr and "Nothing was queued" in result.stderr
    assert _rows(spool_dir) == before


BAD_ROWS = {
    "nr0": "UPDATE events SET nr = 0 WHERE event = 'bad'",
    "nr_big": f"UPDATE events SET nr = {2**32} WHERE event = 'bad'",
    "at_negative": "UPDATE events SET at = -5 WHERE event = 'bad'",
    "user_id_big": f"UPDATE events SET user_id = {2**40} WHERE event = 'bad'",
    "user_id_negative": "UPDATE events SET user_id = -1 WHERE event = 'bad'",
    "nr_text": "UPDATE events SET nr = 'seven' WHERE event = 'bad'",
    "invalid_utf8": "UPDATE events SET parameters = CAST(X'7b2278223a22ff227d' AS TEXT) WHERE event = 'bad'",
    "lone_surrogate": "UPDATE events SET event = CAST(X'eda080' AS TEXT) WHERE event = 'bad'",
}


@pytest.mark.parametrize("name", sorted(BAD_ROWS))
def test_flush_sets_aside_rows_the_wire_cannot_carry_and_delivers_the_rest(
    config, collector, spool_dir, name
):
    invoke("track", "--stdin", input='{"event": "good1"}\n{"event": "bad"}\n{"event": "good2"}\n')
    with sqlite3.connect(spool_dir / DB) as db:
        db.execute(BAD_ROWS[name])
    result = invoke("flush", expect=None)  # in-process: an exception would fail the test here
    assert "Traceback" not in result.stderr, result.stderr
    assert sorted(e["event"] for e in collector.received()) == ["good1", "good2"]
    (reason,) = _rejected(spool_dir)
    assert _states(spool_dir) == {2: 1}  # nothing pending, the bad row set aside
    assert reason.startswith("stored event cannot be sent:")


def test_flush_sets_aside_a_null_event(config, collector, spool_dir):
    invoke("track", "--stdin", input='{"event": "good"}\n{"event": "bad"}\n')
    with sqlite3.connect(spool_dir / DB) as db:  # a spool from a schema without NOT NULL
        db.execute("PRAGMA writable_schema = ON")
        db.execute(
            "UPDATE sqlite_master SET sql = replace(sql, 'event TEXT NOT NULL', 'event TEXT') "
            "WHERE name = 'events'"
        )
    with sqlite3.connect(spool_dir / DB) as db:
        db.execute("UPDATE events SET event = NULL WHERE event = 'bad'")
    result = invoke("flush", expect=None)  # in-process: an exception would fail the test here
    assert "Traceback" not in result.stderr, result.stderr
    assert [e["event"] for e in collector.received()] == ["good"]
    (reason,) = _rejected(spool_dir)
    assert "event is missing" in reason


BAD_ATTRIBUTES = {
    "device_id": "UPDATE sessions SET device_id = CAST(X'646576ff' AS TEXT) WHERE product_version = 'other'",
    "system": "UPDATE attributes SET system = CAST(X'eda080' AS TEXT) WHERE session_id = "
    "(SELECT id FROM sessions WHERE product_version = 'other')",
}


@pytest.mark.parametrize("name", sorted(BAD_ATTRIBUTES))
def test_a_session_whose_attributes_the_wire_cannot_carry_is_set_aside_and_the_rest_delivered(
    config, collector, spool_dir, name, monkeypatch
):
    """A session row whose text is not UTF-8 (a tampered or damaged spool) made `status` and
    every `flush` exit 3, so no session was ever delivered again. Its events are now set aside
    as rejected, saying why, in one change; the other sessions are delivered; `status` shows it."""
    invoke("track", "good")
    with monkeypatch.context() as env:  # another session, the same destination
        env.setenv("HAMUSTRO_PRODUCT_VERSION", "other")
        assert invoke("track", "stuck1", expect=None).exit_code == 0
        assert invoke("track", "stuck2", expect=None).exit_code == 0
    with sqlite3.connect(spool_dir / DB) as db:
        db.execute(BAD_ATTRIBUTES[name])
    status = invoke("status", "--json", expect=None)
    assert status.exit_code == 0, status.stderr
    assert json.loads(status.stdout)["pending"] == 3
    dry = invoke("flush", "--dry-run", expect=None)
    assert dry.exit_code == 0 and "1 event in 1 batch" in dry.stdout, dry
    assert "2 events a flush would set aside" in dry.stderr, dry.stderr
    assert _states(spool_dir) == {0: 3}  # the dry run changed nothing
    result = invoke("-v", "flush", expect=None)  # -v: the line for each set set aside
    assert "Traceback" not in result.stderr, result.stderr
    assert result.exit_code == 4, result  # ATTENTION: events were set aside
    assert [e["event"] for e in collector.received()] == ["good"]
    assert _states(spool_dir) == {2: 2}
    reasons = set(_rejected(spool_dir))
    assert reasons == {
        f"stored session attributes cannot be sent: {name} is not valid UTF-8 "
        "(lone surrogates or undecodable bytes)"
    }, reasons
    # one line for the set (not one per event), and the summary saying where to look
    assert result.stderr.count("set aside as rejected: stored session attributes") == 1, result.stderr
    assert "'hamustro events list --state rejected' says why" in result.stderr
    shown = invoke("status", expect=None)
    assert shown.exit_code == 0 and "2 rejected" in shown.stdout, shown
    assert "stored as the wire cannot carry" in shown.stdout


def test_a_collector_refusing_everything_costs_bounded_requests(isolated, spool_dir):
    """4,000 events all refused: 7,999 requests before; now at most the split budget."""
    refusing = start_collector(isolated, "refusing", reject_events=["e"])
    try:
        write_config(isolated / "config.toml", collector_url=refusing.url, **SETTINGS)
        invoke("track", "--stdin", input='{"event": "e"}\n' * 4000)
        invoke("flush", expect=None)
        posts = len(refusing.requests)
        with Spool(spool_dir) as spool:
            totals = spool.totals()
            reasons = {e["reason"] for e in spool.iter_events()}
    finally:
        refusing.server.stop()
        refusing.server.out.close()
    print(f"requests for 4000 all-refused events: {posts}")
    assert (totals.pending, totals.rejected) == (0, 4000)  # every event kept, set aside
    # one empty Collection, one request per batch, and the split budget
    assert posts <= 1 + 2 + FLUSH_SPLIT_BUDGET, posts
    assert posts <= 1 + 2 * (1 + BATCH_SPLIT_BUDGET), posts
    assert any("not tried one by one" in r and "--retry-rejected" in r for r in reasons), reasons


@pytest.mark.parametrize("name", sorted(BAD_ROWS))
def test_dry_run_reports_rows_a_flush_would_set_aside_and_changes_nothing(config, collector, spool_dir, name):
    """`flush --dry-run` crashed (a traceback, exit 1) on a batch holding a row the wire cannot
    carry: it now changes nothing and says how many a real flush would set aside."""
    invoke("track", "--stdin", input='{"event": "good1"}\n{"event": "bad"}\n{"event": "good2"}\n')
    with sqlite3.connect(spool_dir / DB) as db:
        db.execute(BAD_ROWS[name])
    before = _raw_rows(spool_dir)
    result = invoke("flush", "--dry-run", "--json", expect=None)
    assert result.exit_code == 0 and "Traceback" not in result.stderr, result
    report = json.loads(result.stdout)
    assert report["would_reject"] == 1 and report["dry_run"] is True
    assert [(b["events"], b["status"]) for b in report["batches"]] == [(2, None)]
    text = invoke("flush", "--dry-run", expect=None)
    assert text.exit_code == 0 and "Traceback" not in text.stderr, text
    assert "2 events in 1 batch" in text.stdout
    assert "1 event a flush would set aside" in text.stderr
    assert _raw_rows(spool_dir) == before and _rejected(spool_dir) == []
    assert collector.received() == []


def _raw_rows(spool_dir) -> list[tuple[Any, ...]]:
    """Every stored column, text as its bytes (it may not be UTF-8)."""
    with sqlite3.connect(spool_dir / DB) as db:
        return db.execute(
            "SELECT id, nr, at, CAST(event AS BLOB), user_id, ip, CAST(parameters AS BLOB), state, "
            "reason FROM events ORDER BY id"
        ).fetchall()
