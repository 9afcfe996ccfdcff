"""The transport's retries, with a fake sleep against a real HTTP server on 127.0.0.1, and
who it says calls (User-Agent), read by real servers."""

from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from importlib.metadata import version
from pathlib import Path

import pytest
from conftest import SECRET, SETTINGS, RunningCollector, ScriptedServer, invoke, serve, write_config

from hamustro_cli import __version__
from hamustro_cli.transport import MAX_WAIT, Transport

# -- the transport's retries ----------------------------------------------------------------


@pytest.fixture
def scripted():
    servers: list[ScriptedServer] = []

    def make(statuses: list[int], headers: dict[str, str] | None = None) -> ScriptedServer:
        servers.append(ScriptedServer(statuses, headers))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def transport(url: str, retries: int = 3) -> Transport:
    return Transport(url, SECRET, timeout=10, retries=retries, retry_delay=0.5)


def test_transient_failures_are_retried_with_growing_waits(scripted):
    server = scripted([503, 502, 200])
    waits: list[float] = []
    answer = transport(server.url).send(b"body", sleep=waits.append)
    assert answer.ok and answer.attempts == 3 and server.hits == 3
    assert 0.25 <= waits[0] <= 0.5 and 0.5 <= waits[1] <= 1.0
    assert all(r["body"] == b"body" for r in server.requests)


def test_retries_stop_after_the_configured_count(scripted):
    server = scripted([503])
    waits: list[float] = []
    answer = transport(server.url, retries=2).send(b"x", sleep=waits.append)
    assert answer.status == 503 and answer.transient and answer.attempts == 3
    assert server.hits == 3 and len(waits) == 2


@pytest.mark.parametrize("status", [400, 405, 404])
def test_a_final_answer_is_never_retried(scripted, status):
    server = scripted([status, 200])
    waits: list[float] = []
    answer = transport(server.url).send(b"x", sleep=waits.append)
    assert answer.status == status and answer.attempts == 1 and waits == [] and server.hits == 1


def test_retry_after_is_waited_for_or_left_to_the_persisted_backoff(scripted):
    short = scripted([429, 200], {"Retry-After": "7"})
    waits: list[float] = []
    assert transport(short.url).send(b"x", sleep=waits.append).ok
    assert waits == [7.0]
    long = scripted([503], {"Retry-After": str(int(MAX_WAIT) + 60)})
    waits = []
    answer = transport(long.url).send(b"x", sleep=waits.append)
    assert answer.status == 503 and answer.retry_after == MAX_WAIT + 60 and waits == []
    assert long.hits == 1


def test_no_answer_at_all_is_transient_and_retried(scripted):
    server = scripted([200])
    url = server.url
    server.close()  # nothing listens there any more
    waits: list[float] = []
    answer = transport(url, retries=1).send(b"x", sleep=waits.append)
    assert answer.status is None and answer.transient and answer.attempts == 2 and len(waits) == 1
    assert "cannot reach" in answer.detail


# -- who calls ------------------------------------------------------------------------------------

OUR_AGENT = f"hamustro-cli/{__version__} python-requests/{version('requests')}"


def test_a_flush_says_who_calls(config, collector: RunningCollector):
    invoke("track", "a")
    invoke("flush")
    assert [r["headers"].get("User-Agent") for r in collector.requests] == [OUR_AGENT]


def test_doctor_says_who_calls_in_both_its_requests(isolated: Path):
    seen: list[tuple[str, str | None]] = []

    class Recorder(BaseHTTPRequestHandler):
        """/api/health is up; a POST is answered 204 (right secret, right session)."""

        def do_GET(self) -> None:
            seen.append(("GET " + self.path, self.headers.get("User-Agent")))
            body = json.dumps({"up": True}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            seen.append(("POST " + self.path, self.headers.get("User-Agent")))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *a: object) -> None:
            pass

    server, url = serve(Recorder)
    try:
        write_config(isolated / "config.toml", collector_url=url, **SETTINGS)
        invoke("doctor")
    finally:
        server.shutdown()
        server.server_close()
    assert seen == [("GET /api/health", OUR_AGENT), ("POST /api/v1/track", OUR_AGENT)]
