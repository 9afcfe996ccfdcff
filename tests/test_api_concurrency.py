"""The Python API inside real programs (issue 19): one tracker shared by threads, trackers
used across os.fork and multiprocessing, a new spool opened by many threads at once, and a
preforking server. Real threads, real processes, a real SQLite file and a real collector."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import SECRET

from hamustro_cli import ClientTracker
from hamustro_cli.tracker import new_event

SETTINGS: dict[str, Any] = {
    "shared_secret_key": SECRET,
    "device_id": "dev",
    "client_id": "threads",
    "system_version": "1",
    "product_version": "2",
    "flush": "off",
}


def make(url: str, spool_dir: Path | str, **extra: Any) -> ClientTracker:
    return ClientTracker(collector_url=url, spool_dir=spool_dir, **{**SETTINGS, **extra})


def sound_rows(spool_dir: Path | str) -> list[tuple[str, str | None, int]]:
    """(event, parameters, nr) of every queued event by nr, once SQLite has found the file sound."""
    db = sqlite3.connect(os.path.join(spool_dir, "spool.sqlite3"))
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        return db.execute("SELECT event, parameters, nr FROM events ORDER BY nr").fetchall()
    finally:
        db.close()


def check_spool(spool_dir: Path | str, expected: set[tuple[str, int]]) -> None:
    """The spool holds exactly the expected (event, i) pairs, each once, numbered 1..n without
    a gap, and SQLite finds the file sound."""
    rows = sound_rows(spool_dir)
    got = [(event, json.loads(params)["i"] if params else 0) for event, params, _ in rows]
    assert len(got) == len(set(got)), "an event was queued twice"
    assert set(got) == expected, f"{len(expected - set(got))} event(s) lost"
    assert [nr for _, _, nr in rows] == list(range(1, len(rows) + 1))


def flush_all(collector: Any, spool_dir: Path | str, expected: set[tuple[str, int]]) -> None:
    """One flush delivers every queued event, exactly once."""
    before = len(collector.received())
    with make(collector.url, spool_dir) as tracker:
        report = tracker.flush()
        assert report.ok and report.sent == len(expected)
        assert tracker.status()["pending"] == 0
    got = collector.received()[before:]
    pairs = [(e["event"], json.loads(e["parameters"])["i"] if e.get("parameters") else 0) for e in got]
    assert sorted(pairs) == sorted(expected)


def spool_fds(spool_dir: Path | str) -> int:
    """How many of this process's file descriptors are open on the spool database."""
    path = os.path.realpath(os.path.join(spool_dir, "spool.sqlite3"))
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            found += os.readlink(f"/proc/self/fd/{fd}") == path
        except OSError:
            pass
    return found


# -- threads -------------------------------------------------------------------------------------


def test_one_tracker_shared_by_32_threads_with_a_flush_running_beside(collector, spool_dir):
    threads, per_thread = 32, 60
    tracker = make(collector.url, spool_dir)
    start = threading.Barrier(threads + 1)
    opened = threading.Barrier(threads + 1)
    errors: list[BaseException] = []
    reports: list[Any] = []
    numbered: dict[tuple[str, int], int] = {}  # the nr each call returned for its event
    done = threading.Event()

    def track(n: int) -> None:
        start.wait()  # the first use is concurrent: the spool must be opened once
        try:
            numbered[(f"t{n}", 0)] = tracker.track_event(f"t{n}", params={"i": 0}).nr
        finally:
            opened.wait()  # the test counts the connections, then a flush starts beside
        try:
            for i in range(1, per_thread):
                numbered[(f"t{n}", i)] = tracker.track_event(f"t{n}", params={"i": i}).nr
        except BaseException as exc:  # noqa: BLE001 - collected and reported by the test
            errors.append(exc)

    def flush() -> None:
        try:
            while not done.is_set():
                reports.append(tracker.flush())
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    workers = [threading.Thread(target=track, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    opened.wait()
    assert spool_fds(spool_dir) == 1  # one connection, though 32 threads opened it at once
    flusher = threading.Thread(target=flush)
    flusher.start()
    for w in workers:
        w.join()
    done.set()
    flusher.join()
    assert errors == []
    assert all(r.ok for r in reports)
    status = tracker.status()  # the main thread still works
    assert status["pending"] + sum(r.sent for r in reports) == threads * per_thread
    report = tracker.flush()
    assert report.ok
    tracker.close()
    got = collector.received()
    pairs = sorted((e["event"], json.loads(e["parameters"])["i"]) for e in got)
    assert pairs == sorted((f"t{n}", i) for n in range(threads) for i in range(per_thread))
    assert sorted(e["nr"] for e in got) == list(range(1, threads * per_thread + 1))
    # events committed together (one transaction for what threads wait to queue) keep the nr
    # their own call returned
    assert {(e["event"], json.loads(e["parameters"])["i"]): e["nr"] for e in got} == numbered


def test_threads_committed_together_fail_alone(collector, spool_dir):
    # One thread's batch that would number past the largest nr is refused, alone: the events
    # of the threads committed beside it are queued, each once, without a gap.
    from hamustro_cli.errors import InputError
    from hamustro_cli.spool import MAX_NR

    tracker = make(collector.url, spool_dir)
    tracker.track_event("first")
    db = sqlite3.connect(os.path.join(spool_dir, "spool.sqlite3"))
    db.execute("UPDATE sessions SET last_nr = ?", (MAX_NR - 100,))
    db.commit()
    db.close()
    threads, per_thread = 8, 10
    start = threading.Barrier(threads + 1)
    refused: list[BaseException] = []
    errors: list[BaseException] = []
    big = [new_event("big", params={"i": i}) for i in range(200)]

    def track(n: int) -> None:
        start.wait()
        try:
            for i in range(per_thread):
                tracker.track_event(f"t{n}", params={"i": i})
        except BaseException as exc:  # noqa: BLE001 - collected
            errors.append(exc)

    def track_big() -> None:
        start.wait()
        for _ in range(5):
            try:
                tracker.track_many(big)
            except InputError as exc:
                refused.append(exc)

    workers = [threading.Thread(target=track, args=(n,)) for n in range(threads)]
    workers.append(threading.Thread(target=track_big))
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    tracker.close()
    assert errors == []
    assert len(refused) == 5
    rows = sound_rows(spool_dir)
    assert [e for e, _, _ in rows].count("big") == 0
    got = sorted((e, json.loads(p or "")["i"]) for e, p, _ in rows if e != "first")
    assert got == sorted((f"t{n}", i) for n in range(threads) for i in range(per_thread))
    nrs = [nr for e, _, nr in rows if e != "first"]
    assert nrs == list(range(MAX_NR - 99, MAX_NR - 99 + threads * per_thread))


@pytest.mark.heavy
def test_a_new_spool_opened_by_16_threads_at_once(collector, tmp_path):
    # SQLite answers BUSY at once (no busy wait) to a connection switching a new file to WAL
    # while another one is doing the same: every tracker must still succeed.
    failures = []
    for attempt in range(20):
        spool_dir = tmp_path / f"new-{attempt}"
        trackers = [make(collector.url, spool_dir) for _ in range(16)]
        start = threading.Barrier(16)

        def track(tracker: ClientTracker, n: int, start: threading.Barrier = start) -> None:
            start.wait()
            try:
                tracker.track_event(f"t{n}")
            except Exception as exc:  # noqa: BLE001 - collected
                failures.append(exc)
            finally:
                tracker.close()

        workers = [threading.Thread(target=track, args=(t, n)) for n, t in enumerate(trackers)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert failures == [], failures[0]
        check_spool(spool_dir, {(f"t{n}", 0) for n in range(16)})


# -- fork --------------------------------------------------------------------------------------


def _in_child(body: Any) -> None:
    """Run body() in this (forked) child and leave at once with 0, or 1 if it raised."""
    code = 1
    try:
        body()
        code = 0
    finally:
        os._exit(code)


# Python 3.12+ warns at each fork of a process with threads: here the test collector's server
# thread, which the children never touch (they only track). Forking is what these tests test.
FORK_WITH_THREADS = pytest.mark.filterwarnings(
    r"ignore:This process \(pid=\d+\) is multi-threaded, use of fork\(\):DeprecationWarning"
)


@FORK_WITH_THREADS
def test_fork_then_the_parent_closes_while_children_track(collector, tmp_path):
    # The loss of issue 19: the parent's close believed it was the last connection (the
    # children used the connection they inherited, holding none of its locks), checkpointed and
    # reset the WAL they were writing. Run a few times: the loss was in every run.
    children, per_child = 4, 50
    for round_ in range(4):
        spool_dir = tmp_path / f"round-{round_}"
        tracker = make(collector.url, spool_dir)
        tracker.track_event("parent", params={"i": 0})
        pids = []
        for c in range(children):
            pid = os.fork()
            if pid == 0:
                _in_child(lambda: [tracker.track_event(f"c{c}", params={"i": i}) for i in range(per_child)])  # noqa: B023 - called at once
            pids.append(pid)
        tracker.close()  # while the children write
        statuses = [os.waitpid(pid, 0)[1] for pid in pids]
        assert statuses == [0] * children
        expected = {("parent", 0)} | {(f"c{c}", i) for c in range(children) for i in range(per_child)}
        check_spool(spool_dir, expected)
        flush_all(collector, spool_dir, expected)


_SHARED: ClientTracker | None = None  # the parent's tracker, which a forked worker inherits


def _mp_worker(url: str, spool_dir: str, name: str, count: int) -> None:
    """A multiprocessing worker: the inherited tracker under fork, its own one otherwise (a
    tracker cannot be pickled)."""
    tracker = _SHARED if _SHARED is not None else make(url, spool_dir)
    for i in range(count):
        tracker.track_event(name, params={"i": i})


@FORK_WITH_THREADS
@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing_start_methods(collector, spool_dir, method):
    global _SHARED
    workers, per_worker = 4, 250
    ctx = multiprocessing.get_context(method)
    tracker = make(collector.url, spool_dir)
    tracker.track_event("parent", params={"i": 0})
    _SHARED = tracker
    try:
        procs = [
            ctx.Process(target=_mp_worker, args=(collector.url, str(spool_dir), f"w{n}", per_worker))
            for n in range(workers)
        ]
        for p in procs:
            p.start()
        tracker.close()  # while they write
        for p in procs:
            p.join()
    finally:
        _SHARED = None
    assert [p.exitcode for p in procs] == [0] * workers
    expected = {("parent", 0)} | {(f"w{n}", i) for n in range(workers) for i in range(per_worker)}
    check_spool(spool_dir, expected)
    flush_all(collector, spool_dir, expected)


# -- long-running services -----------------------------------------------------------------------


def children_of_this_process() -> set[int]:
    found: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        with open(f"/proc/self/task/{task}/children") as f:
            found.update(int(pid) for pid in f.read().split())
    return found


def test_a_background_flush_is_reaped_when_it_ends(collector, spool_dir):
    import time

    before = children_of_this_process()
    with make(collector.url, spool_dir, flush="background", queue_size=1) as tracker:
        assert tracker.track_event("x").flush == "started"
        spawned = children_of_this_process() - before
        assert len(spawned) == 1
        for _ in range(600):  # until it has delivered and been reaped (at most a minute)
            if collector.received() and not spawned & children_of_this_process():
                break
            time.sleep(0.1)
        assert [e["event"] for e in collector.received()] == ["x"]
        assert not spawned & children_of_this_process(), "the finished flush is left a zombie"


def test_python_dev_mode_shows_no_warning(collector, spool_dir):
    import subprocess
    import sys

    code = (
        "from hamustro_cli import ClientTracker\n"
        f"t = ClientTracker(collector_url={collector.url!r}, spool_dir={str(spool_dir)!r}, "
        f"flush='background', queue_size=1, **{ {k: v for k, v in SETTINGS.items() if k != 'flush'}!r})\n"
        "assert t.track_event('x').flush == 'started'\n"
        "t.close()\n"
    )
    done = subprocess.run(
        [sys.executable, "-X", "dev", "-c", code], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, "")


# -- a preforking server: the README's example, run as it is ---------------------------------------


def readme_wsgi_example() -> str:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    (app,) = [b for b in blocks if b.startswith("# app.py")]
    return app


def test_readme_wsgi_example_under_gunicorn_preload(collector, config, spool_dir, tmp_path):
    import http.client
    import signal
    import subprocess
    import sys
    from concurrent.futures import ThreadPoolExecutor

    pytest.importorskip("gunicorn", reason="gunicorn (the test extra) is not installed")
    example = readme_wsgi_example()
    (tmp_path / "app.py").write_text(example)
    command = example.splitlines()[0].split("served by: ")[1].split()
    assert command[0] == "gunicorn"
    server = subprocess.Popen(
        [sys.executable, "-m", *command[:-1], "--bind", "127.0.0.1:0", command[-1]],
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        port = None
        for line in server.stderr:  # gunicorn says where it listens, then each worker it boots
            found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", line)
            if found:
                port = int(found.group(1))
                break
        assert port, "gunicorn did not start"

        def get(i: int) -> int:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request("GET", f"/r/{i}")
                return conn.getresponse().status
            finally:
                conn.close()

        requests = 800
        with ThreadPoolExecutor(8) as pool:
            assert set(pool.map(get, range(requests))) == {200}
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)
    assert server.returncode == 0
    rows = sound_rows(spool_dir)
    paths = [json.loads(p or "")["path"] for e, p, _ in rows if e == "http.request"]
    assert sorted(paths) == sorted(f"/r/{i}" for i in range(requests))  # each request once
    assert [e for e, _, _ in rows].count("server.start") == 1
    assert [nr for _, _, nr in rows] == list(range(1, requests + 2))
    with ClientTracker.from_config() as tracker:
        report = tracker.flush()
    assert report.ok and report.sent == requests + 1
    assert len(collector.received()) == requests + 1


def test_a_lock_held_too_long_names_who_holds_it(collector, spool_dir):
    import subprocess
    import sys

    from hamustro_cli.spool.classify import spool_error

    with make(collector.url, spool_dir) as tracker:
        tracker.track_event("x")
    path = os.path.join(spool_dir, "spool.sqlite3")
    hold = (
        "import sqlite3, sys; db = sqlite3.connect(sys.argv[1], isolation_level=None); "
        "db.execute('BEGIN IMMEDIATE'); print('held', flush=True); sys.stdin.read()"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", hold, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        db = sqlite3.connect(path, timeout=0, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError) as busy:
            db.execute("BEGIN IMMEDIATE")
        db.close()
        message = str(spool_error(busy.value, path, "queuing events"))
    finally:
        holder.communicate("")
    assert f"is locked by process {holder.pid} (python" in message
    assert "another process for too long" not in message
