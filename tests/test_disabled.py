"""HAMUSTRO_DISABLED: `track` and `exec` queue nothing, `flush` sends nothing, `status` and
`doctor` say so; usage errors are still errors, and nothing reads the config or the spool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import RunningCollector, invoke


@pytest.mark.parametrize("value", ["1", "true", "TRUE", " yes ", "on", "y", "disable"])
def test_values_that_disable(value: str) -> None:
    from hamustro_cli.disabled import tracking_disabled

    assert tracking_disabled({"HAMUSTRO_DISABLED": value}) is True


@pytest.mark.parametrize("value", ["0", "false", "No", "off", "", "  "])
def test_values_that_do_not(value: str) -> None:
    from hamustro_cli.disabled import tracking_disabled

    assert tracking_disabled({"HAMUSTRO_DISABLED": value}) is False
    assert tracking_disabled({}) is False


def test_track_queues_nothing_and_reads_no_config(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config file exists at all: a track that read it would exit 2."""
    monkeypatch.setenv("HAMUSTRO_DISABLED", "1")
    assert invoke("track", "signup", "--user-id", "42", "--param", "plan=pro").output == ""
    assert json.loads(invoke("track", "a", "--json").stdout) == {"queued": 0, "disabled": True}
    assert not (isolated / "spool").exists()


def test_track_queues_nothing_with_a_config(
    config: Path, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke("track", "before")
    monkeypatch.setenv("HAMUSTRO_DISABLED", "true")
    invoke("track", "while")
    invoke("track", "--stdin", input='{"event": "also"}\n')
    monkeypatch.setenv("HAMUSTRO_DISABLED", "0")
    rows = [json.loads(line)["event"] for line in invoke("events", "list", "--json").stdout.splitlines()]
    assert rows == ["before"]


def test_usage_errors_are_still_exit_2(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAMUSTRO_DISABLED", "1")
    assert "No such option" in invoke("track", "a", "--no-such-flag", expect=2).stderr
    assert "missing EVENT" in invoke("track", expect=2).stderr
    assert "not both" in invoke("track", "a", "--params", "x", "--param", "k=v", expect=2).stderr
    assert "missing the command" in invoke("exec", "job", expect=2).stderr


def test_track_stdin_is_read_to_the_end(isolated: Path) -> None:
    """A writer in a pipeline (`gen | hamustro track --stdin` under pipefail) must not die of
    SIGPIPE because a disabled track did not read."""
    line = b'{"event": "a"}\n'
    proc = subprocess.Popen(
        [sys.executable, "-m", "hamustro_cli", "track", "--stdin"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "HAMUSTRO_DISABLED": "1"},
    )
    assert proc.stdin is not None
    proc.stdin.write(line * 100_000)  # 1.5 MB: far more than a pipe holds; EPIPE if not read
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0
    assert not (isolated / "spool").exists()


def test_exec_runs_the_command_queues_nothing_and_keeps_its_status(
    config: Path, spool_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HAMUSTRO_DISABLED", "1")
    marker = tmp_path / "ran"
    result = invoke("exec", "job", "--", "sh", "-c", f"touch {marker}; exit 9", expect=9)
    assert result.output == ""
    assert marker.exists()
    assert not spool_dir.exists()


def test_exec_reads_no_config(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HAMUSTRO_DISABLED", "1")
    assert invoke("exec", "job", "--", "true").output == ""  # no warning about the missing config


def test_flush_sends_nothing_and_says_so(
    config: Path, collector: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoke("track", "a")
    monkeypatch.setenv("HAMUSTRO_DISABLED", "1")
    result = invoke("flush")
    assert result.stdout == ""
    assert result.stderr.startswith(
        "hamustro: warning: nothing sent: tracking is disabled by HAMUSTRO_DISABLED=1"
    )
    assert invoke("-q", "flush").output == ""
    assert json.loads(invoke("flush", "--json").stdout)["disabled"] is True
    assert invoke("flush", "--if-due").exit_code == 0
    assert collector.received() == []
    monkeypatch.delenv("HAMUSTRO_DISABLED")
    invoke("flush")
    assert [e["event"] for e in collector.received()] == ["a"]


def test_status_says_tracking_is_disabled(config: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    invoke("track", "a")
    assert json.loads(invoke("status", "--json").stdout)["disabled"] is False
    assert "disabled" not in invoke("status").stdout
    monkeypatch.setenv("HAMUSTRO_DISABLED", "yes")
    assert json.loads(invoke("status", "--json").stdout)["disabled"] is True
    assert "tracking:   disabled by HAMUSTRO_DISABLED=yes: " in invoke("status").stdout
    monkeypatch.setenv("HAMUSTRO_DISABLED", "y")
    assert "HAMUSTRO_DISABLED=y (not a boolean word: read as true)" in invoke("status").stdout


def test_doctor_says_tracking_is_disabled(
    config: Path, collector: RunningCollector, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "tracking" not in [c["name"] for c in json.loads(invoke("doctor", "--json").stdout)["checks"]]
    monkeypatch.setenv("HAMUSTRO_DISABLED", "1")
    text = invoke("doctor").stdout  # a note, not a failure: exit 0
    assert text.splitlines()[0].startswith("warn  tracking: disabled by HAMUSTRO_DISABLED=1")
    checks = json.loads(invoke("doctor", "--json").stdout)["checks"]
    assert checks[0]["name"] == "tracking" and checks[0]["state"] == "warn"
    assert all(c["state"] == "ok" for c in checks[1:])
