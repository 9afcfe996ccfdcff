"""Numbers at the edges (issue 14, class 5): every number a command takes that reaches the spool
(an event id, --limit, --since/--until) or the collector (--at, stdin `at`) is checked against
what they can hold; past it, exit 2 with one `hamustro: error:` line naming the argument, never a
traceback, and the spool as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import invoke

SQLITE_INT_MAX = 2**63 - 1
AT_MAX = 253_402_300_799  # 9999-12-31T23:59:59Z

TOO_BIG = str(SQLITE_INT_MAX + 1)  # 9223372036854775808
HUGE = "9" * 30


def error_line(output: str) -> str:
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("hamustro: error:")]
    assert len(errors) == 1, output
    return errors[0]


def queued() -> list[dict[str, object]]:
    return [json.loads(line) for line in invoke("events", "list", "--json").stdout.splitlines()]


@pytest.fixture
def two_events(config: Path) -> list[dict[str, object]]:
    invoke("track", "first")
    invoke("track", "second")
    return queued()


@pytest.mark.parametrize("number", [TOO_BIG, HUGE])
@pytest.mark.parametrize(
    "command",
    [
        ["events", "show", "{}"],
        ["events", "drop", "{}", "--yes"],
        ["events", "requeue", "{}"],
        ["events", "list", "--limit", "{}"],
        ["events", "drop", "--state", "pending", "--limit", "{}", "--yes"],
        ["events", "requeue", "--limit", "{}"],
        ["status", "--events", "--limit", "{}"],
    ],
    ids=["show", "drop-id", "requeue-id", "list-limit", "drop-limit", "requeue-limit", "status-limit"],
)
def test_ids_and_limits_beyond_sqlite_integers_are_usage_errors(
    two_events: list[dict[str, object]], command: list[str], number: str
) -> None:
    args = [a.format(number) for a in command]
    result = invoke(*args, expect=2)
    line = error_line(result.output)
    assert "ID" in line or "--limit" in line, line
    assert queued() == two_events


def test_an_id_past_sqlite_integers_is_refused_and_the_largest_accepted(
    two_events: list[dict[str, object]],
) -> None:
    assert "ID" in error_line(invoke("events", "show", TOO_BIG, expect=2).output)
    largest = str(SQLITE_INT_MAX)
    assert "no event with id" in error_line(invoke("events", "show", largest, expect=2).output)
    assert len(queued()) == 2
    assert len(invoke("events", "list", "--json", "--limit", largest).stdout.splitlines()) == 2
    invoke("events", "drop", largest, "--yes")
    assert queued() == two_events


@pytest.mark.parametrize("flag", ["--since", "--until"])
@pytest.mark.parametrize("number", [TOO_BIG, "1" + "0" * 19])
def test_time_filters_past_sqlite_integers_select_exactly(
    two_events: list[dict[str, object]], flag: str, number: str
) -> None:
    """No event is later than what SQLite stores: --since such a time selects none, --until all."""
    out = invoke("events", "list", "--json", flag, number).stdout.splitlines()
    assert len(out) == (0 if flag == "--since" else 2)


LAST = "9999-12-31T23:59:59Z"


@pytest.mark.parametrize(
    "at",
    [str(AT_MAX + 1), str(2**63 - 1), str(2**62), "253402300800.5"],
)
def test_at_past_year_9999_is_refused(two_events: list[dict[str, object]], at: str) -> None:
    """The collector stores `at` as a date with a four-digit year: later ones came out as
    10000-01-01 or a year in the billions."""
    line = error_line(invoke("track", "late", "--at", at, expect=2).output)
    assert "--at" in line and "9999-12-31T23:59:59Z" in line, line
    assert queued() == two_events


@pytest.mark.parametrize("at", [AT_MAX + 1, 2**62, 2**63 - 1])
def test_stdin_at_past_year_9999_is_refused(two_events: list[dict[str, object]], at: int) -> None:
    lines = json.dumps({"event": "ok"}) + "\n" + json.dumps({"event": "late", "at": at}) + "\n"
    line = error_line(invoke("track", "--stdin", input=lines, expect=2).output)
    assert "stdin line 2" in line and "9999-12-31T23:59:59Z" in line, line
    assert queued() == two_events


def test_at_is_refused_one_second_past_9999_and_accepted_up_to_it(
    two_events: list[dict[str, object]],
) -> None:
    invoke("track", "late", "--at", str(AT_MAX + 1), expect=2)
    invoke("track", "last", "--at", LAST)
    invoke("track", "--stdin", input=json.dumps({"event": "last-stdin", "at": AT_MAX}) + "\n")
    invoke("track", "first-second", "--at", "0")
    assert [(e["event"], e["at"]) for e in queued()[2:]] == [
        ("last", AT_MAX),
        ("last-stdin", AT_MAX),
        ("first-second", 0),
    ]
