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
