"""`hamustro events list|show|requeue|drop`: the queue by hand, on a real spool, with events a
real collector refused."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, invoke, start_collector, write_config

from hamustro_cli.spool.full import Spool
from hamustro_cli.spool.queue import Change, EventFilter, Shown
from hamustro_cli.spooldir import FlushLock

NOON = 1795867200  # 2026-11-28T12:00:00Z


@pytest.fixture
def queue(isolated: Path, tmp_path: Path) -> Any:
    """Six events, two refused by the collector (set aside as rejected), three pending."""
    picky = start_collector(tmp_path, "picky", reject_events=["bad"])
    write_config(isolated / "config.toml", collector_url=picky.url, **SETTINGS)
    names = ["sent", "bad", "bad"]
    invoke(
        "track",
        "--stdin",
        input="".join(json.dumps({"event": n, "at": NOON + i}) + "\n" for i, n in enumerate(names)),
    )
    invoke("flush", expect=None)
    picky.server.stop()
    for i, name in enumerate(["signup", "signin", "view"]):
        invoke("track", name, "--at", str(NOON + 100 + i), "--user-id", str(i))
    yield isolated / "spool"


def listed(*args: str) -> list[dict[str, Any]]:
    out = invoke("events", "list", "--json", *args).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_list_json_lines_carry_the_contract_keys(queue: Path) -> None:
    rows = listed()
    assert [(r["event"], r["state"]) for r in rows] == [
        ("bad", "rejected"),
        ("bad", "rejected"),
        ("signup", "pending"),
        ("signin", "pending"),
        ("view", "pending"),
    ]
    keys = {"id", "session", "nr", "at", "event", "user_id", "parameters", "is_testing", "state", "reason"}
    assert all(keys <= r.keys() for r in rows)
    assert rows[0]["reason"] and rows[2]["reason"] is None
    assert rows[2]["user_id"] == 0 and rows[2]["at"] == NOON + 100


def test_filters(queue: Path) -> None:
    assert [r["event"] for r in listed("--state", "rejected")] == ["bad", "bad"]
    assert [r["event"] for r in listed("--state", "pending")] == ["signup", "signin", "view"]
    assert listed("--state", "sending") == []
    assert [r["event"] for r in listed("--event", "sign*")] == ["signup", "signin"]
    assert [r["event"] for r in listed("--event", "SIGN*")] == []
    assert [r["event"] for r in listed("--since", "2026-11-28T12:01:41Z")] == ["signin", "view"]
    assert [r["event"] for r in listed("--until", str(NOON + 1))] == ["bad"]
    assert [r["event"] for r in listed("--since", "2026-11-28T13:00:00+01:00", "--limit", "1")] == ["bad"]
    session = listed()[0]["session"]
    assert len(listed("--session", session)) == 5 and listed("--session", "0" * 32) == []


def test_list_table(queue: Path) -> None:
    lines = invoke("events", "list", "--state", "rejected").stdout.splitlines()
    assert lines[0].split() == ["ID", "AT", "SESSION", "NR", "STATE", "EVENT"]
    assert (
        len(lines) == 3
        and "2026-11-28T12:00:01Z" in lines[1]
        and "rejected  bad" in lines[1].replace("rejected bad", "rejected  bad")
    )


def test_bad_filter_is_a_usage_error(queue: Path) -> None:
    result = invoke("events", "list", "--since", "last week", expect=2)
    assert "hamustro: error: --since: expected epoch seconds or an ISO 8601 time" in result.output


def test_marked_batch_lists_as_sending(queue: Path) -> None:
    with Spool(queue) as spool:
        rows = listed("--state", "pending")
        spool.mark(1, rows[0]["id"], rows[1]["id"])
        assert [r["event"] for r in listed("--state", "sending")] == ["signup", "signin"]
        assert [r["event"] for r in listed("--state", "pending")] == ["view"]
        assert [r["state"] for r in listed("--event", "sign*")] == ["sending", "sending"]


def test_show(queue: Path) -> None:
    rejected = listed("--state", "rejected")[0]
    text = invoke("events", "show", str(rejected["id"])).stdout
    assert "state:       rejected: " in text and rejected["reason"] in text
    assert "session attributes:" in text and "product_version:  1.0.0" in text
    data = json.loads(invoke("events", "show", str(rejected["id"]), "--json").stdout)
    assert data["event"] == rejected
    assert data["session"]["session"] == rejected["session"] and data["session"]["client_id"] == "client-a"


def test_show_unknown_id(queue: Path) -> None:
    result = invoke("events", "show", "999", expect=2)
    assert result.output.startswith("hamustro: error: no event with id 999 in the spool")


def test_requeue_moves_rejected_only(queue: Path) -> None:
    first = listed("--state", "rejected")[0]["id"]
    assert invoke("events", "requeue", str(first)).stdout == "requeued 1 rejected event\n"
    assert [r["event"] for r in listed("--state", "rejected")] == ["bad"]
    pending = [r["id"] for r in listed("--state", "pending")]
    assert invoke("events", "requeue", *map(str, pending)).stdout == "requeued 0 rejected events\n"
    assert invoke("events", "requeue", "--state", "rejected").stdout == "requeued 1 rejected event\n"
    rows = listed()
    assert {r["state"] for r in rows} == {"pending"} and all(r["reason"] is None for r in rows)
    assert invoke("events", "requeue", "--state", "pending", expect=2).output.startswith(
        "hamustro: error: --state pending"
    )


def test_drop_needs_yes_without_a_terminal(queue: Path) -> None:
    before = listed()
    result = invoke("events", "drop", "--state", "rejected", input="y\n", expect=2)
    assert "hamustro: error: drop deletes events for good: give --yes" in result.output
    assert listed() == before
    assert invoke("events", "drop", expect=2).output.startswith("hamustro: error: name the events to drop")
    assert invoke("events", "drop", "--state", "rejected", "--yes").stdout == "dropped 2 events\n"
    assert [r["event"] for r in listed()] == ["signup", "signin", "view"]
    assert invoke("events", "drop", str(listed()[0]["id"]), "-y").stdout == "dropped 1 event\n"
    assert [r["event"] for r in listed()] == ["signin", "view"]


@pytest.mark.parametrize(("answer", "left"), [("n\n", 5), ("y\n", 3)])
def test_drop_asks_on_a_terminal(queue: Path, answer: str, left: int) -> None:
    import pty

    main, sub = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hamustro_cli", "events", "drop", "--state", "rejected"],
        stdin=sub,
        stdout=sub,
        stderr=sub,
        env=os.environ.copy(),
    )
    os.close(sub)
    seen = b""
    while b"for good?" not in seen:
        seen += os.read(main, 1024)
    assert b"Delete 2 events for good?" in seen
    os.write(main, answer.encode())
    assert proc.wait(timeout=60) == 0
    os.close(main)
    assert len(listed()) == left


@pytest.mark.parametrize(
    "command", [["requeue", "--state", "rejected"], ["drop", "--state", "rejected", "--yes"]]
)
def test_refused_while_a_flush_runs(queue: Path, command: list[str]) -> None:
    before = listed()
    lock = FlushLock(queue)
    assert lock.acquire(wait=False)
    try:
        result = invoke("events", *command, expect=1)
    finally:
        lock.release()
    assert result.output.startswith("hamustro: error: a flush is running in ")
    assert "nothing was changed" in result.output
    assert listed() == before


def test_change_drops_a_dead_flushs_mark(queue: Path) -> None:
    """No flush holds the lock, so a mark is a dead flush's: the change puts its batch back
    first, as the next flush would."""
    with Spool(queue) as spool:
        rows = listed("--state", "pending")
        spool.mark(1, rows[0]["id"], rows[2]["id"])
        assert spool.change(Change.REQUEUE, EventFilter(state=Shown.REJECTED)) == 2
        assert spool.counts()[1].sending == 0
        assert spool.change(Change.DROP, EventFilter(ids=(rows[0]["id"],))) == 1
        assert spool.totals().pending == 4


# -- a spool whose text is not UTF-8 (tampered or damaged) -----------------------------------


def _damage_text(spool_dir: Path) -> int:
    """Bytes that are not UTF-8 in an event's name, parameters and reason, as a tampered or
    damaged spool holds them; returns the event's id."""
    with sqlite3.connect(spool_dir / "spool.sqlite3") as db:
        (event_id,) = db.execute("SELECT id FROM events WHERE event = 'signin'").fetchone()
        db.execute(
            "UPDATE events SET event = CAST(X'7369676eff' AS TEXT), "
            "parameters = CAST(X'7b2278223a22eda080227d' AS TEXT), "
            "reason = CAST(X'77687980' AS TEXT) WHERE id = ?",
            (event_id,),
        )
    return int(event_id)


def test_values_stored_as_blobs_are_shown_as_text_in_every_json_output(queue: Path) -> None:
    """A BLOB where text belongs (a tampered or damaged spool) ended `status --json` and the
    event streams in a traceback (bytes are not JSON): every JSON output writes it as text."""
    with sqlite3.connect(queue / "spool.sqlite3") as db:
        (event_id,) = db.execute("SELECT id FROM events WHERE event = 'signin'").fetchone()
        db.execute("UPDATE events SET parameters = X'6869ff' WHERE id = ?", (event_id,))
        db.execute("UPDATE sessions SET product_version = X'312e30ff'")
    status = json.loads(invoke("status", "--json").stdout)
    assert {s["product_version"] for s in status["sessions"]} == {"1.0\\xff"}
    with_events = json.loads(invoke("status", "--json", "--events").stdout)
    assert "hi\\xff" in [e["parameters"] for e in with_events["events"]]
    assert "hi\\xff" in [r["parameters"] for r in listed()]
    shown = json.loads(invoke("events", "show", str(event_id), "--json").stdout)
    assert shown["event"]["parameters"] == "hi\\xff" and shown["session"]["product_version"] == "1.0\\xff"


def test_list_show_and_status_show_text_that_is_not_utf8_escaped(queue: Path) -> None:
    """They failed with a spool error ("Could not decode to UTF-8 column"): each row is shown,
    its bad bytes escaped, and the spool reads as before afterwards."""
    event_id = _damage_text(queue)
    row = next(r for r in listed() if r["id"] == event_id)
    assert row["event"] == "sign\\xff" and row["parameters"] == '{"x":"\\xed\\xa0\\x80"}'
    assert row["reason"] == "why\\x80"
    table = invoke("events", "list").stdout
    assert "sign\\xff" in table
    status = json.loads(invoke("status", "--json", "--events").stdout)
    assert "sign\\xff" in [e["event"] for e in status["events"]]
    assert "sign\\xff" in invoke("status", "--events").stdout
    # `events show` also reads the session's attributes
    with sqlite3.connect(queue / "spool.sqlite3") as db:
        db.execute("UPDATE sessions SET device_id = CAST(X'646576ff' AS TEXT)")
    shown = json.loads(invoke("events", "show", str(event_id), "--json").stdout)
    assert shown["event"]["event"] == "sign\\xff" and shown["session"]["device_id"] == "dev\\xff"
    assert "dev\\xff" in invoke("events", "show", str(event_id)).stdout
    # the connection's own decoding is restored: what reads text strictly still does
    with Spool(queue) as spool:
        list(spool.select(EventFilter()))
        spool.event(event_id)
        assert spool.db.text_factory is str


def test_drop_pending_after_a_killed_flush_takes_its_batch_too(queue: Path, tmp_path: Path) -> None:
    """A flush killed (SIGKILL) while its request hangs leaves its batch marked. `events drop
    --state pending` took the mark for a live one and left the batch, which the next flush then
    sent: a dead flush's mark is released before the filters choose."""
    import signal
    import socket
    import time

    silent = socket.socket()  # accepts connections (the backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    tracked_for = json.loads(invoke("status", "--json").stdout)["destination"]
    write_config(tmp_path / "config.toml", collector_url=url, **{**SETTINGS, "timeout": 3600, "retries": 0})
    invoke("events", "claim", tracked_for)  # another collector_url is another destination
    flush = subprocess.Popen([sys.executable, "-m", "hamustro_cli", "flush"], env=os.environ.copy())
    try:
        for _ in range(60_000):  # until the batch is marked: a state, not a time
            assert flush.poll() is None, "the flush ended without marking a batch"
            with sqlite3.connect(queue / "spool.sqlite3") as db:
                if db.execute("SELECT 1 FROM meta WHERE key = 'sending'").fetchone():
                    break
            time.sleep(0.005)
        else:
            raise AssertionError("the flush never marked its batch")
        flush.send_signal(signal.SIGKILL)
        flush.wait()
    finally:
        if flush.poll() is None:
            flush.kill()
        silent.close()
    assert invoke("events", "drop", "--state", "pending", "--yes").stdout == "dropped 3 events\n"
    assert [r["state"] for r in listed()] == ["rejected", "rejected"]
    collector = start_collector(tmp_path, "after")
    try:
        silent_destination = json.loads(invoke("status", "--json").stdout)["destination"]
        write_config(tmp_path / "config.toml", collector_url=collector.url, **SETTINGS)
        invoke("events", "claim", silent_destination)  # the two rejected: all it still holds
        invoke("flush")
        assert collector.received() == []
    finally:
        collector.server.stop()


def test_the_count_asked_about_includes_a_dead_flushs_batch(queue: Path) -> None:
    """`events drop` asks "Delete N events?" from this count: it left out the batch a dead
    flush had marked, which the drop then deleted too (a mark no flush holds is a dead one)."""
    with Spool(queue) as spool:
        rows = listed("--state", "pending")
        spool.mark(1, rows[0]["id"], rows[2]["id"])
        assert spool.count(EventFilter(state=Shown.PENDING)) == 3
        lock = FlushLock(queue)
        assert lock.acquire(wait=False)  # a live flush: its batch is being sent, not pending
        try:
            assert spool.count(EventFilter(state=Shown.PENDING)) == 0
        finally:
            lock.release()
