"""Benchmark 3: N queued events (default 100,000) in two sessions (product_version changed
between two bulk tracks), flushed by `hamustro flush` to the project's collector running as
a separate process on loopback and writing to a file. Whole flush command timed.
Targets: >= 150,000 events/s, and >= 10x faster than one request per event (timed on a
sample with max_batch_events = 1 and extrapolated).
Floor of issue 10, in the same run: the same events flushed by a plain sequential loop (read a
batch with sqlite3, encode it with hamustro_cli.wire, POST it with requests.Session, delete it
after the 200) against `hamustro flush`, both to a collector that only reads the body and
answers 200 (its own process). Goal for that ratio: <= 1.25x."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import benchlib as b

TARGET_RATE = 150_000
TARGET_RATIO = 10.0
FLOOR_GOAL = 1.25
FLOOR_BATCH = 2000  # the tool's default max_batch_events; both sides are given it explicitly
# argv: spool database, collector URL, secret, batch size. Reads the spool with sqlite3 (the
# sessions and events tables), so only hamustro_cli.wire's encode and headers are borrowed.
LOOP = """\
import sqlite3, sys, time
import requests
from hamustro_cli import wire
from hamustro_cli.spool.records import QueuedEvent
from hamustro_cli.session import Session

path, url, secret, limit = sys.argv[1], sys.argv[2] + wire.TRACK_PATH, sys.argv[3], int(sys.argv[4])
db = sqlite3.connect(path, isolation_level=None)
db.execute("PRAGMA synchronous=NORMAL")  # as the tool's flush: a lost delete only resends
http = requests.Session()
sent = 0
for sid, session, device_id, client_id, system_version, product_version, system, git_hash in db.execute(
    "SELECT a.id, s.session, s.device_id, s.client_id, s.system_version, s.product_version, a.system, "
    "a.product_git_hash FROM attributes a JOIN sessions s ON s.id = a.session_id ORDER BY a.id"
).fetchall():
    attrs = Session(session, device_id, client_id, system_version, product_version, system, git_hash)
    after = 0
    while True:
        rows = list(map(QueuedEvent._make, db.execute(
            "SELECT id, nr, at, event, user_id, ip, parameters, is_testing FROM events "
            "WHERE state = 0 AND attr_id = ? AND id > ? ORDER BY id LIMIT ?",
            (sid, after, limit),
        )))
        if not rows:
            break
        body = wire.encode(attrs, rows)
        r = http.post(url, data=body, headers=wire.headers(body, secret, int(time.time())), timeout=30)
        if r.status_code != 200:
            sys.exit(f"collector answered {r.status_code}")
        db.execute(
            "DELETE FROM events WHERE attr_id = ? AND id BETWEEN ? AND ?", (sid, rows[0].id, rows[-1].id)
        )
        after = rows[-1].id
        sent += len(rows)
print(sent)
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument(
        "--single-sample",
        type=int,
        default=2_000,
        help="events sent one request each, to extrapolate the per-event cost",
    )
    ap.add_argument(
        "--max-batch-events",
        type=int,
        default=None,
        help="config max_batch_events for the batched run (default: the tool's default)",
    )
    ap.add_argument("--quick", action="store_true", help="20,000 events, 1 run, 500-event sample")
    args = ap.parse_args()
    n, runs, sample = (20_000, 1, 500) if args.quick else (args.events, args.runs, args.single_sample)
    b.header("flush throughput", f"{n} events in 2 sessions, {runs} run(s); collector process -> file")

    with b.Workdir("flush", queue_size=10**9, max_batch_events=args.max_batch_events) as work:
        out = work.root / "collected.jsonl"
        halves = [
            b.write_lines(work.root / "a.jsonl", n // 2),
            b.write_lines(work.root / "b.jsonl", n - n // 2, start=n // 2),
        ]
        with b.Collector(work, out) as coll:
            work.write_config(collector_url=coll.url)
            env = work.env()
            track = [*b.hamustro(), "track", "--stdin"]
            flush = [*b.hamustro(), "flush", "--json"]

            def queue(lines_a: object, lines_b: object) -> None:
                work.reset_spool()
                work.write_config(product_version="1.0.0")
                b.run(track, env, stdin=lines_a)
                work.write_config(product_version="2.0.0")
                b.run(track, env, stdin=lines_b)

            # warm-up: .pyc files and a first connection
            warm = b.write_lines(work.root / "warm.jsonl", 10)
            queue(warm, warm)
            b.run(flush, env)

            times = []
            for _ in range(runs):
                queue(*halves)
                before = b.count_lines(out)
                t, proc = b.run(flush, env, capture=True)
                report = json.loads(proc.stdout)
                got = b.count_lines(out) - before
                if report["sent"] != n or got != n:
                    raise SystemExit(f"bench: sent {report['sent']}, collector wrote {got}, expected {n}")
                times.append(t)
                batches = len(report["batches"])

            # the floor: a plain read-encode-POST-delete loop, both to a collector that only reads
            with b.MinimalCollector() as minimal:
                t_ours, t_loop = floor_pairs(work, queue, halves, warm, minimal.url, runs, n)

            # one request per event: a sample, extrapolated per event
            work.reset_spool()
            work.write_config(product_version="1.0.0", max_batch_events=1)
            b.run(track, env, stdin=b.write_lines(work.root / "single.jsonl", sample))
            t_single, proc = b.run(flush, env, capture=True)
            assert json.loads(proc.stdout)["sent"] == sample

    m_ours, m_loop = b.median(t_ours), b.median(t_loop)
    m = b.median(times)
    rate = n / m
    per_batched = m / n
    per_single = t_single / sample
    ratio = per_single / per_batched
    print(f"   batched: {n} events in {batches} requests, median {b.ms(m)} (min {b.ms(min(times))})")
    print(f"   rate {rate:,.0f} events/s  target >= {TARGET_RATE:,}: {b.verdict(rate >= TARGET_RATE)}")
    print(
        f"   one request each: {sample} events sampled in {b.ms(t_single)} = "
        f"{per_single * 1e6:.0f} us/event"
        f" (extrapolated to {n}: {per_single * n:.1f} s)"
    )
    print(
        f"   ratio one-each/batched = {ratio:.1f}x  target >= {TARGET_RATIO:g}x: "
        f"{b.verdict(ratio >= TARGET_RATIO)}"
    )
    print(
        f"   to a collector that only reads and answers 200 ({FLOOR_BATCH} events a request): "
        f"flush median {b.ms(m_ours)}, plain loop (sqlite3, wire.encode, requests) median {b.ms(m_loop)}"
    )
    print(
        f"   ratio flush/floor = {m_ours / m_loop:.2f}  goal <= {FLOOR_GOAL}: "
        f"{b.within(m_ours / m_loop <= FLOOR_GOAL)}"
        f"  (per run: {', '.join(f'{o / f:.2f}' for o, f in zip(t_ours, t_loop, strict=True))})"
    )


def floor_pairs(
    work: b.Workdir,
    queue: Callable[[Path, Path], None],
    halves: list[Path],
    warm: Path,
    url: str,
    runs: int,
    n: int,
) -> tuple[list[float], list[float]]:
    """`hamustro flush` and the plain loop on the same queued events, alternated."""
    saved = {k: work.config.get(k) for k in ("collector_url", "max_batch_events")}
    work.write_config(collector_url=url, max_batch_events=FLOOR_BATCH)
    env = work.env()
    flush = [*b.hamustro(), "flush", "--json"]

    def loop() -> list[str]:
        return [*b.python(), "-c", LOOP, str(b.spool_db(work)), url, b.SECRET, str(FLOOR_BATCH)]

    queue(warm, warm)  # .pyc files of the loop, a first connection
    b.run(loop(), env)
    t_ours: list[float] = []
    t_loop: list[float] = []
    for i in range(max(runs, 3)):
        pair = ["ours", "loop"] if i % 2 == 0 else ["loop", "ours"]
        for who in pair:
            queue(*halves)
            if who == "ours":
                t, proc = b.run(flush, env, capture=True)
                sent = json.loads(proc.stdout)["sent"]
                t_ours.append(t)
            else:
                t, proc = b.run(loop(), env, capture=True)
                sent = int(proc.stdout)
                t_loop.append(t)
            if sent != n:
                raise SystemExit(f"bench: {who} sent {sent} of {n}")
    work.write_config(**saved)
    return t_ours, t_loop


if __name__ == "__main__":
    main()
