"""Issue 9, section 2: once an event is queued `track` exits 0, and every input path is refused
with exit 2 and one `hamustro: error:` line (never a traceback), nothing queued.

Post-queue escapes are provoked for real: a reader that closed the pipe, a broken stderr, a log
callback that raises, settings that only break after the commit. Input edges run through a
real process where the process's own streams, argv decoding or locale matter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, invoke, run

from hamustro_cli import events
from hamustro_cli.errors import InputError
from hamustro_cli.spool import DB_NAME
from hamustro_cli.spool.full import Spool
from hamustro_cli.tracker import ClientTracker


def queued(spool_dir: Path) -> list[str]:
    if not (spool_dir / DB_NAME).exists():
        return []
    with Spool(spool_dir) as spool:
        return [e["event"] for e in spool.iter_events()]


def one_error_line(text: str) -> str:
    assert "Traceback" not in text, text
    lines = text.splitlines()
    errors = [ln for ln in lines if ln.startswith("hamustro: error:")]
    assert len(errors) == 1 and len(lines) == 1, text
    return errors[0]


def popen(
    args: list[str],
    stdin: Any = None,
    stdout: Any = None,
    stderr: Any = None,
    env: Any = None,
    preexec_fn: Any = None,
) -> int:
    proc = subprocess.run(
        [sys.executable, "-m", "hamustro_cli", *args],
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env={**os.environ, **(env or {})},
        preexec_fn=preexec_fn,
        timeout=60,
    )
    return proc.returncode


def broken_pipe() -> tuple[int, int]:
    """A pipe whose reader is already gone: writes fail with EPIPE."""
    r, w = os.pipe()
    os.close(r)
    return r, w


# -- once queued, exit 0 -------------------------------------------------------------------------


def test_json_to_a_reader_that_went_away_still_exits_0(config: Path, spool_dir: Path, tmp_path: Path) -> None:
    """`track --json | head -c0`: click turned EPIPE into exit 1 after the event was queued."""
    _, w = broken_pipe()
    err = tmp_path / "err"
    with open(err, "wb") as ferr:
        code = popen(["track", "piped", "--json"], stdout=w, stderr=ferr)
    os.close(w)
    assert code == 0, err.read_text()
    assert "Traceback" not in err.read_text()
    assert queued(spool_dir) == ["piped"]


def test_stdin_json_to_a_reader_that_went_away_still_exits_0(config: Path, spool_dir: Path) -> None:
    _, w = broken_pipe()
    proc = subprocess.run(
        [sys.executable, "-m", "hamustro_cli", "track", "--stdin", "--json"],
        input=b'{"event": "a"}\n{"event": "b"}\n',
        stdout=w,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    os.close(w)
    assert proc.returncode == 0, proc.stderr
    assert queued(spool_dir) == ["a", "b"]


def test_warning_to_a_broken_stderr_still_exits_0(isolated: Path, spool_dir: Path, tmp_path: Path) -> None:
    """An inline flush that fails warns on stderr; a broken stderr made that exit 1."""
    from conftest import write_config

    write_config(
        isolated / "config.toml", collector_url="http://127.0.0.1:9", **{**SETTINGS, "flush": "inline"}
    )
    _, w = broken_pipe()
    out = tmp_path / "out"
    with open(out, "wb") as fout:
        code = popen(
            ["-v", "track", "warned", "--json"],
            stdout=fout,
            stderr=w,
            # its retries still log to the broken stderr (-v), without 3.5 s of waiting between
            env={"HAMUSTRO_QUEUE_SIZE": "1", "HAMUSTRO_TIMEOUT": "2", "HAMUSTRO_RETRY_DELAY": "0.01"},
        )
    os.close(w)
    assert code == 0
    assert json.loads(out.read_text())["flush"] == "failed"
    assert queued(spool_dir) == ["warned"]


def test_closed_stdout_and_stderr_still_exit_0(config: Path, spool_dir: Path) -> None:
    def close_both() -> None:
        os.close(1)
        os.close(2)

    assert popen(["-v", "track", "closed", "--json"], preexec_fn=close_both) == 0
    assert queued(spool_dir) == ["closed"]


@pytest.mark.parametrize(
    "env",
    [
        {"HAMUSTRO_QUEUE_SIZE": "9" * 30},  # too large for SQLite: failed in the triggers, after the commit
        {"HAMUSTRO_QUEUE_RETENTION": "9" * 30},
    ],
    ids=["queue_size", "queue_retention"],
)
def test_settings_that_break_after_queuing_never_cost_a_retry(
    env: dict[str, str], config: Path, spool_dir: Path
) -> None:
    """Either refused up front (exit 2, one hamustro: error: line, nothing queued: the hostile-edges branch
    validates ranges at load) or queued and exit 0; never queued and then a failure."""
    proc = run("track", "once", env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 2:
        one_error_line(proc.stderr)
        assert queued(spool_dir) == []
    else:
        assert proc.returncode == 0, proc.stderr
        assert queued(spool_dir) == ["once"]


def test_library_track_survives_a_log_callback_that_raises(spool_dir: Path, collector: Any) -> None:
    """A Python program's log function that fails (a closed file) must not turn a queued event into
    an exception (the program would track it again), nor change what the tracker does (issue 19:
    it used to report every flush as failed)."""

    def log(level: int, message: str) -> None:
        raise ValueError("I/O operation on closed file")

    settings = {k: v for k, v in SETTINGS.items() if k != "flush"}
    with ClientTracker(collector_url=collector.url, spool_dir=str(spool_dir), log=log, **settings) as t:
        result = t.track_event("logged", flush=False)
    assert result.flush in ("off", "not-due") and result.flush_detail is None
    assert queued(spool_dir) == ["logged"]


# -- every input path: exit 2, one hamustro: error: line, nothing queued ------------------------------------


def deep(n: int) -> str:
    return '{"event": "x", "params": ' + "[" * n + "]" * n + "}\n"


STDIN_CASES = [
    pytest.param(b"[" * 100_000 + b"\n", ["line 1", "nested too deeply"], id="nested-array"),
    pytest.param(deep(50_000).encode(), ["line 1", "nested too deeply"], id="nested-params"),
    pytest.param(b'{"event": "\xff"}\n', ["line 1", "UTF-8"], id="undecodable"),
    pytest.param(b'{"event": "a", "at": NaN}\n', ["line 1", "NaN"], id="nan"),
    pytest.param(
        b'{"event": "a", "params": {"x": Infinity}}\n', ["line 1", "Infinity"], id="infinity-in-params"
    ),
    pytest.param(
        b'{"event": "a", "params": {"x": -Infinity}}\n', ["line 1", "Infinity"], id="minus-infinity"
    ),
    pytest.param(b'{"event": "a", "event": "b"}\n', ["line 1", "duplicate key 'event'"], id="duplicate-key"),
    pytest.param(
        b'{"event": "a", "params": {"k": 1, "k": 2}}\n', ["line 1", "duplicate key 'k'"], id="dup-nested"
    ),
    pytest.param(b'{"event": "a", "user_id": 1e400}\n', ["line 1", "user_id"], id="float-overflow"),
    pytest.param(b'{"event": "a", "user_id": 1.0}\n', ["line 1", "user_id"], id="float-for-int"),
    pytest.param(b'{"event": "a", "at": ' + b"9" * 5000 + b"}\n", ["line 1"], id="huge-int"),
    pytest.param(
        b'{"event": "a"}\n{"event": "a", "bad\\nkey": 1}\n', ["line 2", "'bad\\nkey'"], id="newline-key"
    ),
]


@pytest.mark.parametrize(("data", "needles"), STDIN_CASES)
def test_stdin_input_edges(data: bytes, needles: list[str], config: Path, spool_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hamustro_cli", "track", "--stdin"],
        input=data,
        capture_output=True,
        timeout=60,
    )
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 2, err
    line = one_error_line(err)
    for needle in needles:
        assert needle in line, (needle, line)
    assert proc.stdout == b""
    assert queued(spool_dir) == []


def test_huge_bad_line_gives_a_short_error(config: Path, spool_dir: Path) -> None:
    """A 1 MB value in a bad line is quoted in a capped, single-line error."""
    data = ('{"event": "a", "user_id": "' + "7\n" * 500_000 + '"}\n').replace("\n", "\\n", 500_000)
    proc = run("track", "--stdin", input=data)
    assert proc.returncode == 2
    assert len(proc.stderr) < 300, len(proc.stderr)
    one_error_line(proc.stderr)


def test_closed_stdin(config: Path, spool_dir: Path, tmp_path: Path) -> None:
    err = tmp_path / "err"
    with open(err, "wb") as ferr:
        code = popen(["track", "--stdin"], stderr=ferr, preexec_fn=lambda: os.close(0))
    assert code == 2
    assert "standard input is closed" in one_error_line(err.read_text())
    assert queued(spool_dir) == []


@pytest.mark.parametrize(
    "env",
    [
        {"LC_ALL": "C"},
        {"LC_ALL": "POSIX"},
        {"LC_ALL": "C.UTF-8"},
        {"LC_ALL": "xx_YY.NOPE"},
        {"LC_ALL": "C", "PYTHONIOENCODING": "latin-1"},
        {"PYTHONIOENCODING": "ascii:strict"},
        {"PYTHONUTF8": "0", "LC_ALL": "C"},
    ],
    ids=["C", "POSIX", "C.UTF-8", "unknown", "latin-1", "ascii-strict", "no-utf8-mode"],
)
def test_undecodable_bytes_under_any_locale(env: dict[str, str], config: Path, spool_dir: Path) -> None:
    """Stdin is read as UTF-8 whatever the locale: PYTHONIOENCODING=latin-1 used to queue b'\\xff'
    as 'ÿ'. Undecodable argv (surrogate-escaped by Python) is refused too."""
    full = {**os.environ, **env}
    stdin = subprocess.run(
        [sys.executable, "-m", "hamustro_cli", "track", "--stdin"],
        input=b'{"event": "ok"}\n{"event": "caf\xe9"}\n',
        capture_output=True,
        env=full,
        timeout=60,
    )
    assert stdin.returncode == 2, stdin.stderr
    assert "stdin line 2: event: not valid UTF-8" in one_error_line(stdin.stderr.decode("ascii", "replace"))
    for argv in (
        [b"caf\xe9"],
        [b"ok", b"--params", b"\xff"],
        [b"ok", b"--param", b"k=\xfe"],
        [b"ok", b"--at", b"\xff\n"],
        [b"ok", b"--user-id", b"\xff"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "hamustro_cli", "track", *argv], capture_output=True, env=full, timeout=60
        )
        assert proc.returncode == 2, (argv, proc.stderr)
        one_error_line(proc.stderr.decode("ascii", "replace"))
    assert queued(spool_dir) == []


def test_bom_crlf_and_missing_final_newline_are_accepted(config: Path, spool_dir: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "hamustro_cli", "track", "--stdin"],
        input=b'\xef\xbb\xbf{"event": "a"}\r\n{"event": "b"}\r\n{"event": "c"}',
        capture_output=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert queued(spool_dir) == ["a", "b", "c"]


def test_bom_only_at_the_start(config: Path, spool_dir: Path) -> None:
    result = invoke("track", "--stdin", input='{"event": "a"}\n\ufeff{"event": "b"}\n', expect=2)
    assert "line 2" in one_error_line(result.output)


# -- the checks themselves (library API) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("call", "needle"),
    [
        (lambda: events.check_user_id(10**5000), "bit number"),
        (lambda: events.check_user_id("9" * 5000), "5000 digits"),
        (lambda: events.check_at("9" * 5000), "5000 digits"),
        (lambda: events.check_at(10**5000), "bit number"),
        (lambda: events.check_at("0001-01-01T00:00:00+23:59"), "epoch"),
        (lambda: events.check_params({"x": float("nan")}), "JSON"),
        (lambda: events.check_params({"x": object()}), "JSON"),
        # deeper than json can go on any interpreter (its limit: about 1,000 levels on 3.10 and
        # 3.11, 5,000 on 3.12, 20,000 on 3.13); shallower params are encoded where it can
        (lambda: events.check_params(_nested(100_000)), "nested too deeply"),
        (lambda: events.check_ip("1\n2" * 1000), "characters"),
        (lambda: events.params_from_pairs(["x" * 10**6]), "characters"),
    ],
    ids=[
        "uid-huge-int",
        "uid-digits",
        "at-digits",
        "at-huge-int",
        "at-overflow",
        "nan",
        "object",
        "nested",
        "ip-long",
        "pair-long",
    ],
)
def test_checks_refuse_with_a_short_message(call: Any, needle: str) -> None:
    with pytest.raises(InputError) as exc:
        call()
    message = str(exc.value)
    assert needle in message and len(message) < 200 and "\n" not in message, message


def _nested(n: int) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for _ in range(n):
        obj = {"k": obj}
    return obj


def test_cycle_in_params_is_refused() -> None:
    obj: dict[str, Any] = {}
    obj["self"] = obj
    with pytest.raises(InputError, match="JSON"):
        events.check_params(obj)
