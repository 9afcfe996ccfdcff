"""The package is a typed API other programs import: mypy --strict (settings in pyproject.toml)
finds nothing. The tests are checked too, strictly but for what pytest makes noise of (below)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("mypy", reason="mypy is not installed (the `dev` extra); CI runs it")

# mypy --strict over tests/, relaxed where strictness buys nothing there:
# - test functions and fixtures need not annotate their parameters and return (pytest injects
#   them by name; `-> None` on 800 functions says nothing), and may call each other so; their
#   bodies are still checked (--check-untyped-defs), so a wrong call into the package is found;
# - a helper may return Any (no-any-return): what it returns comes from json, protobuf (no
#   stubs installed) or an unannotated fixture, all Any by nature.
# The settings for the libraries without stubs (pyproject.toml) apply here too.
TESTS_RELAXED = [
    "--strict",
    "--allow-untyped-defs",
    "--allow-incomplete-defs",
    "--allow-untyped-calls",
    "--check-untyped-defs",
    "--disable-error-code=no-any-return",
]


def mypy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--no-error-summary", *args], cwd=ROOT, capture_output=True, text=True
    )


def test_mypy_strict():
    result = mypy()
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_over_the_tests():
    result = mypy(*TESTS_RELAXED, "tests")
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
