"""Issue #11 part 4: exit codes that tell "try later" (1) from "a person must act" (4), one
`track --json` shape, path completion, examples in --help, logging through "hamustro"."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, ScriptedServer, invoke, start_collector, write_config

TRACK_KEYS = ["session", "queued", "first_nr", "last_nr", "nr", "at", "flush"]


def configure(isolated: Path, url: str, **extra: Any) -> None:
    write_config(isolated / "config.toml", collector_url=url, **{**SETTINGS, **extra})


# -- exit codes -----------------------------------------------------------------------------


def test_unreachable_collector_is_try_later(isolated: Path) -> None:
    configure(isolated, "http://127.0.0.1:9", retries=0)
    invoke("track", "a")
    invoke("flush", expect=1)
    invoke("status", "--check", expect=1)  # backing off: try later
    invoke("flush", "--if-due", expect=0)  # not due while backing off: nothing to say
    invoke("status", expect=0)


def test_5xx_is_try_later(isolated: Path) -> None:
    server = ScriptedServer([503])
    try:
        configure(isolated, server.url, retries=0)
        invoke("track", "a")
        invoke("flush", expect=1)
    finally:
        server.close()


def test_refused_signature_needs_a_person_until_fixed(isolated: Path, tmp_path: Path) -> None:
    other = start_collector(tmp_path, "other", secret="another-secret")
    try:
        configure(isolated, other.url)
        invoke("track", "a")
        assert json.loads(invoke("flush", "--json", expect=4).stdout)["halted"] is True
        invoke("flush", "--if-due", expect=4)  # cron keeps saying so while sending is halted
        for quiet in ([], ["-q"]):  # one line on stderr, which cron mails, even under -q
            result = invoke(*quiet, "flush", "--if-due", expect=4)
            assert result.stdout == ""
            [line] = result.stderr.splitlines()
            assert line.startswith("hamustro: error: sending is halted: ")
            assert "405" in line and "run 'hamustro flush'" in line
        invoke("status", "--check", expect=4)
        invoke("status", expect=0)  # without --check, status only reports
    finally:
        other.server.stop()
    good = start_collector(tmp_path, "good", port=other.server.server_address[1])  # fixed, same URL
    try:
        invoke("flush", expect=0)
        assert [e["event"] for e in good.received()] == ["a"]
        invoke("status", "--check", expect=0)
    finally:
        good.server.stop()


def test_rejected_events_need_a_person(isolated: Path, tmp_path: Path) -> None:
    picky = start_collector(tmp_path, "picky", reject_events=["bad"])
    try:
        configure(isolated, picky.url)
        invoke("track", "bad")
        invoke("track", "good")
        invoke("flush", expect=4)
        invoke("status", "--check", expect=4)
        invoke("events", "drop", "--state", "rejected", "--yes")
        invoke("status", "--check", expect=0)
    finally:
        picky.server.stop()


def test_inline_track_exits_0_whatever_its_flush_did(isolated: Path, tmp_path: Path) -> None:
    other = start_collector(tmp_path, "other", secret="another-secret")
    try:
        configure(isolated, other.url, queue_size=1, flush="inline")
        out = json.loads(invoke("track", "a", "--json").stdout)
        assert out["flush"] == "failed"
    finally:
        other.server.stop()


# -- track --json -----------------------------------------------------------------------------


def test_track_json_has_one_shape(config: Path) -> None:
    one = json.loads(invoke("track", "a", "--at", "1700000000", "--json").stdout)
    assert list(one) == TRACK_KEYS
    assert (one["queued"], one["first_nr"], one["last_nr"], one["nr"], one["at"]) == (1, 1, 1, 1, 1700000000)
    lines = "".join(json.dumps({"event": e, "at": 1700000000 + i}) + "\n" for i, e in enumerate("bcd"))
    many = json.loads(invoke("track", "--stdin", "--json", input=lines).stdout)
    assert list(many) == TRACK_KEYS
    assert (many["queued"], many["first_nr"], many["last_nr"], many["nr"], many["at"]) == (
        3,
        2,
        4,
        4,
        1700000002,
    )
    assert many["session"] == one["session"] and many["flush"] == "not-due"


# -- completion, help, logging ------------------------------------------------------------------


def complete(words: str) -> list[str]:
    """Ask click's bash completion, as the shell does, in a real process."""
    cword = len(words.split()) - (0 if words.endswith(" ") else 1)
    env = {**os.environ, "COMP_WORDS": words, "COMP_CWORD": str(cword), "_HAMUSTRO_COMPLETE": "bash_complete"}
    code = "from hamustro_cli.cli import main; main()"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.splitlines()


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        ("hamustro --config ", ["file,"]),
        ("hamustro --config ./conf", ["file,./conf"]),
        ("hamustro --spool-dir /var/", ["dir,/var/"]),
        ("hamustro collector --out ev", ["file,ev"]),
    ],
)
def test_path_options_complete_paths(words: str, expected: list[str]) -> None:
    assert complete(words) == expected


def test_commands_still_complete() -> None:
    assert "plain,events" in complete("hamustro ev")


@pytest.mark.parametrize("command", [[], ["track"], ["flush"], ["events"], ["events", "drop"]])
def test_help_shows_examples(command: list[str]) -> None:
    out = invoke(*command, "--help").stdout
    examples = out.split("Examples:", 1)[1].splitlines()[1:3]
    assert all(line.startswith("    hamustro ") for line in examples), out


def test_api_logs_through_the_hamustro_logger(config: Path, caplog: pytest.LogCaptureFixture) -> None:
    from hamustro_cli import ClientTracker

    caplog.set_level(logging.DEBUG, logger="hamustro")
    with ClientTracker.from_config() as tracker:
        tracker.track_event("a")
        tracker.flush()
    messages = [(r.name, r.levelno, r.getMessage()) for r in caplog.records]
    assert ("hamustro", logging.INFO, messages[0][2]) == messages[0] and "queued 1 event" in messages[0][2]
    assert any(level == logging.DEBUG for _, level, _ in messages)  # requests and answers
    assert any("sent 1 event" in m for _, _, m in messages)


def test_track_does_not_import_logging(config: Path) -> None:
    code = "import sys; from hamustro_cli.cli import main; sys.argv = ['hamustro', 'track', 'a']\n"
    code += "try:\n    main()\nexcept SystemExit:\n    pass\nprint('logging' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr


def test_track_with_params_does_not_import_json(config: Path) -> None:
    """--param builds its JSON object with json's C quoting alone: importing json is about 1 ms
    of `track`'s start, and nothing on that path parses JSON."""
    code = "import sys; from hamustro_cli.cli import main\n"
    code += "sys.argv = ['hamustro', 'track', 'a', '--param', 'k=v', '--param', 'q=\"x\"']\n"
    code += "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
    code += "print('json' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "False", proc.stderr
