"""Shared fixtures: an isolated home and spool per test, and a real collector on 127.0.0.1:0."""

from __future__ import annotations

import ctypes
import fcntl
import inspect
import json
import os
import pty
import select
import shutil
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hamustro_cli.cli import cli
from hamustro_cli.collector import CollectorServer, make_server

SECRET = "test-secret-7f3a9c"
SETTINGS: dict[str, Any] = {
    "shared_secret_key": SECRET,
    "device_id": "device-42",
    "client_id": "client-a",
    "system_version": "Linux 6.1",
    "product_version": "1.0.0",
    "system": "linux",
    "product_git_hash": "abc123",
    "flush": "off",
}


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


def write_config(path: Path, **values: Any) -> Path:
    path.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked `heavy` first, in their order, then the others in theirs: with -n 2 the
    workers share out the short tests as they go, so neither is left running a long one alone at
    the end while the other waits (the order is the same in every worker, as xdist requires)."""
    items.sort(key=lambda item: item.get_closest_marker("heavy") is None)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test reads or writes the real home: config and spool live in tmp_path."""
    for name in list(os.environ):
        if name.startswith("HAMUSTRO_"):
            monkeypatch.delenv(name)
        elif name.lower() in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
            # the collector is on 127.0.0.1: a proxy of the machine's must not carry the tests'
            # requests (a test of proxies sets its own)
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(home / ".local" / "state"))
    monkeypatch.setenv("HAMUSTRO_CONFIG", str(tmp_path / "config.toml"))
    monkeypatch.setenv("HAMUSTRO_SPOOL_DIR", str(tmp_path / "spool"))
    return tmp_path


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


class RunningCollector:
    def __init__(self, server: CollectorServer, out_path: Path):
        self.server = server
        self.out_path = out_path
        self.url = server.url

    def received(self) -> list[dict[str, Any]]:
        """Every event the collector accepted, as written to its JSON lines file."""
        self.server.out.flush()
        text = self.out_path.read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    @property
    def requests(self) -> list[dict[str, Any]]:
        return self.server.requests


# How often a test server's loop looks whether it is asked to stop: socketserver's default, 0.5 s,
# is what each `shutdown()` waits at worst, and about that at the end of a short test (~0.45 s in
# the teardown of every test with a collector). Waking 100 times a second costs nothing measurable.
POLL_INTERVAL = 0.01


def serve_in_background(server: Any) -> None:
    """Run a socketserver's loop in a daemon thread, stopping within POLL_INTERVAL of shutdown()."""
    loop = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": POLL_INTERVAL}, daemon=True)
    loop.start()


def start_collector(
    tmp_path: Path, name: str = "collector", port: int = 0, **options: Any
) -> RunningCollector:
    """A collector on 127.0.0.1: on `port` to stand in for one that was there before (the same
    collector_url is the same destination), else on a free one."""
    out_path = tmp_path / f"{name}.jsonl"
    out = open(out_path, "a")  # noqa: SIM115 - closed by the fixture
    server = make_server("127.0.0.1", port, options.pop("secret", SECRET), out, **options)
    server.keep_requests = True
    serve_in_background(server)
    return RunningCollector(server, out_path)


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[RunningCollector]:
    running = start_collector(tmp_path)
    yield running
    running.server.stop()
    running.server.out.close()


@pytest.fixture
def config(isolated: Path, collector: RunningCollector) -> Path:
    """A complete config file pointing at the test collector (flush = "off" unless a test says)."""
    return write_config(isolated / "config.toml", collector_url=collector.url, **SETTINGS)


class _Click81Result(Result):
    """click 8.1 (Debian 12) keeps stderr apart only with mix_stderr=False, and then its
    `output` is stdout alone; 8.2+ always keeps it apart and `output` holds both."""

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def invoke(*args: str, input: str | None = None, expect: int | None = 0) -> Any:
    """Run the CLI in-process; check the exit code unless expect is None."""
    if "mix_stderr" in inspect.signature(CliRunner).parameters:  # click < 8.2
        apart: dict[str, Any] = {"mix_stderr": False}  # not a parameter from 8.2 on
        result = CliRunner(**apart).invoke(cli, list(args), input=input, catch_exceptions=False)
        result.__class__ = _Click81Result
    else:
        result = CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)
    if expect is not None:
        assert result.exit_code == expect, (result.exit_code, result.output)
    return result


def run(
    *args: str,
    input: str | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    preexec_fn: Any = None,
) -> subprocess.CompletedProcess[str]:
    """Run `python -m hamustro_cli ARGS` as a real process with the test's environment."""
    return subprocess.run(
        [sys.executable, "-m", "hamustro_cli", *args],
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
    )


def serve(handler: type) -> tuple[Any, str]:
    """A real threaded HTTP server on 127.0.0.1:0 with `handler`, serving from a daemon thread:
    (the server, its base URL)."""
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    serve_in_background(server)
    return server, f"http://127.0.0.1:{server.server_address[1]}"


class ScriptedServer:
    """A real HTTP server on 127.0.0.1:0 answering POSTs with the given statuses in turn (the
    last one repeats). It keeps each request's headers and body."""

    def __init__(self, statuses: list[int], headers: dict[str, str] | None = None):
        from http.server import BaseHTTPRequestHandler

        outer = self
        self.statuses = list(statuses)
        self.requests: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append({"headers": dict(self.headers.items()), "body": body})
                n = len(outer.requests) - 1
                status = outer.statuses[min(n, len(outer.statuses) - 1)]
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a: object) -> None:
                pass

        self.server, self.url = serve(Handler)

    @property
    def hits(self) -> int:
        return len(self.requests)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ipv6_loopback() -> bool:
    """Whether this machine has an IPv6 loopback (::1) to listen on."""
    import socket

    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


libc = ctypes.CDLL(None, use_errno=True)
PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH = 1, 2


def as_plain_user() -> None:
    """preexec_fn: root without the capabilities that bypass file permissions.

    Dropped from the bounding set, they are gone after execve too, so `python -m hamustro_cli`
    meets permission bits as any other user does. Raises (and the test fails) if that is not
    possible; it never silently runs with root's powers."""
    for cap in (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def run_unprivileged(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    preexec: Any = as_plain_user if os.geteuid() == 0 else None
    return run(*args, env=env, preexec_fn=preexec)


HIDDEN = "hidden"  # the third item of an answer whose prompt must turn the terminal's echo off


def run_on_terminal(args: list[str], answers: Sequence[tuple[str, ...]] = ()) -> tuple[int, str]:
    """Run `python -m hamustro_cli ARGS` on a pseudo-terminal, its controlling terminal (so
    getpass can turn echo off), typing each answer once its prompt has been shown (typed
    earlier, getpass would discard it). An answer marked HIDDEN is typed only once the prompt
    has turned echo off (the prompt text is written before that: typing on sight would race
    it); a prompt that never does fails the test. Returns the exit code and what the terminal
    showed."""
    master, slave = pty.openpty()

    def controlling_terminal() -> None:
        os.setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.Popen(
        [sys.executable, "-m", "hamustro_cli", *args],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=os.environ.copy(),
        preexec_fn=controlling_terminal,
    )
    os.close(slave)
    shown = bytearray()

    def read() -> bool:
        """Append what the terminal shows next; False once the command closed it."""
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            return False
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            return False
        shown.extend(data)
        return bool(data)

    for prompt, answer, *hidden in answers:
        start = len(shown)
        while prompt.encode() not in shown[start:]:
            if not read():
                raise AssertionError(f"no prompt {prompt!r}; the terminal showed {bytes(shown)!r}")
        if hidden == [HIDDEN]:
            for _ in range(3000):  # the slave's settings, read through the master (Linux)
                if not termios.tcgetattr(master)[3] & termios.ECHO:
                    break
                select.select([], [], [], 0.01)
            else:
                raise AssertionError(f"prompt {prompt!r} never turned echo off")
        os.write(master, answer.encode() + b"\n")
    while read():
        pass
    os.close(master)
    return proc.wait(timeout=60), shown.decode(errors="replace")


ROOT = Path(__file__).resolve().parent.parent


def build_from_copy(tmp_path: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """`python -m COMMAND SOURCE` (build, pip wheel) on a copy of the checkout without build
    leftovers (setuptools adds whatever an old egg-info lists), into tmp_path."""
    source = tmp_path / "source"
    leftovers = shutil.ignore_patterns(
        ".git", ".venv", "*.egg-info", "build", "dist", "__pycache__", ".*_cache"
    )
    shutil.copytree(ROOT, source, ignore=leftovers)
    return subprocess.run([sys.executable, "-m", *command, str(source)], capture_output=True, text=True)


def spawned_env() -> dict[str, str]:
    """The environment `track` gives the background flush (spawn.child_environment: the
    resolved settings in HAMUSTRO_* variables; the child reads no config file)."""
    from hamustro_cli.config import load_config
    from hamustro_cli.spawn import child_environment

    return child_environment(load_config().require(), os.environ)
