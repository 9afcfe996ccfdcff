"""The background flush `track` starts: a process of its own, in a new session, run from "/",
holding none of the caller's descriptors, started without loading `subprocess`."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from conftest import SETTINGS, RunningCollector, write_config


def test_a_started_flush_delivers_and_the_track_loads_no_subprocess(
    isolated: Path, collector: RunningCollector
) -> None:
    write_config(
        isolated / "config.toml", **{**SETTINGS, "collector_url": collector.url, "flush": "background"}
    )
    write_config(
        isolated / "config.toml",
        **{**SETTINGS, "collector_url": collector.url, "flush": "background", "queue_size": 1},
    )
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hamustro_cli", "track", "spawned", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=isolated,
    )
    assert json.loads(proc.stdout)["flush"] == "started", proc.stderr
    names = {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "hamustro_cli.spawn" in names and "subprocess" not in names
    for _ in range(600):  # the child delivers on its own (a bound, not a timing assertion)
        if any(e.get("event") == "spawned" for e in collector.received()):
            break
        time.sleep(0.05)
    assert [e["event"] for e in collector.received()] == ["spawned"]


def test_a_started_flush_holds_no_descriptor_of_the_callers(isolated: Path) -> None:
    """A script that reads `track`'s output through a pipe (or passed it another descriptor)
    sees the end of it when `track` exits, not when the flush it started gives up on a
    collector that never answers (here: after 30 s, long after this test is done)."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts into the backlog, never answers
    url = f"http://127.0.0.1:{silent.getsockname()[1]}"
    write_config(
        isolated / "config.toml",
        **{**SETTINGS, "collector_url": url, "flush": "background", "queue_size": 1, "timeout": 30},
    )
    read, write = os.pipe()
    try:
        track = subprocess.Popen(
            [sys.executable, "-m", "hamustro_cli", "track", "e", "--json"],
            stdout=write,
            stderr=subprocess.DEVNULL,
            pass_fds=(write,),
        )
        os.close(write)
        assert track.wait(timeout=60) == 0
        # The child was started (exec'd) before track went on: if it held the pipe, the read
        # below would find it open, empty, and not at its end.
        os.set_blocking(read, False)
        output = b""
        while chunk := os.read(read, 65536):  # BlockingIOError: a writer is still alive
            output += chunk
        assert json.loads(output)["flush"] == "started"
    finally:
        os.close(read)
        silent.close()
