"""A spool on a read-only mount (issue 14, class 5): `status`, `events list`, `events show` and
`doctor` read it; `track`, `flush`, `events requeue` and `events drop` refuse with exit 3,
saying it is read-only, and nothing in it changes. Real tmpfs mounts (root only: skipped,
saying so, where mounting is not allowed), a real writer holding a live WAL."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import RunningCollector, invoke

from hamustro_cli.spool import DB_NAME
from hamustro_cli.spooldir import CACHE_NAME


def mount(*args: str) -> None:
    result = subprocess.run(["mount", *args], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount here ({result.stderr.strip() or result.returncode}): needs root")


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Path]:
    """A fresh tmpfs, read-write until a test remounts it."""
    path = tmp_path / "mnt"
    path.mkdir()
    mount("-t", "tmpfs", "-o", "size=16m,mode=0700", "tmpfs", str(path))
    yield path
    umount(path)


def files(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def error_line(output: str, *words: str) -> str:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("hamustro: error:")]
    assert len(lines) == 1, output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def read_only_spool(config: Path, mnt: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Three events queued, the last writer gone (no -wal, no -shm left), then the mount made
    read-only."""
    spool = mnt / "spool"
    monkeypatch.setenv("HAMUSTRO_SPOOL_DIR", str(spool))
    for name in ("one", "two", "three"):
        invoke("track", name)
    assert sorted(p.name for p in spool.iterdir()) == [CACHE_NAME, DB_NAME]  # no -wal, no -shm
    mount("-o", "remount,ro", str(mnt))
    return spool


def test_reading_commands_work_on_a_read_only_mount(read_only_spool: Path) -> None:
    before = files(read_only_spool)
    status = json.loads(invoke("status", "--json").stdout)
    assert status["pending"] == 3
    assert "three" in invoke("status", "--events").stdout
    rows = [json.loads(line) for line in invoke("events", "list", "--json").stdout.splitlines()]
    assert [r["event"] for r in rows] == ["one", "two", "three"]
    shown = json.loads(invoke("events", "show", str(rows[0]["id"]), "--json").stdout)
    assert shown["event"]["event"] == "one"
    assert invoke("session").stdout.strip() == rows[0]["session"]
    doctor = invoke("doctor", "--json", expect=1)
    assert "Traceback" not in doctor.output
    spool_check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "spool")
    assert "read-only file system" in spool_check["verdict"] and "3 pending" in spool_check["verdict"]
    assert files(read_only_spool) == before


@pytest.mark.parametrize(
    "command",
    [
        ["track", "four"],
        ["track", "--stdin"],
        ["flush"],
        ["flush", "--if-due"],
        ["events", "requeue", "--state", "rejected"],
        ["events", "drop", "--state", "pending", "--yes"],
    ],
    ids=["track", "track-stdin", "flush", "flush-if-due", "requeue", "drop"],
)
def test_writing_commands_refuse_saying_why(
    read_only_spool: Path, collector: RunningCollector, command: list[str]
) -> None:
    before = files(read_only_spool)
    result = invoke(*command, input='{"event": "x"}\n', expect=3)
    error_line(result.output, "read-only file system", "nothing was changed")
    assert files(read_only_spool) == before
    assert collector.received() == []


def test_a_live_wal_is_read_through_a_read_only_bind_mount(config: Path, mnt: Path, tmp_path: Path) -> None:
    """Another process writes the spool through a read-write path and holds changes in its WAL
    (not yet in the database file): a read through a read-only view of the same directory sees
    them (SQLite reads the -wal through the existing -shm; `immutable` would not)."""
    spool = mnt / "spool"
    invoke("--spool-dir", str(spool), "track", "before")
    view = tmp_path / "view"
    view.mkdir()
    mount("--bind", str(mnt), str(view))
    try:
        mount("-o", "remount,bind,ro", str(view))
        writer = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sqlite3, sys\n"
                f"db = sqlite3.connect({str(spool / DB_NAME)!r}, isolation_level=None)\n"
                "db.execute('PRAGMA wal_autocheckpoint = 0')\n"
                "db.execute(\"UPDATE events SET event = 'changed-in-the-wal'\")\n"
                "print('written', flush=True)\n"
                "sys.stdin.read()\n",  # holds the connection (and the WAL) until told
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert writer.stdout is not None and writer.stdout.readline() == "written\n"
            assert (view / "spool" / (DB_NAME + "-wal")).exists()
            out = invoke("--spool-dir", str(view / "spool"), "events", "list", "--json").stdout
            assert [json.loads(line)["event"] for line in out.splitlines()] == ["changed-in-the-wal"]
            result = invoke("--spool-dir", str(view / "spool"), "track", "refused", expect=3)
            error_line(result.output, "read-only file system")
        finally:
            writer.communicate("", timeout=30)
    finally:
        umount(view)


def test_a_wal_without_its_shm_on_a_read_only_mount_is_a_clear_error(
    config: Path, mnt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changes in a -wal cannot be read without the -shm, which a read-only mount cannot get:
    said in one line (exit 3), never a traceback, and not read as if the -wal were not there."""
    work = tmp_path / "work"
    invoke("--spool-dir", str(work), "track", "queued")
    import sqlite3

    db = sqlite3.connect(work / DB_NAME, isolation_level=None)
    db.execute("PRAGMA wal_autocheckpoint = 0")
    db.execute("UPDATE events SET event = 'only-in-the-wal'")
    spool = mnt / "spool"
    spool.mkdir(mode=0o700)
    for name in (DB_NAME, DB_NAME + "-wal"):  # what a crash leaves, less the -shm
        (spool / name).write_bytes((work / name).read_bytes())
        (spool / name).chmod(0o600)
    db.close()
    mount("-o", "remount,ro", str(mnt))
    monkeypatch.setenv("HAMUSTRO_SPOOL_DIR", str(spool))
    result = invoke("events", "list", expect=3)
    error_line(result.output, str(spool), "read-only file system", "-shm")
