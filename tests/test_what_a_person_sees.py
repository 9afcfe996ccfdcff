"""What a person reads (issue 18, items 3 and 9): counts in words, no Python values, no line
that contradicts another, one `hamustro: error:` / `hamustro: warning:` style for every
command (click's own usage errors included), and the doctor's skipped checks as a third state.
In-process (CliRunner) against the real local collector and a real spool in tmp_path."""

from __future__ import annotations

import json
import os
import re
import socket
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, invoke, start_collector, write_config

README = Path(__file__).resolve().parent.parent / "README.md"


def dead_url() -> str:
    """A loopback URL nobody listens on (connection refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def status_line(name: str) -> str:
    out = invoke("status").stdout
    return next(line for line in out.splitlines() if line.startswith(f"{name}:"))


# -- counts, values, lines that agree ------------------------------------------------------------


def test_a_flush_says_1_event_in_1_batch(config: Path) -> None:
    invoke("track", "signup")
    assert invoke("flush").stdout.startswith("sent 1 event in 1 batch; 0 pending")
    invoke("track", "--stdin", input='{"event": "a"}\n{"event": "b"}\n')
    assert invoke("flush", "--dry-run").stdout.startswith("dry run: 2 events in 1 batch, ")


def test_nothing_pending_is_said_without_a_dash(config: Path) -> None:
    assert status_line("next send") == "next send:  nothing pending"


def test_a_fresh_spool_does_not_say_never_synced_and_synced_within_retention(config: Path) -> None:
    invoke("track", "signup")
    assert status_line("last sync") == "last sync:  never"
    line = status_line("next send")
    assert "last sync" not in line and "since the spool was created" in line, line


def test_after_a_failed_flush_the_next_send_line_agrees_with_itself(isolated: Path) -> None:
    write_config(isolated / "config.toml", collector_url=dead_url(), **SETTINGS)
    invoke("track", "signup")
    invoke("flush", expect=1)
    line = status_line("next send")
    # the backoff ends in a minute or two; the next send is at queue_retention (a day): the
    # line says both, and which one it waits for after the backoff
    assert re.match(r"next send:  in 2[34]h \d+m: backing off after failures until ", line), line
    assert "; then sending once queue_size (20) is reached or 1440 min after" in line, line


def test_events_show_never_prints_python_values(config: Path) -> None:
    invoke("track", "signup")
    out = invoke("events", "show", "1").stdout
    assert not re.search(r"\b(None|True|False)\b", out), out
    assert "  user_id:     -\n" in out and "  is_testing:  no\n" in out, out
    invoke("track", "login", "--user-id", "7", "--testing")
    out = invoke("events", "show", "2").stdout
    assert "  user_id:     7\n" in out and "  is_testing:  yes\n" in out, out


def test_an_empty_queue_is_said_in_text_and_is_no_line_in_json(config: Path) -> None:
    assert invoke("events", "list").stdout == "no events queued\n"
    assert invoke("events", "list", "--json").stdout == ""
    invoke("track", "signup")
    assert invoke("events", "list", "--event", "nothing*").stdout == "no queued event matches\n"
    assert invoke("events", "list").stdout.startswith("      ID AT ")


# -- one style of error and warning ------------------------------------------------------------


def test_click_usage_errors_and_hamustro_errors_share_one_prefix(config: Path) -> None:
    for args in (["track", "--bogus"], ["events", "show", "x"], ["nosuchcommand"], ["track"]):
        err = invoke(*args, expect=2).stderr
        lines = err.splitlines()
        assert not any(line.startswith("Error") for line in lines), err
        assert [line for line in lines if line.startswith("hamustro: error: ")], err


def test_the_tls_off_warning_is_one_warning_line_that_quiet_does_not_hide(isolated: Path) -> None:
    """-q is for cron, which mails what is printed: a config that weakens security is said
    there too (errors and the config's security warnings; nothing else)."""
    write_config(isolated / "config.toml", collector_url=dead_url(), tls_verify=False, **SETTINGS)
    for args in (["status"], ["-q", "status"], ["-q", "track", "signup"], ["-q", "events", "list"]):
        err = invoke(*args).stderr
        assert err.startswith("hamustro: warning: TLS certificate verification is off"), (args, err)
        assert len(err.splitlines()) == 1, (args, err)


def test_a_missing_required_key_says_config_init_writes_a_config(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HAMUSTRO_CONFIG")  # the app dir's config.toml, which does not exist
    err = invoke("track", "signup", expect=2).stderr
    assert err.startswith("hamustro: error: missing required config key"), err
    assert "'hamustro config init' writes one" in err, err


def test_doctor_does_not_call_the_missing_config_not_needed_where_it_fails(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HAMUSTRO_CONFIG")
    out = invoke("doctor", expect=1).stdout
    line = next(line for line in out.splitlines() if "config:" in line)
    assert line.startswith("FAIL") and "not needed" not in line, line
    assert "'hamustro config init' writes one" in line, line


# -- doctor ------------------------------------------------------------------------------------


def test_doctor_json_gives_skipped_checks_neither_true_nor_false(isolated: Path) -> None:
    data = json.loads(invoke("doctor", "--json", expect=1).stdout)
    by_name = {c["name"]: c for c in data["checks"]}
    assert by_name["config"]["ok"] is False
    for name in ("collector", "credentials"):
        assert by_name[name]["state"] == "skipped" and by_name[name]["ok"] is None, by_name[name]


def test_doctor_quiet_prints_only_failing_checks(isolated: Path) -> None:
    out = invoke("-q", "doctor", expect=1).stdout
    assert [line.split()[0] for line in out.splitlines()] == ["FAIL"], out


def test_doctor_reports_a_link_at_flush_log_without_following_it(
    config: Path, spool_dir: Path, tmp_path: Path
) -> None:
    invoke("track", "signup")
    target = tmp_path / "elsewhere.log"
    target.write_text("someone's file\n")
    target.chmod(0o644)
    (spool_dir / "flush.log").symlink_to(target)
    out = invoke("doctor", expect=1).stdout
    line = next(line for line in out.splitlines() if "spool:" in line)
    assert line.startswith("FAIL") and "flush.log is a symbolic link" in line, line
    assert "chmod" not in line and "readable by other users" not in line, line
    assert os.stat(target).st_mode & 0o777 == 0o644  # nothing followed the link


def test_the_readme_says_doctor_tightens_the_spool_directory() -> None:
    doctor = README.read_text().split("## hamustro doctor", 1)[1].split("\n## ", 1)[0]
    assert "tightens" in doctor and "0700" in doctor


# -- README claims (item 9) --------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["background", "off", "inline"])
def test_track_flush_sends_before_it_returns_whatever_the_triggers_say(
    isolated: Path, collector: Any, mode: str
) -> None:
    settings = {**SETTINGS, "flush": mode}
    write_config(isolated / "config.toml", collector_url=collector.url, queue_size=1000, **settings)
    result = invoke("track", "signup", "--flush", "--json")
    assert json.loads(result.stdout)["flush"] == "sent"
    assert [e["event"] for e in collector.received()] == ["signup"]  # before track returned
    assert invoke("events", "list", "--json").stdout == ""


def test_track_flush_that_fails_is_a_warning_and_exit_0_with_the_event_queued(isolated: Path) -> None:
    write_config(isolated / "config.toml", collector_url=dead_url(), queue_size=1000, **SETTINGS)
    result = invoke("track", "signup", "--flush", "--json")  # exit 0: the event is queued
    assert json.loads(result.stdout)["flush"] == "failed"
    # one line: the warning says the sender's error, which is not printed again as an error
    [line] = result.stderr.splitlines()
    assert line.startswith("hamustro: warning: event queued, but the flush failed: cannot reach ")
    assert [json.loads(line)["event"] for line in invoke("events", "list", "--json").stdout.splitlines()] == [
        "signup"
    ]


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_track_stdin_with_no_event_queues_nothing_and_exits_0(config: Path, text: str) -> None:
    result = json.loads(invoke("track", "--stdin", "--json", input=text).stdout)
    assert result["queued"] == 0 and result["nr"] is None and result["at"] is None, result
    assert invoke("events", "list", "--json").stdout == ""


def test_requeue_with_no_id_and_no_filter_refuses_as_drop_does(config: Path, spool_dir: Path) -> None:
    invoke("track", "signup")
    for command in ("requeue", "drop"):
        result = invoke("events", command, expect=2)
        assert result.stderr == f"hamustro: error: name the events to {command}: IDs or a filter " + (
            "(e.g. --state rejected)\n"
        )
    assert invoke("events", "requeue", "--state", "rejected").stdout == "requeued 0 rejected events\n"


def test_config_show_marks_every_missing_required_key_as_required(isolated: Path) -> None:
    write_config(isolated / "config.toml", collector_url="http://127.0.0.1:9", device_id="d")
    rows = {line.split()[0]: line for line in invoke("config", "show").stdout.splitlines()[1:]}
    for key in ("shared_secret_key", "client_id", "system_version", "product_version"):
        assert rows[key].split()[1:3] == ["unset", "(required)"], rows[key]
    assert "(required)" not in rows["device_id"] and "(required)" not in rows["system"]


def test_a_collector_refusing_everything_gets_one_summary_line_per_flush(
    isolated: Path, tmp_path: Path
) -> None:
    picky = start_collector(tmp_path, "picky", reject_events=["bad"])
    try:
        write_config(isolated / "config.toml", collector_url=picky.url, **SETTINGS)
        lines = "".join(json.dumps({"event": "bad", "params": {"n": str(i)}}) + "\n" for i in range(70))
        invoke("track", "--stdin", input=lines)
        result = invoke("flush", expect=4)
        assert result.stderr.splitlines() == [
            "hamustro: warning: 70 events set aside as rejected, refused by the collector or stored as "
            "the wire cannot carry ('hamustro events list --state rejected' says why; "
            "'hamustro flush --retry-rejected' resends)"
        ], result.stderr
        invoke("flush", "--retry-rejected", expect=None)
        verbose = invoke("-v", "flush", "--retry-rejected", expect=4).stderr
        assert "set aside as rejected: " in verbose  # the details, when asked for
    finally:
        picky.server.stop()


def test_an_id_is_never_given_to_another_event_after_deletion(config: Path) -> None:
    invoke("track", "--stdin", input='{"event": "a"}\n{"event": "b"}\n{"event": "c"}\n')
    invoke("events", "drop", "3", "--yes")
    invoke("track", "d")
    invoke("flush")  # every event delivered: the table is empty
    invoke("track", "e")
    ids = [json.loads(line)["id"] for line in invoke("events", "list", "--json").stdout.splitlines()]
    assert ids == [5]  # not 3 (the dropped one's), nor 1 (the first of an empty table)


def test_events_list_says_its_order_and_keeps_it(config: Path) -> None:
    invoke("track", "late", "--at", "2026-11-28T12:00:00Z")
    invoke("track", "early", "--at", "2026-11-01T12:00:00Z")
    rows = [json.loads(line) for line in invoke("events", "list", "--json").stdout.splitlines()]
    assert [r["event"] for r in rows] == ["late", "early"]  # queue (id) order, not `at` order
    assert "in the order they were queued (by id, not by `at`)" in " ".join(
        invoke("events", "list", "--help").stdout.split()
    )
