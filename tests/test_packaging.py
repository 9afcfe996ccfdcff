"""The sdist a distribution builds from holds what the README and the tests need."""

from __future__ import annotations

import subprocess
import tarfile
from pathlib import Path

import pytest
from conftest import build_from_copy

ROOT = Path(__file__).resolve().parent.parent
# Needed whatever else is tracked: the tests, their helpers and the files they read.
ESSENTIAL = {
    "LICENSE",
    "README.md",
    "pyproject.toml",
    "MANIFEST.in",
    "config.example.toml",
    ".ci/run",
    "proto/payload.proto",
    "hamustro_cli/py.typed",
    "hamustro_cli/payload_descriptor.py",
    "tests/conftest.py",
    "tests/specschema.py",
    "tools/gen_proto.py",
    "tools/gen_man.py",
    "man/man1/hamustro.1",
    "man/man1/hamustro-track.1",
    "tools/demo.sh",
    "contrib/hamustro-flush.service",
}
NOT_SHIPPED = {".gitignore"}


def tracked() -> set[str] | None:
    """The files git tracks here, or None outside a git checkout (an unpacked sdist)."""
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return {name for name in out.decode().split("\0") if name and (ROOT / name).exists()}


@pytest.mark.heavy
def test_sdist_holds_what_the_tests_and_readme_need(tmp_path: Path):
    pytest.importorskip("build", reason="build is not installed (the `dev` extra); CI runs this")
    pytest.importorskip("setuptools", minversion="77", reason="needs setuptools 77+ (the `dev` extra)")
    # without isolation: the dev extra brings setuptools, no index is needed
    result = build_from_copy(tmp_path, "build", "--sdist", "--no-isolation", "--outdir", str(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (sdist,) = tmp_path.glob("hamustro_cli-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {name.split("/", 1)[1] for name in tar.getnames() if "/" in name}
    shipped = {n for n in names if not n.startswith("hamustro_cli.egg-info/")} - {"PKG-INFO", "setup.cfg"}
    expected = (tracked() or shipped) - NOT_SHIPPED
    assert not ESSENTIAL - names, f"missing from the sdist: {sorted(ESSENTIAL - names)}"
    assert not expected - shipped, f"tracked but not in the sdist: {sorted(expected - shipped)}"
    stray = {
        n for n in shipped if "__pycache__" in n or n.endswith(".pyc") or n.startswith((".venv", "build/"))
    }
    assert not stray, f"stray files in the sdist: {sorted(stray)}"
    with tarfile.open(sdist) as tar:
        member = tar.extractfile(f"{sdist.name.removesuffix('.tar.gz')}/PKG-INFO")
        assert member is not None, "PKG-INFO is not a regular file in the sdist"
        pkg_info = member.read().decode()
    assert "License-Expression: MIT" in pkg_info and "License-File: LICENSE" in pkg_info
