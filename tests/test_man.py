"""The man pages: generated from the Click definitions (tools/gen_man.py), committed current,
and shipped in the wheel as share/man/man1 data files, where `man` finds them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import build_from_copy

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import gen_man  # type: ignore[import-not-found]  # noqa: E402  (tools/ is put on the path above)

COMMANDS = ["track", "flush", "status", "session", "doctor", "collector"]
COMMANDS += [f"events-{name}" for name in ("list", "show", "requeue", "drop", "claim")]
COMMANDS += [f"config-{name}" for name in ("init", "path", "set", "show")]


def test_the_committed_pages_are_current(tmp_path: Path):
    fresh = gen_man.generate(tmp_path)
    committed = {page.name: page.read_text() for page in gen_man.OUT.glob("*.1")}
    stale = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
    assert not stale, f"man/man1 is stale ({stale}): run python tools/gen_man.py and commit it"


def test_a_page_for_hamustro_and_every_command():
    names = {page.name for page in gen_man.OUT.glob("*.1")}
    assert {"hamustro.1", *(f"hamustro-{command}.1" for command in COMMANDS)} <= names
    track = (gen_man.OUT / "hamustro-track.1").read_text()
    assert track.startswith(".TH HAMUSTRO-TRACK 1 ")
    assert "\\-\\-user\\-id" in track and ".SH OPTIONS" in track


def test_the_wheel_ships_the_pages_and_man_finds_them_once_installed(tmp_path: Path):
    pytest.importorskip("setuptools", minversion="77", reason="needs setuptools 77+ (the `dev` extra)")
    # without isolation: the dev extra brings setuptools, no index is needed
    built = build_from_copy(
        tmp_path, "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path)
    )
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    (wheel,) = tmp_path.glob("hamustro_cli-*.whl")
    assert f"pipx install dist/{wheel.name}" in (ROOT / "README.md").read_text()  # the Quick start's
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name.rsplit("/", 1)[1] for name in archive.namelist() if "/data/share/man/man1/" in name}
    assert shipped == {page.name for page in gen_man.OUT.glob("*.1")}

    prefix = tmp_path / "prefix"
    installed = subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed"]
        + ["--prefix", str(prefix)]
        + [str(wheel)],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    pages = prefix / "share" / "man"
    assert (pages / "man1" / "hamustro-track.1").is_file()
    if shutil.which("man") is None:
        pytest.skip("no man program here: the installed page was found, not rendered")
    shown = subprocess.run(
        ["man", "-M", str(pages), "hamustro-track"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "MANPAGER": "cat", "PAGER": "cat", "MANWIDTH": "80"},
    )
    assert shown.returncode == 0, shown.stderr
    assert "hamustro track" in shown.stdout and "--user-id" in shown.stdout
