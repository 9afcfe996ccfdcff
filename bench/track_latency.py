"""Benchmark 1: median wall time of `hamustro track EVENT` (no flush triggered) against the
floor `python -c "import click, sqlite3, tomllib, hashlib"`, runs interleaved. Target: <= 1.25x."""

from __future__ import annotations

import argparse

import benchlib as b

TARGET = 1.25


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=40, help="timed track runs (and as many floor runs)")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="15 runs")
    args = ap.parse_args()
    n = 15 if args.quick else args.events
    b.header("track latency", f'{n} interleaved runs of each; flush = "off", queue_size huge')

    with b.Workdir("track", queue_size=10**9) as work:
        env = work.env()
        track = [*b.hamustro(), "track", "page_view", "--param", "path=/home"]
        floor = b.floor_cmd()
        for _ in range(args.warmup):  # writes .pyc files, creates the spool
            b.run(track, env)
            b.run(floor, env)
        t_track, t_floor = [], []
        for i in range(n):
            pair = [(track, t_track), (floor, t_floor)]
            if i % 2:
                pair.reverse()
            for cmd, into in pair:
                into.append(b.run(cmd, env)[0])
        version = [b.run([*b.hamustro(), "--version"], env)[0] for _ in range(max(5, n // 3))]

    m_track, m_floor = b.median(t_track), b.median(t_floor)
    ratio = m_track / m_floor
    print(f"   floor  median {b.ms(m_floor)}  (min {b.ms(min(t_floor))})")
    print(f"   track  median {b.ms(m_track)}  (min {b.ms(min(t_track))})")
    print(f"   --version median {b.ms(b.median(version))}  (CLI import cost, no spool)")
    print(f"   ratio track/floor = {ratio:.3f}  target <= {TARGET}: {b.verdict(ratio <= TARGET)}")


if __name__ == "__main__":
    main()
