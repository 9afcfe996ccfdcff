"""Bad input (issue 3, item 5): every case gets the contract's exit code, a message that names
what was wrong and where (key and file or variable, flag, stdin line), nothing queued, and the
two events queued before the bad call still there, unchanged.

Exit codes (cli.md): 2 for usage, configuration or input errors, 3 when the spool cannot be used.
Tests run as root in CI; where a case needs a permission denied, the subprocess runs with
CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH dropped from its bounding set, so that root gets the
same EACCES as any other user (no skipping).
"""

from __future__ import annotations

import json
import os
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, as_plain_user, invoke, run, run_unprivileged, write_config

from hamustro_cli import events
from hamustro_cli.spool import DB_NAME, SCHEMA_VERSION
from hamustro_cli.spool.full import Spool

MAX = events.MAX_PARAMS_BYTES
U32 = 2**32 - 1

# -- helpers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Snapshot:
    events: tuple[tuple[Any, ...], ...]
    last_nr: dict[str, int]


def snapshot(spool_dir: Path) -> Snapshot:
    """Everything queued, read through the library (opening a current spool changes nothing)."""
    with Spool(spool_dir) as spool:
        events = tuple(
            (e["session"], e["nr"], e["at"], e["event"], e["user_id"], e["parameters"], e["state"])
            for e in spool.iter_events()
        )
        last = {r.attributes.session: r.last_nr for r in spool.session_rows().values()}
    return Snapshot(events, last)


def status_json() -> dict[str, Any]:
    return json.loads(invoke("status", "--json").output)


@pytest.fixture
def before(config: Path, spool_dir: Path) -> Snapshot:
    """Two good events queued before the bad call."""
    invoke("track", "before-1", "--user-id", "1")
    invoke("track", "before-2", "--params", "p=1")
    snap = snapshot(spool_dir)
    assert [e[3] for e in snap.events] == ["before-1", "before-2"]
    assert list(snap.last_nr.values()) == [2]
    status = status_json()
    assert (status["pending"], [s["last_nr"] for s in status["sessions"]]) == (2, [2])
    return snap


def assert_untouched(spool_dir: Path, snap: Snapshot) -> None:
    """Nothing queued by the bad call, nothing queued before it lost (nr not consumed either)."""
    assert snapshot(spool_dir) == snap


def assert_still_works(config_path: Path, collector_url: str, spool_dir: Path, snap: Snapshot) -> None:
    """With a good config again, the next event gets nr 3: no gap, the spool is usable."""
    write_config(config_path, collector_url=collector_url, **SETTINGS)
    out = json.loads(
        invoke("--config", str(config_path), "--spool-dir", str(spool_dir), "track", "after", "--json").output
    )
    assert out["nr"] == 3
    assert [e[3] for e in snapshot(spool_dir).events] == [e[3] for e in snap.events] + ["after"]


def one_error_line(text: str) -> str:
    """The CLI's error: one 'hamustro: error: ...' line, no traceback."""
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if ln.startswith("hamustro: error:")]
    assert len(lines) == 1, text
    return lines[0]


def settings(url: str, **changes: Any) -> dict[str, Any]:
    """The good settings with changes; a change to None removes the key."""
    values = {"collector_url": url, **SETTINGS, **changes}
    return {k: v for k, v in values.items() if v is not None}


def test_unprivileged_helper_really_cannot_read_a_0000_file(tmp_path: Path) -> None:
    """Guards the permission tests below: they must not pass merely because root reads anything."""
    secret = tmp_path / "closed"
    secret.write_text("x")
    secret.chmod(0)
    proc = subprocess.run(
        [sys.executable, "-c", f"open({str(secret)!r}).read()"],
        capture_output=True,
        text=True,
        preexec_fn=as_plain_user if os.geteuid() == 0 else None,
    )
    assert proc.returncode != 0 and "PermissionError" in proc.stderr


# -- the table: one bad call each, in-process ----------------------------------------------------


@dataclass
class Ctx:
    tmp: Path
    config: Path
    url: str
    monkeypatch: pytest.MonkeyPatch

    def rewrite(self, **changes: Any) -> None:
        write_config(self.config, **settings(self.url, **changes))

    def append(self, text: str) -> int:
        """Append raw text to the config; returns the line number it starts on."""
        lines = self.config.read_text().splitlines()
        self.config.write_text("\n".join(lines) + "\n" + text)
        return len(lines) + 1

    def env(self, **values: str) -> None:
        for k, v in values.items():
            self.monkeypatch.setenv(k, v)


def nothing(ctx: Ctx) -> dict[str, Any]:
    return {}


def file(**changes: Any) -> Callable[[Ctx], dict[str, Any]]:
    def setup(ctx: Ctx) -> dict[str, Any]:
        ctx.rewrite(**changes)
        return {}

    return setup


def env(**values: str) -> Callable[[Ctx], dict[str, Any]]:
    def setup(ctx: Ctx) -> dict[str, Any]:
        ctx.env(**values)
        return {}

    return setup


def invalid_toml(ctx: Ctx) -> dict[str, Any]:
    return {"line": ctx.append("queue_size = = 3\n")}


def not_utf8(ctx: Ctx) -> dict[str, Any]:
    ctx.config.write_bytes(ctx.config.read_bytes() + b'system = "\xff\xfe"\n')
    return {}


def config_env_missing(ctx: Ctx) -> dict[str, Any]:
    ctx.env(HAMUSTRO_CONFIG=str(ctx.tmp / "nowhere.toml"))
    return {}


def config_env_directory(ctx: Ctx) -> dict[str, Any]:
    (ctx.tmp / "confdir").mkdir()
    ctx.env(HAMUSTRO_CONFIG=str(ctx.tmp / "confdir"))
    return {}


def make_dir(ctx: Ctx) -> dict[str, Any]:
    (ctx.tmp / "confdir").mkdir()
    return {}


def env_only_missing_client_id(ctx: Ctx) -> dict[str, Any]:
    """No config file at all; the environment supplies every required key but one."""
    ctx.monkeypatch.delenv("HAMUSTRO_CONFIG")
    for key, value in settings(ctx.url, client_id=None).items():
        ctx.monkeypatch.setenv("HAMUSTRO_" + key.upper(), str(value))
    return {}


def unknown_key(ctx: Ctx) -> dict[str, Any]:
    return {"line": ctx.append('colector_url = "http://127.0.0.1:1"\n')}


BIG = "x" * (MAX + 1)
GOOD = '{"event": "in-1", "user_id": 5}\n'


def stdin(*bad_lines: str) -> str:
    """A good first line, then the given lines (the last one is the bad one)."""
    return GOOD + "".join(line + "\n" for line in bad_lines)


C = pytest.param
CASES = [
    # -- the config file itself ---------------------------------------------------------------
    C(
        nothing,
        ["--config", "{tmp}/missing.toml", "track", "e"],
        None,
        2,
        [
            "{tmp}/missing.toml",
            "does not exist",
            "; to write one: hamustro --config {tmp}/missing.toml config init",
        ],
        id="config-missing-flag",
    ),
    C(
        config_env_missing,
        ["track", "e"],
        None,
        2,
        ["{tmp}/nowhere.toml", "does not exist", "HAMUSTRO_CONFIG", "; to write one: hamustro config init"],
        id="config-missing-env",
    ),
    C(
        make_dir,
        ["--config", "{tmp}/confdir", "track", "e"],
        None,
        2,
        ["--config", "{tmp}/confdir", "is a directory"],
        id="config-is-directory-flag",
    ),
    C(
        config_env_directory,
        ["track", "e"],
        None,
        2,
        ["{tmp}/confdir", "is a directory"],
        id="config-is-directory-env",
    ),
    C(
        invalid_toml,
        ["track", "e"],
        None,
        2,
        ["{config}", "not valid TOML", "line {line}"],
        id="config-invalid-toml",
    ),
    C(not_utf8, ["track", "e"], None, 2, ["{config}", "UTF-8"], id="config-not-utf8"),
    # -- keys -----------------------------------------------------------------------------------
    C(
        file(device_id=None),
        ["track", "e"],
        None,
        2,
        ["device_id", "{config}", "HAMUSTRO_DEVICE_ID"],
        id="required-missing-file",
    ),
    C(
        env_only_missing_client_id,
        ["track", "e"],
        None,
        2,
        ["client_id", "HAMUSTRO_CLIENT_ID"],
        id="required-missing-env-only",
    ),
    C(
        file(product_version=""),
        ["track", "e"],
        None,
        2,
        ["product_version", "{config}", "empty"],
        id="required-empty-file",
    ),
    C(
        env(HAMUSTRO_CLIENT_ID=""),
        ["track", "e"],
        None,
        2,
        ["client_id", "HAMUSTRO_CLIENT_ID", "empty"],
        id="required-empty-env",
    ),
    C(
        file(queue_size="20"),
        ["track", "e"],
        None,
        2,
        ["queue_size", "{config}", "integer", "'20'"],
        id="type-queue-size-file",
    ),
    C(
        env(HAMUSTRO_QUEUE_SIZE="abc"),
        ["track", "e"],
        None,
        2,
        ["queue_size", "HAMUSTRO_QUEUE_SIZE", "integer", "'abc'"],
        id="type-queue-size-env",
    ),
    C(
        file(tls_verify="yes"),
        ["track", "e"],
        None,
        2,
        ["tls_verify", "{config}", "true or false"],
        id="type-bool-file",
    ),
    C(
        env(HAMUSTRO_TLS_VERIFY="maybe"),
        ["track", "e"],
        None,
        2,
        ["tls_verify", "HAMUSTRO_TLS_VERIFY", "true or false"],
        id="type-bool-env",
    ),
    C(
        env(HAMUSTRO_TIMEOUT="soon"),
        ["track", "e"],
        None,
        2,
        ["timeout", "HAMUSTRO_TIMEOUT", "number"],
        id="type-float-env",
    ),
    C(file(client_id=7), ["track", "e"], None, 2, ["client_id", "{config}", "string"], id="type-string-file"),
    C(
        unknown_key,
        ["track", "e"],
        None,
        2,
        ["unknown config key", "colector_url", "{config}"],
        id="unknown-key",
    ),
    C(
        file(queue_size=0),
        ["track", "e"],
        None,
        2,
        ["queue_size", "{config}", "at least 1", "0"],
        id="queue-size-zero-file",
    ),
    C(
        file(queue_size=-5),
        ["track", "e"],
        None,
        2,
        ["queue_size", "{config}", "at least 1", "-5"],
        id="queue-size-negative-file",
    ),
    C(
        env(HAMUSTRO_QUEUE_SIZE="0"),
        ["track", "e"],
        None,
        2,
        ["queue_size", "HAMUSTRO_QUEUE_SIZE", "at least 1"],
        id="queue-size-zero-env",
    ),
    C(
        env(HAMUSTRO_QUEUE_SIZE="-3"),
        ["track", "e"],
        None,
        2,
        ["queue_size", "HAMUSTRO_QUEUE_SIZE", "at least 1", "-3"],
        id="queue-size-negative-env",
    ),
    C(
        file(collector_url="127.0.0.1:8080"),
        ["track", "e"],
        None,
        2,
        ["collector_url", "{config}", "http", "127.0.0.1:8080"],
        id="url-no-scheme-file",
    ),
    C(
        env(HAMUSTRO_COLLECTOR_URL="ftp://example.org/"),
        ["track", "e"],
        None,
        2,
        ["collector_url", "HAMUSTRO_COLLECTOR_URL", "ftp://example.org/"],
        id="url-ftp-env",
    ),
    C(
        file(collector_url="https://"),
        ["track", "e"],
        None,
        2,
        ["collector_url", "{config}", "host"],
        id="url-no-host-file",
    ),
    C(
        file(flush="sometimes"),
        ["track", "e"],
        None,
        2,
        ["flush", "{config}", "background", "'sometimes'"],
        id="flush-mode-file",
    ),
    C(
        env(HAMUSTRO_FLUSH="later"),
        ["track", "e"],
        None,
        2,
        ["flush", "HAMUSTRO_FLUSH", "'later'"],
        id="flush-mode-env",
    ),
    C(file(ip="300.1.2.3"), ["track", "e"], None, 2, ["ip", "{config}", "300.1.2.3"], id="ip-config-file"),
    C(
        env(HAMUSTRO_IP="localhost"),
        ["track", "e"],
        None,
        2,
        ["ip", "HAMUSTRO_IP", "localhost"],
        id="ip-config-env",
    ),
    # -- track's arguments ------------------------------------------------------------------------
    C(nothing, ["track"], None, 2, ["EVENT"], id="event-missing"),
    C(nothing, ["track", ""], None, 2, ["event name", "empty"], id="event-empty"),
    C(nothing, ["track", "   "], None, 2, ["event name", "empty"], id="event-blank"),
    C(nothing, ["track", "e" * 1025], None, 2, ["event name", "1024"], id="event-too-long"),
    C(nothing, ["track", "e", "--user-id", "-1"], None, 2, ["--user-id", "-1"], id="user-id-negative"),
    C(
        nothing,
        ["track", "e", "--user-id", str(U32 + 1)],
        None,
        2,
        ["--user-id", str(U32 + 1), str(U32)],
        id="user-id-over-uint32",
    ),
    C(nothing, ["track", "e", "--user-id", "abc"], None, 2, ["--user-id", "'abc'"], id="user-id-text"),
    C(nothing, ["track", "e", "--user-id", "1.5"], None, 2, ["--user-id", "'1.5'"], id="user-id-fraction"),
    C(
        nothing,
        ["track", "e", "--user-id", "\u00b2"],
        None,
        2,
        ["--user-id", "\u00b2"],
        id="user-id-superscript-digit",
    ),
    C(nothing, ["track", "e", "--user-id"], None, 2, ["--user-id"], id="user-id-no-value"),
    C(
        nothing,
        ["track", "e", "--params", "a", "--param", "k=v"],
        None,
        2,
        ["--params", "--param"],
        id="params-and-param",
    ),
    C(
        nothing,
        ["track", "e", "--param", "novalue"],
        None,
        2,
        ["--param", "'novalue'", "KEY=VALUE"],
        id="param-no-equals",
    ),
    C(
        nothing,
        ["track", "e", "--param", "ok=1", "--param", "=v"],
        None,
        2,
        ["--param", "'=v'"],
        id="param-empty-key",
    ),
    C(
        nothing,
        ["track", "e", "--params", BIG],
        None,
        2,
        ["--params", str(MAX + 1), str(MAX)],
        id="params-over-limit",
    ),
    C(
        nothing,
        ["track", "e", "--params", "\u00e9" * (MAX // 2 + 1)],
        None,
        2,
        ["--params", str(MAX + 2), str(MAX)],
        id="params-over-limit-in-bytes-not-chars",
    ),
    C(
        nothing,
        ["track", "e", "--param", "k=" + "v" * MAX],
        None,
        2,
        ["--param", str(MAX)],
        id="param-pairs-over-limit",
    ),
    C(nothing, ["track", "e", "--at", "yesterday"], None, 2, ["--at", "'yesterday'"], id="at-text"),
    C(nothing, ["track", "e", "--at", "-5"], None, 2, ["--at", "'-5'"], id="at-negative"),
    C(
        nothing,
        ["track", "e", "--at", "2026-13-45T99:00:00Z"],
        None,
        2,
        ["--at", "2026-13-45"],
        id="at-bad-date",
    ),
    C(nothing, ["track", "e", "--at", str(2**64)], None, 2, ["--at", str(2**64)], id="at-over-uint64"),
    C(nothing, ["track", "e", "--at", str(2**63)], None, 2, ["--at", str(2**63)], id="at-over-int64-storage"),
    C(nothing, ["track", "e", "--at", "\u00b2"], None, 2, ["--at", "\u00b2"], id="at-superscript-digit"),
    C(nothing, ["track", "e", "--ip", "1.2.3"], None, 2, ["--ip", "'1.2.3'"], id="ip-flag-short"),
    C(nothing, ["track", "e", "--ip", "localhost"], None, 2, ["--ip", "'localhost'"], id="ip-flag-name"),
    C(nothing, ["track", "e", "--ip", "::1::2"], None, 2, ["--ip", "'::1::2'"], id="ip-flag-bad-v6"),
    C(nothing, ["track", "e", "--stdin"], GOOD, 2, ["--stdin", "EVENT"], id="stdin-with-event"),
    C(nothing, ["status", "--limit", "0"], None, 2, ["--limit"], id="status-limit-zero"),
    # -- track --stdin: all or nothing, the line number named -------------------------------------
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"event": "in-2"}', '{"event": "in-3",'),
        2,
        ["stdin line 3", "JSON"],
        id="stdin-bad-json",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('["event", "x"]'),
        2,
        ["stdin line 2", "object"],
        id="stdin-not-object",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"event": "x", "colour": "red"}'),
        2,
        ["stdin line 2", "unknown key", "colour"],
        id="stdin-unknown-key",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"user_id": 3}'),
        2,
        ["stdin line 2", "event"],
        id="stdin-missing-event",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"event": ""}'),
        2,
        ["stdin line 2", "event", "empty"],
        id="stdin-empty-event",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"event": 12}'),
        2,
        ["stdin line 2", "event", "string"],
        id="stdin-event-not-string",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"event": "bad\\ud800"}'),
        2,
        ["stdin line 2", "event", "UTF-8"],
        id="stdin-event-lone-surrogate",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"event": "x", "user_id": "7"}'),
        2,
        ["stdin line 2", "user_id", "'7'"],
        id="stdin-user-id-string",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"event": "x", "user_id": "\u0663"}'),
        2,
        ["stdin line 2", "user_id"],
        id="stdin-user-id-non-ascii-digit-string",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"event": "x", "user_id": -1}'),
        2,
        ["stdin line 2", "user_id", "-1"],
        id="stdin-user-id-negative",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin(f'{{"event": "x", "user_id": {U32 + 1}}}'),
        2,
        ["stdin line 2", "user_id", str(U32 + 1)],
        id="stdin-user-id-over-uint32",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"event": "x", "user_id": true}'),
        2,
        ["stdin line 2", "user_id"],
        id="stdin-user-id-bool",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"event": "x", "is_testing": "yes"}'),
        2,
        ["stdin line 2", "is_testing"],
        id="stdin-is-testing-string",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"event": "x", "at": "2026-01-01"}'),
        2,
        ["stdin line 2", "at", "2026-01-01"],
        id="stdin-at-string",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"event": "x", "at": 1.5}'),
        2,
        ["stdin line 2", "at", "1.5"],
        id="stdin-at-float",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin(f'{{"event": "x", "at": {2**63}}}'),
        2,
        ["stdin line 2", "at", str(2**63)],
        id="stdin-at-over-int64-storage",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin('{"event": "x", "params": [1, 2]}'),
        2,
        ["stdin line 2", "params", "list"],
        id="stdin-params-list",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        stdin(json.dumps({"event": "x", "params": BIG})),
        2,
        ["stdin line 2", "params", str(MAX)],
        id="stdin-params-over-limit",
    ),
    C(
        nothing,
        ["track", "--stdin"],
        GOOD + "\n   \n" + '{"event": "x", "user_id": "z"}\n',
        2,
        ["stdin line 4", "user_id"],
        id="stdin-blank-lines-counted",
    ),
    C(
        nothing,
        ["track", "signup", "--param", "a=1", "--param", "a=2"],
        "",
        2,
        ["--param", "a=2", "duplicate key 'a'"],
        id="param-duplicate-key",
    ),
]


@pytest.mark.parametrize(("setup", "args", "stdin_text", "code", "needles"), CASES)
def test_bad_input_gets_its_exit_code_one_error_naming_it_and_changes_nothing(
    setup: Callable[[Ctx], dict[str, Any]],
    args: list[str],
    stdin_text: str | None,
    code: int,
    needles: list[str],
    before: Snapshot,
    config: Path,
    collector: Any,
    spool_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx = Ctx(tmp_path, config, collector.url, monkeypatch)
    extra = setup(ctx)
    fmt = {"tmp": str(tmp_path), "config": str(config), **extra}
    args = [a.format(**fmt) if "{" in a else a for a in args]
    result = invoke(*args, input=stdin_text, expect=None)
    assert result.exit_code == code, result.output
    if code == 2 and "Usage:" in result.output:  # Click's own usage errors
        message = result.output
    else:
        message = one_error_line(result.output)
    for needle in needles:
        assert needle.format(**fmt) in message, (needle, message)
    assert SETTINGS["shared_secret_key"] not in result.output
    assert_untouched(spool_dir, before)
    # A good call right after still works and continues the numbering.
    for name in list(os.environ):
        if name.startswith("HAMUSTRO_"):
            monkeypatch.delenv(name)
    assert_still_works(config, collector.url, spool_dir, before)


def test_table_has_enough_cases() -> None:
    assert len(CASES) >= 30


# -- boundaries that must be accepted (so the limits above are the documented ones) ------------


def test_limits_themselves_are_accepted(before: Snapshot, spool_dir: Path) -> None:
    invoke("track", "at-limit", "--params", "x" * MAX, "--user-id", str(U32), "--at", "0")
    invoke("track", "e" * 1024, "--user-id", "0", "--at", "2026-11-28T12:00:00Z")
    events = snapshot(spool_dir).events
    assert [(e[1], e[4], len(e[5] or "")) for e in events[2:]] == [(3, U32, MAX), (4, 0, 0)]
    assert events[:2] == before.events


def test_unknown_environment_variables_are_ignored(
    before: Snapshot, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cli.md: variables that name no config key are ignored (the collector's own HOST/PORT)."""
    monkeypatch.setenv("HAMUSTRO_HOST", "0.0.0.0")
    monkeypatch.setenv("HAMUSTRO_PORT", "not-a-port")
    invoke("track", "fine")
    assert len(snapshot(spool_dir).events) == 3


# -- the same contract through a real process: stderr, not stdout; the real exit status ---------


@pytest.mark.parametrize(
    ("args", "stdin_text", "env", "needles"),
    [
        (["track", "e", "--user-id", "-1"], None, {}, ["--user-id"]),
        (
            ["track", "--stdin"],
            stdin(
                '{"event": "x"',
            ),
            {},
            ["stdin line 2"],
        ),
        (["track", "e"], None, {"HAMUSTRO_QUEUE_SIZE": "abc"}, ["HAMUSTRO_QUEUE_SIZE"]),
        (["track", "e", "--params", "x" * (MAX + 1)], None, {}, ["--params", str(MAX)]),
    ],
    ids=["user-id", "stdin", "env-type", "params-limit"],
)
def test_bad_input_in_a_real_process_goes_to_stderr_with_exit_2(
    args: list[str],
    stdin_text: str | None,
    env: dict[str, str],
    needles: list[str],
    before: Snapshot,
    spool_dir: Path,
) -> None:
    proc = run(*args, input=stdin_text, env=env)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    message = one_error_line(proc.stderr)
    for needle in needles:
        assert needle in message
    assert_untouched(spool_dir, before)


# -- permissions, honestly, even as root ------------------------------------------------------


def test_unreadable_config_file(before: Snapshot, config: Path, spool_dir: Path) -> None:
    config.chmod(0)
    proc = run_unprivileged("track", "e")
    assert proc.returncode == 2, proc.stderr
    message = one_error_line(proc.stderr)
    assert str(config) in message and "not readable" in message
    config.chmod(0o600)
    assert_untouched(spool_dir, before)


def test_config_directory_not_searchable(
    before: Snapshot, tmp_path: Path, config: Path, spool_dir: Path
) -> None:
    hidden = tmp_path / "locked"
    hidden.mkdir()
    inner = hidden / "config.toml"
    inner.write_bytes(config.read_bytes())
    hidden.chmod(0)
    try:
        proc = run_unprivileged("--config", str(inner), "track", "e")
    finally:
        hidden.chmod(0o700)
    assert proc.returncode == 2, proc.stderr
    message = one_error_line(proc.stderr)
    assert str(inner) in message
    assert_untouched(spool_dir, before)


def test_spool_directory_not_writable(before: Snapshot, spool_dir: Path) -> None:
    spool_dir.chmod(0o500)
    try:
        proc = run_unprivileged("track", "e")
    finally:
        spool_dir.chmod(0o700)
    assert proc.returncode == 3, proc.stderr
    message = one_error_line(proc.stderr)
    assert str(spool_dir) in message and "writable" in message
    assert_untouched(spool_dir, before)


def test_spool_database_read_only(before: Snapshot, spool_dir: Path) -> None:
    db = spool_dir / DB_NAME
    db.chmod(0o400)
    try:
        proc = run_unprivileged("track", "e")
    finally:
        db.chmod(0o600)
    assert proc.returncode == 3, proc.stderr
    message = one_error_line(proc.stderr)
    assert str(db) in message and "writable" in message
    assert_untouched(spool_dir, before)


def test_spool_parent_not_searchable(before: Snapshot, tmp_path: Path, spool_dir: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0)
    locked.chmod(0)
    target = locked / "spool"
    try:
        proc = run_unprivileged("--spool-dir", str(target), "track", "e")
    finally:
        locked.chmod(0o700)
    assert proc.returncode == 3, proc.stderr
    message = one_error_line(proc.stderr)
    assert str(target) in message and "permission denied" in message
    assert not target.exists()
    assert_untouched(spool_dir, before)


# -- the spool is not a usable spool -------------------------------------------------------


def test_spool_path_is_a_file_flag(before: Snapshot, tmp_path: Path, spool_dir: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("keep me\n")
    result = invoke("--spool-dir", str(blocker), "track", "e", expect=3)
    message = one_error_line(result.output)
    assert str(blocker) in message and "not a directory" in message
    assert blocker.read_text() == "keep me\n"
    assert_untouched(spool_dir, before)


def test_spool_path_is_a_file_env(
    before: Snapshot, tmp_path: Path, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("keep me\n")
    monkeypatch.setenv("HAMUSTRO_SPOOL_DIR", str(blocker))
    result = invoke("track", "e", expect=3)
    message = one_error_line(result.output)
    assert str(blocker) in message and "not a directory" in message
    assert blocker.read_text() == "keep me\n"
    assert_untouched(spool_dir, before)


def test_spool_parent_is_a_file(before: Snapshot, tmp_path: Path, spool_dir: Path) -> None:
    blocker = tmp_path / "plain-file"
    blocker.write_text("keep me\n")
    result = invoke("--spool-dir", str(blocker / "spool"), "track", "e", expect=3)
    message = one_error_line(result.output)
    assert str(blocker / "spool") in message and "not a directory" in message
    assert blocker.read_text() == "keep me\n"
    assert_untouched(spool_dir, before)


def test_spool_database_is_a_directory(before: Snapshot, tmp_path: Path, spool_dir: Path) -> None:
    other = tmp_path / "other-spool"
    (other / DB_NAME).mkdir(parents=True)
    result = invoke("--spool-dir", str(other), "track", "e", expect=3)
    message = one_error_line(result.output)
    assert str(other / DB_NAME) in message and "directory" in message
    assert_untouched(spool_dir, before)


def test_corrupt_spool_garbage(before: Snapshot, tmp_path: Path, spool_dir: Path) -> None:
    """A file that is no database at all is left exactly as it was."""
    other = tmp_path / "garbage-spool"
    other.mkdir(mode=0o700)
    garbage = bytes(range(256)) * 64
    (other / DB_NAME).write_bytes(garbage)
    result = invoke("--spool-dir", str(other), "track", "e", expect=3)
    message = one_error_line(result.output)
    assert str(other / DB_NAME) in message and "corrupt" in message
    assert (other / DB_NAME).read_bytes() == garbage
    # status reads the same spool: also exit 3, also says what to do.
    result = invoke("--spool-dir", str(other), "status", "--json", expect=3)
    assert "corrupt" in one_error_line(result.output)
    assert_untouched(spool_dir, before)


def test_corrupt_spool_with_events_is_not_overwritten(before: Snapshot, spool_dir: Path) -> None:
    """The real spool with our two events gets a damaged header: exit 3, not a word changed,
    and once the header is repaired the two events are all there (nothing was lost)."""
    db = spool_dir / DB_NAME
    for leftover in ("-wal", "-shm"):
        assert not (spool_dir / (DB_NAME + leftover)).exists()
    original = db.read_bytes()
    damaged = b"this is no database" + original[19:]
    db.write_bytes(damaged)
    for args in (["track", "e"], ["status"], ["flush"]):
        result = invoke(*args, expect=3)
        message = one_error_line(result.output)
        assert str(db) in message and "corrupt" in message
        assert db.read_bytes() == damaged
    db.write_bytes(original)
    assert_untouched(spool_dir, before)


def test_spool_from_newer_schema(before: Snapshot, spool_dir: Path, config: Path, collector: Any) -> None:
    db = spool_dir / DB_NAME
    with sqlite3.connect(db) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    image = db.read_bytes()
    for args in (["track", "e"], ["status", "--json"], ["flush"]):
        result = invoke(*args, expect=3)
        message = one_error_line(result.output)
        assert str(db) in message and f"schema version {SCHEMA_VERSION + 5}" in message
        assert "upgrade" in message
    assert db.read_bytes() == image
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT nr, event FROM events ORDER BY nr").fetchall()
    conn.close()
    assert rows == [(1, "before-1"), (2, "before-2")]
    assert collector.received() == []  # flush sent nothing from a spool it does not understand


# -- a full disk while queuing ------------------------------------------------------------


def _track_under_size_limit(limit: int, *args: str) -> subprocess.CompletedProcess[str]:
    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "hamustro_cli", "track", *args],
        capture_output=True,
        text=True,
        timeout=60,
        # no .pyc writes: the limit is meant for the spool, not for Python's cache
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=limit_files,
    )


FILLERS = 3  # events of 20000 bytes queued before the limit, so the spool is ~90 KB
BIG_EVENT = 60000


@pytest.mark.parametrize(
    ("case", "fillers", "limit"),
    [
        # The event is bigger than the spool file: it cannot fit in the WAL either.
        ("limit-at-spool-size", 0, lambda size: size),
        # Below the spool's size: -shm (32 KiB) can be created, the WAL runs out mid-transaction.
        ("limit-below-spool-size", FILLERS, lambda size: 40000),
        # Not even the -shm index fits: fails while opening.
        ("tiny-limit", FILLERS, lambda size: 1024),
    ],
)
def test_full_disk_while_queuing(
    case: str, fillers: int, limit: Callable[[int], int], before: Snapshot, spool_dir: Path, collector: Any
) -> None:
    db = spool_dir / DB_NAME
    for i in range(fillers):
        invoke("track", f"filler-{i}", "--params", "f" * 20000)
    filled = snapshot(spool_dir)
    n = len(filled.events)
    proc = _track_under_size_limit(limit(db.stat().st_size), "big", "--params", "b" * BIG_EVENT, "--json")
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    assert proc.stdout == ""
    message = one_error_line(proc.stderr)
    assert str(db) in message and ("full" in message or "space" in message or "limit" in message)
    # Intact and readable: integrity check passes, same events, the next event gets the next nr.
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()
    assert snapshot(spool_dir) == filled
    status = status_json()
    assert status["pending"] == n and status["sessions"][0]["last_nr"] == n
    assert json.loads(invoke("track", "after", "--json").output)["nr"] == n + 1
    assert invoke("flush").exit_code == 0
    got = collector.received()
    assert [e["nr"] for e in got] == list(range(1, n + 2))
    assert "big" not in [e["event"] for e in got]


def test_size_limit_that_still_fits_means_queued(before: Snapshot, spool_dir: Path, collector: Any) -> None:
    """The other side of the contract: exit 0 under a limit means the event is durable, even
    though the checkpoint into the main file could not grow it (the WAL holds the event)."""
    db = spool_dir / DB_NAME
    for i in range(FILLERS):
        invoke("track", f"filler-{i}", "--params", "f" * 20000)
    size = db.stat().st_size
    proc = _track_under_size_limit(size, "small", "--params", "s" * 3000, "--json")
    assert proc.returncode == 0, proc.stderr
    nr = json.loads(proc.stdout)["nr"]
    assert nr == 2 + FILLERS + 1
    events = snapshot(spool_dir).events
    assert events[-1][1:2] == (nr,) and events[-1][3] == "small"
    assert invoke("flush").exit_code == 0
    assert [e["nr"] for e in collector.received()] == list(range(1, nr + 1))


def test_full_disk_during_stdin_batch_queues_nothing(before: Snapshot, spool_dir: Path) -> None:
    lines = "".join(json.dumps({"event": f"s{i}", "params": "p" * 30000}) + "\n" for i in range(5))
    size = (spool_dir / DB_NAME).stat().st_size
    proc = subprocess.run(
        [sys.executable, "-m", "hamustro_cli", "track", "--stdin"],
        input=lines,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (size + 8192, size + 8192)),
    )
    assert proc.returncode == 3, proc.stderr
    one_error_line(proc.stderr)
    assert_untouched(spool_dir, before)


@pytest.mark.parametrize("value", ["+-5", "--5", "-+1"])
def test_user_id_with_two_signs(before, spool_dir, value):
    result = invoke("track", "e", "--user-id", value, expect=2)
    assert "--user-id" in one_error_line(result.output)
    assert_untouched(spool_dir, before)


@pytest.mark.parametrize(
    "url", ["http://a..b/", "http://" + "x" * 64 + ".example/", "http://host:0/", "http://bad host/"]
)
def test_malformed_collector_host_is_a_config_error(isolated, url):
    write_config(isolated / "config.toml", **{**SETTINGS, "collector_url": url})
    line = one_error_line(invoke("track", "e", expect=2).output)
    assert "collector_url" in line and str(isolated / "config.toml") in line
