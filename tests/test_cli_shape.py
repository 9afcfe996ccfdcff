"""The CLI's conventions kept in one place: the exit code of how a command ended (errors.py,
for the commands and the background flush alike), the vocabularies as enums, broken standard
streams, and decisions taken on kinds, never on the text of a message."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path

import pytest
from conftest import SETTINGS, ScriptedServer, invoke, spawned_env, write_config

from hamustro_cli.config import load_config
from hamustro_cli.tracker import ClientTracker, Outcome

PACKAGE = Path(__file__).resolve().parent.parent / "hamustro_cli"


def test_the_background_flush_exits_3_when_the_spool_cannot_be_used(isolated):
    # the same code as `hamustro flush` gives for a SpoolError (before: a literal 2)
    write_config(isolated / "config.toml", collector_url="http://127.0.0.1:9", **SETTINGS)
    env = spawned_env()
    not_a_dir = isolated / "not-a-dir"
    not_a_dir.write_text("a file where the spool directory should be\n")
    env["HAMUSTRO_SPOOL_DIR"] = str(not_a_dir)
    flush = invoke("--spool-dir", str(not_a_dir), "flush", expect=None)
    child = subprocess.run(
        [sys.executable, "-m", "hamustro_cli.background"], capture_output=True, text=True, timeout=60, env=env
    )
    assert flush.exit_code == 3, flush.output
    assert child.returncode == 3, child.stderr
    assert "Traceback" not in child.stderr and str(not_a_dir) in child.stderr
    assert not_a_dir.read_text() == "a file where the spool directory should be\n"


@pytest.mark.parametrize("as_json", [False, True])
def test_events_list_into_a_closed_pipe_exits_0_and_leaks_no_descriptor(isolated, as_json):
    """`hamustro events list | head -c0`: the reader has what it wanted; the command ends with
    0, as when every line was read, and pointing stdout at /dev/null leaves no descriptor open
    behind it."""
    write_config(isolated / "config.toml", collector_url="http://127.0.0.1:9", **SETTINGS)
    invoke("track", "--stdin", input="".join(f'{{"event": "e{i}"}}\n' for i in range(50)))
    argv = ["hamustro", "events", "list", *(["--json"] if as_json else [])]
    code = (
        "import os, sys\n"
        "from hamustro_cli.cli import main\n"
        f"sys.argv = {argv!r}\n"
        "before = len(os.listdir('/proc/self/fd'))\n"
        "status = 0\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    status = exc.code\n"
        "after = len(os.listdir('/proc/self/fd'))\n"
        "os.write(2, f'fds {before} {after} status {status}'.encode())\n"
    )
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        child = subprocess.run(
            [sys.executable, "-u", "-c", code], stdout=write, stderr=subprocess.PIPE, text=True, timeout=60
        )
    finally:
        os.close(write)
    assert child.returncode == 0, child.stderr
    before, after, _, status = child.stderr.rsplit("fds ", 1)[1].split()
    assert status in ("0", "None"), child.stderr
    assert after == before, child.stderr


def test_track_outcomes_are_an_enum_printed_as_their_strings(isolated):
    write_config(isolated / "config.toml", collector_url="http://127.0.0.1:9", **SETTINGS)
    assert issubclass(Outcome, Enum)
    assert {o.value for o in Outcome} == {
        "not-due",
        "started",
        "running",
        "sent",
        "failed",
        "off",
        "backoff",
        "halted",
    }
    printed = json.loads(invoke("track", "a", "--no-flush", "--json").stdout)
    assert printed["flush"] == "not-due"
    with ClientTracker(config=load_config().require()) as tracker:
        result = tracker.track_event("b", flush=False)
    # still equal to its string, for callers that compared with the old string constants
    assert result.flush is Outcome.NOT_DUE and str.__eq__(result.flush, "not-due")


def test_a_halted_flush_report_says_why_beside_the_flag(isolated):
    server = ScriptedServer([403])
    try:
        write_config(isolated / "config.toml", collector_url=server.url, **SETTINGS)
        invoke("track", "a")
        with ClientTracker(config=load_config().require()) as tracker:
            stopped = tracker.flush()
            again = tracker.flush(if_due=True)
            stored = tracker.spool.sync_state(tracker.destination).halt_reason
    finally:
        server.close()
    assert stored and "403" in stored
    assert stopped.halted and stopped.halted_reason == stored
    assert again.halted and again.halted_reason == stored and again.skip is not None


# -- decisions on kinds, never on text -----------------------------------------------------------

# The texts a decision must not read: an exception's message, and the words a report keeps for
# people beside its kind (FlushReport.skipped beside .skip, .halted_reason beside .halted,
# TrackResult.flush_detail beside .flush), read from a `report` or a `result` as every caller
# names them (doctor's Check.skipped is a flag, not a text).
PEOPLE_TEXT = {"skipped", "flush_detail", "halted_reason"}
REPORTS = {"report", "result"}
# Found in the spool's own modules, which another room is reworking (issue 17, item 2): listed
# here so that no new one appears; each goes when its module is redone.
SPOOL_ROOM = {("spool/text.py", "in str(exc)"), ("migrations.py", "in str(exc)")}


def _is_text_of_exception(node: ast.AST, caught: set[str]) -> bool:
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("str", "repr"):
        return any(isinstance(a, ast.Name) and a.id in caught for a in node.args)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):  # str(exc).lower()
        return _is_text_of_exception(node.func.value, caught)
    if isinstance(node, ast.Subscript):  # exc.args[0]
        return _is_text_of_exception(node.value, caught)
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in caught:
        return node.attr in ("args", "message", "msg", "strerror")
    return False


def _conditions(test: ast.AST) -> list[ast.AST]:
    """What an `if` tests, through `and`, `or` and `not`."""
    if isinstance(test, ast.BoolOp):
        return [c for value in test.values for c in _conditions(value)]
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return _conditions(test.operand)
    return [test]


def _decisions_on_text(tree: ast.Module) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    caught: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ExceptHandler) and node.name:
            caught.add(node.name)
    for node in ast.walk(tree):
        tests: list[ast.AST] = []
        if isinstance(node, ast.Compare):
            for side in [node.left, *node.comparators]:
                if _is_text_of_exception(side, caught):
                    op = "in" if any(isinstance(o, (ast.In, ast.NotIn)) for o in node.ops) else "=="
                    found.append((node.lineno, f"{op} str(exc)" if op == "in" else "== exception text"))
            tests = [node.left, *node.comparators]
        elif isinstance(node, (ast.If, ast.IfExp, ast.While)):
            tests = list(_conditions(node.test))
        for test in tests:
            if (
                isinstance(test, ast.Attribute)
                and test.attr in PEOPLE_TEXT
                and isinstance(test.value, ast.Name)
                and test.value.id in REPORTS
            ):
                found.append((test.lineno, f"decides on .{test.attr}"))
    return found


def test_no_decision_is_taken_from_the_text_of_a_message():
    offenders = set()
    where = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for line, what in _decisions_on_text(ast.parse(path.read_text(), str(path))):
            name = path.relative_to(PACKAGE).as_posix()
            if (name, what.replace("not in", "in")) not in SPOOL_ROOM:
                offenders.add(name)
                where.append(f"{name}:{line}: {what}")
    assert not where, "decide on a kind (an enum), not on a message:\n" + "\n".join(where)


def test_the_source_check_sees_a_decision_on_text():
    caught = ast.parse(
        "try:\n    pass\nexcept OSError as exc:\n    if 'locked' in str(exc):\n        pass\n"
        "    if exc.args[0] == 'x':\n        pass\n"
        "if report.skipped:\n    pass\n"
    )
    assert [w for _, w in sorted(_decisions_on_text(caught))] == [
        "in str(exc)",
        "== exception text",
        "decides on .skipped",
    ]


# -- one home for each rule -----------------------------------------------------------------------


def _modules() -> dict[str, ast.Module]:
    return {
        path.relative_to(PACKAGE).as_posix(): ast.parse(path.read_text(), str(path))
        for path in PACKAGE.rglob("*.py")
        if path.stem != "payload_pb2"
    }


def _text(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


RULES: dict[str, Callable[[ast.AST], bool]] = {
    # the TOML reader: tomllib, or tomli before Python 3.11
    "toml reader": lambda n: (
        isinstance(n, ast.Import) and any(a.name in ("tomllib", "tomli") for a in n.names)
    ),
    # environment variable names (HAMUSTRO_<KEY>), written as code rather than in help texts
    "HAMUSTRO_ prefix": lambda n: (_text(n) or "").startswith("HAMUSTRO_") and " " not in (_text(n) or ""),
    # flag names from key names (collector_url: --collector-url)
    "flag names": lambda n: (
        isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and n.func.attr == "replace"
        and [_text(a) for a in n.args] == ["_", "-"]
    ),
    # the secret masked in a text, and shown only as set or unset
    "secret mask": lambda n: _text(n) == "***",
    "secret shown": lambda n: (
        isinstance(n, ast.IfExp) and (_text(n.body), _text(n.orelse)) == ("set", "unset")
    ),
}


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_config_rule_is_written_once_in_config_py(rule):
    homes = {name for name, tree in _modules().items() if any(RULES[rule](n) for n in ast.walk(tree))}
    assert homes == {"config.py"}, rule
