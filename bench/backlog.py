"""Benchmark: cost at a backlog (issue 10). With N events pending (default 1,000,000) against
a spool holding one: `track` and `status --json` (calls alternated, medians of the pairs), the
spool's files after a flush emptied the big spool, and `track`'s p95 while that flush runs
against its p95 on the same spool when idle. Ratios only, measured in this run."""

from __future__ import annotations

import argparse
import os
import subprocess
import time

import benchlib as b


def spool_bytes(work: b.Workdir) -> int:
    return sum(
        os.path.getsize(work.spool_dir / name)
        for name in os.listdir(work.spool_dir)
        if name.startswith("spool.sqlite3")
    )


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=15)
    ap.add_argument("--quick", action="store_true", help="100,000 events, 7 pairs")
    args = ap.parse_args()
    n, pairs = (100_000, 7) if args.quick else (args.events, args.pairs)
    b.header("cost at a backlog", f"{n} events pending against 1, {pairs} alternated pairs")
    settings = {"queue_size": 10**9, "queue_retention": 10**6}
    with b.Workdir("backlog-big", **settings) as big, b.Workdir("backlog-one", **settings) as one:
        start = time.perf_counter()
        b.fill_spool(big.spool_dir, n)
        b.fill_spool(one.spool_dir, 1)
        print(f"   spools filled in-process in {time.perf_counter() - start:.1f} s")
        print(f"   big spool files before the flush: {spool_bytes(big) / 2**20:.1f} MiB")
        for what, cmd in (("track", ["track", "bench.event"]), ("status", ["status", "--json"])):
            full = [*b.hamustro(), *cmd]
            b.run(full, big.env())
            b.run(full, one.env())
            t_big, t_one = [], []
            for _ in range(pairs):
                t_big.append(b.run(full, big.env())[0])
                t_one.append(b.run(full, one.env())[0])
            mb, mo = b.median(t_big), b.median(t_one)
            print(f"   {what:<7} 1 pending {b.ms(mo)}  {n} pending {b.ms(mb)}  ratio {mb / mo:.2f}")

        track = [*b.hamustro(), "track", "bench.during"]
        idle = [b.run(track, big.env())[0] for _ in range(40)]
        with b.Collector(big) as collector:
            big.write_config(collector_url=collector.url)
            env = big.env()
            start = time.perf_counter()
            flush = subprocess.Popen(
                [*b.hamustro(), "flush"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
            )
            during = []
            while flush.poll() is None:
                during.append(b.run(track, env)[0])
            took = time.perf_counter() - start
            assert flush.returncode == 0, flush.stderr.read() if flush.stderr else ""
            if flush.stderr:
                flush.stderr.close()
            b.run([*b.hamustro(), "flush"], env)  # what was tracked during the flush
        print(f"   flush of {n}: {took:.1f} s ({n / took:,.0f} events/s, with tracks beside it)")
        print(
            f"   track p95 idle {b.ms(p95(idle))}, during the flush {b.ms(p95(during))} "
            f"({len(during)} tracks): ratio {p95(during) / p95(idle):.2f}"
        )
        print(f"   spool files after the flush emptied it: {spool_bytes(big) / 2**20:.2f} MiB")


if __name__ == "__main__":
    main()
