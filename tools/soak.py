#!/usr/bin/env python3
"""Soak test: many `hamustro track` processes, a cron-like flushing loop, a collector that
fails a share of requests and is SIGKILLed and restarted, and processes SIGKILLed at random.
At the end a healthy collector takes everything that is left, and the script prints what
was tracked, delivered, duplicated and lost.

    .venv/bin/python tools/soak.py --seconds 60

Everything lives in a temporary directory under /tmp (config, spool, collector output,
the stderr of every child, chaos.log); children get HAMUSTRO_CONFIG, HAMUSTRO_SPOOL_DIR
and HOME pointing there, so the real home is never touched. Only 127.0.0.1 is used.

Hostile collectors (issue 9): the clients talk to a proxy on the collector's port that passes
most exchanges to the real collector but, for --hostile-share of them, answers badly: odd
headers (garbage Retry-After, Location, Content-Type), an answer dripped a few bytes at a time,
an answer cut off mid-way (the collector accepted the batch), or a status of its own without
forwarding (400 refusals, 413, 429, 5xx). Clock jumps: every few seconds the spool's stored
sync state (last sync, backoff) is rewritten a year into the future or the past, as a clock
that ran ahead or behind during a flush would leave it. The final drain also resends what the
refusals set aside (`flush --retry-rejected`).

A second destination (issue 14, class 3): a second config (its own collector on its own port,
its own secret and client_id) shares the spool. --trackers-b loops track with it, the cron
loop flushes with either config, collector kills hit either collector, and clock jumps rewrite
either destination's sync state. Each collector verifies signatures with its own secret; an id
received by the other destination's collector is *misrouted* (must be 0), and the final drain
flushes with both configs until the spool is empty.
A full disk (issue 14, class 2; root only, skipped with a note where a tmpfs cannot be
mounted): the spool lives on a tmpfs of its own (--disk-mib), which every few seconds another
"program" fills (to the last byte, or leaving a little room for the tracks to take), holds
full for a while, then frees, while tracking and flushing go on. A `track` refused for want of
room (exit 3, naming the file system) is expected and its ids are not confirmed; none of them
may be received. A flush that could not record a 200 is counted (its batch is sent again).

Each event carries a unique id in its parameters. An id is *confirmed* when its `track`
exited 0, *unconfirmed* when the `track` was SIGKILLed (it may or may not have been
queued). Exit 1 when a confirmed event was lost, a session's `nr` values have gaps or
conflicts, or a client printed a traceback / 'database is locked'; otherwise 0.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
SECRET = "soak-secret-not-for-production"
SECRET_B = "soak-second-destination-secret"
# per destination: (config file, collector secret, client_id, prefix of its collector's output files)
DESTINATIONS = {
    "a": ("config.toml", SECRET, "soak", "received-"),
    "b": ("config-b.toml", SECRET_B, "soak-b", "b-received-"),
}
NO_ROOM = re.compile(r"the file system mounted at .* free|ulimit -f")  # what a full disk says
UNRECORDED = re.compile(r"the collector took \d+ event\(s\)")  # a 200 the spool could not record
BAD_PATTERNS = {
    "traceback": re.compile(r"Traceback \(most recent call last\)"),
    "locked": re.compile(r"database is locked", re.I),
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Child:
    kind: str  # track, track-stdin, flush, flush-if-due
    proc: subprocess.Popen
    ids: list[str] = field(default_factory=list)
    killed: bool = False
    started: float = 0.0


class Soak:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.rng = random.Random(args.seed)
        self.work = Path(tempfile.mkdtemp(prefix="soak-", dir="/tmp"))
        self.logs = self.work / "stderr"
        self.logs.mkdir()
        self.disk: Path | None = self._mount_disk(args.disk_mib) if args.disk_mib else None
        self.spool = (self.disk or self.work) / "spool"
        self.refused: set[str] = set()  # tracks refused for want of room (exit 3): not queued
        self.port = free_port()  # the hostile proxy; the clients' collector_url
        self.inner_port = free_port()  # the real collector behind it
        self.port_b = free_port()  # the second destination's collector (no proxy)
        self.t0 = time.monotonic()
        self.deadline = self.t0 + args.seconds
        self.stop_chaos = threading.Event()
        self.lock = threading.Lock()
        self.children: dict[int, Child] = {}
        self.confirmed: set[str] = set()
        self.unconfirmed: set[str] = set()
        self.failed_ids: set[str] = set()  # tracks that exited non-zero without being killed
        self.counts: collections.Counter[str] = collections.Counter()
        self.exit_codes: collections.Counter[str] = collections.Counter()
        self.bad: collections.Counter[str] = collections.Counter()
        self.excerpts: list[str] = []
        self.collectors: dict[str, subprocess.Popen | None] = {"a": None, "b": None}
        self.collector_runs = 0
        self.fingerprints: dict[str, str] = {}  # destination: its fingerprint (status --json)
        self.passed = False
        self.chaos_log = open(self.work / "chaos.log", "w", buffering=1)
        self.child_log = open(self.logs / "children.log", "w", buffering=1)  # non-empty stderr of children
        self.base_env = self._base_env()
        self._write_config()

    # -- setup ------------------------------------------------------------------------------

    def _mount_disk(self, mib: int) -> Path | None:
        """A tmpfs of its own for the spool, or None (and a note why) where none can be mounted."""
        where = self.work / "disk"
        where.mkdir()
        why = "mounting a tmpfs needs root" if os.geteuid() != 0 else None
        if why is None:
            proc = subprocess.run(
                ["mount", "-t", "tmpfs", "-o", f"size={mib}m,mode=0700", "tmpfs", str(where)],
                capture_output=True,
                text=True,
            )
            why = (proc.stderr.strip() or f"mount exited {proc.returncode}") if proc.returncode else None
        if why:
            print(f"soak: no full-disk phase: {why}", file=sys.stderr)
            where.rmdir()
            return None
        return where

    def unmount_disk(self) -> None:
        """Keep a copy of the spool beside the other evidence, then unmount the tmpfs."""
        if self.disk is None:
            return
        if self.work.exists() and self.spool.exists():
            shutil.copytree(self.spool, self.work / "spool-copy", dirs_exist_ok=True)
        subprocess.run(["umount", "-l", str(self.disk)], check=False)
        self.disk = None

    def _base_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HAMUSTRO_")}
        home = self.work / "home"
        home.mkdir()
        env.update(
            HOME=str(home),
            XDG_CONFIG_HOME=str(home / ".config"),
            XDG_STATE_HOME=str(home / ".state"),
            HAMUSTRO_CONFIG=str(self.work / "config.toml"),
            HAMUSTRO_SPOOL_DIR=str(self.spool),
            PYTHONDONTWRITEBYTECODE="1",
            NO_PROXY="*",
            no_proxy="*",
        )
        for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
            env.pop(proxy, None)
        return env

    def _write_config(self) -> None:
        a = self.args
        for dest, port in (("a", self.port), ("b", self.port_b)):
            name, secret, client_id, _ = DESTINATIONS[dest]
            text = (
                f'collector_url = "http://{HOST}:{port}"\n'
                f'shared_secret_key = "{secret}"\n'
                'device_id = "soak-device"\n'
                f'client_id = "{client_id}"\n'
                'system_version = "soak-os 1"\n'
                'product_version = "soak-0"\n'
                f"queue_size = {a.queue_size}\n"
                'flush = "background"\n'
                "retries = 2\n"
                "retry_delay = 0.05\n"
                f"timeout = {a.timeout}\n"
            )
            path = self.work / name
            path.write_text(text)
            path.chmod(0o600)

    def hamustro(self) -> list[str]:
        return [self.args.python, "-m", "hamustro_cli"]

    def env_for(self, session_index: int = 0, dest: str = "a") -> dict[str, str]:
        env = dict(self.base_env)
        env["HAMUSTRO_CONFIG"] = str(self.work / DESTINATIONS[dest][0])
        if session_index:
            env["HAMUSTRO_PRODUCT_VERSION"] = f"soak-{session_index}"
        return env

    def note(self, message: str) -> None:
        self.chaos_log.write(f"{time.monotonic() - self.t0:8.3f} {message}\n")

    # -- the collector ----------------------------------------------------------------------

    def start_collector(self, fail_rate: float, delay: float, dest: str = "a") -> None:
        """Destination a's collector (behind the hostile proxy) or b's (its own port)."""
        self.collector_runs += 1
        n = self.collector_runs
        _, secret, _, prefix = DESTINATIONS[dest]
        port = self.inner_port if dest == "a" else self.port_b
        out = self.work / f"{prefix}{n:03d}.jsonl"
        err = open(self.logs / f"collector-{n:03d}.err", "w")
        env = {k: v for k, v in self.base_env.items()}
        env["HAMUSTRO_SHARED_SECRET_KEY"] = secret
        cmd = self.hamustro() + [
            "collector",
            "--host",
            HOST,
            "--port",
            str(port),
            "--out",
            str(out),
            "--fail-rate",
            str(fail_rate),
        ]
        if delay:
            cmd += ["--delay", str(delay)]
        for _attempt in range(50):
            proc = subprocess.Popen(
                cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, cwd=self.work
            )
            for _ in range(100):
                if proc.poll() is not None:
                    break
                if port_open(port):
                    self.collectors[dest] = proc
                    self.note(f"collector #{n} ({dest}) up, pid {proc.pid}, fail-rate {fail_rate}")
                    err.close()
                    return
                time.sleep(0.02)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            time.sleep(0.1)  # port still held (TIME_WAIT or a lingering socket): try again
        err.close()
        raise SystemExit(f"soak: cannot start a collector on {HOST}:{port}")

    def kill_collector(self, sig: int = signal.SIGKILL, dest: str = "a") -> None:
        proc = self.collectors[dest]
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self.note(f"collector ({dest}) pid {proc.pid} stopped with signal {sig}")
        self.collectors[dest] = None

    # -- the hostile proxy in front of the collector ------------------------------------------

    ODD_HEADERS = (
        ("Retry-After", "soon"),
        ("Retry-After", "-5"),
        ("Retry-After", "1e9"),
        ("Retry-After", "Wed, 21 Oct 2015 07:28:00 GMT"),
        ("Retry-After", "99999999999999999999"),
        ("Retry-After", "²"),  # str.isdigit() says yes, float() no (it once crashed the flush)
        ("Location", "http://198.51.100.1/elsewhere"),
        ("Content-Type", "application/x-garbage"),
        ("X-Odd", "\x7f\x01"),
    )

    def start_proxy(self) -> None:
        self.proxy = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.proxy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.proxy.bind((HOST, self.port))
        self.proxy.listen(64)
        threading.Thread(target=self._proxy_accept, name="proxy", daemon=True).start()

    def _proxy_accept(self) -> None:
        rng = random.Random(self.rng.random())
        while True:
            try:
                conn, _ = self.proxy.accept()
            except OSError:
                return
            seed = rng.random()
            threading.Thread(target=self._proxy_one, args=(conn, seed), daemon=True).start()

    @staticmethod
    def _read_request(conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return data
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        m = re.search(rb"(?im)^content-length:\s*(\d+)", head)
        need = int(m.group(1)) if m else 0
        while len(body) < need:
            chunk = conn.recv(65536)
            if not chunk:
                break
            body += chunk
        return head + b"\r\n\r\n" + body

    def _forward(self, request: bytes) -> bytes:
        """The request to the real collector (one connection per exchange), its whole answer."""
        request = re.sub(rb"(?im)^connection:[^\r]*\r\n", b"", request).replace(
            b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1
        )
        with socket.create_connection((HOST, self.inner_port), timeout=30) as up:
            up.sendall(request)
            answer = b""
            while True:
                chunk = up.recv(65536)
                if not chunk:
                    return answer
                answer += chunk

    def _proxy_one(self, conn: socket.socket, seed: float) -> None:
        rng = random.Random(seed)
        mode = "pass"
        if rng.random() < self.args.hostile_share:
            mode = rng.choice(["odd-headers", "drip", "cut", "status", "status", "odd-headers"])
        try:
            with conn:
                conn.settimeout(60)
                request = self._read_request(conn)
                if not request:
                    return
                if mode == "status":
                    status = rng.choice([400, 400, 413, 429, 500, 502, 503, 504])
                    body = rng.choice([b"", b'{"error": "no"}', b"\x00\xff garbage"])
                    extra = "".join(f"{k}: {v}\r\n" for k, v in rng.sample(self.ODD_HEADERS, 2))
                    conn.sendall(
                        f"HTTP/1.1 {status} Hostile\r\n{extra}Content-Length: {len(body)}\r\n"
                        "Connection: close\r\n\r\n".encode("latin-1")
                        + body
                    )
                else:
                    try:
                        answer = self._forward(request)
                    except OSError:
                        mode = "down"
                        return  # the collector is down (chaos): the client sees a closed connection
                    if mode == "odd-headers":
                        extra = "".join(f"{k}: {v}\r\n" for k, v in rng.sample(self.ODD_HEADERS, 3))
                        answer = answer.replace(b"\r\n", b"\r\n" + extra.encode("latin-1"), 1)
                    if mode == "drip":
                        step = max(1, len(answer) // 12)
                        for i in range(0, len(answer), step):
                            conn.sendall(answer[i : i + step])
                            time.sleep(rng.uniform(0.01, 0.15))
                    elif mode == "cut":
                        conn.sendall(answer[: rng.randint(0, max(0, len(answer) - 1))])
                    else:
                        conn.sendall(answer)
        except OSError:
            pass
        finally:
            with self.lock:
                self.counts[f"proxy {mode}"] += 1

    # -- clock jumps ----------------------------------------------------------------------------

    def clock_loop(self) -> None:
        """Rewrite the stored sync state as a clock a year ahead or behind would have left it."""
        rng = random.Random(self.rng.random())
        year = 365 * 86400
        while not self.stop_chaos.wait(rng.uniform(*self.args.clock_jump_every)):
            db = self.spool / "spool.sqlite3"  # spooldir.DB_NAME
            if not db.exists():
                continue
            shift = rng.choice([year, -year, 30 * 86400, -30 * 86400])
            at = str(int(time.time()) + shift)
            names = rng.choice([("last_sync_time",), ("backoff_until",), ("last_sync_time", "backoff_until")])
            dest = rng.choice(sorted(self.fingerprints))
            keys = [f"{name}@{self.fingerprints[dest]}" for name in names]  # its destination's state
            try:
                con = sqlite3.connect(db, timeout=10)
                try:
                    with con:
                        for key in keys:
                            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, at))
                finally:
                    con.close()
            except sqlite3.Error as exc:
                self.note(f"clock jump failed: {exc}")
                continue
            with self.lock:
                self.counts["clock jumps"] += 1
            self.note(f"clock jump: {', '.join(keys)} set {shift // 86400:+d} days from now")

    # -- children ---------------------------------------------------------------------------

    def run_child(
        self,
        kind: str,
        args: list[str],
        ids: list[str] = (),
        stdin: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        doom_after: float | None = None,
    ) -> tuple[int, str, str, bool]:
        proc = subprocess.Popen(
            self.hamustro() + args,
            env=env or self.base_env,
            cwd=self.work,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        child = Child(kind, proc, list(ids), started=time.monotonic())
        with self.lock:
            self.children[proc.pid] = child
        timer = None
        if doom_after is not None:
            timer = threading.Timer(
                doom_after, self.kill_child, args=(child, f"doomed after {doom_after:.3f}s")
            )
            timer.daemon = True
            timer.start()
        try:
            out, err = proc.communicate(stdin, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.note(f"{kind} pid {proc.pid} hung for {timeout}s: killed {ids[:3]}")
            with self.lock:
                self.counts[f"{kind} hung"] += 1
                child.killed = True
            proc.kill()
            out, err = proc.communicate()
        if timer is not None:
            timer.cancel()
        with self.lock:
            del self.children[proc.pid]
            self.exit_codes[f"{kind} {proc.returncode}"] += 1
        if err:
            with self.lock:
                self.child_log.write(
                    f"--- {time.monotonic() - self.t0:8.3f} {kind} pid {proc.pid} "
                    f"rc {proc.returncode} ids {ids}\n{err}"
                )
        self.scan_text(err, f"{kind} pid {proc.pid} (rc {proc.returncode})")
        return proc.returncode, out, err, child.killed

    def kill_child(self, child: Child, why: str) -> None:
        """SIGKILL one of our own children if it still runs (under the lock, so never a reaped pid)."""
        if time.monotonic() >= self.deadline:
            return
        with self.lock:
            if child.proc.pid in self.children and child.proc.poll() is None and not child.killed:
                child.killed = True
                child.proc.kill()
                self.counts[f"killed {child.kind}"] += 1
                self.note(
                    f"SIGKILL {child.kind} pid {child.proc.pid} ({why}, "
                    f"{time.monotonic() - child.started:.3f}s after start) ids {child.ids}"
                )

    def scan_text(self, text: str, where: str) -> None:
        if not text:
            return
        for name, pattern in BAD_PATTERNS.items():
            hits = len(pattern.findall(text))
            if hits:
                with self.lock:
                    self.bad[name] += hits
                    if len(self.excerpts) < 8:
                        self.excerpts.append(f"--- {where}:\n{text[-3000:]}")

    def background_pids(self) -> list[int]:
        """Detached `python -m hamustro_cli.background` flushes of this run only (matched by the
        spool path in their environment)."""
        try:
            out = subprocess.run(
                ["pgrep", "-f", "hamustro_cli.background"], capture_output=True, text=True, timeout=5
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return []
        mine = f"HAMUSTRO_SPOOL_DIR={self.spool}".encode()
        pids = []
        for word in out.split():
            pid = int(word)
            if self._ours(pid, mine):
                pids.append(pid)
        return pids

    @staticmethod
    def _ours(pid: int, mark: bytes) -> bool:
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                return mark in f.read().split(b"\0")
        except OSError:
            return False

    def kill_background(self, pid: int) -> bool:
        """SIGKILL a background flush through a pidfd, checked to be ours after it is open."""
        mark = f"HAMUSTRO_SPOOL_DIR={self.spool}".encode()
        try:
            fd = os.pidfd_open(pid)
        except OSError:
            return False
        try:
            if not self._ours(pid, mark):
                return False
            signal.pidfd_send_signal(fd, signal.SIGKILL)
            return True
        except OSError:
            return False
        finally:
            os.close(fd)

    # -- loops ------------------------------------------------------------------------------

    def tracker_loop(self, k: int, dest: str = "a") -> None:
        """Track with destination `dest`'s config; its ids start with t (a) or b (b)."""
        rng = random.Random(self.rng.random())
        session_index = k % self.args.sessions
        env = self.env_for(session_index, dest)
        mark = "t" if dest == "a" else "b"
        seq = 0
        while time.monotonic() < self.deadline:
            seq += 1
            if rng.random() < self.args.stdin_share:
                ids = [f"{mark}{k}-{seq:06d}-{j}" for j in range(rng.randint(2, 5))]
                lines = "".join(json.dumps({"event": "soak", "params": {"id": i}}) + "\n" for i in ids)
                kind, args, stdin = "track-stdin", ["track", "--stdin"], lines
            else:
                ids = [f"{mark}{k}-{seq:06d}"]
                kind, args, stdin = "track", ["track", "soak", "--param", f"id={ids[0]}"], None
            doom = rng.uniform(0.0, 0.4) if rng.random() < self.args.doom_share else None
            rc, _, err, killed = self.run_child(kind, args, ids, stdin, env, doom_after=doom)
            with self.lock:
                if rc == 0:
                    self.confirmed.update(ids)
                elif killed and rc == -signal.SIGKILL:
                    self.unconfirmed.update(ids)
                elif rc == 3 and NO_ROOM.search(err):
                    self.refused.update(ids)
                    self.counts["refused tracks"] += 1
                else:
                    self.failed_ids.update(ids)
                    self.note(f"{kind} {ids} exited {rc} without being killed: {err.strip()[-300:]!r}")

    def flush_loop(self) -> None:
        """Like cron: start a flush every ~1 s whether or not the last one finished (at most 4 at once)."""
        rng = random.Random(self.rng.random())
        running: list[threading.Thread] = []

        def one(args: list[str], dest: str) -> None:
            doom = rng.uniform(0.1, 1.0) if rng.random() < self.args.doom_share else None
            rc, _, err, killed = self.run_child(
                "flush-if-due" if "--if-due" in args else "flush",
                args,
                env=self.env_for(0, dest),
                doom_after=doom,
            )
            if rc not in (0, 1) and not killed:
                self.note(f"flush {args} exited {rc}: {err.strip()[-300:]!r}")
            if UNRECORDED.search(err):
                with self.lock:
                    self.counts["unrecorded 200s"] += 1

        while time.monotonic() < self.deadline:
            running = [t for t in running if t.is_alive()]
            if len(running) < 4:
                args = ["flush", "--if-due"] if rng.random() < 0.25 else ["flush"]
                dest = rng.choice(["a", "b"])  # cron with either config, on the shared spool
                t = threading.Thread(target=one, args=(args, dest), daemon=True)
                t.start()
                running.append(t)
            time.sleep(rng.uniform(0.8, 1.2))
        for t in running:
            t.join(timeout=self.args.grace)

    def disk_loop(self) -> None:
        """Another program fills the spool's file system (to the last byte, or leaving a little
        room that the tracks then take), holds it full, then frees it. Half the time it is
        greedy: while it holds the disk, it takes whatever room appears (the reserve a flush
        freed, the pages a flush gave back) within a fraction of a second."""
        if self.disk is None:
            return
        rng = random.Random(self.rng.random())
        while not self.stop_chaos.wait(rng.uniform(*self.args.disk_full_every)):
            if time.monotonic() >= self.deadline:
                break
            leave = rng.choice((0, 0, 16 * 1024, 256 * 1024, 2 * 1024 * 1024))
            greedy = rng.random() < 0.5
            fillers = [self.disk / "filler-0"]
            written = self._fill(fillers[0], leave)
            self.counts["disk fills"] += 1
            self.note(f"disk: filled with {written} bytes, {leave} left free, greedy {greedy}")
            until = time.monotonic() + rng.uniform(*self.args.disk_full_for)
            while not self.stop_chaos.wait(0.3) and time.monotonic() < until:
                if greedy:
                    fillers.append(self.disk / f"filler-{len(fillers)}")
                    taken = self._fill(fillers[-1], 0)
                    if taken:
                        self.note(f"disk: took {taken} bytes more")
            for filler in fillers:
                filler.unlink()
            self.note("disk: freed")

    @staticmethod
    def _fill(path: Path, leave: int) -> int:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            for chunk in (1 << 20, 4096):
                block = b"\0" * chunk
                while True:
                    try:
                        os.write(fd, block)
                    except OSError:
                        break
            size = os.fstat(fd).st_size
            os.ftruncate(fd, max(0, size - leave))
            return max(0, size - leave)
        finally:
            os.close(fd)

    def chaos_loop(self) -> None:
        rng = random.Random(self.rng.random())
        next_collector_kill = time.monotonic() + rng.uniform(*self.args.collector_kill_every)
        while not self.stop_chaos.wait(rng.uniform(0.1, 0.4)):
            now = time.monotonic()
            if now >= self.deadline:
                break
            # One random in-flight process: a track, a flush from "cron", or a background flush.
            with self.lock:
                live = [c for c in self.children.values() if c.proc.poll() is None and not c.killed]
            backgrounds = self.background_pids()
            pools = []
            tracks = [c for c in live if c.kind.startswith("track")]
            flushes = [c for c in live if c.kind.startswith("flush")]
            if tracks:
                pools += [("track", tracks)] * 2
            if flushes:
                pools.append(("flush", flushes))
            if backgrounds:
                pools.append(("background", backgrounds))
            if pools and rng.random() < self.args.kill_share:
                what, pool = rng.choice(pools)
                victim = rng.choice(pool)
                if what == "background":
                    if self.kill_background(victim):
                        self.counts["killed background flush"] += 1
                        self.note(f"SIGKILL background flush pid {victim}")
                else:
                    self.kill_child(victim, "chaos")
            if now >= next_collector_kill:
                dest = rng.choice(["a", "a", "b"])
                self.kill_collector(signal.SIGKILL, dest)
                self.counts["collector kills"] += 1
                pause = rng.uniform(0.1, 1.5)
                if self.stop_chaos.wait(pause) or time.monotonic() >= self.deadline:
                    break
                self.start_collector(self.args.fail_rate, self.args.collector_delay, dest)
                self.counts["collector restarts"] += 1
                next_collector_kill = time.monotonic() + rng.uniform(*self.args.collector_kill_every)

    # -- the run ----------------------------------------------------------------------------

    def run(self) -> int:
        print(
            f"soak: work dir {self.work}, collector {HOST}:{self.port}, {self.args.seconds}s, "
            f"{self.args.trackers} trackers",
            file=sys.stderr,
        )
        try:
            self.start_proxy()
            for dest in DESTINATIONS:
                self.start_collector(self.args.fail_rate, self.args.collector_delay, dest)
                self.fingerprints[dest] = self.fingerprint(dest)
            threads = [
                threading.Thread(target=self.tracker_loop, args=(k,), name=f"tracker{k}")
                for k in range(self.args.trackers)
            ]
            threads += [
                threading.Thread(target=self.tracker_loop, args=(k, "b"), name=f"tracker-b{k}")
                for k in range(self.args.trackers_b)
            ]
            threads.append(threading.Thread(target=self.flush_loop, name="flush"))
            threads.append(threading.Thread(target=self.clock_loop, name="clock"))
            threads.append(threading.Thread(target=self.disk_loop, name="disk"))
            chaos = threading.Thread(target=self.chaos_loop, name="chaos")
            for t in threads + [chaos]:
                t.start()
            time.sleep(max(0.0, self.deadline - time.monotonic()))
            self.stop_chaos.set()
            chaos.join()
            self.note("deadline: chaos stopped, waiting for in-flight tracks and flushes")
            for t in threads:
                t.join(timeout=self.args.grace)
            self.kill_stragglers("after the deadline")
            for t in threads:
                t.join()
            return self.drain_and_report()
        finally:
            self.kill_stragglers("at exit")
            for dest in DESTINATIONS:
                self.kill_collector(signal.SIGTERM, dest)
            if getattr(self, "proxy", None) is not None:
                self.proxy.close()
            self.chaos_log.close()
            self.child_log.close()
            self.unmount_disk()
            if self.passed and not self.args.keep:
                shutil.rmtree(self.work, ignore_errors=True)

    def fingerprint(self, dest: str) -> str:
        """The destination's fingerprint, as `status --json` gives it (the spool is created)."""
        rc, out, err, _ = self.run_child("setup-status", ["status", "--json"], env=self.env_for(0, dest))
        if rc != 0:
            raise SystemExit(f"soak: status with destination {dest} failed: {err.strip()[-300:]}")
        found: str = json.loads(out)["destination"]
        return found

    def kill_stragglers(self, when: str) -> None:
        with self.lock:
            live = [c for c in self.children.values() if c.proc.poll() is None]
            for c in live:
                c.killed = True
                c.proc.kill()
                self.counts["killed at the end"] += 1
                self.note(f"{when}: SIGKILL {c.kind} pid {c.proc.pid} ids {c.ids}")

    def drain_and_report(self) -> int:
        # Let detached background flushes end by themselves (they are bounded), then kill the rest.
        end = time.monotonic() + self.args.grace
        while self.background_pids() and time.monotonic() < end:
            time.sleep(0.2)
        for pid in self.background_pids():
            if self.kill_background(pid):
                self.counts["killed at the end"] += 1
                self.note(f"end: SIGKILL background flush pid {pid}")
        self.args.hostile_share = 0.0  # the drain meets honest collectors
        for dest in DESTINATIONS:
            self.kill_collector(signal.SIGKILL, dest)
            self.start_collector(0.0, 0.0, dest)
        status: dict[str, Any] = {}
        drained = False
        for attempt in range(1, self.args.drain_tries + 1):
            rc = [
                self.run_child(
                    "final-flush", ["flush", "--retry-rejected"], env=self.env_for(0, dest), timeout=120
                )[0]
                for dest in DESTINATIONS
            ]
            # status's counts are the whole spool's: both destinations' events
            rc_s, out, err_s, _ = self.run_child("final-status", ["status", "--json"], timeout=60)
            try:
                status = json.loads(out)
            except ValueError:
                status = {}
            self.note(
                f"final flush {attempt}: rc {rc}, status pending {status.get('pending')} "
                f"sending {status.get('sending')} rejected {status.get('rejected')}"
            )
            if status.get("pending") == 0 and status.get("sending") == 0 and status.get("rejected") == 0:
                drained = True
                break
            time.sleep(0.2)
        for dest in DESTINATIONS:
            self.kill_collector(signal.SIGTERM, dest)  # a clean stop: its file is complete
        for pid in self.background_pids():  # none expected; never leave one behind
            self.kill_background(pid)
        for log in sorted(self.spool.glob("flush.log*")):
            text = log.read_text(errors="replace")
            self.scan_text(text, str(log))
            self.counts["unrecorded 200s"] += len(UNRECORDED.findall(text))  # background flushes
        return self.report(drained, status)

    # -- the verdict --------------------------------------------------------------------------

    def last_nrs(self) -> dict[str, int]:
        out = {}
        for s, dest in ((s, d) for s in range(self.args.sessions) for d in DESTINATIONS):
            proc = subprocess.run(
                self.hamustro() + ["session", "--json"],
                env=self.env_for(s, dest),
                cwd=self.work,
                capture_output=True,
                text=True,
                timeout=60,
            )
            self.scan_text(proc.stderr, "session --json")
            data = json.loads(proc.stdout)
            out[data["session"]] = data["last_nr"]
        return out

    def report(self, drained: bool, status: dict[str, Any]) -> int:
        received = []  # (session, nr, id)
        runs_of_id: dict[str, list[int]] = collections.defaultdict(list)  # collector runs that wrote it
        truncated = 0
        misrouted: list[tuple[str, str]] = []  # (id, the destination whose collector got it)
        files = [
            (d, p) for d, (*_, prefix) in DESTINATIONS.items() for p in self.work.glob(f"{prefix}*.jsonl")
        ]
        for run, (dest, path) in enumerate(sorted(files, key=lambda dp: dp[1].name)):
            for line in path.read_text(errors="replace").splitlines():
                try:
                    obj = json.loads(line)
                    ident = json.loads(obj["parameters"])["id"]
                except (ValueError, KeyError, TypeError):
                    truncated += 1  # a collector killed mid-write (its 200 never went out)
                    continue
                received.append((obj["session"], obj["nr"], ident))
                runs_of_id[ident].append(run)
                if ident[:1] != ("t" if dest == "a" else "b"):  # tracked for the other destination
                    misrouted.append((ident, dest))
        # The local collector's own tracebacks: a client that vanished mid-connection makes
        # socketserver print one (ConnectionResetError / BrokenPipeError). Not the client's.
        collector_errors: collections.Counter[str] = collections.Counter()
        for path in sorted(self.logs.glob("collector-*.err")):
            text = path.read_text(errors="replace")
            for block in text.split("Traceback (most recent call last):")[1:]:
                last = [ln for ln in block.splitlines() if ln and not ln.startswith((" ", "-"))]
                collector_errors[(last[0] if last else "?").split(":")[0]] += 1

        copies = collections.Counter(r[2] for r in received)
        ids_of_nr: dict[tuple[str, int], set[str]] = collections.defaultdict(set)
        nrs_of_id: dict[str, set[tuple[str, int]]] = collections.defaultdict(set)
        for session, nr, ident in received:
            ids_of_nr[(session, nr)].add(ident)
            nrs_of_id[ident].add((session, nr))
        got = set(copies)
        lost = sorted(self.confirmed - got)
        dup_ids = [i for i, n in copies.items() if n > 1]
        nr_conflicts = {k: v for k, v in ids_of_nr.items() if len(v) > 1}
        id_conflicts = {k: v for k, v in nrs_of_id.items() if len(v) > 1}
        unknown = got - self.confirmed - self.unconfirmed - self.failed_ids - self.refused
        refused_received = sorted(self.refused & got)  # a track that exited 3 queued nothing

        last_nr = self.last_nrs()
        by_session: dict[str, set[int]] = collections.defaultdict(set)
        for session, nr, _ in received:
            by_session[session].add(nr)
        gaps: dict[str, list[int]] = {}
        for session in set(by_session) | set(last_nr):
            top = max(last_nr.get(session, 0), max(by_session.get(session, {0})))
            missing = sorted(set(range(1, top + 1)) - by_session.get(session, set()))
            if missing:
                gaps[session] = missing

        tracks = sum(v for k, v in self.exit_codes.items() if k.startswith("track"))
        figures = {
            "seconds": self.args.seconds,
            "track processes": tracks,
            "tracked (confirmed)": len(self.confirmed),
            "unconfirmed (killed mid-track)": len(self.unconfirmed),
            "track failures (non-zero exit, not killed)": len(self.failed_ids),
            "full disk: spool on its own tmpfs (MiB)": self.args.disk_mib if self.disk else None,
            "full disk: fills": self.counts["disk fills"],
            "full disk: tracks refused for want of room (exit 3)": self.counts["refused tracks"],
            "full disk: refused ids received (must be 0)": len(refused_received),
            "full disk: flushes that could not record a 200": self.counts["unrecorded 200s"],
            "delivered (confirmed ids received)": len(self.confirmed & got),
            "unconfirmed delivered": len(self.unconfirmed & got),
            "received lines": len(received),
            "duplicated ids": len(dup_ids),
            "duplicate copies": sum(copies[i] - 1 for i in dup_ids),
            # Same collector run twice: the client died (or gave up) after the collector wrote the
            # batch, before it deleted it. Across runs: the collector was killed before its 200 got out.
            "duplicated within one collector run (client killed)": sum(
                1 for i in dup_ids if len(set(runs_of_id[i])) < copies[i]
            ),
            "duplicated across collector runs (collector or client killed)": sum(
                1 for i in dup_ids if len(set(runs_of_id[i])) > 1
            ),
            "lost": len(lost),
            "second destination: tracked (confirmed)": sum(1 for i in self.confirmed if i.startswith("b")),
            "second destination: delivered": sum(1 for i in self.confirmed & got if i.startswith("b")),
            "misrouted (received by the other destination's collector)": len(misrouted),
            "unknown ids received": len(unknown),
            "(session, nr) conflicts": len(nr_conflicts),
            "ids under several nr": len(id_conflicts),
            "sessions": {
                s[:8]: {"last_nr": last_nr.get(s), "received_max": max(v) if v else 0, "unique_nr": len(v)}
                for s, v in ((s, by_session.get(s, set())) for s in sorted(set(by_session) | set(last_nr)))
            },
            "nr gaps": sum(len(v) for v in gaps.values()),
            "truncated collector lines": truncated,
            "collector runs": self.collector_runs,
            "collector restarts (chaos)": self.counts["collector restarts"],
            "collector kills": self.counts["collector kills"],
            # Counted from exit statuses: a SIGKILL that raced the child's own exit does not count.
            "killed track": self.exit_codes["track -9"],
            "killed track --stdin": self.exit_codes["track-stdin -9"],
            "killed flush (cron)": self.exit_codes["flush -9"] + self.exit_codes["flush-if-due -9"],
            "killed background flush": self.counts["killed background flush"],
            "killed at the end": self.counts["killed at the end"],
            "hostile answers": {k[6:]: v for k, v in sorted(self.counts.items()) if k.startswith("proxy ")},
            "clock jumps": self.counts["clock jumps"],
            "hung children": sum(v for k, v in self.counts.items() if k.endswith("hung")),
            "client tracebacks": self.bad["traceback"],
            "client 'database is locked'": self.bad["locked"],
            "collector tracebacks (not failing)": dict(collector_errors),
            "drained": drained,
            "final status": {k: status.get(k) for k in ("pending", "sending", "rejected")},
            "exit codes": dict(sorted(self.exit_codes.items())),
        }
        width = max(len(k) for k in figures)
        for key, value in figures.items():
            print(f"{key:<{width}}  {value}")
        if lost:
            print(f"LOST ids: {lost[:30]}")
        if gaps:
            print(f"GAPS: {{{', '.join(f'{s[:8]}: {v[:30]}' for s, v in gaps.items())}}}")
        if nr_conflicts:
            print(f"(session, nr) CONFLICTS: {list(nr_conflicts.items())[:10]}")
        if id_conflicts:
            print(f"ids under several nr: {list(id_conflicts.items())[:10]}")
        if unknown:
            print(f"unknown ids: {sorted(unknown)[:10]}")
        if misrouted:
            print(f"MISROUTED ids: {misrouted[:10]}")
        if refused_received:
            print(f"REFUSED (exit 3) yet RECEIVED: {refused_received[:10]}")
        for text in self.excerpts:
            print(text)
        print(f"work dir: {self.work} (chaos.log, stderr/, received-*.jsonl, spool/)")
        failed = (
            lost
            or gaps
            or nr_conflicts
            or id_conflicts
            or misrouted
            or self.bad["traceback"]
            or self.bad["locked"]
            or self.failed_ids
            or refused_received
            or not drained
        )
        self.passed = not failed
        if not failed and not self.args.keep:
            print("(work dir removed at exit; --keep keeps it)")
        print("RESULT: " + ("FAIL" if failed else "OK"))
        return 1 if failed else 0


def seconds_range(p: argparse.ArgumentParser, flag: str, default: tuple[float, float], help: str) -> None:
    """An option of two numbers, MIN and MAX seconds, the moment drawn between them."""
    p.add_argument(
        flag,
        type=float,
        nargs=2,
        default=default,
        metavar=("MIN", "MAX"),
        help=f"{help} (default {default[0]:g} {default[1]:g})",
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60, help="how long the chaos lasts (default 60)")
    p.add_argument("--trackers", type=int, default=4, help="tracking loops (default 4)")
    p.add_argument(
        "--trackers-b",
        type=int,
        default=2,
        help="tracking loops with the second destination's config, same spool (default 2)",
    )
    p.add_argument(
        "--sessions", type=int, default=2, help="distinct sessions (product_version per tracker, default 2)"
    )
    p.add_argument("--fail-rate", type=float, default=0.2, help="collector failure share (default 0.2)")
    p.add_argument(
        "--collector-delay",
        type=float,
        default=0.02,
        help="collector holds each request this long, so kills land mid-request (default 0.02)",
    )
    seconds_range(p, "--collector-kill-every", (2.0, 5.0), "seconds between collector kills")
    p.add_argument(
        "--kill-share",
        type=float,
        default=0.5,
        help="chance that a chaos tick (every 0.1-0.4 s) kills a random in-flight process (default 0.5)",
    )
    p.add_argument(
        "--doom-share",
        type=float,
        default=0.1,
        help="share of tracks and cron flushes given a SIGKILL timer at a random moment of "
        "their life (track 0-0.4 s, flush 0.1-1 s; default 0.1)",
    )
    p.add_argument(
        "--stdin-share", type=float, default=0.25, help="share of tracks via --stdin (default 0.25)"
    )
    p.add_argument(
        "--hostile-share",
        type=float,
        default=0.3,
        help="share of exchanges the proxy answers badly: odd headers, drips, cuts, statuses (default 0.3)",
    )
    seconds_range(
        p,
        "--clock-jump-every",
        (2.0, 6.0),
        "seconds between rewrites of the stored sync state a year or a month off",
    )
    p.add_argument(
        "--disk-mib",
        type=int,
        default=48,
        help="size of the spool's own tmpfs, filled and freed during the run (root only; 0: no "
        "full-disk phase; default 48)",
    )
    seconds_range(p, "--disk-full-every", (4.0, 10.0), "seconds between fills of the spool's file system")
    seconds_range(p, "--disk-full-for", (2.0, 6.0), "seconds it stays full")
    p.add_argument("--queue-size", type=int, default=10)
    p.add_argument("--timeout", type=float, default=5.0, help="client request timeout (default 5)")
    p.add_argument("--grace", type=float, default=30.0, help="seconds to wait for children at the end")
    p.add_argument("--drain-tries", type=int, default=20)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--python", default=sys.executable, help="python that runs hamustro_cli (default: this one)"
    )
    p.add_argument("--keep", action="store_true", help="keep the work dir even when everything passed")
    args = p.parse_args()
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    print(f"soak: seed {args.seed}", file=sys.stderr)
    return Soak(args).run()


if __name__ == "__main__":
    sys.exit(main())
