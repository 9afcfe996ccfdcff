"""Benchmark 3: N queued events (default 100,000) in two sessions (product_version changed
between two bulk tracks), flushed by `hamustro flush` to the project's collector running as
a separate process on loopback and writing to a file. Whole flush command timed.
Targets: >= 150,000 events/s, and >= 10x faster than one request per event (timed on a
sample with max_batch_events = 1 and extrapolated)."""

from __future__ import annotations

import argparse
import json

import benchlib as b

TARGET_RATE = 150_000
TARGET_RATIO = 10.0


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

            # one request per event: a sample, extrapolated per event
            work.reset_spool()
            work.write_config(product_version="1.0.0", max_batch_events=1)
            b.run(track, env, stdin=b.write_lines(work.root / "single.jsonl", sample))
            t_single, proc = b.run(flush, env, capture=True)
            assert json.loads(proc.stdout)["sent"] == sample

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


if __name__ == "__main__":
    main()
