"""Issue 15, part 2: `hamustro metrics` (the Prometheus text format 0.0.4, read back with
prometheus_client's own parser, and promtool's when installed) and `status --check`'s
thresholds. A real spool, a real collector on 127.0.0.1; the CLI in-process."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, invoke, start_collector, write_config

prometheus_parser = pytest.importorskip("prometheus_client.parser")

REQUIRED = {
    "hamustro_events_pending": "gauge",
    "hamustro_events_sending": "gauge",
    "hamustro_events_rejected": "gauge",
    "hamustro_events_tracked": "counter",
    "hamustro_events_sent": "counter",
    "hamustro_events_dropped": "counter",
    "hamustro_flush_failures": "counter",
    "hamustro_last_sync_timestamp_seconds": "gauge",
    "hamustro_oldest_pending_timestamp_seconds": "gauge",
    "hamustro_sending_halted": "gauge",
    "hamustro_spool_bytes": "gauge",
    "hamustro_info": "gauge",
}
DAY = 86400


def parse(text: str) -> dict[str, Any]:
    """{family name: family}, by the real parser (which raises on anything malformed)."""
    return {f.name: f for f in prometheus_parser.text_string_to_metric_families(text)}


def values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in parse(text).values() for s in f.samples
    }


def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return values(invoke("metrics").stdout)


def use(isolated: Path, url: str, **settings: Any) -> None:
    write_config(isolated / "config.toml", collector_url=url, **{**SETTINGS, **settings})


def track(*names: str, at: int | None = None) -> None:
    lines = "".join(json.dumps({"event": n, **({"at": at} if at else {})}) + "\n" for n in names)
    invoke("track", "--stdin", input=lines)


def test_every_metric_has_help_type_and_parses(isolated: Path) -> None:
    use(isolated, "http://127.0.0.1:9")
    text = invoke("metrics").stdout
    families = parse(text)
    assert {name: f.type for name, f in families.items() if name in REQUIRED} == REQUIRED
    for name in REQUIRED:
        suffix = "_total" if REQUIRED[name] == "counter" else ""
        assert f"# HELP {name}{suffix} " in text and f"# TYPE {name}{suffix} {REQUIRED[name]}" in text
    from hamustro_cli import __version__

    assert families["hamustro_info"].samples[0].labels == {"version": __version__}
    reasons = {s.labels["reason"] for s in families["hamustro_events_dropped"].samples}
    assert reasons == {"spool_max_events", "spool_max_mb", "keep_free", "events_drop"}
    assert families["hamustro_oldest_pending_timestamp_seconds"].samples == []  # nothing pending


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_output(isolated: Path) -> None:
    use(isolated, "http://127.0.0.1:9")
    track("a")
    proc = subprocess.run(
        ["promtool", "check", "metrics"], input=invoke("metrics").stdout, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_counters_follow_tracking_sending_failing_and_dropping(isolated: Path, tmp_path: Path) -> None:
    away = start_collector(tmp_path, "away")
    port = away.server.server_address[1]
    away.server.stop()  # the collector goes away, and comes back on the same port
    use(isolated, away.url, spool_max_events=4, when_full="drop_oldest", retries=0)
    noon = int(time.time()) - DAY
    track("a", "b", "c", at=noon)
    invoke("flush", expect=1)  # the collector is not there: a failed flush
    invoke("flush", expect=1)
    track("d", "e")  # one over the cap: the oldest, a, is dropped
    m = scrape()
    assert m["hamustro_events_tracked_total", ()] == 5
    assert m["hamustro_flush_failures_total", ()] == 2
    assert m["hamustro_events_dropped_total", (("reason", "spool_max_events"),)] == 1
    assert m["hamustro_events_pending", ()] == 4
    assert m["hamustro_oldest_pending_timestamp_seconds", ()] == noon  # b's at
    assert m["hamustro_last_sync_timestamp_seconds", ()] == 0
    back = start_collector(tmp_path, "back", port=port)
    invoke("events", "drop", "--yes", "--event", "b")
    before = time.time()
    invoke("flush")
    back.server.stop()
    m = scrape()
    assert m["hamustro_events_sent_total", ()] == 3 and m["hamustro_events_pending", ()] == 0
    assert m["hamustro_events_tracked_total", ()] == 5  # never backwards, whatever left
    assert m["hamustro_events_dropped_total", (("reason", "events_drop"),)] == 1
    assert m["hamustro_last_sync_timestamp_seconds", ()] >= int(before)
    assert ("hamustro_oldest_pending_timestamp_seconds", ()) not in m
    assert m["hamustro_spool_bytes", ()] == os.path.getsize(isolated / "spool" / "spool.sqlite3") + (
        os.path.getsize(isolated / "spool" / "spool.sqlite3-wal")
        if (isolated / "spool" / "spool.sqlite3-wal").exists()
        else 0
    )


def test_halted_sending_is_a_gauge_and_one_line_from_flush_if_due(isolated: Path, collector: Any) -> None:
    """Halted: the gauge is 1, and `flush --if-due` (cron's, quiet) exits 4 with one line on
    stderr, so that cron mails someone."""
    use(isolated, collector.url, shared_secret_key="wrong")
    track("a")
    invoke("flush", expect=4)
    assert scrape()["hamustro_sending_halted", ()] == 1
    result = invoke("-q", "flush", "--if-due", expect=4)
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert (
        result.stderr.startswith("hamustro: error: sending is halted: ")
        and "run 'hamustro flush'" in result.stderr
    )


def test_label_values_are_escaped(isolated: Path) -> None:
    """A reason read from the file (tampered) with a quote, a backslash and a newline is
    written so that the parser reads back exactly that value."""
    use(isolated, "http://127.0.0.1:9")
    track("a")
    odd = 'a"b\\c\nd'
    with sqlite3.connect(isolated / "spool" / "spool.sqlite3") as conn:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, '7')", ("dropped:" + odd,))
    conn.close()
    assert scrape()["hamustro_events_dropped_total", (("reason", odd),)] == 7


# -- --textfile ---------------------------------------------------------------------------


def test_textfile_is_written_whole_and_readable_by_node_exporter(isolated: Path, tmp_path: Path) -> None:
    use(isolated, "http://127.0.0.1:9")
    track("a")
    out = tmp_path / "textfile" / "hamustro.prom"
    out.parent.mkdir()
    out.write_text("old\n")
    assert invoke("metrics", "--textfile", str(out)).output == ""
    assert values(out.read_text()) == scrape()
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert os.listdir(out.parent) == ["hamustro.prom"]  # no temp file left behind


@pytest.mark.parametrize("kind", ["directory", "fifo", "device", "dangling link", "link", "no parent"])
def test_textfile_at_what_is_not_a_file_is_refused(isolated: Path, tmp_path: Path, kind: str) -> None:
    use(isolated, "http://127.0.0.1:9")
    target = tmp_path / "victim"
    target.write_text("keep me\n")
    path = tmp_path / "m.prom"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "device":
        path.symlink_to("/dev/null")
        path = Path("/dev/null")
    elif kind == "dangling link":
        path.symlink_to(tmp_path / "nowhere.prom")
    elif kind == "link":
        path.symlink_to(target)
    else:
        path = tmp_path / "missing" / "m.prom"
    result = invoke("metrics", "--textfile", str(path), expect=2)
    error = result.output
    assert error.startswith("hamustro: error: --textfile ") and error.count("\n") == 1, error
    assert target.read_text() == "keep me\n" and not (tmp_path / "nowhere.prom").exists()
    if kind == "directory":
        assert os.listdir(path) == []
    assert not any(name.endswith(".tmp") for name in os.listdir(tmp_path))


def test_textfile_on_a_full_disk_exits_3_and_keeps_the_old_file(isolated: Path, tmp_path: Path) -> None:
    where = tmp_path / "full"
    where.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)], capture_output=True, text=True
    )
    if proc.returncode:
        pytest.skip(f"cannot mount a tmpfs: {proc.stderr.strip()}")
    try:
        use(isolated, "http://127.0.0.1:9")
        out = where / "hamustro.prom"
        out.write_text("old\n")
        (where / "filler").write_bytes(b"\0" * 60_000)
        try:
            with open(where / "filler2", "wb") as f:
                f.write(b"\0" * 64 * 1024)
        except OSError:
            pass
        error = invoke("metrics", "--textfile", str(out), expect=3).output
        assert (
            error.startswith(f"hamustro: error: cannot write the metrics to {out}") and error.count("\n") == 1
        ), error
        assert out.read_text() == "old\n"
        assert not any(name.endswith(".tmp") for name in os.listdir(where))
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


# -- status --check --max-age --max-pending ------------------------------------------------


def test_a_queue_stuck_for_days_fails_the_check_once_the_backoff_has_passed(isolated: Path) -> None:
    """The collector has been down for days: the backoff window has passed, so `status
    --check` alone reads healthy; with --max-age it exits 4, saying which threshold."""
    use(isolated, "http://127.0.0.1:9", retries=0)
    track("a", at=int(time.time()) - 3 * DAY)
    invoke("flush", expect=1)
    with sqlite3.connect(isolated / "spool" / "spool.sqlite3") as conn:  # the backoff has passed
        conn.execute("UPDATE meta SET value = '1' WHERE key LIKE 'backoff_until%'")
    conn.close()
    assert invoke("status", "--check").exit_code == 0
    result = invoke("status", "--check", "--max-age", "1d", expect=4)
    assert "hamustro: error: status --check: the oldest pending event is" in result.stderr
    assert "more than --max-age (86400 s)" in result.stderr, result.stderr
    assert invoke("status", "--max-age", "4d").exit_code == 0  # --max-age implies --check


def test_max_pending_exits_4_and_says_so_in_json(isolated: Path) -> None:
    use(isolated, "http://127.0.0.1:9")
    track("a", "b", "c")
    result = invoke("status", "--json", "--max-pending", "2", expect=4)
    (breach,) = json.loads(result.stdout)["check_failed"]
    assert breach["threshold"] == "max_pending" and (breach["limit"], breach["value"]) == (2, 3)
    assert "3 events wait to be sent, more than --max-pending (2)" in result.stderr
    assert json.loads(invoke("status", "--json", "--max-pending", "3").stdout)["check_failed"] == []


@pytest.mark.parametrize(
    ("given", "seconds"), [("90", 90), ("90s", 90), ("15m", 900), ("2h", 7200), ("1d", DAY)]
)
def test_durations(given: str, seconds: int) -> None:
    from hamustro_cli.health import parse_duration

    assert parse_duration(given) == seconds


@pytest.mark.parametrize("bad", ["", "5x", "1.5h", "-1", "1 d 2h", "1h30m", "99999999999999d", "１"])
def test_a_bad_duration_exits_2_naming_the_flag(isolated: Path, bad: str) -> None:
    use(isolated, "http://127.0.0.1:9")
    error = invoke("status", "--max-age", bad, expect=2).output
    assert error.startswith("hamustro: error: --max-age") and error.count("\n") == 1, error
