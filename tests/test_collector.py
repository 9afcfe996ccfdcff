"""The project's collector answers as collector-behaviour.md records, checks in that order."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import pytest
import requests
from conftest import SECRET, start_collector
from specschema import spec_classes

DEVICE = hashlib.sha256(b"dev").hexdigest()


def body(session: str | None = None, payloads: int = 1, drop: str | None = None) -> bytes:
    collection, _ = spec_classes()
    fields = dict(device_id=DEVICE, client_id="c", system_version="s", product_version="p")
    fields["session"] = session or hashlib.md5(f"{DEVICE}:c:s:p".encode()).hexdigest()
    if drop:
        fields.pop(drop)
    msg = collection(**fields)
    for i in range(payloads):
        msg.payloads.add(at=1700000000 + i, event=f"e{i}", nr=i + 1)
    return msg.SerializeToString(deterministic=True) if not drop else msg.SerializePartialToString()


def sign(data: bytes, secret: str = SECRET, stamp: str | None = None) -> dict[str, str]:
    stamp = stamp or str(int(time.time()))
    digest = hashlib.sha256(f"{stamp}|{hashlib.md5(data).hexdigest()}|{secret}".encode()).digest()
    return {
        "X-Hamustro-Time": stamp,
        "X-Hamustro-Signature": base64.b64encode(digest).decode(),
        "Content-Type": "application/protobuf",
    }


def post(collector, data: bytes, headers: dict[str, str], method: str = "POST") -> requests.Response:
    return requests.request(method, collector.url + "/api/v1/track", data=data, headers=headers, timeout=10)


def test_health(collector):
    r = requests.get(collector.url + "/api/health", timeout=10)
    assert (r.status_code, r.json(), r.headers["Content-Type"]) == (200, {"up": True}, "application/json")


def test_valid_collection_is_200_and_written(collector):
    data = body(payloads=3)
    assert post(collector, data, sign(data)).status_code == 200
    got = collector.received()
    assert [e["nr"] for e in got] == [1, 2, 3]
    assert got[0]["device_id"] == DEVICE and got[0]["event"] == "e0" and got[0]["at"] == 1700000000


def test_json_body_is_accepted(collector):
    data = json.dumps(
        {
            "device_id": DEVICE,
            "client_id": "c",
            "system_version": "s",
            "product_version": "p",
            "session": hashlib.md5(f"{DEVICE}:c:s:p".encode()).hexdigest(),
            "payloads": [{"at": 1, "event": "j", "nr": 1}],
        }
    ).encode()
    headers = {**sign(data), "Content-Type": "application/json"}
    assert post(collector, data, headers).status_code == 200
    assert collector.received()[0]["event"] == "j"


CASES = [
    ("empty collection", lambda: (body(payloads=0), sign(body(payloads=0)), "POST"), 204),
    ("GET", lambda: (b"", {}, "GET"), 405),
    ("PUT", lambda: (body(), sign(body()), "PUT"), 405),
    (
        "no time header",
        lambda: (body(), {k: v for k, v in sign(body()).items() if k != "X-Hamustro-Time"}, "POST"),
        405,
    ),
    (
        "no signature header",
        lambda: (body(), {k: v for k, v in sign(body()).items() if k != "X-Hamustro-Signature"}, "POST"),
        405,
    ),
    ("wrong secret", lambda: (body(), sign(body(), "other"), "POST"), 405),
    ("signature over other time", lambda: (body(), {**sign(body()), "X-Hamustro-Time": "1"}, "POST"), 405),
    ("wrong content type", lambda: (body(), {**sign(body()), "Content-Type": "text/plain"}, "POST"), 400),
    ("garbage body", lambda: (b"\xff\xfe garbage", sign(b"\xff\xfe garbage"), "POST"), 400),
    ("missing required field", lambda: (body(drop="client_id"), sign(body(drop="client_id")), "POST"), 400),
    ("session mismatch", lambda: (body(session="0" * 32), sign(body(session="0" * 32)), "POST"), 400),
    # order of checks: the signature is checked before the content type and the session ...
    (
        "bad signature and bad content type",
        lambda: (body(), {**sign(body(), "x"), "Content-Type": "a/b"}, "POST"),
        405,
    ),
    (
        "bad signature and bad session",
        lambda: (body(session="1" * 32), sign(body(session="1" * 32), "x"), "POST"),
        405,
    ),
    # ... and the session before "payloads present"
    ("bad session, no payloads", lambda: (body("2" * 32, 0), sign(body("2" * 32, 0)), "POST"), 400),
]


@pytest.mark.parametrize("name,make,status", CASES, ids=[c[0] for c in CASES])
def test_status_codes(collector, name, make, status):
    data, headers, method = make()
    r = post(collector, data, headers, method)
    assert r.status_code == status, name
    assert r.content == b""  # error bodies are empty unless verbose
    assert collector.received() == []


def test_unknown_path_is_404(collector):
    assert requests.post(collector.url + "/nope", data=b"", timeout=10).status_code == 404


def test_verbose_errors_have_json_bodies(tmp_path):
    loud = start_collector(tmp_path, "loud", verbose=True)
    try:
        data = body()
        r = post(loud, data, sign(data, "wrong"))
        assert r.status_code == 405 and "signature" in r.json()["error"]
    finally:
        loud.server.stop()


def test_shutting_down_is_503(collector):
    collector.server.shutting_down = True
    data = body()
    assert post(collector, data, sign(data)).status_code == 503
    assert collector.received() == []


def test_cli_collector_process_serves_and_reports_port(tmp_path):
    import subprocess
    import sys

    out = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hamustro_cli", "collector", "--port", "0", "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
        env={"HAMUSTRO_SHARED_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"},
    )
    assert proc.stderr is not None
    try:
        line = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in line
        url = line.split("listening on ", 1)[1].strip()
        data = body(payloads=2)
        r = requests.post(url + "/api/v1/track", data=data, headers=sign(data), timeout=10)
        assert r.status_code == 200
        assert [json.loads(x)["nr"] for x in out.read_text().splitlines()] == [1, 2]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert "stopped after 2 events" in proc.stderr.read()


def test_a_request_in_flight_when_the_collector_process_stops_is_answered_503(tmp_path):
    """SIGTERM while a request waits (--delay 1: in a handler, or still in the listen backlog
    if the signal came first): it is answered 503 "shutting down", never dropped."""
    import signal
    import socket
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "hamustro_cli", "collector", "--port", "0", "--delay", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={"HAMUSTRO_SHARED_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"},
    )
    assert proc.stderr is not None
    try:
        url = proc.stderr.readline().split("listening on ", 1)[1].strip()
        host, port = url.removeprefix("http://").rsplit(":", 1)
        data = body()
        head = "".join(f"{k}: {v}\r\n" for k, v in sign(data).items())
        request = (
            f"POST /api/v1/track HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(data)}\r\n{head}\r\n"
        ).encode() + data
        with socket.create_connection((host, int(port)), timeout=30) as conn:
            conn.sendall(request)
            proc.send_signal(signal.SIGTERM)
            answer = b""
            while chunk := conn.recv(4096):
                answer += chunk
    finally:
        try:  # it stops by itself after the 503 (a second SIGTERM would be "stop now": Aborted!)
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert answer.startswith(b"HTTP/1.1 503 "), (answer, proc.stderr.read())
    assert "stopped after 0 events" in proc.stderr.read()


def test_written_lines_are_json_with_every_field(collector):
    collection, _ = spec_classes()
    session = hashlib.md5(f"{DEVICE}:c:s:p".encode()).hexdigest()
    msg = collection(
        device_id=DEVICE, client_id="c", session=session, system_version="s", product_version="p"
    )
    msg.system = 'quote " and \\ backslash'
    msg.payloads.add(
        at=2**40,
        event='odd "name"\n€ \u2028',
        nr=4294967295,
        user_id=0,
        ip="::1",
        parameters='{"k": "v\\u0000"}',
        is_testing=False,
    )
    msg.payloads.add(at=1, event="plain", nr=1)
    data = msg.SerializeToString()
    assert post(collector, data, sign(data)).status_code == 200
    first, second = collector.received()
    assert first == {
        "device_id": DEVICE,
        "client_id": "c",
        "session": session,
        "system_version": "s",
        "product_version": "p",
        "system": 'quote " and \\ backslash',
        "product_git_hash": None,
        "at": 2**40,
        "event": 'odd "name"\n€ \u2028',
        "nr": 4294967295,
        "user_id": 0,
        "ip": "::1",
        "parameters": '{"k": "v\\u0000"}',
        "is_testing": False,
    }
    assert (second["event"], second["user_id"], second["ip"], second["parameters"], second["is_testing"]) == (
        "plain",
        None,
        None,
        None,
        None,
    )
