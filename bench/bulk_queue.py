"""Benchmark 2: `hamustro track --stdin` with N JSON lines (default 100,000), whole command
timed. Target: >= 150,000 events/s. Baselines in the same run: python startup reading the
same input, and python startup json-parsing every line (the least any parser must do)."""

from __future__ import annotations

import argparse

import benchlib as b

TARGET = 150_000
READ = "import sys; sys.stdin.buffer.read()"
PARSE = "import sys, json\nfor line in sys.stdin: json.loads(line)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="20,000 events, 2 runs")
    args = ap.parse_args()
    n, runs = (20_000, 2) if args.quick else (args.events, args.runs)
    b.header("bulk queuing", f"track --stdin with {n} lines, {runs} runs (fresh spool each), median")

    with b.Workdir("bulk", queue_size=10**9) as work:
        env = work.env()
        lines = b.write_lines(work.root / "events.jsonl", n)
        track = [*b.hamustro(), "track", "--stdin"]
        b.run(track, env, stdin=b.write_lines(work.root / "warm.jsonl", 10))  # .pyc, spool schema
        t_track, t_read, t_parse = [], [], []
        for _ in range(runs):
            work.reset_spool()
            t_track.append(b.run(track, env, stdin=lines)[0])
            t_read.append(b.run([*b.python(), "-c", READ], env, stdin=lines)[0])
            t_parse.append(b.run([*b.python(), "-c", PARSE], env, stdin=lines)[0])
        size = lines.stat().st_size

    m, mr, mp = b.median(t_track), b.median(t_read), b.median(t_parse)
    rate = n / m
    print(f"   input {size / 1e6:.1f} MB")
    print(f"   baseline python+read   median {b.ms(mr)}")
    print(f"   baseline python+json   median {b.ms(mp)}  ({n / mp:,.0f} lines/s)")
    print(f"   track --stdin          median {b.ms(m)}  (min {b.ms(min(t_track))})")
    print(f"   rate {rate:,.0f} events/s  target >= {TARGET:,}: {b.verdict(rate >= TARGET)}")
    print(f"   ratio track/read = {m / mr:.2f}   track/json-parse = {m / mp:.2f}")


if __name__ == "__main__":
    main()
