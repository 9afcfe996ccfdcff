"""Benchmark 2: `hamustro track --stdin` with N JSON lines (default 100,000), whole command
timed. Target: >= 150,000 events/s. Baselines in the same run: python startup reading the
same input, python startup json-parsing every line (the least any parser must do), and the
floor of issue 10: the least a Python program can do to store the lines durably (parse each
line, one executemany into a table of the spool's shape in one transaction, WAL and
synchronous FULL as the spool). Goal for the floor ratio: <= 1.25x."""

from __future__ import annotations

import argparse

import benchlib as b

TARGET = 150_000
READ = "import sys; sys.stdin.buffer.read()"
PARSE = "import sys, json\nfor line in sys.stdin: json.loads(line)"
FLOOR_GOAL = 1.25
# argv: database path, file holding the events table's CREATE statements
STORE = """\
import json, sqlite3, sys, time

db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA journal_mode=WAL")
db.execute("PRAGMA synchronous=FULL")
with open(sys.argv[2]) as f:
    schema = f.read()
now = int(time.time())
dumps = json.JSONEncoder(separators=(",", ":")).encode
rows = []
for nr, line in enumerate(sys.stdin, 1):
    o = json.loads(line)
    p = o.get("params")
    if p is not None and type(p) is not str:
        p = dumps(p)
    testing = o.get("is_testing", False)
    rows.append((1, nr, o.get("at", now), o["event"], o.get("user_id"), "127.0.0.1", p, testing))
db.execute("BEGIN IMMEDIATE")
for statement in schema.split(";\\n"):
    db.execute(statement)
db.executemany(
    "INSERT INTO events (session_id, nr, at, event, user_id, ip, parameters, is_testing) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    rows,
)
db.execute("COMMIT")
"""


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
        schema = work.root / "events-schema.sql"
        schema.write_text(b.events_schema(b.spool_db(work)))
        floor_db = work.root / "floor" / "floor.sqlite3"
        store = [*b.python(), "-c", STORE, str(floor_db), str(schema)]

        def fresh_floor() -> None:
            b.shutil.rmtree(floor_db.parent, ignore_errors=True)
            floor_db.parent.mkdir(mode=0o700)

        fresh_floor()
        b.run(store, env, stdin=lines)  # .pyc files, page cache
        t_track, t_read, t_parse, t_store = [], [], [], []
        for i in range(runs):
            work.reset_spool()
            fresh_floor()
            pair = [(track, t_track), (store, t_store)]
            if i % 2:
                pair.reverse()
            for cmd, into in pair:
                into.append(b.run(cmd, env, stdin=lines)[0])
            t_read.append(b.run([*b.python(), "-c", READ], env, stdin=lines)[0])
            t_parse.append(b.run([*b.python(), "-c", PARSE], env, stdin=lines)[0])
        size = lines.stat().st_size

    m, mr, mp, mf = b.median(t_track), b.median(t_read), b.median(t_parse), b.median(t_store)
    rate = n / m
    print(f"   input {size / 1e6:.1f} MB")
    print(f"   baseline python+read   median {b.ms(mr)}")
    print(f"   baseline python+json   median {b.ms(mp)}  ({n / mp:,.0f} lines/s)")
    print(f"   track --stdin          median {b.ms(m)}  (min {b.ms(min(t_track))})")
    print(f"   rate {rate:,.0f} events/s  target >= {TARGET:,}: {b.verdict(rate >= TARGET)}")
    print(f"   ratio track/read = {m / mr:.2f}   track/json-parse = {m / mp:.2f}")
    print(f"   floor python parse+executemany (WAL, synchronous FULL)  median {b.ms(mf)}")
    print(
        f"   ratio track/floor = {m / mf:.2f}  goal <= {FLOOR_GOAL}: {b.within(m / mf <= FLOOR_GOAL)}"
        f"  (per run: {', '.join(f'{t / f:.2f}' for t, f in zip(t_track, t_store, strict=True))})"
    )


if __name__ == "__main__":
    main()
