"""Benchmark 1: `hamustro track` against two floors, runs interleaved (issue 16).

The physical floor is bench/physical_floor.py (a copy of the team's shared/bench one) under
`python -I -S`: a bare interpreter that opens a WAL SQLite file and commits one row durably.
The click floor is `python -c "import click, sqlite3, tomllib, hashlib"`. Forms timed: the plain
`track EVENT --user-id N --param k=v` (flush = "background", no trigger firing), the same with
--json, one that starts the background flush (queue_size = 1, a local collector; the spawn is
included), and `track --stdin` of 10 lines. Each run is a triple (form, physical floor, click
floor) in rotating order; the ratio is the median of the per-triple ratios, with its spread
(the middle half, and min to max). Goals: <= 2.0x the physical floor (--stdin: 2.5x)."""

from __future__ import annotations

import argparse
from pathlib import Path

import benchlib as b

GOALS = {"plain": 2.0, "--json": 2.0, "spawn": 2.0, "--stdin 10": 2.5}
HERE = Path(__file__).resolve().parent


def spread(values: list[float]) -> str:
    ordered = sorted(values)
    q1, q3 = ordered[len(ordered) // 4], ordered[(3 * len(ordered)) // 4]
    return f"middle half {q1:.2f}-{q3:.2f}, min-max {ordered[0]:.2f}-{ordered[-1]:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=30, help="timed triples per form")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="12 triples per form")
    args = ap.parse_args()
    n = 12 if args.quick else args.runs
    b.header("track latency", f"{n} interleaved triples per form (track, physical floor, click floor)")
    floor_script = HERE / "physical_floor.py"

    with b.Workdir("track", flush="background", queue_size=10**9) as work, b.Collector(work) as collector:
        lines = work.root / "ten.jsonl"
        b.write_lines(lines, 10)
        physical = [*b.python(), "-I", "-S", str(floor_script), str(work.root)]
        click_floor = b.floor_cmd()
        base = [*b.hamustro(), "track", "page_view", "--user-id", "42", "--param", "path=/home"]
        forms: dict[str, tuple[list[str], Path | None, dict[str, object]]] = {
            "plain": (base, None, {}),
            "--json": ([*base, "--json"], None, {}),
            "spawn": (base, None, {"queue_size": 1, "collector_url": collector.url}),
            "--stdin 10": ([*b.hamustro(), "track", "--stdin"], lines, {}),
        }
        env = work.env()
        print(
            f"   {'form':<11} {'track':>9} {'physical':>9} {'click':>9}  ratio to physical (spread)  to click"
        )
        for name, (cmd, stdin, config) in forms.items():
            work.write_config(**{"queue_size": 10**9, "collector_url": "http://127.0.0.1:9", **config})
            for _ in range(args.warmup):  # writes .pyc files, creates the spool
                b.run(cmd, env, stdin=stdin)
                b.run(physical, env)
                b.run(click_floor, env)
            times: dict[str, list[float]] = {"track": [], "physical": [], "click": []}
            triple = [("track", cmd, stdin), ("physical", physical, None), ("click", click_floor, None)]
            for i in range(n):
                for key, command, given in triple[i % 3 :] + triple[: i % 3]:
                    times[key].append(b.run(command, env, stdin=given)[0])
            to_physical = [t / p for t, p in zip(times["track"], times["physical"], strict=True)]
            to_click = [t / c for t, c in zip(times["track"], times["click"], strict=True)]
            ratio = b.median(to_physical)
            print(
                f"   {name:<11} {b.ms(b.median(times['track'])):>9} {b.ms(b.median(times['physical'])):>9}"
                f" {b.ms(b.median(times['click'])):>9}  {ratio:.2f}x ({spread(to_physical)})"
                f"  {b.median(to_click):.2f}x  goal <= {GOALS[name]}x: {b.within(ratio <= GOALS[name])}"
            )


if __name__ == "__main__":
    main()
