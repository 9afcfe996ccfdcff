"""Shared helpers for the benchmark scripts in bench/ (not part of the package or the tests).

Every script runs `hamustro` as real processes from the Python that runs the script (the
bench venv made by bench/run), with config and spool in a temporary directory: the real
home is never read or written. Timings are always printed next to a baseline measured in
the same run, because absolute times drift on shared machines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

SECRET = "bench-secret-5b1e"
SETTINGS: dict[str, Any] = {
    "shared_secret_key": SECRET,
    "device_id": "bench-device",
    "client_id": "bench-client",
    "system_version": "Linux 6.1",
    "product_version": "1.0.0",
    "system": "linux",
    "product_git_hash": "abc123",
    "flush": "off",
}
FLOOR_CODE = "import click, sqlite3, tomllib, hashlib"


def hamustro() -> list[str]:
    """The installed console script next to this interpreter, else `python -m hamustro_cli`."""
    script = Path(sys.executable).parent / "hamustro"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "hamustro_cli"]


def python() -> list[str]:
    return [sys.executable]


def floor_cmd() -> list[str]:
    return [sys.executable, "-c", FLOOR_CODE]


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))


class Workdir:
    """A temporary home: config.toml, spool/, and the environment pointing at them."""

    def __init__(self, name: str, keep: bool = False, **config: Any):
        self.root = Path(tempfile.mkdtemp(prefix=f"hamustro-bench-{name}-"))
        self.keep = keep
        self.config_path = self.root / "config.toml"
        self.spool_dir = self.root / "spool"
        (self.root / "home").mkdir()
        self.config = {"collector_url": "http://127.0.0.1:9", **SETTINGS, **config}
        self.write_config()

    def write_config(self, **changes: Any) -> None:
        self.config.update(changes)
        text = "".join(f"{k} = {toml_value(v)}\n" for k, v in self.config.items() if v is not None)
        self.config_path.write_text(text)
        self.config_path.chmod(0o600)

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HAMUSTRO_")}
        # Same conditions for the tool and the floor: bytecode is written and used.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        home = self.root / "home"
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_STATE_HOME=str(home / ".local" / "state"),
            HAMUSTRO_CONFIG=str(self.config_path),
            HAMUSTRO_SPOOL_DIR=str(self.spool_dir),
        )
        env.update(extra)
        return env

    def reset_spool(self) -> None:
        shutil.rmtree(self.spool_dir, ignore_errors=True)

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Workdir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


def run(
    cmd: Sequence[str],
    env: dict[str, str],
    stdin: Path | None = None,
    check: bool = True,
    capture: bool = False,
) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """Run a command; return its wall time (fork to exit) and the completed process."""
    fin = open(stdin, "rb") if stdin is not None else subprocess.DEVNULL
    try:
        start = time.perf_counter()
        proc = subprocess.run(
            list(cmd),
            env=env,
            stdin=fin,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        elapsed = time.perf_counter() - start
    finally:
        if stdin is not None:
            fin.close()  # type: ignore[union-attr]
    if check and proc.returncode != 0:
        raise SystemExit(
            f"bench: {' '.join(cmd)} exited {proc.returncode}: {proc.stderr.decode(errors='replace')[-2000:]}"
        )
    return elapsed, proc


def run_rusage(
    cmd: Sequence[str], env: dict[str, str], stdin: Path | None = None
) -> tuple[float, int, int, bytes]:
    """Run a command; return (wall seconds, peak RSS in KiB of that process, exit code, stdout).

    Uses wait4 on the child itself, so the figure is the flushing process's own high-water
    mark (Linux ru_maxrss is in KiB), not the largest of all children ever waited for.
    """
    fin = open(stdin, "rb") if stdin is not None else subprocess.DEVNULL
    out = tempfile.TemporaryFile()
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(list(cmd), env=env, stdin=fin, stdout=out, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return elapsed, usage.ru_maxrss, proc.returncode, out.read()
    finally:
        out.close()
        if stdin is not None:
            fin.close()  # type: ignore[union-attr]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def event_lines(n: int, start: int = 0) -> Iterator[str]:
    """Varied, realistic JSON lines for `track --stdin`."""
    names = ("page_view", "click", "signup", "purchase", "search")
    for i in range(start, start + n):
        obj: dict[str, Any] = {"event": names[i % len(names)]}
        if i % 2 == 0:
            obj["user_id"] = 1000 + i % 5000
        if i % 3 == 0:
            obj["params"] = {"path": f"/item/{i}", "ref": "bench"}
        elif i % 3 == 1:
            obj["params"] = f"q=term{i}"
        yield json.dumps(obj, separators=(",", ":")) + "\n"


def write_lines(path: Path, n: int, start: int = 0) -> Path:
    with open(path, "w") as f:
        f.writelines(event_lines(n, start))
    return path


def fill_spool(spool_dir: Path, n: int, sessions: int = 2, chunk: int = 50_000, **settings: Any) -> None:
    """Queue n events in-process through the library's Spool.enqueue (fast for millions)."""
    from hamustro_cli.session import Session
    from hamustro_cli.spool import NewEvent
    from hamustro_cli.spool.full import Spool

    conf = {**SETTINGS, **settings}
    base_at = int(time.time()) - 3600
    names = ("page_view", "click", "signup", "purchase", "search")
    with Spool(spool_dir) as spool:
        per_session = [n // sessions + (1 if s < n % sessions else 0) for s in range(sessions)]
        i = 0
        for s, count in enumerate(per_session):
            attrs = Session.from_settings(
                conf["device_id"],
                conf["client_id"],
                conf["system_version"],
                f"1.0.{s}",
                conf["system"],
                conf["product_git_hash"],
            )
            done = 0
            while done < count:
                size = min(chunk, count - done)
                batch = [
                    NewEvent(
                        event=names[j % 5],
                        at=base_at + j // 100,
                        user_id=1000 + j % 5000 if j % 2 == 0 else None,
                        ip="10.0.0.7",
                        parameters=f'{{"path":"/item/{j}","ref":"bench"}}' if j % 3 == 0 else None,
                    )
                    for j in range(i, i + size)
                ]
                spool.enqueue(attrs, batch)
                done += size
                i += size


class _Server:
    """A server process the bench started; stopped (by its own pid) on leaving the with block."""

    proc: subprocess.Popen[bytes]
    url: str

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()

    def __enter__(self: _S) -> _S:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_S = TypeVar("_S", bound=_Server)


class Collector(_Server):
    """`hamustro collector --port 0` as a separate process; the URL comes from its stderr."""

    def __init__(self, work: Workdir, out: Path | str = os.devnull, extra: Sequence[str] = ()):
        self.out = str(out)
        env = work.env(HAMUSTRO_SHARED_SECRET_KEY=SECRET)
        self.proc = subprocess.Popen(
            [*hamustro(), "collector", "--host", "127.0.0.1", "--port", "0", "--out", self.out, *extra],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stderr is not None
        line = self.proc.stderr.readline().decode()
        match = re.search(r"listening on (\S+)", line)
        if not match:
            self.proc.kill()
            raise SystemExit(f"bench: collector did not start: {line!r}")
        self.url = match.group(1)


def count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            n += block.count(b"\n")
    return n


def header(title: str, note: str = "") -> None:
    print(f"== {title}")
    if note:
        print(f"   {note}")
    print(f"   python {sys.version.split()[0]} at {sys.executable}; hamustro: {' '.join(hamustro())}")


def within(ok: bool) -> str:
    """For goals that are upper bounds (the backlog goals of issue 10): informational only."""
    return "PASS" if ok else "over"


def p95(values: Sequence[float]) -> float:
    """Nearest-rank 95th percentile."""
    ordered = sorted(values)
    return ordered[max(0, -(-len(ordered) * 95 // 100) - 1)]


def dir_bytes(path: Path) -> int:
    """Total size of the regular files directly in path (the spool database, -wal, -shm, lock,
    log), but the ballast a spool keeps for a flush to use on a full disk (space.reserve, a
    fixed size whatever the backlog: the goals are about what the events take)."""
    from hamustro_cli.spooldir import RESERVE_NAME

    return sum(p.stat().st_size for p in path.iterdir() if p.is_file() and p.name != RESERVE_NAME)


class WalWatch:
    """The largest size the spool's -wal file reached while the with block ran (polled every
    few milliseconds on a thread: a peak shorter than that can be missed)."""

    def __init__(self, spool_dir: Path, every: float = 0.002):
        self.spool_dir, self.every = spool_dir, every
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            for wal in self.spool_dir.glob("*-wal"):
                try:
                    self.peak = max(self.peak, wal.stat().st_size)
                except OSError:  # removed as the last connection closed
                    pass
            self._stop.wait(self.every)

    def __enter__(self) -> WalWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def fill_spool_cli(work: Workdir, n: int, sessions: int = 2, chunk: int = 250_000) -> None:
    """Queue n events with `hamustro track --stdin`, chunk lines at a time (the same chunk file
    fed again and again), in `sessions` sessions made by changing product_version. Uses only
    the CLI, so it keeps working whatever the spool's internals become."""
    chunk = max(1, min(chunk, n))
    lines = work.root / f"fill-{chunk}.jsonl"
    if not lines.exists():
        write_lines(lines, chunk)
    rest = work.root / "fill-rest.jsonl"
    env = work.env()
    track = [*hamustro(), "track", "--stdin"]
    version = work.config["product_version"]
    per_session = [n // sessions + (1 if s < n % sessions else 0) for s in range(sessions)]
    for s, count in enumerate(per_session):
        work.write_config(product_version=f"{version}-fill{s}" if s < sessions - 1 else version)
        while count > 0:
            size = min(chunk, count)
            if size == chunk:
                run(track, env, stdin=lines)
            else:
                write_lines(rest, size)
                run(track, env, stdin=rest)
            count -= size
    work.write_config(product_version=version)


class MinimalCollector(_Server):
    """The least a collector can do: read the body, answer 200 (HTTP/1.1, kept alive). A
    separate process, so it shares no GIL with what is measured; the port comes from stdout."""

    CODE = """\
import http.server, sys

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response_only(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", self.CODE],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert self.proc.stdout is not None
        port = self.proc.stdout.readline().decode().strip()
        if not port.isdigit():
            self.proc.kill()
            raise SystemExit("bench: minimal collector did not start")
        self.url = f"http://127.0.0.1:{port}"


def spool_db(work: Workdir) -> Path:
    """The spool's SQLite file (found by its suffix, so a rename inside the package is no matter)."""
    found = sorted(work.spool_dir.glob("*.sqlite3"))
    if not found:
        raise SystemExit(f"bench: no *.sqlite3 spool in {work.spool_dir}")
    return found[0]


def events_schema(db: Path) -> str:
    """CREATE statements of the spool's events table and its indexes, copied from a real spool:
    a floor writing a table of the same shape. Triggers are left out (they are the tool's work)."""
    import sqlite3

    con = sqlite3.connect(db)
    try:
        rows = con.execute(
            "SELECT sql FROM sqlite_master WHERE tbl_name = 'events' AND type IN ('table', 'index') "
            "AND sql IS NOT NULL ORDER BY type DESC"
        ).fetchall()
    finally:
        con.close()
    if not rows:
        raise SystemExit(f"bench: no events table in {db}")
    return ";\n".join(r[0] for r in rows)
