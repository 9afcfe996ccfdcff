"""Proxies from the environment (HTTP_PROXY, ALL_PROXY, NO_PROXY, lower case too), through a
real forwarding proxy on 127.0.0.1 in front of the real local collector; an authenticating one
whose credentials never show, in any output."""

from __future__ import annotations

import base64
import http.client
import importlib.util
import json
import select
import socket
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import RunningCollector, invoke, serve

from hamustro_cli.answers import Kind, meaning

USER, PASSWORD = "fleet-proxy-user", "pr0xy-s3cret-pw"
HOP_BY_HOP = ("connection", "keep-alive", "transfer-encoding", "content-length", "host")


class Proxy:
    """A forwarding HTTP proxy on 127.0.0.1:0: takes absolute-URI requests (what a client sends
    a proxy for an http:// URL) and relays them to their host, and tunnels CONNECT (for an
    https:// URL). With `credentials` ("user:pw"), a request without that Basic
    Proxy-Authorization is answered 407. Keeps what it was sent."""

    def __init__(self, credentials: str | None = None, echo: bool = False):
        outer = self
        self.seen: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def refused(self) -> bool:
                """Answered 407 when the credentials are not the ones wanted."""
                outer.seen.append(
                    {"method": self.command, "target": self.path, "headers": dict(self.headers)}
                )
                if credentials is not None:
                    expected = "Basic " + base64.b64encode(credentials.encode()).decode()
                    given = self.headers.get("Proxy-Authorization") or ""
                    if given != expected:
                        # `echo`: a chatty proxy that quotes the credentials it refused
                        said = base64.b64decode(given[len("Basic ") :]) if echo else b""
                        self.send_response(407)
                        self.send_header("Proxy-Authenticate", 'Basic realm="test proxy"')
                        self.send_header("Content-Length", str(len(said)))
                        self.end_headers()
                        self.wfile.write(said)
                        return True
                return False

            def relay(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.refused():
                    return
                target = urlsplit(self.path)
                headers = {
                    k: v
                    for k, v in self.headers.items()
                    if k.lower() not in HOP_BY_HOP and not k.lower().startswith("proxy-")
                }
                upstream = http.client.HTTPConnection(target.hostname or "", target.port, timeout=30)
                try:
                    upstream.request(self.command, target.path or "/", body=body or None, headers=headers)
                    answer = upstream.getresponse()
                    data = answer.read()
                finally:
                    upstream.close()
                self.send_response(answer.status)
                for k, v in answer.getheaders():
                    if k.lower() not in HOP_BY_HOP:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = relay

            def do_CONNECT(self) -> None:
                if self.refused():
                    return
                host, _, port = self.path.rpartition(":")
                upstream = socket.create_connection((host, int(port)), timeout=30)
                self.send_response(200, "Connection established")
                self.end_headers()
                self.close_connection = True
                ends = [self.connection, upstream]
                try:
                    while True:  # bytes both ways until one side closes
                        readable, _, _ = select.select(ends, [], [], 30)
                        if not readable:
                            return
                        for end in readable:
                            data = end.recv(65536)
                            if not data:
                                return
                            (upstream if end is self.connection else self.connection).sendall(data)
                finally:
                    upstream.close()

            def log_message(self, *a: object) -> None:
                pass

        self.server, self.url = serve(Handler)
        self.port = self.server.server_address[1]

    def url_with(self, credentials: str) -> str:
        return f"http://{credentials}@127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    running = Proxy()
    yield running
    running.close()


@pytest.fixture
def auth_proxy() -> Iterator[Proxy]:
    running = Proxy(f"{USER}:{PASSWORD}")
    yield running
    running.close()


def status() -> dict[str, Any]:
    return json.loads(invoke("status", "--json").stdout)


def health() -> dict[str, Any]:
    checks = json.loads(invoke("doctor", "--json", expect=None).stdout)["checks"]
    return next(c for c in checks if c["name"] == "collector")


def assert_nowhere(secret: str, *outputs: str) -> None:
    for text in outputs:
        assert secret not in text, text


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
def test_a_flush_goes_through_the_proxy_the_environment_names(
    config, collector: RunningCollector, proxy: Proxy, monkeypatch, variable
):
    monkeypatch.setenv(variable, proxy.url)
    invoke("track", "a")
    result = invoke("-vv", "flush")
    assert f"POST {collector.url}/api/v1/track through proxy {proxy.url}" in result.stderr, result.output
    assert [e["event"] for e in collector.received()] == ["a"]
    assert [(s["method"], s["target"]) for s in proxy.seen] == [("POST", f"{collector.url}/api/v1/track")]
    assert proxy.seen[0]["headers"]["User-Agent"].startswith("hamustro-cli/")
    checked = health()
    assert checked["state"] == "ok" and checked["details"]["proxy"] == proxy.url
    assert f"through proxy {proxy.url}" in checked["verdict"]


@pytest.mark.parametrize(
    "variable,value",
    [("NO_PROXY", "127.0.0.1"), ("no_proxy", "localhost,127.0.0.1"), ("NO_PROXY", "127.0.0.0/8")],
)
def test_no_proxy_sends_to_the_collector_directly(
    config, collector: RunningCollector, proxy: Proxy, monkeypatch, variable, value
):
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv(variable, value)
    invoke("track", "a")
    assert "through proxy" not in invoke("-vv", "flush").stderr
    checked = health()
    assert checked["state"] == "ok" and checked["details"]["proxy"] is None
    assert [e["event"] for e in collector.received()] == ["a"] and proxy.seen == []


def test_an_authenticating_proxy_gets_the_credentials_and_no_output_shows_them(
    config, collector: RunningCollector, auth_proxy: Proxy, monkeypatch
):
    monkeypatch.setenv("HTTP_PROXY", auth_proxy.url_with(f"{USER}:{PASSWORD}"))
    invoke("track", "a")
    flushed = invoke("-vv", "flush", "--json")
    expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert [s["headers"].get("Proxy-Authorization") for s in auth_proxy.seen] == [expected]
    assert [e["event"] for e in collector.received()] == ["a"]
    doctor_text = invoke("-v", "doctor").output
    assert f"through proxy http://***@127.0.0.1:{auth_proxy.port}" in doctor_text, doctor_text
    outputs = [
        flushed.output,
        doctor_text,
        invoke("doctor", "--json").output,
        invoke("status", "--json").output,
    ]
    for secret in (PASSWORD, USER):
        assert_nowhere(secret, *outputs)


def test_wrong_proxy_credentials_are_a_407_for_a_person_and_never_shown(
    config, collector: RunningCollector, auth_proxy: Proxy, monkeypatch
):
    wrong = "not-the-pw-9481"
    monkeypatch.setenv("HTTP_PROXY", auth_proxy.url_with(f"{USER}:{wrong}"))
    invoke("track", "a")
    flushed = invoke("-vv", "flush", "--json", expect=Kind.PERSON.exit_status)
    assert "a proxy answered 407" in flushed.stderr, flushed.output
    st = status()
    assert st["pending"] == 1 and collector.received() == []
    assert "proxy answered 407" in st["last_error"]["message"]
    doctor = invoke("-v", "doctor", expect=1).output
    assert "proxy answered 407" in doctor and f"http://***@127.0.0.1:{auth_proxy.port}" in doctor
    for secret in (wrong, USER):
        assert_nowhere(
            secret, flushed.output, json.dumps(st), doctor, invoke("doctor", "--json", expect=1).output
        )


def test_an_answer_that_quotes_the_proxy_credentials_is_shown_masked(config, collector, monkeypatch):
    chatty = Proxy(f"{USER}:{PASSWORD}", echo=True)
    try:
        monkeypatch.setenv("HTTP_PROXY", chatty.url_with(f"{USER}:wrong-pw-5512"))
        invoke("track", "a")
        flushed = invoke("-vv", "flush", expect=Kind.PERSON.exit_status)
    finally:
        chatty.close()
    assert "answer 407: ***" in flushed.stderr, flushed.output
    assert_nowhere("wrong-pw-5512", flushed.output)
    assert_nowhere(USER, flushed.output)


def test_a_proxy_that_refuses_is_try_later_named_without_its_credentials(
    config, collector: RunningCollector, monkeypatch
):
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("http_proxy", f"http://{USER}:{PASSWORD}@127.0.0.1:{port}")
    invoke("track", "a")
    flushed = invoke("-vv", "flush", "--json", expect=Kind.TRY_LATER.exit_status)
    shown = f"through proxy http://***@127.0.0.1:{port}"
    assert shown in flushed.stderr, flushed.output
    st = status()
    assert st["pending"] == 1 and shown in st["last_error"]["message"]
    doctor = invoke("doctor", expect=1).output
    assert shown in doctor
    for secret in (PASSWORD, USER):
        assert_nowhere(
            secret, flushed.output, json.dumps(st), doctor, invoke("doctor", "--json", expect=1).output
        )


def test_a_407_is_the_proxys_not_the_collectors():
    said = meaning(407)
    assert said.kind is Kind.PERSON and "proxy" in said.what and "HTTPS_PROXY" in (said.fix or "")


@pytest.mark.parametrize(
    "value,why",
    [
        ("http://{creds}@[::1", "not a proxy URL"),
        ("http://{creds}@proxy:notaport", "not a proxy URL"),
        ("ftp://{creds}@proxy:21", "requests cannot use a ftp:// proxy"),
        ("http://", "it names no host"),
        ("socks5://{creds}@127.0.0.1:1080", "a SOCKS proxy needs PySocks"),
    ],
    ids=["not-a-url", "bad-port", "scheme", "no-host", "socks-without-pysocks"],
)
def test_a_proxy_that_cannot_be_used_is_a_config_error_naming_the_variable(
    config, collector: RunningCollector, monkeypatch, value, why
):
    """A proxy variable requests would fail on at every try: exit 2 naming the variable (its
    credentials masked), nothing sent, no failure recorded (no backoff), and doctor says it.
    It was "try later" with urllib3's words and "check collector_url"."""
    if "socks" in value and importlib.util.find_spec("socks") is not None:
        pytest.skip("PySocks is installed here: a SOCKS proxy is usable")
    value = value.format(creds=f"{USER}:{PASSWORD}")
    monkeypatch.setenv("HTTP_PROXY", value)
    invoke("track", "a")
    flushed = invoke("flush", expect=2)
    [line] = flushed.stderr.splitlines()
    assert line.startswith("hamustro: error: HTTP_PROXY = ") and why in line, line
    st = status()
    assert st["pending"] == 1 and st["last_error"] is None and collector.received() == []
    doctor = invoke("doctor", "--json", expect=1).output
    checks = {c["name"]: c for c in json.loads(doctor)["checks"]}
    assert checks["collector"]["state"] == "fail" and why in checks["collector"]["verdict"]
    for secret in (PASSWORD, USER):
        assert_nowhere(secret, flushed.output, json.dumps(st), doctor)
