"""Benchmark 4: peak resident memory of `hamustro flush` sending a backlog of N events
(default 1,000,000) to the project's collector (separate process, output to /dev/null).
Measured with wait4() on the flushing process itself (its ru_maxrss). Target: <= 48 MiB,
whatever the backlog. Baselines: the floor python and `hamustro --version`."""

from __future__ import annotations

import argparse
import json
import time

import benchlib as b

TARGET_MIB = 48


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="100,000 events")
    args = ap.parse_args()
    n = 100_000 if args.quick else args.events
    b.header("flush memory", f"backlog of {n} events in 2 sessions; peak RSS of the flush process")

    with b.Workdir("memory", queue_size=10**9) as work:
        with b.Collector(work) as coll:
            work.write_config(collector_url=coll.url)
            env = work.env()
            b.run([*b.hamustro(), "flush"], env, check=False)  # .pyc files
            _, floor_kib, _, _ = b.run_rusage(b.floor_cmd(), env)
            _, version_kib, _, _ = b.run_rusage([*b.hamustro(), "--version"], env)
            start = time.perf_counter()
            b.fill_spool(work.spool_dir, n)
            fill = time.perf_counter() - start
            db_mib = (work.spool_dir / "spool.sqlite3").stat().st_size / 2**20
            wall, peak_kib, code, out = b.run_rusage([*b.hamustro(), "flush", "--json"], env)
            report = json.loads(out) if out else {}
            if code != 0 or report.get("sent") != n:
                raise SystemExit(f"bench: flush exited {code}, sent {report.get('sent')} of {n}")

    peak = peak_kib / 1024
    print(f"   spool filled in-process in {fill:.1f} s ({db_mib:.0f} MiB database)")
    print(
        f"   peak RSS: floor python {floor_kib / 1024:.1f} MiB, "
        f"hamustro --version {version_kib / 1024:.1f} MiB"
    )
    print(
        f"   flush peak RSS {peak:.1f} MiB  target <= {TARGET_MIB} MiB: {b.verdict(peak <= TARGET_MIB)}"
        f"  ({peak / (floor_kib / 1024):.2f}x the floor)"
    )
    print(f"   flush wall {wall:.2f} s = {n / wall:,.0f} events/s ({len(report['batches'])} requests)")


if __name__ == "__main__":
    main()
