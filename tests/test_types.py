"""The package is a typed API other programs import: mypy --strict (settings in pyproject.toml)
finds nothing. The tests are checked too, strictly but for what pytest makes noise of (below).
One mypy run covers both (two runs would each check the package, and each would throw away the
other's cache: their options differ)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("mypy", reason="mypy is not installed (the `dev` extra); CI runs it")

# mypy --strict, relaxed in tests/ where strictness buys nothing there:
# - test functions and fixtures need not annotate their parameters and return (pytest injects
#   them by name; `-> None` on 800 functions says nothing), and may call each other so; their
#   bodies are still checked (--check-untyped-defs), so a wrong call into the package is found;
# - a helper may return Any (no-any-return): what it returns comes from json, protobuf (no
#   stubs installed) or an unannotated fixture, all Any by nature.
# The package gets these four back from its override in pyproject.toml (per-module settings
# win over the command line's), so it is checked with all of --strict; test_the_package_is_
# checked_strictly proves it. The settings for the libraries without stubs apply here too.
TESTS_RELAXED = [
    "--strict",
    "--allow-untyped-defs",
    "--allow-incomplete-defs",
    "--allow-untyped-calls",
    "--check-untyped-defs",
    "--no-warn-return-any",
]


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", *TESTS_RELAXED, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


@pytest.mark.heavy
def test_mypy_strict_over_the_package_and_the_tests():
    result = mypy("hamustro_cli", "tests")
    assert result.returncode == 0, result.stdout + result.stderr


CALLER = """\
from hamustro_cli import ClientTracker, Status

tracker = ClientTracker.from_config()
tracker.track_event("signup", user_id=42, params={"plan": "pro"})
status: Status = tracker.status()
pending: int = status["pending"] + status["sessions"][0]["pending"]
session: str = tracker.session_status()["session"]
"""
MISTAKES = {  # a line a caller could write: what mypy must say about it
    'tracker.track_evnt("signup")': '"ClientTracker" has no attribute "track_evnt"',
    'tracker.track_event("signup", user_id="42")': 'Argument "user_id" to "track_event" of "ClientTracker"',
    'print(tracker.status()["pendng"])': '"Status" has no key "pendng"',
    'print(tracker.session_status()["last_nr"] + "")': 'Unsupported operand types for + ("int" and "str")',
    "from hamustro_cli import ClientTraker": 'Module "hamustro_cli" has no attribute "ClientTraker"',
}


def test_a_callers_typos_and_wrong_types_are_found(tmp_path: Path):
    """`from hamustro_cli import ClientTracker` as the README writes it is typed (not the Any of
    the lazy `__getattr__`), and so is what status() and session_status() return."""
    script = tmp_path / "caller.py"
    script.write_text(CALLER)
    clean = mypy("--strict", str(script))
    assert clean.returncode == 0, clean.stdout + clean.stderr
    script.write_text(CALLER + "\n".join(MISTAKES) + "\n")
    found = mypy("--strict", str(script)).stdout.splitlines()
    first = CALLER.count("\n") + 1
    for number, (line, expected) in enumerate(MISTAKES.items(), first):
        said = [text for text in found if f"caller.py:{number}:" in text]
        assert any(expected in text for text in said), (line, said, found)


def test_the_package_is_checked_strictly(tmp_path):
    """What the tests' run relaxes, pyproject.toml's override takes back for hamustro_cli: a probe
    package of that name with each fault --strict finds gets each one reported."""
    (tmp_path / "hamustro_cli").mkdir()
    (tmp_path / "hamustro_cli" / "__init__.py").write_text(
        "from typing import Any\n"
        "def untyped(x):\n    return x\n"
        "def incomplete(x: int, y) -> int:\n    return x\n"
        "def typed(x: Any) -> int:\n    return untyped(x)\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", "--config-file", str(ROOT / "pyproject.toml")]
        + ["--cache-dir", str(tmp_path / "cache"), *TESTS_RELAXED, "hamustro_cli"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    found = {
        (line.split(":")[1], line.rsplit("[", 1)[-1].rstrip("]"))
        for line in result.stdout.splitlines()
        if ": error:" in line
    }
    untyped, incomplete, any_return, untyped_call = (
        ("2", "no-untyped-def"),
        ("4", "no-untyped-def"),
        ("7", "no-any-return"),
        ("7", "no-untyped-call"),
    )
    assert found == {untyped, incomplete, any_return, untyped_call}, result.stdout + result.stderr
