"""Benchmark 5: `hamustro status --json` on a spool of N events (default 1,000,000, two
sessions). Target: <= 0.5 s wall. Ratio against the python floor, runs interleaved."""

from __future__ import annotations

import argparse
import time

import benchlib as b

TARGET_S = 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="200,000 events, 5 runs")
    args = ap.parse_args()
    n, runs = (200_000, 5) if args.quick else (args.events, args.runs)
    b.header("status on a big spool", f"{n} events in 2 sessions, {runs} interleaved runs")

    with b.Workdir("status", queue_size=10**9) as work:
        env = work.env()
        start = time.perf_counter()
        b.fill_spool(work.spool_dir, n)
        fill = time.perf_counter() - start
        status = [*b.hamustro(), "status", "--json"]
        floor = b.floor_cmd()
        b.run(status, env)  # .pyc files, page cache
        b.run(floor, env)
        t_status, t_floor = [], []
        for _ in range(runs):
            t_status.append(b.run(status, env)[0])
            t_floor.append(b.run(floor, env)[0])
        _, proc = b.run(status, env, capture=True)
        assert f'"pending": {n}' in proc.stdout.decode()

    m, mf = b.median(t_status), b.median(t_floor)
    print(f"   spool filled in-process in {fill:.1f} s")
    print(f"   floor  median {b.ms(mf)}")
    print(
        f"   status median {b.ms(m)}  (min {b.ms(min(t_status))})  target <= {TARGET_S} s: "
        f"{b.verdict(m <= TARGET_S)}"
    )
    print(f"   ratio status/floor = {m / mf:.2f}")


if __name__ == "__main__":
    main()
