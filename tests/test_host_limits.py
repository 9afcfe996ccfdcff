"""Few file descriptors, little memory (issue 14, class 5): under `ulimit -n` and `ulimit -v`
every command ends with the contract's exit code and at most one `hamustro: error:` line that says what
ran short, never a traceback, never a hang; a memory error is not called a broken protobuf
install; `track` exits 0 exactly when its event was queued.

Real processes with `resource.setrlimit` in `preexec_fn`. Below 5 descriptors the interpreter
itself cannot start (it fails in `site`, before any hamustro code runs), so the descriptor
limits start there. RLIMIT_NPROC ("no threads") cannot be had here: Linux exempts uid 0 from
it, and the test interpreter is not one another user may run; a thread that cannot get its
stack under `ulimit -v` is the case covered (45 MiB: the flush's worker threads fail)."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import SETTINGS, RunningCollector, invoke, write_config

from hamustro_cli.spool import DB_NAME
from hamustro_cli.spool.full import Spool

CONTRACT = {0, 1, 2, 3, 4}
COMMANDS = [
    ["track", "x"],
    ["track", "y", "--flush"],
    ["flush"],
    ["flush", "--dry-run"],
    ["status"],
    ["events", "list"],
    ["session"],
    ["doctor"],
    ["config", "show"],
    ["config", "set", "queue_size", "50"],
]


def queued(spool_dir: Path) -> int:
    if not (spool_dir / DB_NAME).exists():
        return 0
    with Spool(spool_dir) as spool:
        return spool.totals().live


def limited(which: int, value: int) -> Callable[[], None]:
    def apply() -> None:
        resource.setrlimit(which, (value, value))

    return apply


def run_limited(command: list[str], which: int, value: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hamustro_cli", *command],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ.copy(),
        preexec_fn=limited(which, value),
    )


def check_every_command(spool_dir: Path, which: int, value: int) -> list[str]:
    """Run each command under the limit; return what went wrong (empty when all is well)."""
    wrong = []
    for command in COMMANDS:
        before = queued(spool_dir)
        try:
            proc = run_limited(command, which, value)
        except subprocess.TimeoutExpired:
            wrong.append(f"{command}: hung")
            continue
        said = f"{command} under {value}: exit {proc.returncode}, stderr {proc.stderr[-600:]!r}"
        errors = [line for line in proc.stderr.splitlines() if line.startswith("hamustro: error:")]
        others = [line for line in proc.stderr.splitlines() if not line.startswith(("hamustro:",))]
        if "Traceback" in proc.stderr or others:
            wrong.append(f"traceback or stray output: {said}")
        elif proc.returncode not in CONTRACT or len(errors) > 1:
            wrong.append(f"not the contract: {said}")
        elif proc.returncode == 3 and not errors:
            wrong.append(f"exit 3 without its Error line: {said}")
        elif "protobuf" in proc.stderr:
            wrong.append(f"resource trouble called a protobuf problem: {said}")
        if command[0] == "track":
            after = queued(spool_dir)
            if (proc.returncode == 0) != (after == before + 1):
                wrong.append(f"exit {proc.returncode} but {after - before} queued: {said}")
    return wrong


@pytest.fixture
def ready(config: Path, collector: RunningCollector, spool_dir: Path) -> Path:
    """A config, a real collector, and a spool with a few events waiting. A flush short of
    descriptors may fail to connect, a transient failure: its 3 retries without the default
    0.5 s, 1 s and 2 s between them."""
    write_config(config, collector_url=collector.url, retry_delay=0.01, **SETTINGS)
    for name in ("a", "b", "c"):
        invoke("track", name)  # in-process: the limits apply to the commands under test
    assert queued(spool_dir) == 3
    return spool_dir


@pytest.mark.heavy
def test_few_file_descriptors(ready: Path) -> None:
    wrong = []
    for value in (5, 6, 7, 8):
        wrong += check_every_command(ready, resource.RLIMIT_NOFILE, value)
    assert wrong == []


@pytest.mark.heavy
def test_little_memory(ready: Path) -> None:
    wrong = []
    for mib in (30, 45):
        wrong += check_every_command(ready, resource.RLIMIT_AS, mib * 2**20)
    assert wrong == []


def test_what_ran_short_is_named(ready: Path) -> None:
    def error_of(command: list[str], which: int, value: int) -> str:
        proc = run_limited(command, which, value)
        assert proc.returncode == 3, (proc.returncode, proc.stderr)
        return proc.stderr

    # past SQLite's open (status now opens its spool with every module it needs loaded: it works
    # under 6), what runs short is named too
    assert "ulimit -n" in error_of(["flush"], resource.RLIMIT_NOFILE, 6)
    assert "ulimit -n" in error_of(["status"], resource.RLIMIT_NOFILE, 5)  # SQLite's "unable to open"
    said = error_of(["flush"], resource.RLIMIT_AS, 30 * 2**20)
    assert "out of memory" in said and "ulimit -v" in said and "protobuf" not in said


ESCAPES = """
import sys
from hamustro_cli.invocation import guarded
guarded(lambda: None)
raise SystemError("error return without exception set")  # as runpy raises it, outside our frames
"""


@pytest.mark.parametrize("limit", [4 * 2**30, None])
def test_what_escapes_every_frame_is_judged_too(limit: int | None) -> None:
    """Out of memory, the interpreter can lose the exception a command was unwinding with and
    raise SystemError from runpy, past `guarded` (seen in CI: `doctor` under ulimit -v 30 MiB,
    one run in ten). Under a memory limit that is one error line and exit 3; without one it is a
    bug and keeps its traceback."""
    proc = subprocess.run(
        [sys.executable, "-c", ESCAPES],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=None if limit is None else limited(resource.RLIMIT_AS, limit),
    )
    if limit is None:
        assert proc.returncode == 1 and "Traceback" in proc.stderr and "SystemError" in proc.stderr
    else:
        assert (proc.returncode, proc.stderr) == (
            3,
            "hamustro: error: out of memory (its address space is limited to 4096 MiB: ulimit -v); "
            "raise the limit or free memory and run again. Nothing was lost\n",
        )


NOISY = """
import logging, sys
from hamustro_cli import limits
from hamustro_cli.entry import main

def require_room(mib, what):  # where a command starts to load the HTTP client
    logging.exception("code for hash md5 was not found.")  # hashlib's words when memory is short
    logging.getLogger("some.library").warning("a library's record")
    print("loading", what)

limits.require_room = require_room
sys.argv = ["hamustro", *sys.argv[1:]]
main()
"""


@pytest.mark.parametrize("command", [["flush"], ["doctor"], ["track", "a", "--flush"]])
def test_library_log_records_stay_off_stderr(ready: Path, command: list[str]) -> None:
    """A command that loads the HTTP client speaks in its own lines only: what a library logs
    there (hashlib, when memory is too short to load its hash modules, logs a traceback for
    each) is not printed."""
    proc = subprocess.run(
        [sys.executable, "-c", NOISY, *command],
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
    )
    assert "loading the HTTP client" in proc.stdout  # it got there
    assert (proc.returncode, proc.stderr) == (0, "")


GOES_ON = """
import resource
from hamustro_cli import ClientTracker

tracker = ClientTracker.from_config()
used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (used + 4 * 2**20, resource.RLIM_INFINITY))
try:
    tracker.flush()
except MemoryError as exc:
    print("refused:", exc)
resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
print("then sent", tracker.flush().sent)
"""


def test_a_flush_without_room_to_load_stops_before_loading(ready: Path) -> None:
    """Under ulimit -v with too little left to load the HTTP client, a flush raises MemoryError
    before loading any of it (limits.require_room): no half-loaded module stays behind and the
    flush lock is released, so a program that goes on flushes once memory is back."""
    proc = subprocess.run(
        [sys.executable, "-c", GOES_ON], capture_output=True, text=True, timeout=60, env=os.environ.copy()
    )
    assert proc.returncode == 0, proc.stderr
    refused, sent = proc.stdout.splitlines()
    assert refused.startswith("refused: loading the HTTP client takes about 12 MiB of address space; ")
    assert refused.endswith(" MiB this process may have (ulimit -v)")
    assert sent == "then sent 3"
    assert queued(ready) == 0
