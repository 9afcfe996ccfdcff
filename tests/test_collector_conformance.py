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
from typing import Any

import pytest
import requests
from conftest import SECRET, ipv6_loopback
from specschema import spec_classes
from test_collector import DEVICE, post, sign

from hamustro_cli import answers
from hamustro_cli.answers import Kind

SESSION = hashlib.md5(f"{DEVICE}:c:s:p".encode()).hexdigest()


def collection(drop: str | None = None, payload: dict[str, Any] | None = None) -> bytes:
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
    assert proc.stderr is not None
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
    assert result.stderr.startswith(f"hamustro: error: cannot listen on [::1]:{port}: "), result.stderr


# -- the table: request by request, what the real collector answers ----------------------------
# (method, path, headers, body) -> the real collector's status (0cc29d4, observed request by
# request: collector-behaviour.md), and what the client makes of that status (answers.py). The
# rows marked "real" are the five where the local collector used to differ.


def _payload_body(event: bytes = b"e") -> bytes:
    """A valid Collection whose one payload's `event` is these bytes (not UTF-8 if need be)."""
    cls, _ = spec_classes()
    msg = cls(device_id=DEVICE, client_id="c", system_version="s", product_version="p", session=SESSION)
    msg.payloads.add(at=1700000000, event="E" * len(event), nr=1)
    return msg.SerializeToString().replace(b"E" * len(event), event)


def _chunked(data: bytes) -> bytes:
    half = len(data) // 2
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (data[:half], data[half:])) + b"0\r\n\r\n"


VALID = _payload_body()
NOT_UTF8 = _payload_body(b"caf\xe9 \xff")
TRACK = "/api/v1/track"
Row = tuple[str, str, dict[str, str], bytes, int, Kind]
TABLE: dict[str, Row] = {
    "GET health": ("GET", "/api/health", {}, b"", 200, Kind.DELIVERED),
    "POST health (real)": ("POST", "/api/health", {}, b"", 200, Kind.DELIVERED),
    "HEAD health (real)": ("HEAD", "/api/health", {}, b"", 200, Kind.DELIVERED),
    "PUT health (real)": ("PUT", "/api/health", {}, b"x", 200, Kind.DELIVERED),
    "DELETE health": ("DELETE", "/api/health", {}, b"", 200, Kind.DELIVERED),
    "GET track": ("GET", TRACK, {}, b"", 405, Kind.PERSON),
    "PUT track, signed": ("PUT", TRACK, sign(VALID), VALID, 405, Kind.PERSON),
    "POST elsewhere": ("POST", "/api/v1/other", sign(VALID), VALID, 404, Kind.PERSON),
    "valid": ("POST", TRACK, sign(VALID), VALID, 200, Kind.DELIVERED),
    "no payloads": ("POST", TRACK, sign(b""), b"", 400, Kind.SPLIT),  # required fields missing
    "event not UTF-8 (real)": ("POST", TRACK, sign(NOT_UTF8), NOT_UTF8, 200, Kind.DELIVERED),
    "chunked, no Content-Length (real)": (
        "POST",
        TRACK,
        {**sign(VALID), "Transfer-Encoding": "chunked"},
        _chunked(VALID),
        200,
        Kind.DELIVERED,
    ),
    "chunked, malformed": (
        "POST",
        TRACK,
        {**sign(VALID), "Transfer-Encoding": "chunked"},
        b"zz\r\n",
        400,
        Kind.SPLIT,
    ),
    "no time header": ("POST", TRACK, {"X-Hamustro-Signature": "x"}, VALID, 405, Kind.PERSON),
    "wrong signature": ("POST", TRACK, sign(VALID, "other"), VALID, 405, Kind.PERSON),
    "text/plain": ("POST", TRACK, {**sign(VALID), "Content-Type": "text/plain"}, VALID, 400, Kind.SPLIT),
    "garbage": ("POST", TRACK, sign(b"\xff\xff\xff"), b"\xff\xff\xff", 400, Kind.SPLIT),
    "Content-Length not a number": ("POST", TRACK, {"Content-Length": "x1"}, b"", 400, Kind.SPLIT),
}


def _raw_request(url: str, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
    """Send exactly these bytes (no client library adds or fixes a header); the status and the
    answer's bytes."""
    host, port = url.rsplit("/", 1)[-1].rsplit(":", 1)
    sent = {"Host": host, "Connection": "close", **headers}
    if "Transfer-Encoding" not in sent and "Content-Length" not in sent:
        sent["Content-Length"] = str(len(body))
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in sent.items()) + "\r\n"
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(head.encode("latin-1") + body)
        got = b""
        while chunk := sock.recv(65536):
            got += chunk
    return int(got.split(b" ", 2)[1]), got


@pytest.mark.parametrize("row", list(TABLE.values()), ids=list(TABLE))
def test_the_local_collector_answers_each_request_as_the_real_one(collector, row):
    method, path, headers, body, status, kind = row
    got, raw = _raw_request(collector.url, method, path, headers, body)
    assert got == status
    assert answers.meaning(got).kind is kind  # and the client reads it as the table says
    if method == "HEAD":
        assert raw.endswith(b"\r\n\r\n")  # headers only
    elif path == "/api/health":
        assert raw.endswith(b'{"up":true}')


def test_an_event_that_is_not_utf8_is_stored_with_replacement_characters(collector):
    assert _raw_request(collector.url, "POST", TRACK, sign(NOT_UTF8), NOT_UTF8)[0] == 200
    assert [e["event"] for e in collector.received()] == ["caf\ufffd \ufffd"]


def test_a_chunked_body_is_read_whole(collector):
    headers = {**sign(VALID), "Transfer-Encoding": "chunked"}
    assert _raw_request(collector.url, "POST", TRACK, headers, _chunked(VALID))[0] == 200
    assert [e["event"] for e in collector.received()] == ["e"]
