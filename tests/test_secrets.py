"""Secrets and privacy (issue 3, item 6).

The shared secret never appears in any output, log line, error message or --json, at any
verbosity: every command and every error path we can produce runs (in-process where the output
is the point, as a real process where the environment or start-up is), and its stdout and
stderr, and every file in the spool directory, are searched for the secret. The spool
directory is 0700 and its files 0600 (even under umask 0); a config file holding the secret that
others can read gets a warning naming the file.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET, SETTINGS, invoke, run, start_collector, write_config

from hamustro_cli.spool.full import Spool
from hamustro_cli.spooldir import DB_NAME, LOG_NAME

VERBOSITY = [[], ["-v"], ["-vv"]]


def seen(proc: subprocess.CompletedProcess[str]) -> str:
    return proc.stdout + proc.stderr


def assert_no_secret(label: str, text: str, *secrets: str) -> None:
    for secret in secrets or (SECRET,):
        assert secret not in text, f"{label} printed the secret:\n{text}"


def assert_spool_has_no_secret(spool_dir: Path, *secrets: str) -> list[str]:
    """Every file in the spool directory (database, WAL, flush.log, lock), byte for byte."""
    names = []
    for path in sorted(spool_dir.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            for secret in secrets or (SECRET,):
                assert secret.encode() not in data, f"{path} holds the secret"
            names.append(path.name)
    return names


def cli(outputs: list[tuple[str, str]], *args: str) -> Any:
    """The CLI in-process (its output, not a process, is the point), the output noted in outputs."""
    result = invoke(*args, expect=None)
    outputs.append((" ".join(args), result.stdout + result.stderr))
    return result


def wait_for(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("timed out")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def configure(isolated: Path, url: str, **changes: Any) -> Path:
    values = {"collector_url": url, **SETTINGS, **changes}
    return write_config(isolated / "config.toml", **{k: v for k, v in values.items() if v is not None})


# -- every command, at every verbosity ------------------------------------------------------

COMMANDS: list[tuple[list[str], str | None]] = [
    (["track", "one", "--user-id", "1", "--params", "a=b"], None),
    (["track", "two", "--json", "--param", "k=v"], None),
    (["track", "--stdin", "--json"], '{"event": "three"}\n{"event": "four", "user_id": 4}\n'),
    (["flush", "--dry-run"], None),
    (["flush", "--dry-run", "--json"], None),
    (["status"], None),
    (["status", "--json", "--events"], None),
    (["session"], None),
    (["session", "--json"], None),
    (["flush"], None),
    (["track", "five"], None),
    (["flush", "--json"], None),
    (["flush", "--if-due"], None),
    (["status"], None),
]


@pytest.mark.parametrize("verbosity", VERBOSITY, ids=["quiet-default", "v", "vv"])
def test_every_command_keeps_the_secret(
    verbosity: list[str], config: Path, collector: Any, spool_dir: Path
) -> None:
    for args, stdin_text in COMMANDS:  # in-process: the output, not a process, is the point
        result = invoke(*verbosity, *args, input=stdin_text, expect=None)
        assert result.exit_code == 0, (args, result.stderr)
        assert_no_secret(" ".join(verbosity + args), result.stdout + result.stderr)
    assert len(collector.received()) == 5  # the flushes really talked to the collector
    assert_spool_has_no_secret(spool_dir)


def test_quiet_and_environment_secret(
    collector: Any, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The secret from HAMUSTRO_SHARED_SECRET_KEY (no config file at all), with -q and -vv."""
    monkeypatch.delenv("HAMUSTRO_CONFIG")
    env = {"HAMUSTRO_" + k.upper(): str(v) for k, v in {"collector_url": collector.url, **SETTINGS}.items()}
    for flags in (["-q"], ["-vv"]):
        for args in (["track", "e"], ["flush"], ["status", "--json"], ["session", "--json"]):
            proc = run(*flags, *args, env=env)
            assert proc.returncode == 0, (flags, args, proc.stderr)
            assert_no_secret(" ".join(flags + args), seen(proc))
    assert len(collector.received()) == 2
    assert_spool_has_no_secret(spool_dir)


def test_help_and_version_keep_the_secret(config: Path) -> None:
    env = {"HAMUSTRO_SHARED_SECRET_KEY": SECRET}  # also the collector's --secret envvar
    for args in (
        ["--help"],
        ["--version"],
        ["track", "--help"],
        ["flush", "--help"],
        ["status", "--help"],
        ["session", "--help"],
        ["collector", "--help"],
    ):
        proc = run(*args, env=env)
        assert proc.returncode == 0, (args, proc.stderr)
        assert proc.stdout
        assert_no_secret(" ".join(args), seen(proc))


# -- error paths ------------------------------------------------------------------------------


@pytest.mark.parametrize("who_is_wrong", ["client", "collector"])
def test_wrong_secret_405_keeps_both_secrets(
    who_is_wrong: str, isolated: Path, tmp_path: Path, spool_dir: Path
) -> None:
    """The collector answers 405; neither the client's nor the collector's secret is printed,
    and the message says plainly that shared_secret_key is probably wrong."""
    client_secret = "client-side-wrong-91c2e" if who_is_wrong == "client" else SECRET
    server_secret = SECRET if who_is_wrong == "client" else "collector-side-other-4b7d"
    other = start_collector(tmp_path, name="strict", secret=server_secret)
    try:
        configure(isolated, other.url, shared_secret_key=client_secret)
        outputs: list[tuple[str, str]] = []
        for flags in VERBOSITY:
            assert cli(outputs, *flags, "track", "e").exit_code == 0
            result = cli(outputs, *flags, "flush")
            assert result.exit_code == 4  # signature refused: a person must act
            assert "shared_secret_key" in result.stderr
            cli(outputs, *flags, "flush", "--json")
        for args in (
            ["status"],
            ["status", "--json", "--events"],
            ["session", "--json"],
            ["track", "after-halt", "--json"],
            ["flush", "--if-due", "-vv"],
        ):
            cli(outputs, *args)
        status = json.loads(cli(outputs, "status", "--json").stdout)
        assert status["halted"] and status["pending"] == 4  # 3 tracks + after-halt
        assert "shared_secret_key" in cli(outputs, "status").stdout
        for label, text in outputs:
            assert_no_secret(label, text, client_secret, server_secret)
        assert_spool_has_no_secret(spool_dir, client_secret, server_secret)
        assert other.received() == [] and {r["status"] for r in other.requests} == {405}
    finally:
        other.server.stop()
        other.server.out.close()


NUMERIC_SECRET = 918273645546
CONFIG_ERROR_COMMANDS = [
    ["track", "e"],
    ["track", "--stdin"],
    ["flush"],
    ["flush", "--dry-run"],
    ["status", "--json"],
    ["session", "--json"],
]


@pytest.mark.parametrize(
    "case",
    [
        "secret-is-an-integer",
        "secret-is-an-array",
        "secret-is-a-table",
        "secret-line-unterminated",
        "secret-fine-unknown-key",
        "secret-fine-other-key-wrong-type",
        "secret-in-env-fine-other-env-wrong",
        "secret-in-env-fine-file-key-wrong",
        "secret-empty-in-env",
    ],
)
def test_config_errors_keep_the_secret(
    case: str, isolated: Path, collector: Any, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = isolated / "config.toml"
    configure(isolated, collector.url)
    secrets = [SECRET, str(NUMERIC_SECRET)]
    text = path.read_text()
    line = f'shared_secret_key = "{SECRET}"\n'
    env: dict[str, str] = {}
    expect_key = "shared_secret_key"
    if case == "secret-is-an-integer":
        text = text.replace(line, f"shared_secret_key = {NUMERIC_SECRET}\n")
    elif case == "secret-is-an-array":
        text = text.replace(line, f'shared_secret_key = ["{SECRET}"]\n')
    elif case == "secret-is-a-table":
        text = text.replace(line, "") + f'[shared_secret_key]\nvalue = "{SECRET}"\n'
    elif case == "secret-line-unterminated":
        text = text.replace(line, f'shared_secret_key = "{SECRET}\n')
        expect_key = "TOML"
    elif case == "secret-fine-unknown-key":
        text += f'shared_secret = "{SECRET}"\n'
        expect_key = "shared_secret"
    elif case == "secret-fine-other-key-wrong-type":
        text += 'queue_size = "many"\n'
        expect_key = "queue_size"
    elif case == "secret-in-env-fine-other-env-wrong":
        text = text.replace(line, "")
        env = {"HAMUSTRO_SHARED_SECRET_KEY": SECRET, "HAMUSTRO_QUEUE_SIZE": "abc"}
        expect_key = "HAMUSTRO_QUEUE_SIZE"
    elif case == "secret-in-env-fine-file-key-wrong":
        text = text.replace(line, "") + 'flush = "whenever"\n'
        text = text.replace('flush = "off"\n', "")
        env = {"HAMUSTRO_SHARED_SECRET_KEY": SECRET}
        expect_key = "flush"
    elif case == "secret-empty-in-env":
        env = {"HAMUSTRO_SHARED_SECRET_KEY": ""}
        expect_key = "HAMUSTRO_SHARED_SECRET_KEY"
    path.write_text(text)
    # Every command at every verbosity in-process (the messages are the point); once more as a
    # real process at the most verbose, where the interpreter's own stderr and logging set up
    # from nothing would show what the runner's capture might not.
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for flags in VERBOSITY:
        for args in CONFIG_ERROR_COMMANDS:
            result = invoke(*flags, *args, input='{"event": "x"}\n', expect=None)
            assert result.exit_code == 2, (case, args, result.output)
            assert expect_key in result.stderr, (case, result.stderr)
            assert_no_secret(f"{case}: {' '.join(flags + args)}", result.output, *secrets)
    proc = run("-vv", "track", "--stdin", input='{"event": "x"}\n', env=env)
    assert proc.returncode == 2, (case, proc.stderr)
    assert expect_key in proc.stderr, (case, proc.stderr)
    assert_no_secret(f"{case}: -vv track --stdin (a process)", seen(proc), *secrets)
    if spool_dir.exists():
        assert_spool_has_no_secret(spool_dir, *secrets)


def test_unreachable_collector_keeps_the_secret(
    isolated: Path, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    configure(isolated, f"http://127.0.0.1:{closed_port()}", retries=1, retry_delay=0.01, timeout=2)
    outputs: list[tuple[str, str]] = []
    cli(outputs, "track", "e")
    for flags in VERBOSITY:
        assert cli(outputs, *flags, "flush").exit_code == 1
        cli(outputs, *flags, "flush", "--json")
        cli(outputs, *flags, "status", "--json")
    monkeypatch.setenv("HAMUSTRO_FLUSH", "inline")
    monkeypatch.setenv("HAMUSTRO_QUEUE_SIZE", "1")
    cli(outputs, "-vv", "track", "inline", "--flush")
    for label, text in outputs:
        assert_no_secret(label, text)
    assert_spool_has_no_secret(spool_dir)


def test_inline_flush_failure_warning_keeps_the_secret(
    isolated: Path, tmp_path: Path, spool_dir: Path
) -> None:
    other = start_collector(tmp_path, name="strict", secret="collector-side-other-4b7d")
    try:
        configure(isolated, other.url, flush="inline", queue_size=1)
        for flags in VERBOSITY:
            proc = run(*flags, "track", "e", "--json")
            assert proc.returncode == 0, proc.stderr  # queued: the flush failing is a warning
            assert_no_secret("inline track", seen(proc))
        assert_spool_has_no_secret(spool_dir)
    finally:
        other.server.stop()
        other.server.out.close()


@pytest.mark.parametrize(
    "server_secret", [SECRET, "collector-side-other-4b7d"], ids=["accepted", "rejected-405"]
)
def test_background_flush_log_keeps_the_secret(
    server_secret: str, isolated: Path, tmp_path: Path, spool_dir: Path
) -> None:
    other = start_collector(tmp_path, name="bg", secret=server_secret)
    try:
        configure(isolated, other.url, flush="background", queue_size=1)
        proc = run("-vv", "track", "e", "--json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["flush"] == "started"
        log = spool_dir / LOG_NAME
        wait_for(lambda: log.exists() and ("flush done" in log.read_text() or "error" in log.read_text()))
        # status in-process: the background flush is the process here
        wait_for(lambda: not (json.loads(invoke("status", "--json", expect=None).stdout)["flush_running"]))
        assert other.requests, "the background flush never reached the collector"
        assert_no_secret("flush.log", log.read_text())
        assert LOG_NAME in assert_spool_has_no_secret(spool_dir)
    finally:
        other.server.stop()
        other.server.out.close()


def test_collector_command_keeps_the_secret(isolated: Path, spool_dir: Path) -> None:
    """`hamustro collector -v` with the secret from the environment, hit with a right and a wrong
    signature; its stderr and its --out file hold no secret."""
    out = isolated / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hamustro_cli", "-v", "collector", "--port", "0", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HAMUSTRO_SHARED_SECRET_KEY": SECRET},
    )
    assert proc.stderr is not None
    try:
        ready, _, _ = select.select([proc.stderr], [], [], 20)
        assert ready, "collector did not start"
        first = proc.stderr.readline()
        url = first.rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:"), first
        configure(isolated, url)  # the client in-process: the collector's process is the one under test
        assert invoke("track", "e", expect=None).exit_code == 0
        assert invoke("flush", expect=None).exit_code == 0
        configure(isolated, url, shared_secret_key="client-side-wrong-91c2e")
        assert invoke("track", "f", expect=None).exit_code == 0
        assert invoke("flush", expect=None).exit_code == 4
    finally:
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=20)
    assert_no_secret("collector", first + stdout + stderr)
    assert_no_secret("collector --out", out.read_text())
    assert [json.loads(line)["event"] for line in out.read_text().splitlines()] == ["e"]


# -- file modes --------------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run_umask0(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return run(*args, env=env, preexec_fn=lambda: os.umask(0))


def test_spool_modes_under_umask_zero(isolated: Path, collector: Any, spool_dir: Path) -> None:
    configure(isolated, collector.url, flush="background", queue_size=1)
    proc = run_umask0("track", "e", "--json")
    assert proc.returncode == 0, proc.stderr
    log = spool_dir / LOG_NAME
    wait_for(lambda: log.exists() and "flush done" in log.read_text())
    assert run_umask0("flush").returncode == 0
    assert mode(spool_dir) == 0o700
    files = {p.name: mode(p) for p in spool_dir.iterdir()}
    assert DB_NAME in files and LOG_NAME in files and "flush.lock" in files
    assert files == dict.fromkeys(files, 0o600), files


def test_wal_and_shm_are_private_while_open(isolated: Path, collector: Any, spool_dir: Path) -> None:
    configure(isolated, collector.url)
    assert run_umask0("track", "first").returncode == 0
    with Spool(spool_dir):  # an open connection keeps -wal and -shm in place
        assert run_umask0("track", "second").returncode == 0
        assert run_umask0("flush").returncode == 0
        wal, shm = spool_dir / (DB_NAME + "-wal"), spool_dir / (DB_NAME + "-shm")
        assert wal.exists() and shm.exists()
        assert (mode(wal), mode(shm), mode(spool_dir / DB_NAME)) == (0o600, 0o600, 0o600)
    assert mode(spool_dir) == 0o700


def test_loose_spool_directory_is_tightened(isolated: Path, collector: Any, spool_dir: Path) -> None:
    configure(isolated, collector.url)
    spool_dir.mkdir(mode=0o755)
    spool_dir.chmod(0o755)
    assert run("track", "e").returncode == 0
    assert mode(spool_dir) == 0o700


def test_loose_spool_database_is_tightened(isolated: Path, collector: Any, spool_dir: Path) -> None:
    """A spool copied in or made by an older version with 0644: the events in it hold user ids
    and addresses, so the next use makes it (and the WAL files SQLite derives from it) 0600."""
    configure(isolated, collector.url)
    assert run("track", "e").returncode == 0
    (spool_dir / DB_NAME).chmod(0o644)
    with Spool(spool_dir):
        assert run_umask0("track", "f").returncode == 0
        for suffix in ("", "-wal", "-shm"):
            assert mode(spool_dir / (DB_NAME + suffix)) == 0o600, suffix


@pytest.mark.parametrize("file_mode", [0o644, 0o640, 0o604, 0o666])
def test_config_readable_by_others_warns(file_mode: int, config: Path) -> None:
    config.chmod(file_mode)
    for args in (["track", "e"], ["status"], ["session"]):
        proc = run(*args)
        assert proc.returncode == 0, proc.stderr
        warnings = [ln for ln in proc.stderr.splitlines() if "warning" in ln]
        assert len(warnings) == 1, proc.stderr
        assert str(config) in warnings[0] and "shared_secret_key" in warnings[0]
        assert "chmod 600" in warnings[0]
        assert str(config) not in proc.stdout
        assert_no_secret("warning", seen(proc))


def test_private_config_does_not_warn(config: Path) -> None:
    config.chmod(0o600)
    proc = run("track", "e")
    assert proc.returncode == 0 and "warning" not in proc.stderr
