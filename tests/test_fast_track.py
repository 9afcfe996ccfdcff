"""The fast `track` (entry.py: parsed without Click) against the full one (Click): over a corpus
of argument lists, environments and configs, fixed and generated, both ways give the same exit
code, standard output, standard error and queued events; whatever the fast parser is not sure
of is left to Click. Both ways run in-process on a fresh spool each, with the event clock fixed
(events dated "now" would otherwise differ by the second between the two runs)."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, invoke, write_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hamustro_cli import tracker
from hamustro_cli.entry import parse_track, run_fast

NOW = 1_796_000_000
SPOOLS = ("spool", "sp")  # HAMUSTRO_SPOOL_DIR's and the one `--spool-dir sp` names


@pytest.fixture
def fixed(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A config (flush off, so no background flush starts), the clock events are dated by fixed,
    and the working directory in the test's home (relative paths land there)."""
    write_config(isolated / "config.toml", collector_url="http://127.0.0.1:9", **SETTINGS)
    monkeypatch.setattr(tracker, "_clock_now", lambda: NOW)
    monkeypatch.chdir(isolated)
    return isolated


def queued(home: Path) -> list[Any]:
    """What the spools hold (events list --json, read with the full CLI), then the spools gone."""
    rows: list[Any] = []
    for name in SPOOLS:
        where = home / name
        if where.exists():
            listing = invoke("--spool-dir", str(where), "events", "list", "--json", expect=None)
            rows.append((name, listing.exit_code, [json.loads(line) for line in listing.stdout.splitlines()]))
            shutil.rmtree(where)
    return rows


def click_way(home: Path, argv: list[str], stdin: str | None) -> tuple[Any, ...]:
    result = invoke(*argv, input=stdin, expect=None)
    return result.exit_code, result.stdout, result.stderr, queued(home)


def fast_way(home: Path, argv: list[str], stdin: str | None) -> tuple[Any, ...] | None:
    """run_fast with the standard streams captured as CliRunner captures them (UTF-8, not a
    terminal), or None when the parser leaves the call to Click."""
    call = parse_track(argv, os.environ)
    if call is None:
        return None
    streams = [
        io.TextIOWrapper(io.BytesIO(data), encoding="utf-8") for data in ((stdin or "").encode(), b"", b"")
    ]
    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin, sys.stdout, sys.stderr = streams
    try:
        code = run_fast(*call)
    finally:
        sys.stdin, sys.stdout, sys.stderr = saved
    out, err = (stream.detach().getvalue().decode() for stream in streams[1:])
    return code, out, err, queued(home)


def agree(home: Path, argv: list[str], stdin: str | None = None) -> bool:
    """Both ways agree; True when the fast way took the call."""
    queued(home)  # fresh spools
    full = click_way(home, argv, stdin)
    fast = fast_way(home, argv, stdin)
    if fast is None:
        return False
    assert fast == full, argv
    return True


FAST = [
    ["track", "page_view"],
    ["track", "page_view", "--user-id", "42", "--param", "plan=pro", "--param", "k=v"],
    ["track", "page_view", "--json"],
    ["track", "--json", "page_view", "--no-flush", "--testing"],
    ["track", "e", "--flush", "--json"],
    ["track", "e", "--params", "free text", "--at", "2026-11-28T12:00:00Z"],
    ["track", "e", "--at", "1700000000.5"],
    ["track", "e", "--at=2026-11-28", "--user-id=7", "--param=a=b=c"],
    ["track", "e", "--ip", "10.0.0.1", "--json"],
    ["track", "e", "--ip", "not-an-address"],
    ["track", "e", "--ip", "::1"],
    ["track", "e", "--user-id", "4294967296"],
    ["track", "e", "--user-id", "abc"],
    ["track", "e", "--user-id="],
    ["track", "e", "--at", "yesterday"],
    ["track", "e", "--param", "no-equals"],
    ["track", "e", "--param", "k=1", "--params", "x"],
    ["track", "e", "--params", "x" * 70_000],
    ["track", ""],
    ["track", "x" * 2000],
    ["track", "caf\u00e9 \u2603", "--param", "k=\u00fc", "--json"],
    ["track", "\x1b[31mred\x1b[0m", "--user-id", "\x1b[1mbad"],
    ["track"],
    ["track", "--json"],
    ["track", "--stdin", "e"],
    ["track", "--stdin", "--at", "0"],
    ["-v", "track", "e"],
    ["-v", "--verbose", "track", "e", "--json"],
    ["-q", "track", "e"],
    ["--quiet", "-v", "track", "e"],
    ["--config", "missing.toml", "track", "e"],
    ["--config=", "track", "e"],
    ["--spool-dir", "sp", "track", "e", "--json"],
    ["--spool-dir=sp", "--config", "config.toml", "track", "e"],
]
STDIN = [
    ('{"event": "a"}\n{"event": "b", "user_id": 7, "params": {"k": "v"}}\n', ["track", "--stdin", "--json"]),
    ('{"event": "a"}\n{"event": 5}\n', ["track", "--stdin"]),
    ("", ["track", "--stdin"]),
    ("\ufeff" + '{"event": "a", "at": "2026-01-01T00:00:00Z"}\r\n', ["-v", "track", "--stdin", "--json"]),
    ("not json\n", ["track", "--stdin", "--no-flush"]),
]
TO_CLICK = [
    [],
    ["--help"],
    ["track", "--help"],
    ["track", "-h"],
    ["track", "e", "--bogus"],
    ["track", "e", "--", "--json"],
    ["track", "e", "f"],
    ["track", "e", "--json", "--json"],
    ["track", "e", "--user-id", "1", "--user-id", "2"],
    ["track", "e", "--user-id", "-5"],
    ["track", "e", "--user-id"],
    ["track", "e", "--json=yes"],
    ["track", "-"],
    ["-vv", "track", "e"],
    ["--version"],
    ["status"],
    ["track", "e", "--config", "x"],
    ["--config", "a", "--config", "b", "track", "e"],
    ["--verbose=1", "track", "e"],
]


@pytest.mark.parametrize("argv", FAST, ids=repr)
def test_both_ways_agree(fixed: Path, argv: list[str]) -> None:
    assert agree(fixed, argv)


@pytest.mark.parametrize(("stdin", "argv"), STDIN, ids=repr)
def test_both_ways_agree_on_stdin(fixed: Path, stdin: str, argv: list[str]) -> None:
    assert agree(fixed, argv, stdin)


@pytest.mark.parametrize("argv", TO_CLICK, ids=repr)
def test_what_the_parser_is_not_sure_of_is_clicks(fixed: Path, argv: list[str]) -> None:
    assert parse_track(argv, os.environ) is None


def test_shell_completion_is_clicks(fixed: Path) -> None:
    assert parse_track(["track", "e"], {"_HAMUSTRO_COMPLETE": "bash_complete"}) is None


@pytest.mark.parametrize(
    ("config", "env"),
    [
        ({}, {"HAMUSTRO_IP": "off"}),
        ({}, {"HAMUSTRO_QUEUE_SIZE": "many"}),
        ({}, {"HAMUSTRO_FLUSH": "sometimes"}),
        ({}, {"HAMUSTRO_SHARED_SECRET_KEY": ""}),
        ({}, {"HAMUSTRO_CONFIG": "nowhere.toml"}),
        ({"queue_size": "x"}, {}),
        ({"ip": "192.0.2.7", "send_ipv6": False}, {}),
        ({"device_id": None}, {}),
        ({"mode": 0o644}, {}),
        ({"unknown_key": 1}, {}),
        ({"spool_dir": "sp"}, {"HAMUSTRO_SPOOL_DIR": ""}),
    ],
    ids=repr,
)
def test_both_ways_agree_on_settings(
    fixed: Path, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any], env: dict[str, str]
) -> None:
    values = {"collector_url": "http://127.0.0.1:9", **SETTINGS, **config}
    mode = values.pop("mode", 0o600)
    write_config(fixed / "config.toml", **{k: v for k, v in values.items() if v is not None})
    (fixed / "config.toml").chmod(mode)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert agree(fixed, ["track", "e", "--user-id", "3", "--json"])
    assert agree(fixed, ["-q", "track", "e"])


TOKENS = [
    "track", "e", "page_view", "\u00e9v\u00e9nement", "", "--user-id", "0", "4294967295", "-1", "1e3",
    "--param", "k=v", "k", "=v", "a=\u2603", "--params", "{}", "--at", "2026-11-28T12:00:00+01:00",
    "0", "now", "--ip", "10.1.2.3", "fe80::1", "--flush", "--no-flush", "--json", "--stdin",
    "--testing", "--help", "-h", "--", "-v", "-q", "--config", "--spool-dir", "sp", "--bogus", "-",
    "--user-id=9", "--param=x=y", "--at=", "\x1b[2J",
]  # fmt: skip


ENVIRONMENTS = [
    {},
    {"HAMUSTRO_IP": "off"},
    {"HAMUSTRO_IP": "198.51.100.4"},
    {"HAMUSTRO_QUEUE_SIZE": "lots"},
    {"HAMUSTRO_CONFIG": "nowhere.toml"},
    {"HAMUSTRO_PRODUCT_VERSION": "\u00e9-2"},
    {"HAMUSTRO_SEND_IPV6": "false"},
    {"HAMUSTRO_SPOOL_DIR": "sp"},
    {"HAMUSTRO_DISABLED": "1"},
]


# Tokens the fast parser takes in most places, drawn as often as all the others, so that most
# generated calls are compared and not only handed to Click.
PLAIN = ["e", "--json", "--testing", "--no-flush", "--user-id=9", "--param=x=y", "--at=0", "--stdin"]
GLOBALS = [[], ["-v"], ["-q"], ["--spool-dir", "sp"], ["--config", "config.toml"], ["--config", "none"]]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.lists(st.one_of(st.sampled_from(PLAIN), st.sampled_from(TOKENS)), max_size=7),
    st.sampled_from(GLOBALS),
    st.integers(0, 4),
    st.sampled_from(ENVIRONMENTS),
)
def test_both_ways_agree_on_generated_calls(
    fixed: Path, tail: list[str], lead: list[str], form: int, environment: dict[str, str]
) -> None:
    argv = [*lead, "track", *tail] if form else tail  # one in five: whatever the tokens make
    saved = {name: os.environ.get(name) for name in environment}
    os.environ.update(environment)
    try:
        agree(fixed, argv, '{"event": "from-stdin"}\n')
    finally:
        for name, value in saved.items():
            if value is None:
                del os.environ[name]
            else:
                os.environ[name] = value


def imported(*argv: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """`python -X importtime -m hamustro_cli ARGV`, and the modules it imported."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hamustro_cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    names = {
        line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")
    }
    return proc, names


def test_track_in_a_plain_form_loads_no_click(fixed: Path) -> None:
    """The point of the fast way, seen from a real process: `python -m hamustro_cli track ...`
    queues the event without importing Click, and exits 0; `--help` still goes to Click."""
    proc, names = imported("track", "page_view", "--user-id", "5", "--param", "k=v", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["queued"] == 1
    assert "hamustro_cli.trackrun" in names and "click" not in names
    helped, names = imported("track", "--help")
    assert helped.returncode == 0 and "Usage: hamustro track" in helped.stdout
    assert "click" in names


def test_the_fast_way_exits_with_the_error_code_and_message(fixed: Path) -> None:
    """Real processes: an error's code and message, and 0 with the output written, from a
    process that ends without the interpreter's teardown."""
    bad, names = imported("track", "e", "--user-id", "abc")
    assert bad.returncode == 2 and "click" not in names
    assert [line for line in bad.stderr.splitlines() if not line.startswith("import time:")] == [
        invoke("track", "e", "--user-id", "abc", expect=2).stderr.rstrip("\n")
    ]
    lines = "".join(f'{{"event": "e{i}"}}\n' for i in range(10))
    proc = subprocess.run(
        [sys.executable, "-m", "hamustro_cli", "track", "--stdin", "--json"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and json.loads(proc.stdout)["queued"] == 10, proc.stderr


@pytest.mark.parametrize("closed", [1, 2])
def test_both_ways_agree_with_a_standard_stream_closed(fixed: Path, closed: int) -> None:
    """Real processes (a closed descriptor cannot be had in-process): the fast way
    (`python -m hamustro_cli`) and Click's (`hamustro_cli.cli.main`), with stdout or stderr
    closed, give the same exit code, the same output on the stream left and the same queue."""

    def run(code: str, *argv: str) -> tuple[int, str, list[Any]]:
        proc = subprocess.run(
            [sys.executable, "-c", code, *argv],
            stdout=subprocess.PIPE if closed == 2 else None,
            stderr=subprocess.PIPE if closed == 1 else None,
            text=True,
            timeout=60,
            preexec_fn=lambda: os.close(closed),
        )
        return proc.returncode, proc.stdout if closed == 2 else proc.stderr, queued(fixed)

    fast = "import sys; sys.argv[0] = 'hamustro'; from hamustro_cli.entry import main; main()"
    full = "import sys; sys.argv[0] = 'hamustro'; from hamustro_cli.cli import main; main()"
    at = ["--at", "2026-11-28T12:00:00Z"]  # the clock is not fixed in these processes
    for argv in (["track", "e", "--user-id", "x"], ["track", "e", "--json", *at], ["-v", "track", "e", *at]):
        assert run(fast, *argv) == run(full, *argv), argv


_FLAT_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False),
    st.text(max_size=12),
    st.lists(st.integers(), max_size=2),
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8), _FLAT_VALUES, max_size=6))
def test_flat_json_is_json_dumps_or_nothing(data: dict[str, Any]) -> None:
    """`track --json` prints its result without loading json (streams.flat_json): what it
    writes is byte for byte what json.dumps writes, and what it cannot write it leaves to json."""
    from hamustro_cli.streams import flat_json

    text = flat_json(data)
    if text is not None:
        assert text == json.dumps(data)
    else:
        assert any(
            not (type(v) in (int, bool) or v is None or (type(v) is str and v.isascii() and v.isprintable()))
            or (type(v) is str and ('"' in v or "\\" in v))
            for v in [*data.keys(), *data.values()]
        )


def test_track_json_prints_its_result_without_loading_json(fixed: Path) -> None:
    """The result of a plain `track --json` is written by streams.flat_json (json is not loaded)."""
    code = (
        "import sys; sys.argv[0] = 'hamustro'\n"
        "from hamustro_cli import entry, invocation\n"
        "invocation.exit_now = lambda code: (print('json' in sys.modules, file=sys.stderr), sys.exit(code))\n"
        "entry.main()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "track", "e", "--json", "--at", "2026-11-28T12:00:00Z"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["queued"] == 1
    assert proc.stderr.strip().splitlines()[-1] == "False", proc.stderr
