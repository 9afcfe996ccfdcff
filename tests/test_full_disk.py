"""Issue 14, class 2: the disk fills. On a real tmpfs of its own (and under a real file-size
limit), a flush never sends the same batch again and again, a spool that filled the disk can be
drained, `track` queues nothing half-written, and every message names the file system and how
much room is needed.

Mounting needs root (and a kernel that lets this process mount): the tests skip, saying why,
where they cannot."""

from __future__ import annotations

import errno
import json
import os
import resource
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET, SETTINGS, invoke, run, serve_in_background, spawned_env, write_config
from test_cli_bad_input import one_error_line

from hamustro_cli.collector import make_server
from hamustro_cli.spooldir import FLUSH_ROOM, RESERVE_NAME

MIB = 1024 * 1024


def _mount(where: Path, size_mib: int) -> str | None:
    """Mount a tmpfs of `size_mib` at `where`; why not, or None."""
    if os.geteuid() != 0:
        return "mounting a tmpfs needs root"
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    return proc.stderr.strip() or f"mount exited {proc.returncode}" if proc.returncode else None


@pytest.fixture
def disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[int], Path]]:
    """mount(size_mib): a tmpfs of that size of its own, holding the spool (HAMUSTRO_SPOOL_DIR)."""
    mounted: list[Path] = []

    def mount(size_mib: int) -> Path:
        where = tmp_path / "disk"
        where.mkdir()
        why = _mount(where, size_mib)
        if why:
            pytest.skip(f"cannot mount a tmpfs for the spool: {why}")
        mounted.append(where)
        monkeypatch.setenv("HAMUSTRO_SPOOL_DIR", str(where / "spool"))
        return where

    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(where: Path, leave: int = 0) -> Path:
    """Fill the file system at `where` with a file of its own, then give `leave` bytes back."""
    path = where / f"filler-{len(list(where.glob('filler-*')))}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for chunk in (MIB, 4096):
            block = b"\0" * chunk
            while True:
                try:
                    os.write(fd, block)
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
        if leave:
            os.ftruncate(fd, max(0, os.fstat(fd).st_size - leave))
    finally:
        os.close(fd)
    return path


def free(where: Path) -> int:
    st = os.statvfs(where)
    return st.f_bfree * st.f_frsize


def use_collector(isolated: Path, url: str, **settings: Any) -> None:
    write_config(isolated / "config.toml", collector_url=url, **{**SETTINGS, **settings})


def track_many(n: int, params: str = "x" * 300, prefix: str = "e") -> None:
    lines = "".join(json.dumps({"event": f"{prefix}{i}", "params": params}) + "\n" for i in range(n))
    invoke("track", "--stdin", input=lines)


def copies(received: list[dict[str, Any]]) -> Counter[int]:
    return Counter(e["nr"] for e in received)


def spool_events(spool_dir: Path) -> list[tuple[Any, ...]]:
    with sqlite3.connect(spool_dir / "spool.sqlite3") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute("SELECT nr, event, state FROM events ORDER BY id").fetchall()
    conn.close()
    return rows


def names_room(message: str, where: Path) -> None:
    """The message says which file system, and how much to free there."""
    assert f"mounted at {where}" in message, message
    assert "free at least" in message and "MiB" in message, message


# -- a flush on a disk with too little room --------------------------------------------------


def test_flush_with_too_little_room_sends_nothing_then_each_event_once(
    disk: Callable[[int], Path], isolated: Path, collector: Any
) -> None:
    """The issue's loop: room for the mark and the -shm but not for the ack, so each flush sent
    the same batch and could not record the 200. Now nothing is sent until there is room."""
    where = disk(32)
    use_collector(isolated, collector.url, disk_reserve=False)
    track_many(1500)
    filler = fill(where, leave=96 * 1024)
    for _ in range(3):
        result = invoke("flush", expect=3)
        message = one_error_line(result.output)
        assert "nothing was sent" in message
        names_room(message, where)
    assert collector.received() == []  # not one batch went out, let alone three times
    status = json.loads(invoke("status", "--json").output)
    assert status["pending"] == 1500 and f"mounted at {where}" in status["no_room"]
    text = invoke("status").output
    assert "disk:       FULL" in text
    assert invoke("status", "--check", expect=4).exit_code == 4
    filler.unlink()
    invoke("flush")
    assert copies(collector.received()) == Counter(range(1, 1501))
    assert json.loads(invoke("status", "--json").output)["no_room"] is None


def test_flush_under_a_file_size_limit_sends_nothing(isolated: Path, spool_dir: Path, collector: Any) -> None:
    """A file-size limit (ulimit -f) below what recording the answer may write: the same loop
    with EFBIG; SIGXFSZ is ignored, the flush refuses to send and says which limit."""
    use_collector(isolated, collector.url, disk_reserve=False)
    track_many(1500)
    limit = 300 * 1024  # above the -shm and a mark, below the ack's WAL
    for _ in range(2):
        proc = run(
            "flush",
            env={"PYTHONDONTWRITEBYTECODE": "1"},
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)),
        )
        assert proc.returncode == 3, (proc.returncode, proc.stderr)
        message = one_error_line(proc.stderr)
        assert "ulimit -f" in message and "300 KiB" in message and "nothing was sent" in message
    assert collector.received() == []
    invoke("flush")
    assert copies(collector.received()) == Counter(range(1, 1501))


# -- the reserve ------------------------------------------------------------------------------


def test_full_disk_with_the_reserve_drains_once(
    disk: Callable[[int], Path], isolated: Path, collector: Any
) -> None:
    """Another program filled the disk to the last byte: the flush frees the reserve, delivers
    every event once, gives the room back, and the reserve comes back once there is room."""
    where = disk(32)
    spool_dir = where / "spool"
    use_collector(isolated, collector.url)
    invoke("flush")  # nothing to send; allocates the reserve while there is room
    reserve = spool_dir / RESERVE_NAME
    assert reserve.stat().st_blocks * 512 >= FLUSH_ROOM and oct(reserve.stat().st_mode)[-3:] == "600"
    track_many(3000)
    filler = fill(where)
    assert free(where) < 64 * 1024
    line = one_error_line(invoke("track", "late", expect=3).output)  # no room to queue: said so
    assert f"mounted at {where}" in line and "free at least" in line and RESERVE_NAME in line
    invoke("flush")
    assert copies(collector.received()) == Counter(range(1, 3001))
    assert spool_events(spool_dir) == []
    assert not reserve.exists()  # used, and no room to keep it: the other program holds the disk
    filler.unlink()
    invoke("flush")
    assert reserve.stat().st_blocks * 512 >= FLUSH_ROOM  # allocated again
    assert copies(collector.received()) == Counter(range(1, 3001))


def test_a_spool_that_filled_the_disk_is_drained(
    disk: Callable[[int], Path], isolated: Path, collector: Any
) -> None:
    """The spool itself filled the disk (tracks until `track` exits 3): a flush can still start,
    delivers everything once, and the file system gets the room back."""
    where = disk(40)
    spool_dir = where / "spool"
    use_collector(isolated, collector.url)
    invoke("flush")
    big = "p" * 60000
    queued = 0
    for round_ in range(100):
        lines = "".join(json.dumps({"event": f"r{round_}", "params": big}) + "\n" for _ in range(20))
        result = invoke("track", "--stdin", input=lines, expect=None)
        if result.exit_code:
            assert result.exit_code == 3, result.output
            names_room(one_error_line(result.output), where)
            break
        queued += 20
    else:
        pytest.fail("the spool never filled its disk")
    assert len(spool_events(spool_dir)) == queued  # the refused batch left nothing behind
    invoke("flush")
    assert copies(collector.received()) == Counter(range(1, queued + 1))
    assert free(where) > 2 * FLUSH_ROOM  # the delivered events' room is back
    assert (spool_dir / RESERVE_NAME).exists()
    assert json.loads(invoke("track", "after", "--json").output)["nr"] == queued + 1


# -- the disk fills while a flush runs -------------------------------------------------------


class FillingOut:
    """The collector's output file; the first batch it stores fills the spool's disk (another
    program taking the room between the flush's check and its ack)."""

    def __init__(self, path: Path, where: Path):
        self.file = open(path, "a")  # noqa: SIM115 - closed by the test
        self.where = where
        self.filled: Path | None = None
        self.lock = threading.Lock()

    def write(self, text: str) -> int:
        with self.lock:
            if self.filled is None:
                self.filled = fill(self.where)
        return self.file.write(text)

    def flush(self) -> None:
        self.file.flush()

    def received(self) -> list[dict[str, Any]]:
        self.file.flush()
        with open(self.file.name) as f:
            return [json.loads(line) for line in f if line.strip()]


@pytest.fixture
def filling_collector(tmp_path: Path, disk: Callable[[int], Path]) -> Iterator[tuple[Any, FillingOut, Path]]:
    where = disk(32)
    out = FillingOut(tmp_path / "received.jsonl", where)
    server = make_server("127.0.0.1", 0, SECRET, out)  # type: ignore[arg-type]
    serve_in_background(server)
    yield server, out, where
    server.stop()
    out.file.close()


def test_disk_filled_during_a_flush_uses_the_reserve(
    filling_collector: tuple[Any, FillingOut, Path], isolated: Path
) -> None:
    server, out, where = filling_collector
    spool_dir = where / "spool"
    use_collector(isolated, server.url, max_batch_events=500)
    invoke("flush")  # the reserve
    track_many(2000)
    invoke("flush")  # the first 200 cannot be written until the reserve is freed: then all goes
    assert out.filled is not None
    assert copies(out.received()) == Counter(range(1, 2001))
    assert spool_events(spool_dir) == []


def test_disk_filled_during_a_flush_without_reserve_sends_the_batch_at_most_twice(
    filling_collector: tuple[Any, FillingOut, Path], isolated: Path
) -> None:
    """No reserve and the disk fills after the check: the 200 cannot be recorded. The flush
    stops at that batch (exit 3, saying where and how much), and no later flush sends anything
    until there is room; then the batch goes once more, and only it."""
    server, out, where = filling_collector
    spool_dir = where / "spool"
    use_collector(isolated, server.url, max_batch_events=500, disk_reserve=False)
    track_many(2000)
    message = one_error_line(invoke("flush", expect=3).output)
    assert "the collector took 500 events" in message and "sent once more" in message
    names_room(message, where)
    assert copies(out.received()) == Counter(range(1, 501))  # it stopped at the first batch
    for _ in range(2):  # cron goes on: nothing is sent while the disk is full
        names_room(one_error_line(invoke("flush", expect=3).output), where)
    assert copies(out.received()) == Counter(range(1, 501))
    # status shows it: the failure recorded with a backoff (written over the WAL's own room),
    # and, read live, that the disk has no room for a flush
    status = json.loads(invoke("status", "--json").output)
    assert "the collector took 500 events" in status["last_error"]["message"]
    assert status["last_error"]["status"] == 200 and status["backoff_until"] is not None
    assert f"mounted at {where}" in status["no_room"]
    assert "disk:       FULL" in invoke("status").output
    assert out.filled is not None
    out.filled.unlink()
    invoke("flush")
    got = copies(out.received())
    assert set(got) == set(range(1, 2001))
    assert {nr for nr, n in got.items() if n > 1} <= set(range(1, 501))  # only that batch, twice
    assert max(got.values()) == 2
    assert spool_events(spool_dir) == []


class MeasuringOut(FillingOut):
    """The collector's output file; notes the room on the spool's disk as each batch arrives."""

    def __init__(self, path: Path, where: Path):
        super().__init__(path, where)
        self.room: list[int] = []

    def write(self, text: str) -> int:
        self.room.append(free(self.where))
        return self.file.write(text)


def test_a_flush_gives_room_back_as_it_delivers(
    tmp_path: Path, disk: Callable[[int], Path], isolated: Path
) -> None:
    """A spool that filled its disk: the room of each delivered batch goes back to the file
    system while the flush goes on (tracks can queue again), not only at its end."""
    where = disk(32)
    out = MeasuringOut(tmp_path / "received.jsonl", where)
    server = make_server("127.0.0.1", 0, SECRET, out)  # type: ignore[arg-type]
    serve_in_background(server)
    try:
        use_collector(isolated, server.url, max_batch_events=40)
        invoke("flush")  # the reserve
        for _ in range(20):  # 20 MB, 1 MB per transaction
            track_many(20, params="q" * 50000)
        fill(where)
        invoke("flush")
        assert copies(out.received()) == Counter(range(1, 401))
        assert len(out.room) == 10
        # by the last batch, the first nine batches' room (9 x 2 MB) is back, less the WAL's
        assert out.room[-1] - out.room[0] > 8 * MIB, out.room
    finally:
        server.stop()
        out.file.close()


def test_a_wal_holding_what_filled_the_disk_is_drained(
    disk: Callable[[int], Path], isolated: Path, collector: Any
) -> None:
    """One `track --stdin` of 20 MB filled the disk: committed in the WAL, whose checkpoint
    found no room to copy it into the database file. A checkpoint during the flush would grow
    the file into the reserve's room, so none runs until the events are deleted and their
    pages reclaimed: then it shrinks the file, and the room comes back."""
    where = disk(32)
    use_collector(isolated, collector.url, max_batch_events=40)
    invoke("flush")
    track_many(400, params="q" * 50000)
    fill(where)
    assert free(where) < 64 * 1024
    invoke("flush")
    assert copies(collector.received()) == Counter(range(1, 401))
    assert spool_events(where / "spool") == []
    assert free(where) > 24 * MIB  # WAL and events gone


# -- track on a full disk ----------------------------------------------------------------------


def test_track_on_a_full_disk_queues_nothing(disk: Callable[[int], Path], isolated: Path) -> None:
    where = disk(16)
    spool_dir = where / "spool"
    use_collector(isolated, "http://127.0.0.1:9", disk_reserve=False)
    track_many(50)
    before = spool_events(spool_dir)
    filler = fill(where, leave=40 * 1024)  # room for the -shm, not for 30 events of 60 KB
    lines = "".join(json.dumps({"event": "big", "params": "b" * 60000}) + "\n" for _ in range(30))
    for args, stdin in ((["track", "--stdin"], lines), (["track", "one", "--params", "p" * 60000], None)):
        result = invoke(*args, input=stdin, expect=3)
        names_room(one_error_line(result.output), where)
    filler.unlink()
    assert spool_events(spool_dir) == before  # nothing half-written; the nr sequence goes on
    assert json.loads(invoke("track", "after", "--json").output)["nr"] == 51


# -- the background flush's log on a full disk -----------------------------------------------


def test_background_flush_goes_on_when_its_log_cannot_be_written(isolated: Path, collector: Any) -> None:
    """flush.log sits on the spool's disk: when it is full, the log's writes fail (here
    /dev/full, which fails every write with ENOSPC), and the flush must still deliver."""
    if not os.path.exists("/dev/full"):
        pytest.skip("no /dev/full here")
    use_collector(isolated, collector.url, queue_size=1, max_batch_events=2)
    track_many(7)
    with open("/dev/full", "w") as full:
        proc = subprocess.run(
            [sys.executable, "-m", "hamustro_cli.background"],
            stdout=full,
            stderr=full,
            stdin=subprocess.DEVNULL,
            timeout=60,
            env={**spawned_env(), "PYTHONDONTWRITEBYTECODE": "1"},
        )
    assert proc.returncode == 0
    assert copies(collector.received()) == Counter(range(1, 8))


def test_doctor_says_the_disk_has_no_room_for_a_flush(
    disk: Callable[[int], Path], isolated: Path, collector: Any
) -> None:
    where = disk(16)
    use_collector(isolated, collector.url, disk_reserve=False)
    track_many(5)
    fill(where, leave=96 * 1024)
    result = invoke("doctor", "--json", expect=None)
    assert result.exit_code == 1
    spool = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "spool")
    assert not spool["ok"] and spool["verdict"].startswith("no room for a flush")
    names_room(spool["verdict"], where)
    fill(where)  # not even room to open the spool (its -shm): the hint still says what to do
    spool = next(
        c for c in json.loads(invoke("doctor", "--json", expect=1).stdout)["checks"] if c["name"] == "spool"
    )
    assert not spool["ok"] and "free room on the spool's file system" in spool["hint"]
    names_room(spool["verdict"], where)


def test_acks_are_sliced_so_one_ack_writes_a_bounded_wal() -> None:
    """A delivered batch is acked in slices of at most ACK_SLICE_BYTES of stored text (one
    event bigger than that is a slice of its own), in order, covering the batch."""
    from hamustro_cli.sending import ACK_SLICE_BYTES, ack_slices
    from hamustro_cli.spool.rows import QueuedEvent

    sizes = [300] * 3000 + [60000] * 40 + [ACK_SLICE_BYTES * 2] + [10] * 5
    batch = [QueuedEvent(i, i + 1, 0, "e", None, None, "p" * n, False) for i, n in enumerate(sizes)]
    parts = list(ack_slices(batch))
    assert [row for part in parts for row in part] == batch
    for part in parts:
        text = sum(len(row[3]) + len(row[6] or "") for row in part)
        assert len(part) == 1 or text <= ACK_SLICE_BYTES
    assert len(parts) > 4 and [len(p) for p in parts if len(p[0][6] or "") > ACK_SLICE_BYTES] == [1]
