"""End to end: separate `hamustro track` processes, a real collector on loopback, the bytes
decoded with the spec's schema and the signature recomputed here, independently."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET, SETTINGS, ScriptedServer, invoke, run, start_collector, write_config
from specschema import decode

from hamustro_cli import answers


def expected_session(raw_device: str, client: str, sysver: str, prodver: str) -> tuple[str, str]:
    device = hashlib.sha256(raw_device.encode()).hexdigest()
    session = hashlib.md5(f"{device}:{client}:{sysver}:{prodver}".encode()).hexdigest()
    return device, session


def verify_signature(request: dict[str, Any]) -> None:
    headers = {k.lower(): v for k, v in request["headers"].items()}
    assert headers["content-type"] == "application/protobuf"
    stamp = headers["x-hamustro-time"]
    assert stamp.isdigit()
    md5 = hashlib.md5(request["body"]).hexdigest()
    digest = hashlib.sha256(f"{stamp}|{md5}|{SECRET}".encode()).digest()
    assert headers["x-hamustro-signature"] == base64.b64encode(digest).decode()


def test_separate_processes_arrive_with_every_attribute(config, collector):
    before = int(time.time())
    assert run("track", "app.start").returncode == 0
    assert (
        run(
            "track", "login", "--user-id", "4294967295", "--param", "plan=pro", "--param", "seats=3"
        ).returncode
        == 0
    )
    assert run("track", "raw", "--params", "free text", "--testing").returncode == 0
    assert run("track", "old", "--at", "1700000000", "--ip", "10.1.2.3").returncode == 0
    after = int(time.time())
    result = run("flush")
    assert result.returncode == 0, result.stderr

    track_requests = [r for r in collector.requests if r["status"] == 200]
    assert len(track_requests) == 1
    verify_signature(track_requests[0])
    coll = decode(track_requests[0]["body"])
    device, session = expected_session(
        SETTINGS["device_id"], SETTINGS["client_id"], SETTINGS["system_version"], SETTINGS["product_version"]
    )
    assert (coll.device_id, coll.session, coll.client_id) == (device, session, SETTINGS["client_id"])
    assert (coll.system_version, coll.product_version) == ("Linux 6.1", "1.0.0")
    assert (coll.system, coll.product_git_hash) == ("linux", "abc123")
    p = list(coll.payloads)
    assert [x.nr for x in p] == [1, 2, 3, 4]
    assert [x.event for x in p] == ["app.start", "login", "raw", "old"]
    assert all(before <= x.at <= after for x in p[:3]) and p[3].at == 1700000000
    assert not p[0].HasField("user_id") and p[1].user_id == 4294967295
    assert json.loads(p[1].parameters) == {"plan": "pro", "seats": "3"}
    assert p[2].parameters == "free text" and p[2].is_testing and not p[1].is_testing
    # ip = "auto": the local address of the route to 127.0.0.1 is 127.0.0.1 itself
    assert [x.ip for x in p] == ["127.0.0.1", "127.0.0.1", "127.0.0.1", "10.1.2.3"]
    assert [e["nr"] for e in collector.received()] == [1, 2, 3, 4]
    assert json.loads(invoke("status", "--json").stdout)["pending"] == 0


def test_nr_continues_across_runs_and_flushes(config, collector):
    for name in ("a", "b"):
        invoke("track", name)
    invoke("flush")
    invoke("track", "c")
    invoke("flush")
    assert [(e["event"], e["nr"]) for e in collector.received()] == [("a", 1), ("b", 2), ("c", 3)]
    data = json.loads(invoke("session", "--json").stdout)
    assert data["last_nr"] == 3 and data["pending"] == 0


def test_two_sessions_are_sent_as_two_collections(isolated, collector, monkeypatch):
    cfg = write_config(isolated / "config.toml", collector_url=collector.url, **SETTINGS)
    invoke("track", "before-upgrade")
    invoke("track", "before-upgrade-2")
    monkeypatch.setenv("HAMUSTRO_PRODUCT_VERSION", "2.0.0")
    invoke("track", "after-upgrade")
    monkeypatch.delenv("HAMUSTRO_PRODUCT_VERSION")
    assert cfg.exists()
    invoke("flush")
    bodies = [decode(r["body"]) for r in collector.requests if r["status"] == 200]
    assert len(bodies) == 2
    by_version = {b.product_version: b for b in bodies}
    _, old = expected_session("device-42", "client-a", "Linux 6.1", "1.0.0")
    _, new = expected_session("device-42", "client-a", "Linux 6.1", "2.0.0")
    assert by_version["1.0.0"].session == old and [p.nr for p in by_version["1.0.0"].payloads] == [1, 2]
    assert by_version["2.0.0"].session == new and [p.nr for p in by_version["2.0.0"].payloads] == [1]
    for r in collector.requests:
        verify_signature(r)


def test_batches_respect_max_batch_events(isolated, collector):
    write_config(isolated / "config.toml", collector_url=collector.url, max_batch_events=3, **SETTINGS)
    lines = "".join(json.dumps({"event": f"e{i}"}) + "\n" for i in range(8))
    invoke("track", "--stdin", input=lines)
    out = json.loads(invoke("flush", "--json").stdout)
    assert [b["events"] for b in out["batches"]] == [3, 3, 2]
    assert out["sent"] == 8 and out["pending"] == 0
    assert [e["nr"] for e in collector.received()] == list(range(1, 9))


def test_dry_run_sends_nothing(config, collector):
    invoke("track", "x")
    out = json.loads(invoke("flush", "--dry-run", "--json").stdout)
    assert out["batches"][0]["events"] == 1 and out["batches"][0]["bytes"] > 0
    assert collector.requests == []
    assert json.loads(invoke("status", "--json").stdout)["pending"] == 1


@pytest.mark.parametrize("status", [204, 301, 400, 404, 405, 408, 429, 500, 502, 503])
def test_every_status_but_200_keeps_the_events(isolated, status):
    server = ScriptedServer([status], {"Location": "http://127.0.0.1:9/elsewhere"} if status == 301 else None)
    try:
        write_config(
            isolated / "config.toml", collector_url=server.url, retries=1, retry_delay=0.01, **SETTINGS
        )
        invoke("track", "kept-1")
        invoke("track", "kept-2")
        # 400 (set aside as rejected) and answers only a person can fix exit 4; else try later
        result = invoke("flush", "--json", expect=answers.meaning(status).kind.exit_status)
        out = json.loads(result.stdout)
        assert out["sent"] == 0
        st = json.loads(invoke("status", "--json").stdout)
        # a 400 sets the refused events aside (kept, resendable); everything else stays pending
        if status == 400:
            assert (st["pending"], st["rejected"]) == (0, 2)
            events = json.loads(invoke("status", "--json", "--events").stdout)["events"]
            assert {e["state"] for e in events} == {"rejected"}
        else:
            assert (st["pending"], st["rejected"]) == (2, 0)
        assert st["sending"] == 0
        assert st["last_error"]["status"] == status
        assert str(status) in st["last_error"]["message"]
        if status == 405:
            assert "shared_secret_key" in st["last_error"]["message"]
        if status in (204, 301, 404, 405):
            assert st["halted"] and not st["due"]
        if status in (408, 429, 500, 502, 503):
            assert server.hits == 2  # first try plus retries=1
            assert st["backoff_until"] and not st["due"]
        if status == 301:
            assert "not followed" in st["last_error"]["message"]
        assert st["last_sync_time"] is None
    finally:
        server.close()


def test_refused_connection_keeps_events_and_says_why(isolated):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    write_config(isolated / "config.toml", collector_url=f"http://127.0.0.1:{port}", retries=0, **SETTINGS)
    invoke("track", "offline")
    result = invoke("flush", expect=1)
    assert "cannot reach" in result.output
    st = json.loads(invoke("status", "--json").stdout)
    assert st["pending"] == 1 and st["last_error"]["status"] is None


def test_rejected_events_resend_on_request(isolated, tmp_path):
    picky = start_collector(tmp_path, "picky", reject_events=["bad"])
    try:
        write_config(isolated / "config.toml", collector_url=picky.url, **SETTINGS)
        lines = "".join(json.dumps({"event": n}) + "\n" for n in ["ok1", "ok2", "bad", "ok3", "ok4"])
        invoke("track", "--stdin", input=lines)
        out = json.loads(invoke("flush", "--json", expect=4).stdout)
        assert (out["sent"], out["rejected"], out["pending"]) == (4, 1, 0)
        assert sorted(e["event"] for e in picky.received()) == ["ok1", "ok2", "ok3", "ok4"]
        st = json.loads(invoke("status", "--json", "--events").stdout)
        assert st["rejected"] == 1 and st["events"][0]["event"] == "bad"
        assert st["events"][0]["nr"] == 3
    finally:
        picky.server.stop()
    # The collector is fixed, at a new address (another destination: its events are claimed);
    # the rejected event goes out on request.
    fine = start_collector(tmp_path, "fine")
    try:
        write_config(isolated / "config.toml", collector_url=fine.url, **SETTINGS)
        invoke("events", "claim", st["destination"])
        out = json.loads(invoke("flush", "--retry-rejected", "--json").stdout)
        assert out["sent"] == 1
        assert [(e["event"], e["nr"]) for e in fine.received()] == [("bad", 3)]
    finally:
        fine.server.stop()


def test_inline_trigger_on_queue_size(isolated, collector):
    write_config(
        isolated / "config.toml", collector_url=collector.url, queue_size=3, **{**SETTINGS, "flush": "inline"}
    )
    outs = [json.loads(invoke("track", f"e{i}", "--json").stdout)["flush"] for i in range(3)]
    assert outs == ["not-due", "not-due", "sent"]
    assert [e["nr"] for e in collector.received()] == [1, 2, 3]


def test_retention_trigger_counts_spool_creation_as_last_sync(isolated, collector, spool_dir):
    write_config(
        isolated / "config.toml",
        collector_url=collector.url,
        queue_retention=1,
        **{**SETTINGS, "flush": "inline"},
    )
    assert json.loads(invoke("track", "first", "--json").stdout)["flush"] == "not-due"
    import sqlite3

    with sqlite3.connect(spool_dir / "spool.sqlite3") as db:  # pretend the spool was made two minutes ago
        db.execute("UPDATE meta SET value = ? WHERE key = 'created_at'", (str(int(time.time()) - 120),))
    assert json.loads(invoke("track", "second", "--json").stdout)["flush"] == "sent"
    assert len(collector.received()) == 2


def test_no_flush_flag_and_off_mode(isolated, collector):
    write_config(
        isolated / "config.toml", collector_url=collector.url, queue_size=1, **{**SETTINGS, "flush": "inline"}
    )
    assert json.loads(invoke("track", "a", "--no-flush", "--json").stdout)["flush"] == "off"
    assert collector.requests == []


@pytest.mark.heavy
def test_background_flush_detaches_from_caller(isolated, tmp_path, spool_dir):
    slow = start_collector(tmp_path, "slow", delay=1.5)
    try:
        write_config(
            isolated / "config.toml",
            collector_url=slow.url,
            queue_size=2,
            **{**SETTINGS, "flush": "background"},
        )
        assert run("track", "one").returncode == 0
        # capture_output: the call returns only when nobody holds our pipes any more
        result = run("track", "two", "--json")
        assert result.returncode == 0 and json.loads(result.stdout)["flush"] == "started"
        assert slow.received() == []  # the detached flush is still waiting on the collector
        deadline = time.time() + 30
        while len(slow.received()) < 2 and time.time() < deadline:
            time.sleep(0.05)
        assert [e["nr"] for e in slow.received()] == [1, 2]
        log = spool_dir / "flush.log"
        # the collector writes before it answers: the flush logs a moment after the events land
        deadline = time.time() + 30
        while "flush done" not in log.read_text() and time.time() < deadline:
            time.sleep(0.05)
        assert "sent 2 events" in log.read_text()
        assert log.stat().st_mode & 0o777 == 0o600
    finally:
        slow.server.stop()


def test_track_does_not_import_sending_libraries(config, tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import sys\n"
        "from hamustro_cli.cli import cli\n"
        "try:\n    cli(['track', 'light'], prog_name='hamustro')\n"
        "except SystemExit as e:\n    assert not e.code, e.code\n"
        # not `google` alone: protobuf < 4's .pth imports that empty namespace in every process
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('requests', 'urllib3')"
        " or m.startswith('google.')))\n"
    )
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(probe)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    assert json.loads(invoke("status", "--json").stdout)["pending"] == 1


def test_flush_imports_them_for_real(config, collector):
    # the counterpart of the test above: the probe would notice if sending never happened
    invoke("track", "x")
    invoke("flush")
    assert len(collector.received()) == 1


def test_crashed_flush_claims_return_to_pending(config, collector, spool_dir):
    from hamustro_cli.spool.full import Spool

    invoke("track", "a")
    invoke("track", "b")
    with Spool(spool_dir) as spool:  # a flush that died after claiming
        row = spool.pending_sets()[0]
        batch = spool.next_batch(row, 10)
        assert len(batch) == 2
        spool.mark(row, batch[0][0], batch[-1][0])
    st = json.loads(invoke("status", "--json").stdout)
    assert (st["pending"], st["sending"]) == (0, 2)
    invoke("flush")
    assert [e["nr"] for e in collector.received()] == [1, 2]


def test_ip_off_and_literal(isolated, collector):
    write_config(isolated / "config.toml", collector_url=collector.url, ip="off", **SETTINGS)
    invoke("track", "no-ip")
    write_config(isolated / "config.toml", collector_url=collector.url, ip="192.0.2.7", **SETTINGS)
    invoke("track", "literal")
    invoke("flush")
    assert [e["ip"] for e in collector.received()] == [None, "192.0.2.7"]


def test_ip_auto_for_a_host_name_is_filled_by_flush(isolated, collector, spool_dir):
    url = collector.url.replace("127.0.0.1", "localhost")
    write_config(isolated / "config.toml", collector_url=url, **SETTINGS)
    invoke("track", "before-any-flush")
    events = json.loads(invoke("status", "--json", "--events").stdout)["events"]
    assert events[0]["ip"] is None  # not known yet: track does not wait on DNS
    invoke("flush")
    invoke("track", "after-a-flush")
    events = json.loads(invoke("status", "--json", "--events").stdout)["events"]
    assert events[0]["ip"] in ("127.0.0.1", "::1")  # from the cached resolution
    invoke("flush")
    ips = [e["ip"] for e in collector.received()]
    assert len(ips) == 2 and all(ip in ("127.0.0.1", "::1") for ip in ips)


def test_unknown_addresses_are_filled_once_flagged_or_in_a_spool_without_the_flag(
    isolated, collector, spool_dir
):
    """The flush scans for events without an address only when track flagged some (the scan
    holds the write lock), or when the flag was never written (a spool from before it)."""
    import sqlite3

    url = collector.url.replace("127.0.0.1", "localhost")
    write_config(isolated / "config.toml", collector_url=url, **SETTINGS)
    invoke("track", "first")
    invoke("flush")  # learns the address; nothing is left without one
    db = sqlite3.connect(spool_dir / "spool.sqlite3", isolation_level=None)
    try:
        assert db.execute("SELECT value FROM meta WHERE key = 'unknown_ip'").fetchone() == ("0",)
        invoke("track", "second")
        # as a spool from before the flag: an event without an address, and no flag at all
        db.execute("UPDATE events SET ip = ''")
        db.execute("DELETE FROM meta WHERE key = 'unknown_ip'")
    finally:
        db.close()
    invoke("flush")
    ips = [e["ip"] for e in collector.received()]
    assert len(ips) == 2 and all(ip in ("127.0.0.1", "::1") for ip in ips)


def test_session_command(config):
    out = invoke("session").stdout.strip()
    _, session = expected_session("device-42", "client-a", "Linux 6.1", "1.0.0")
    assert out == session
    data = json.loads(invoke("session", "--json").stdout)
    assert data["device_id"] == hashlib.sha256(b"device-42").hexdigest()
    assert set(data) == {
        "session",
        "device_id",
        "client_id",
        "system_version",
        "product_version",
        "system",
        "product_git_hash",
        "last_nr",
        "pending",
    }


def test_status_json_keys(config):
    invoke("track", "x")
    data = json.loads(invoke("status", "--json").stdout)
    for key in ("pending", "sending", "sessions", "last_sync_time", "last_error", "due"):
        assert key in data
    assert set(data["sessions"][0]) >= {"session", "pending", "last_nr", "oldest_at"}


def test_spool_is_private(config, spool_dir: Path):
    invoke("track", "x")
    assert spool_dir.stat().st_mode & 0o777 == 0o700
    for f in spool_dir.iterdir():
        assert f.stat().st_mode & 0o777 == 0o600, f
