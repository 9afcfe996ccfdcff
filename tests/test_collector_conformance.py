"""The local collector answers as the real one (issue #9, section 7; collector-behaviour.md).

Required fields are checked whatever protobuf backend parses (upb does not), a Content-Length
that is not a length is a 400 rather than a dropped connection, and `--host` takes IPv6.
"""

from __future__ import annotations

import hashlib
import json
import socket
import subprocess
import sys

import pytest
import requests
from conftest import SECRET, ipv6_loopback
from specschema import spec_classes
from test_collector import DEVICE, post, sign

SESSION = hashlib.md5(f"{DEVICE}:c:s:p".encode()).hexdigest()


def collection(drop: str | None = None, payload: dict | None = None) -> bytes:
    """A Collection whose session matches its fields, one field dropped: only the required
    field check can refuse it (the session check would pass)."""
    cls, _ = spec_classes()
    fields = dict(device_id=DEVICE, client_id="c", system_version="s", product_version="p", session=SESSION)
    if drop in fields:
        # the session is recomputed from what is left, as a client that forgot the field would
        fields.pop(drop)
        if drop != "session":
            parts = [
                fields.get(k, "") for k in ("device_id", "client_id", "system_version", "product_version")
            ]
            fields["session"] = hashlib.md5(":".join(parts).encode()).hexdigest()
    msg = cls(**fields)
    msg.payloads.add(**(payload if payload is not None else {"at": 1700000000, "event": "e", "nr": 1}))
    return msg.SerializePartialToString()


MISSING = {
    "payload without nr": collection(payload={"at": 1700000000, "event": "e"}),
    "payload without at": collection(payload={"event": "e", "nr": 1}),
    "payload without event": collection(payload={"at": 1700000000, "nr": 1}),
    "collection without device_id": collection(drop="device_id"),
    "collection without client_id": collection(drop="client_id"),
    "collection without system_version": collection(drop="system_version"),
    "collection without product_version": collection(drop="product_version"),
    "collection without session": collection(drop="session"),
}


@pytest.mark.parametrize("data", list(MISSING.values()), ids=list(MISSING))
def test_a_missing_required_field_is_400(collector, data):
    r = post(collector, data, sign(data))
    assert r.status_code == 400
    assert r.content == b""
    assert collector.received() == []


def test_required_fields_are_checked_after_the_signature(collector):
    """Decoding (with its required fields) comes after the signature in the real order."""
    data = MISSING["payload without nr"]
    assert post(collector, data, sign(data, "wrong")).status_code == 405


def test_a_payload_without_nr_in_json_is_400_too(collector):
    data = json.dumps(
        {
            "device_id": DEVICE,
            "client_id": "c",
            "system_version": "s",
            "product_version": "p",
            "session": SESSION,
            "payloads": [{"at": 1, "event": "j"}],
        }
    ).encode()
    assert post(collector, data, {**sign(data), "Content-Type": "application/json"}).status_code == 400
    assert collector.received() == []


@pytest.mark.parametrize("length", [b"abc", b"-5", b"1e3", b"\xd9\xa8", b"9" * 40])
def test_a_content_length_that_is_not_a_length_is_400(collector, length):
    host, port = collector.server.server_address[:2]
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(b"POST /api/v1/track HTTP/1.1\r\nHost: x\r\nContent-Length: " + length + b"\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(4096)
            if not chunk:
                break
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 400 "), answer


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_cli_collector_listens_on_ipv6(tmp_path, host):
    out = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hamustro_cli", "collector", "--host", host, "--port", "0", "--out", str(out)],
        stderr=subprocess.PIPE,
        text=True,
        env={"HAMUSTRO_SHARED_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"},
    )
    try:
        line = proc.stderr.readline()
        assert "listening on http://[::1]:" in line, line
        url = line.split("listening on ", 1)[1].strip()
        assert requests.get(url + "/api/health", timeout=10).json() == {"up": True}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
@pytest.mark.parametrize("host", ["::1", "[::1]"])
def test_cli_collector_brackets_ipv6_when_the_port_is_taken(tmp_path, host):
    """It said `cannot listen on ::1:PORT`, an address no one can read back."""
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "hamustro_cli", "collector", "--host", host, "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            env={"HAMUSTRO_SHARED_SECRET_KEY": SECRET, "PATH": "/usr/bin:/bin"},
        )
    assert result.returncode == 1, result
    assert result.stderr.startswith(f"Error: cannot listen on [::1]:{port}: "), result.stderr
