"""Every byte from the collector is untrusted (issue #9, section 1).

The collectors here are raw sockets on 127.0.0.1:0 that answer with whatever bytes a test gives
them (odd headers, lying lengths, broken status lines, answers dripped a byte at a time): only
an answer's status may decide what happens to a batch, nothing in it may crash a flush or reach
a terminal unescaped, and `timeout` bounds the whole exchange.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, invoke, write_config
from specschema import decode

from hamustro_cli.transport import MAX_RETRY_AFTER, parse_retry_after, shown


def _read_request(conn: socket.socket) -> bytes:
    """The body of one HTTP request (headers read up to the blank line, then Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return body


class RawCollector:
    """Answers every request with `answer(conn)` on a raw socket, one connection at a time,
    closing the connection after each answer. Keeps each request's body."""

    def __init__(self, answer: bytes | Callable[[socket.socket], None]):
        self.answer = answer
        self.bodies: list[bytes] = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    body = _read_request(conn)
                    self.bodies.append(body)
                    if callable(self.answer):
                        self.answer(conn)
                    else:
                        conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


class Drip:
    """Sends `head` at once, then `tail` one byte every `pause` seconds; notes whether the
    client hung up before the tail was all sent (a send fails once the client is gone)."""

    def __init__(self, head: bytes, tail: bytes, pause: float = 0.1):
        self.head, self.tail, self.pause = head, tail, pause
        self.hung_up_after: list[int] = []  # bytes of the tail sent when the client was gone
        self.finished = 0  # exchanges whose whole tail went out
        self.done = threading.Event()

    def __call__(self, conn: socket.socket) -> None:
        try:
            conn.sendall(self.head)
            for i in range(len(self.tail)):
                time.sleep(self.pause)
                conn.sendall(self.tail[i : i + 1])
            self.finished += 1
        except OSError:
            self.hung_up_after.append(i)
        finally:
            self.done.set()


@pytest.fixture
def queued_against(isolated: Path) -> Iterator[Callable[..., RawCollector]]:
    """Start a RawCollector giving `answer`, point the config at it, queue the event "a"."""
    servers: list[RawCollector] = []

    def start(answer: bytes | Callable[[socket.socket], None], **extra: object) -> RawCollector:
        server = RawCollector(answer)
        servers.append(server)
        _config(isolated, server.url, **extra)
        assert invoke("track", "a", expect=None).exit_code == 0
        return server

    yield start
    for server in servers:
        server.close()


def _config(isolated: Path, url: str, **extra: object) -> None:
    values = {**SETTINGS, "retries": 0, "retry_delay": 0.01, **extra}
    write_config(isolated / "config.toml", collector_url=url, **values)


def _status() -> dict[str, Any]:
    result = invoke("status", "--json", expect=None)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def _events(bodies: list[bytes]) -> list[str]:
    return [p.event for body in bodies if body for p in decode(body).payloads]


def _answer(status_line: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    lines = [status_line, *headers]
    if not any(h.lower().startswith(b"content-length") for h in headers) and not any(
        h.lower().startswith(b"transfer-encoding") for h in headers
    ):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _clean(text: str) -> bool:
    """One line of printable text: no terminal escapes, no injected lines."""
    return all(ch.isprintable() for ch in text)


# -- Retry-After -----------------------------------------------------------------------------

HOSTILE_RETRY_AFTER = [
    "²",  # isdigit() yes, float() no
    "１２",  # fullwidth digits, same
    "٣",  # Arabic-Indic digit
    "9" * 400,
    "9" * 5000,  # beyond int()'s digit limit
    "-5",
    "nan",
    "inf",
    "1e9",
    "Fri, 31 Dec 9999 23:59:59 GMT",
    "Thu, 01 Jan 1970 00:00:00 GMT",
    "Mon, 01 Jan 99999 00:00:00 GMT",
    "Mon, 01 Jan 2024 00:00:00 +9999",
    "Mon, 32 Foo 2024 99:99:99 GMT",
    "garbage \x1b[31m",
    "",
    " ",
    "1, 2",  # two headers, joined
]


@pytest.mark.parametrize("value", HOSTILE_RETRY_AFTER)
def test_parse_retry_after_returns_none_or_a_capped_wait(value):
    wait = parse_retry_after(value, time.time())
    assert wait is None or 0 <= wait <= MAX_RETRY_AFTER


RAW_RETRY_AFTER = [v.encode("utf-8") for v in HOSTILE_RETRY_AFTER if v.strip()] + [
    b"\xb2",  # "²" in latin-1, as http.client decodes headers: a digit to isdigit()
    b"\xb9\xb3",  # "¹³"
    b"\xff\xfe\x80",  # not UTF-8, not meaningful latin-1
    b"\xc2\xb2",  # "²" in UTF-8
    b"12\r\nRetry-After: \xb2",  # the header twice
]


@pytest.mark.parametrize("value", RAW_RETRY_AFTER)
def test_any_retry_after_on_a_200_is_still_delivered_and_deleted(queued_against, value):
    server = queued_against(_answer(b"HTTP/1.1 200 OK", b"Retry-After: " + value))
    flushed = invoke("flush", expect=None)
    assert flushed.exit_code == 0, flushed.stderr
    assert "Traceback" not in flushed.stderr
    assert _events(server.bodies) == ["a"]
    assert _status()["pending"] == 0
    again = invoke("flush", expect=None)  # nothing left to send again
    assert again.exit_code == 0 and _events(server.bodies) == ["a"]


@pytest.mark.parametrize("value", [b"\xb2", b"9" * 5000, b"Fri, 31 Dec 9999 23:59:59 GMT", b"\xff\xfe"])
def test_any_retry_after_on_a_503_is_a_bounded_backoff(queued_against, value):
    queued_against(_answer(b"HTTP/1.1 503 Busy", b"Retry-After: " + value))
    before = time.time()
    flushed = invoke("flush", expect=None)
    assert flushed.exit_code == 1 and "Traceback" not in flushed.stderr
    st = _status()
    assert st["pending"] == 1
    assert before <= st["backoff_until"] <= time.time() + MAX_RETRY_AFTER + 1


# -- answers that are not what they claim ------------------------------------------------------

DELIVERED = {
    "content-length lies (short body, then close)": _answer(
        b"HTTP/1.1 200 OK", b"Content-Length: 100000", body=b"short"
    ),
    "chunked garbage": _answer(b"HTTP/1.1 200 OK", b"Transfer-Encoding: chunked", body=b"zz\r\nnot hex\r\n"),
    "gzip that is not": _answer(
        b"HTTP/1.1 200 OK", b"Content-Encoding: gzip", b"Content-Length: 9", body=b"not gzip!"
    ),
    "big body": _answer(b"HTTP/1.1 200 OK", body=b"x" * 5_000_000),
    "odd reason phrase": _answer(b"HTTP/1.1 200 \xff\x1b[2J\xe2\x80\xae"),
    "odd headers": _answer(
        b"HTTP/1.1 200 OK",
        b"Location: \xff\x1b]0;x\x07",
        b"X-\xff: \x00\x01",
        b"Content-Type: application/json; charset=nonsense",
    ),
    "HTTP/1.0 without length": b"HTTP/1.0 200 OK\r\n\r\nbody until close",
    # http.client refuses more than 100 headers, or a header line over 64 KiB, after reading
    # the status: these were resent as transient failures, a duplicate on every flush
    "150 headers": _answer(b"HTTP/1.1 200 OK", *(b"X-%d: y" % i for i in range(150))),
    "500 headers": _answer(b"HTTP/1.1 200 OK", *(b"X-%d: y" % i for i in range(500))),
    "a huge header": b"HTTP/1.1 200 OK\r\nX-Big: " + b"y" * 200_000 + b"\r\n\r\n",
}


@pytest.mark.parametrize("answer", list(DELIVERED.values()), ids=list(DELIVERED))
def test_a_200_is_delivered_whatever_else_the_answer_holds(queued_against, answer):
    server = queued_against(answer)
    flushed = invoke("flush", expect=None)
    assert flushed.exit_code == 0, flushed.stderr
    assert _events(server.bodies) == ["a"]
    assert _status()["pending"] == 0


NOT_HTTP = {
    "garbage status line": b"HELLO \x1b[31mthere\r\n\r\n",
    "HTTP/0.9 (a body, no status line)": b"<html>hi</html>",
    "status 000": b"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n",
    "status 1000": b"HTTP/1.1 1000 Big\r\nContent-Length: 0\r\n\r\n",
    "status 999": b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n",
    "nothing at all": b"",
}


@pytest.mark.parametrize("answer", list(NOT_HTTP.values()), ids=list(NOT_HTTP))
def test_an_answer_that_is_not_usable_http_fails_cleanly_and_keeps_the_event(queued_against, answer):
    queued_against(answer)
    flushed = invoke("flush", expect=None)
    assert flushed.exit_code == 1
    assert "Traceback" not in flushed.stderr
    errors = [line for line in flushed.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and _clean(errors[0]) and len(errors[0]) < 400
    st = _status()
    assert st["pending"] == 1 and st["rejected"] == 0


@pytest.mark.parametrize("status,exit_code", [(503, 1), (405, 4)])
def test_too_many_headers_leave_the_status_to_decide(queued_against, status, exit_code):
    """Past http.client's limits the status still counts, whatever it is."""
    server = queued_against(
        _answer(b"HTTP/1.1 %d No" % status, *(b"X-%d: y" % i for i in range(150)), b"Retry-After: 5")
    )
    flushed = invoke("flush", expect=None)
    assert flushed.exit_code == exit_code and "Traceback" not in flushed.stderr, flushed
    st = _status()
    assert st["pending"] == 1 and st["last_error"]["status"] == status
    assert _events(server.bodies) == ["a"]


NASTY = "\x1b]0;owned\x07\x1b[2J\nfake: line\r\u202eevil" + "z" * 20_000


def test_collector_text_is_escaped_and_capped_in_errors_and_status(queued_against):
    """A redirect's Location and a 400's body reach people only escaped and cut short."""
    queued_against(_answer(b"HTTP/1.1 302 Found", b"Location: " + NASTY.encode("utf-8")))
    flushed = invoke("flush", expect=None)
    assert flushed.exit_code == 4  # a redirect: a person must act
    errors = [line for line in flushed.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and _clean(errors[0]) and len(errors[0]) < 600
    assert "\\x1b" in errors[0]  # shown escaped, not dropped
    st = _status()
    assert _clean(st["last_error"]["message"]) and len(st["last_error"]["message"]) < 600
    human = invoke("status", expect=None)
    assert "\x1b" not in human.stdout and "fake: line" not in human.stdout.splitlines()
    queued_against(_answer(b"HTTP/1.1 400 Bad", body=NASTY.encode("utf-8")))
    flushed = invoke("-v", "flush", expect=None)
    assert "\x1b" not in flushed.stderr
    st = _status()
    # the collection itself is refused: the event queued for this collector (the first one is the
    # first collector's, another destination, and stays queued for it)
    assert st["rejected"] == 1 and st["other_destinations"] and st["pending"] == 1
    assert _clean(st["last_error"]["message"]) and len(st["last_error"]["message"]) < 600


def test_shown_escapes_controls_and_caps():
    assert shown("a\nb\x1b[0m\u202e") == "a\\nb\\x1b[0m\\u202e"
    assert len(shown("x" * 10_000)) <= 201
    assert shown("héllo wörld") == "héllo wörld"


# -- timeout bounds the whole exchange ---------------------------------------------------------

# ~9 s at 0.1 s a byte against a 1.5 s timeout: the flush runs in-process (no interpreter to
# start inside the deadline; a 1 s timeout once cut a loaded run of a separate process off before
# the status), and the tail outlasts the timeout by a wide margin
DRIP_TAIL = b"X-Slow: " + b"y" * 60 + b"\r\nContent-Length: 0\r\n\r\n"


@pytest.mark.parametrize(
    "head,delivered,said",
    [
        (b"HTTP/1.1 2", False, "no answer from"),  # the status line itself drips: no status
        (b"", False, "no answer from"),  # nothing comes, a byte at a time
        # Once the status is in, it stands: cut-off headers or body change nothing.
        (b"HTTP/1.1 200 OK\r\n", True, ""),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n", True, ""),
        (b"HTTP/1.1 503 Busy\r\nContent-Length: 1000\r\n\r\n", False, "503"),
    ],
    ids=["status line", "garbage dripped", "200 headers", "200 body", "503 body"],
)
def test_a_dripping_answer_cannot_hold_a_flush_past_timeout(queued_against, head, delivered, said):
    drip = Drip(head, DRIP_TAIL)
    server = queued_against(drip, timeout=1.5)
    flushed = invoke("flush", expect=None)
    assert drip.done.wait(30)
    # The client hung up while the collector was still dripping.
    assert drip.finished == 0 and drip.hung_up_after and drip.hung_up_after[0] < len(DRIP_TAIL) - 1
    assert "Traceback" not in flushed.stderr
    if delivered:
        assert flushed.exit_code == 0 and _status()["pending"] == 0
    else:
        assert flushed.exit_code == 1 and said in flushed.stderr
        assert _status()["pending"] == 1
    assert _events(server.bodies) == ["a"]


def test_doctor_health_check_is_bounded_by_timeout(queued_against):
    drip = Drip(b"HTTP/1.1 2", DRIP_TAIL)
    queued_against(drip, timeout=1.5)
    result = invoke("doctor", "--json", expect=None)
    assert drip.done.wait(30)
    assert drip.finished == 0 and drip.hung_up_after
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["collector"]["state"] == "fail"
    assert "within 1.5 s" in checks["collector"]["verdict"]
