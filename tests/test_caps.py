"""Issue 15, part 1: a bounded spool. spool_max_events, spool_max_mb and spool_keep_free_mb,
and what `track` does at a bound (when_full); every dropped event counted, by reason, in the
transaction that drops it. On a real spool, through the CLI in-process (messages and exit
codes) and the library (the batch being sent, threads)."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, invoke, write_config

from hamustro_cli import caps
from hamustro_cli.config import KEYS
from hamustro_cli.events import NewEvent
from hamustro_cli.session import Session
from hamustro_cli.spool.full import Spool
from hamustro_cli.spooldir import FLUSH_ROOM
from hamustro_cli.tracker import ClientTracker

UNREACHABLE = "http://127.0.0.1:9"


def configure(isolated: Path, **bounds: Any) -> Path:
    return write_config(isolated / "config.toml", collector_url=UNREACHABLE, **{**SETTINGS, **bounds})


def track(*names: str, expect: int | None = 0) -> Any:
    lines = "".join(json.dumps({"event": n}) + "\n" for n in names)
    return invoke("track", "--stdin", input=lines, expect=expect)


def queued(spool_dir: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(spool_dir / "spool.sqlite3") as conn:
        rows = conn.execute("SELECT event, nr FROM events ORDER BY id").fetchall()
    conn.close()
    return rows


def status() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(invoke("status", "--json").output)
    return data


def test_refuse_exits_3_naming_the_cap_and_its_source_and_queues_nothing(
    isolated: Path, spool_dir: Path
) -> None:
    path = configure(isolated, spool_max_events=3)
    track("a", "b", "c")
    result = track("d", expect=3)
    error = result.output
    assert error.count("\n") == 1 and error.startswith("hamustro: error:"), error
    assert f"spool_max_events = 3 (from {path})" in error and "it holds 3 events" in error, error
    assert "when_full = 'refuse'" in error and "Traceback" not in error
    assert queued(spool_dir) == [("a", 1), ("b", 2), ("c", 3)]  # the spool as it was
    assert status()["dropped"] == 0  # refused is not dropped: the caller was told, exit 3
    invoke("events", "drop", "--yes", "--event", "a")
    assert track("d").exit_code == 0
    assert queued(spool_dir)[-1] == ("d", 4)  # the nr sequence went on: the refusal took none


def test_refuse_names_an_environment_variable_as_the_source(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(isolated)
    monkeypatch.setenv("HAMUSTRO_SPOOL_MAX_EVENTS", "1")
    track("a")
    error = invoke("track", "b", expect=3).output
    assert "spool_max_events = 1 (from environment variable HAMUSTRO_SPOOL_MAX_EVENTS)" in error, error


def at_cap(isolated: Path, when_full: str, cap: int, *args: str, stdin: str | None = None) -> Any:
    """A spool of `cap` events with `when_full`: what `hamustro ARGS` does then."""
    configure(isolated, spool_max_events=cap, when_full=when_full)
    track(*(f"old{i}" for i in range(cap)))
    return invoke(*args, input=stdin)


def test_drop_oldest_keeps_the_newest_and_counts_the_dropped(isolated: Path, spool_dir: Path) -> None:
    result = at_cap(isolated, "drop_oldest", 3, "track", "--stdin", stdin='{"event":"c"}\n{"event":"d"}\n')
    assert result.output == ""
    assert [e for e, _ in queued(spool_dir)] == ["old2", "c", "d"]
    data = status()
    assert data["pending"] == 3
    assert data["dropped"] == 2 and data["dropped_by_reason"] == {"spool_max_events": 2}
    text = invoke("status").output
    assert "dropped:    2 events dropped undelivered (spool_max_events: 2)" in text, text


def test_drop_newest_drops_the_new_events_with_a_warning_and_exit_0(isolated: Path, spool_dir: Path) -> None:
    result = at_cap(isolated, "drop_newest", 2, "track", "c", "--json")
    assert result.stdout == ""
    assert "hamustro: warning: the spool is full" in result.stderr and "spool_max_events = 2" in result.stderr
    assert "1 new event dropped" in result.stderr, result.stderr
    assert queued(spool_dir) == [("old0", 1), ("old1", 2)]
    assert status()["dropped_by_reason"] == {"spool_max_events": 1}


def test_a_batch_larger_than_the_cap_is_refused_even_under_drop_oldest(
    isolated: Path, spool_dir: Path
) -> None:
    configure(isolated, spool_max_events=2, when_full="drop_oldest")
    track("a")
    error = track("b", "c", "d", expect=3).output
    assert "spool_max_events = 2" in error and "3 events not queued" in error, error
    assert queued(spool_dir) == [("a", 1)] and status()["dropped"] == 0


def test_rejected_events_count_towards_the_cap(tmp_path: Path) -> None:
    """`spool_max_events` counts what the spool keeps, pending or set aside."""
    bounds = caps.Caps(max_events=2, when_full="drop_oldest")
    with Spool(tmp_path / "s") as spool:
        spool.enqueue(SESSION, [NewEvent("x", 1), NewEvent("y", 2)], caps=bounds)
        spool.reject(1, [1], "refused")
        spool.enqueue(SESSION, [NewEvent("z", 3)], caps=bounds)
        # x, set aside, counted towards the cap and, the oldest, made room for z
        assert [e["event"] for e in spool.iter_events()] == ["y", "z"]
        assert spool.totals()[:3] == (2, 0, 0)
        assert spool.counters().dropped == {"spool_max_events": 1}
        assert spool.check_counts() == []


SESSION = Session("0" * 32, "d", "c", "sv", "pv", None, None)


def test_drop_oldest_never_drops_the_batch_being_sent(tmp_path: Path) -> None:
    """The batch a flush has marked may already be at the collector: dropping it would count
    as dropped events the collector took. The oldest of the rest go instead."""
    bounds = caps.Caps(max_events=4, when_full="drop_oldest")
    with Spool(tmp_path / "s") as spool:
        spool.enqueue(SESSION, [NewEvent(f"e{i}", i) for i in range(4)], caps=bounds)
        spool.mark(1, 1, 2)  # e0, e1 are being sent
        spool.enqueue(SESSION, [NewEvent("n1", 10), NewEvent("n2", 11)], caps=bounds)
        names = [e["event"] for e in spool.iter_events()]
        assert names == ["e0", "e1", "n1", "n2"]
        assert spool.counters().dropped == {"spool_max_events": 2}
        assert spool.check_counts() == []
        spool.ack(1, 1, 2, 100)
        assert spool.counters().sent == 2 and spool.counters().tracked == 6


def test_spool_max_mb_keeps_the_spool_near_its_size(isolated: Path, spool_dir: Path) -> None:
    configure(isolated, spool_max_mb=1, when_full="drop_oldest")
    big = "p" * 20_000
    for round_ in range(8):  # 8 x 10 x 20 KB: 1.6 MB of parameters
        lines = "".join(json.dumps({"event": f"r{round_}", "params": big}) + "\n" for _ in range(10))
        invoke("track", "--stdin", input=lines)
    with sqlite3.connect(spool_dir / "spool.sqlite3") as conn:
        pages, free, size = (
            conn.execute(f"PRAGMA {p}").fetchone()[0] for p in ("page_count", "freelist_count", "page_size")
        )
    conn.close()
    assert (pages - free) * size < 1.3 * caps.MIB
    data = status()
    assert data["dropped_by_reason"]["spool_max_mb"] == data["dropped"] > 0
    assert data["pending"] + data["dropped"] == 80


def test_spool_max_mb_refuses_naming_the_key(isolated: Path, spool_dir: Path) -> None:
    configure(isolated, spool_max_mb=1)
    big = "p" * 60_000
    for i in range(40):
        result = invoke("track", f"e{i}", "--params", big, expect=None)
        if result.exit_code:
            break
    assert result.exit_code == 3, result.output
    assert "spool_max_mb = 1 (from" in result.output and "its events take" in result.output
    assert len(queued(spool_dir)) == i


def test_keep_free_refuses_naming_the_file_system(isolated: Path, spool_dir: Path) -> None:
    """A floor above what the file system has free: track refuses, saying where and how much."""
    configure(isolated, spool_keep_free_mb=2**30)
    error = track("a", expect=3).output
    assert "spool_keep_free_mb = 1073741824 (from" in error, error
    assert "its file system has" in error and "mounted at" in error and "free at least" in error


def test_keep_free_drop_newest_counts_under_keep_free(isolated: Path) -> None:
    configure(isolated, spool_keep_free_mb=2**30, when_full="drop_newest")
    result = track("a", "b")
    assert result.exit_code == 0 and "2 new events dropped" in result.output
    assert status()["dropped_by_reason"] == {"keep_free": 2}


def test_the_keep_free_default_is_the_room_a_flush_needs() -> None:
    assert KEYS["spool_keep_free_mb"].default * caps.MIB == FLUSH_ROOM
    assert (KEYS["spool_max_events"].default, KEYS["spool_max_mb"].default) == (0, 0)
    assert KEYS["when_full"].default == "refuse"


def test_a_bad_when_full_is_a_config_error_naming_key_and_source(isolated: Path) -> None:
    path = configure(isolated, when_full="drop_everything")
    error = track("a", expect=2).output
    assert f"config key when_full (from {path})" in error and "refuse, drop_oldest, drop_newest" in error


def test_events_drop_is_counted(isolated: Path) -> None:
    configure(isolated)
    track("a", "b", "c")
    invoke("events", "drop", "--yes", "--event", "b")
    assert status()["dropped_by_reason"] == {"events_drop": 1}
    doctor = invoke("doctor", "--json", expect=None)
    spool_check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "spool")
    assert spool_check["details"]["dropped_by_reason"] == {"events_drop": 1}


def test_threads_dropping_newest_are_each_counted_once(isolated: Path, tmp_path: Path) -> None:
    """Group commits: a group that does not fit is dropped whole, each caller told, counted once."""
    settings = {k: v for k, v in SETTINGS.items() if k != "flush"}
    tracker = ClientTracker(
        collector_url=UNREACHABLE,
        spool_dir=str(tmp_path / "t"),
        flush="off",
        spool_max_events=10,
        when_full="drop_newest",
        **settings,
    )
    outcomes: list[str] = []

    def one(i: int) -> None:
        try:
            tracker.track_event(f"e{i}")
            outcomes.append("queued")
        except caps.EventsDropped as exc:
            assert exc.count == 1
            outcomes.append("dropped")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counters = tracker.spool.counters()
    tracker.close()
    assert outcomes.count("queued") == 10 == counters.tracked
    assert outcomes.count("dropped") == 30 == counters.dropped["spool_max_events"]


def test_a_full_spool_is_read_and_flushed_as_ever_and_flush_drops_nothing(
    isolated: Path, collector: Any
) -> None:
    """At the cap `track` refuses, but `status`, `events list` and `flush` work as ever: a flush
    sends everything and drops nothing, and then `track` queues again."""
    write_config(isolated / "config.toml", collector_url=collector.url, spool_max_events=2, **SETTINGS)
    track("a", "b")
    track("c", expect=3)
    assert status()["pending"] == 2
    listed = invoke("events", "list", "--json").stdout.splitlines()
    assert [json.loads(line)["event"] for line in listed] == ["a", "b"]
    invoke("flush")
    assert [e["event"] for e in collector.received()] == ["a", "b"]
    data = status()
    assert (data["pending"], data["dropped"]) == (0, 0)
    track("c")
