"""Never lose an event: racing processes, kills, collector faults, backoff, a wrong secret."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, ScriptedServer, invoke, run, start_collector, write_config
from specschema import decode

from hamustro_cli.spool import DB_NAME

HAMUSTRO = [sys.executable, "-m", "hamustro_cli"]


def status(*extra: str) -> dict[str, Any]:
    return json.loads(invoke("status", "--json", *extra).stdout)


def wait_until(predicate, seconds: float = 60, step: float = 0.05) -> bool:
    """Poll for a condition (not a timing assertion: the bound only stops a hung test)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


def no_flush_running(spool_dir: Path) -> bool:
    from hamustro_cli.spooldir import flush_running

    return not flush_running(spool_dir)


@pytest.mark.heavy
def test_parallel_tracks_with_flushes_deliver_everything_once(isolated, collector, spool_dir):
    write_config(
        isolated / "config.toml",
        collector_url=collector.url,
        queue_size=4,
        **{**SETTINGS, "flush": "background"},
    )
    workers, per_worker = 6, 12
    errors: list[str] = []
    stop = threading.Event()

    def tracker(w: int) -> None:
        for i in range(per_worker):
            r = subprocess.run(
                [*HAMUSTRO, "track", "race", "--param", f"id={w}-{i}"],
                capture_output=True,
                text=True,
                env=os.environ.copy(),
            )
            if r.returncode != 0 or r.stderr:
                errors.append(f"track {w}-{i}: rc={r.returncode} {r.stderr}")

    def cron() -> None:
        while not stop.is_set():
            r = subprocess.run([*HAMUSTRO, "flush"], capture_output=True, text=True, env=os.environ.copy())
            if r.returncode not in (0, 1) or "locked" in r.stderr or "Traceback" in r.stderr:
                errors.append(f"flush: rc={r.returncode} {r.stderr}")

    threads = [threading.Thread(target=tracker, args=(w,)) for w in range(workers)]
    flusher = threading.Thread(target=cron)
    flusher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    flusher.join()
    assert wait_until(lambda: no_flush_running(spool_dir))
    assert invoke("flush").exit_code == 0
    assert errors == []
    got = collector.received()
    ids = sorted(json.loads(e["parameters"])["id"] for e in got)
    assert ids == sorted(f"{w}-{i}" for w in range(workers) for i in range(per_worker))  # each once
    assert sorted(e["nr"] for e in got) == list(range(1, workers * per_worker + 1))  # unique, no gaps
    log = (spool_dir / "flush.log").read_text() if (spool_dir / "flush.log").exists() else ""
    assert "Traceback" not in log and "locked" not in log


def test_sigkilled_track_leaves_whole_event_or_nothing(config, spool_dir):
    invoke("track", "first")
    completed = 1
    for delay in [0.0, 0.02, 0.04, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.3] * 2:
        proc = subprocess.Popen(
            [*HAMUSTRO, "track", "victim"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        if proc.wait() == 0:
            completed += 1
    with sqlite3.connect(spool_dir / DB_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT nr, event, at FROM events ORDER BY nr").fetchall()
    nrs = [r[0] for r in rows]
    assert nrs == list(range(1, len(rows) + 1))  # a killed track never leaves a gap or a half
    assert len(rows) >= completed
    assert all(r[1] in ("first", "victim") and r[2] > 0 for r in rows)
    invoke("track", "after")  # the spool is still usable
    assert status()["sessions"][0]["last_nr"] == len(rows) + 1


def test_flush_killed_mid_request_loses_nothing(config, tmp_path, spool_dir, isolated):
    held = start_collector(tmp_path, "held", delay=30)
    write_config(isolated / "config.toml", collector_url=held.url, **SETTINGS)
    for i in range(5):
        invoke("track", f"e{i}")
    proc = subprocess.Popen([*HAMUSTRO, "flush"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: status()["sending"] == 5, 30)  # the request is in flight
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    held.server.shutting_down = True  # the held request will be answered 503, nothing written
    st = status()
    assert (st["pending"], st["sending"]) == (0, 5)  # still marked by the dead flush
    fine = start_collector(tmp_path, "fine")
    try:
        write_config(isolated / "config.toml", collector_url=fine.url, **SETTINGS)
        invoke("events", "claim", st["destination"])  # another URL: its events go there when asked
        assert invoke("flush").exit_code == 0
        assert [e["nr"] for e in fine.received()] == [1, 2, 3, 4, 5]
        assert status()["pending"] == 0
    finally:
        fine.server.stop()
        held.server.server_close()


def test_flush_if_due_recovers_events_left_sending_by_a_killed_flush(config, tmp_path, spool_dir, isolated):
    """Cron runs `flush --if-due`: it must put back and send what a killed flush left marked."""
    held = start_collector(tmp_path, "held", delay=30)
    write_config(isolated / "config.toml", collector_url=held.url, queue_size=5, **SETTINGS)
    for i in range(5):
        invoke("track", f"e{i}")
    proc = subprocess.Popen([*HAMUSTRO, "flush"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: status()["sending"] == 5, 30)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    held.server.shutting_down = True
    assert status()["due"] is True  # queue_size is reached: the stuck events still wait to be sent
    held_for = status()["destination"]
    fine = start_collector(tmp_path, "fine")
    try:
        write_config(isolated / "config.toml", collector_url=fine.url, queue_size=5, **SETTINGS)
        invoke("events", "claim", held_for)  # another URL: its events go there when asked
        assert invoke("flush", "--if-due").exit_code == 0
        assert [e["nr"] for e in fine.received()] == [1, 2, 3, 4, 5]
        assert (status()["pending"], status()["sending"]) == (0, 0)
    finally:
        fine.server.stop()
        held.server.server_close()


def test_transient_failures_are_retried_within_a_flush(isolated):
    server = ScriptedServer([503, 429, 200], {"Retry-After": "0"})
    try:
        write_config(
            isolated / "config.toml", collector_url=server.url, retries=3, retry_delay=0.01, **SETTINGS
        )
        invoke("track", "a")
        result = invoke("-v", "flush", "--json")
        out = json.loads(result.stdout)
        assert out["sent"] == 1 and out["batches"][0]["attempts"] == 3
        assert "retry 1 of 3" in result.stderr and "retry 2 of 3" in result.stderr
        assert server.hits == 3
        assert [p.event for p in decode(server.requests[-1]["body"]).payloads] == ["a"]
        assert status()["pending"] == 0 and status()["backoff_until"] is None
    finally:
        server.close()


def test_retry_after_is_honoured(isolated):
    server = ScriptedServer([503, 200], {"Retry-After": "1"})
    try:
        write_config(
            isolated / "config.toml", collector_url=server.url, retries=2, retry_delay=0.01, **SETTINGS
        )
        invoke("track", "a")
        result = invoke("-v", "flush")
        # the computed delay (~0.01 s) is raised to what the collector asked for
        assert "retry 1 of 2 in 1.00 s" in result.stderr
    finally:
        server.close()


def test_long_retry_after_becomes_the_persisted_backoff(isolated):
    server = ScriptedServer([503], {"Retry-After": "7200"})
    try:
        write_config(
            isolated / "config.toml", collector_url=server.url, retries=5, retry_delay=0.01, **SETTINGS
        )
        invoke("track", "a")
        before = int(time.time())
        invoke("flush", expect=1)
        assert server.hits == 1  # not waited on inside the flush
        assert status()["backoff_until"] >= before + 7200
    finally:
        server.close()


def test_backoff_keeps_track_and_cron_quiet_but_not_a_person(isolated):
    server = ScriptedServer([503])
    try:
        write_config(
            isolated / "config.toml",
            collector_url=server.url,
            retries=1,
            retry_delay=0.01,
            queue_size=1,
            **{**SETTINGS, "flush": "inline"},
        )
        out = json.loads(invoke("track", "a", "--json").stdout)
        assert out["flush"] == "failed" and server.hits == 2
        st = status()
        assert st["backoff_until"] > time.time() and not st["due"] and "backing off" in st["due_reason"]
        # while backing off, track does not try to send on every call, nor does cron's --if-due
        for i in range(3):
            assert json.loads(invoke("track", f"b{i}", "--json").stdout)["flush"] == "backoff"
        assert json.loads(invoke("flush", "--if-due", "--json").stdout)["skipped"].startswith("not due")
        assert server.hits == 2
        # a person running flush tries at once
        invoke("flush", expect=1)
        assert server.hits == 4
        assert status()["pending"] == 4
    finally:
        server.close()


def test_backoff_clears_after_success(isolated, collector):
    server = ScriptedServer([503, 200])
    write_config(isolated / "config.toml", collector_url=server.url, retries=0, **SETTINGS)
    invoke("track", "a")
    invoke("flush", expect=1)
    assert status()["backoff_until"]
    invoke("flush")  # the collector is back
    server.close()
    st = status()
    assert st["backoff_until"] is None and st["last_error"] is None and st["pending"] == 0


def test_wrong_secret_stops_sending_and_says_so(isolated, collector):
    write_config(
        isolated / "config.toml",
        collector_url=collector.url,
        queue_size=1,
        **{**SETTINGS, "shared_secret_key": "not-the-collectors", "flush": "inline"},
    )
    result = invoke("track", "a", "--json")
    assert json.loads(result.stdout)["flush"] == "failed"
    assert "shared_secret_key is probably wrong" in result.stderr
    hits = len(collector.requests)
    result = invoke("track", "b", "--json")
    assert json.loads(result.stdout)["flush"] == "halted" and len(collector.requests) == hits
    assert "shared_secret_key" in result.stderr  # every track says it while sending is stopped
    human = invoke("status").stdout
    assert "STOPPED" in human and "shared_secret_key" in human
    st = status()
    assert st["halted"] and st["pending"] == 2 and st["last_error"]["status"] == 405
    assert collector.received() == []
    # fixed: the events were tracked for the wrong secret (another destination): a plain flush
    # leaves them, saying so, until a person claims them; then it sends them and lifts the stop
    wrong = st["destination"]
    write_config(isolated / "config.toml", collector_url=collector.url, **SETTINGS)
    assert "2 left for other destinations" in invoke("flush").stdout
    assert collector.received() == []
    invoke("events", "claim", wrong)
    invoke("flush")
    assert [e["event"] for e in collector.received()] == ["a", "b"]
    assert status()["halted"] is None


def test_tls_is_verified_unless_configured(isolated, tmp_path):
    import shutil
    import ssl

    openssl = shutil.which("openssl")
    assert openssl, "openssl is needed to make a test certificate"
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "2",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    secure = start_collector(tmp_path, "tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    secure.server.socket = ctx.wrap_socket(secure.server.socket, server_side=True)
    url = secure.url.replace("http://", "https://")
    try:
        write_config(isolated / "config.toml", collector_url=url, retries=0, **SETTINGS)
        invoke("track", "a")
        result = invoke("flush", expect=1)
        assert "TLS error" in result.stderr or "certificate" in result.stderr
        assert status()["pending"] == 1 and secure.received() == []
        write_config(isolated / "config.toml", collector_url=url, ca_bundle=str(cert), **SETTINGS)
        invoke("flush")
        assert [e["event"] for e in secure.received()] == ["a"]
        write_config(isolated / "config.toml", collector_url=url, tls_verify=False, **SETTINGS)
        invoke("track", "b")
        result = invoke("flush")
        assert "verification is off" in result.stderr
        assert [e["event"] for e in secure.received()] == ["a", "b"]
    finally:
        secure.server.stop()


def test_poison_payloads_are_found_by_splitting(isolated, tmp_path):
    picky = start_collector(tmp_path, "picky", reject_events=["poison"])
    try:
        write_config(isolated / "config.toml", collector_url=picky.url, max_batch_events=16, **SETTINGS)
        names = [("poison" if i in (3, 11, 12) else f"ok{i}") for i in range(20)]
        invoke("track", "--stdin", input="".join(json.dumps({"event": n}) + "\n" for n in names))
        out = json.loads(invoke("flush", "--json", expect=4).stdout)
        assert (out["sent"], out["rejected"], out["pending"]) == (17, 3, 0)
        assert sorted(e["nr"] for e in picky.received()) == [i + 1 for i in range(20) if names[i] != "poison"]
        st = status("--events")
        assert [e["nr"] for e in st["events"]] == [4, 12, 13]
        assert all(e["state"] == "rejected" and "400" in e["reason"] for e in st["events"])
    finally:
        picky.server.stop()


def test_refused_collection_attributes_are_set_aside_whole(isolated):
    server = ScriptedServer([400])  # refuses everything, even an empty collection
    try:
        write_config(isolated / "config.toml", collector_url=server.url, **SETTINGS)
        invoke("track", "--stdin", input="".join(json.dumps({"event": f"e{i}"}) + "\n" for i in range(8)))
        out = json.loads(invoke("flush", "--json", expect=4).stdout)
        assert out["rejected"] == 8
        assert server.hits == 2  # the batch, then one empty probe: no splitting
        assert "collection attributes" in status()["last_error"]["message"]
    finally:
        server.close()


def test_relative_spool_dir_reaches_the_background_flush(isolated, collector, monkeypatch):
    """The detached flush runs in /: the spool path it gets must be absolute."""
    write_config(
        isolated / "config.toml",
        collector_url=collector.url,
        queue_size=1,
        **{**SETTINGS, "flush": "background"},
    )
    monkeypatch.chdir(isolated)
    monkeypatch.delenv("HAMUSTRO_SPOOL_DIR")
    result = run("--spool-dir", "relative-spool", "track", "far-away", "--json")
    assert json.loads(result.stdout)["flush"] == "started"
    assert wait_until(lambda: len(collector.received()) == 1, 30)
    assert (isolated / "relative-spool" / "spool.sqlite3").exists()


def test_track_exits_0_when_the_flush_it_triggers_cannot_start(isolated, collector, spool_dir):
    write_config(
        isolated / "config.toml", collector_url=collector.url, queue_size=1, **{**SETTINGS, "flush": "inline"}
    )
    invoke("track", "first", "--no-flush")
    (spool_dir / "flush.lock").mkdir()  # the lock cannot be opened
    result = invoke("track", "second", "--json")
    assert json.loads(result.stdout)["flush"] == "failed"
    assert "event queued, but the flush failed" in result.stderr and "flush.lock" in result.stderr
    assert status()["pending"] == 2


def test_api_background_flush_ignores_the_callers_hamustro_variables(
    isolated, collector, spool_dir, monkeypatch
):
    from hamustro_cli import ClientTracker

    monkeypatch.setenv("HAMUSTRO_TIMEOUT", "not-a-number")  # the API reads no environment
    with ClientTracker(
        collector_url=collector.url,
        spool_dir=spool_dir,
        queue_size=1,
        flush="background",
        **{k: v for k, v in SETTINGS.items() if k != "flush"},
    ) as tracker:
        assert tracker.track_event("api").flush == "started"
    assert wait_until(lambda: len(collector.received()) == 1, 30)
