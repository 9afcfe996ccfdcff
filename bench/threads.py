"""Benchmark: events per second tracked by N threads sharing one ClientTracker (the Python
API in a threaded service), against one thread, in the same run. Every event is a committed
transaction (synchronous = FULL), so the disk's sync time bounds all of them; the point is
that adding threads does not lower the rate (they wait on the tracker's lock only as long as
one commit takes). Target: every ratio >= 0.9."""

from __future__ import annotations

import argparse
import threading
import time

import benchlib as b

from hamustro_cli import ClientTracker

TARGET = 0.9
THREADS = (1, 2, 4, 8, 32)


def rate(tracker: ClientTracker, threads: int, events: int) -> float:
    """Events per second: `events` tracked by `threads` threads through one tracker."""
    before = tracker.status()["pending"]
    each = events // threads
    start = threading.Barrier(threads + 1)

    def track(n: int) -> None:
        start.wait()
        for i in range(each):
            tracker.track_event("page_view", user_id=n, params={"i": i})

    workers = [threading.Thread(target=track, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    start.wait()
    began = time.perf_counter()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - began
    assert tracker.status()["pending"] == before + each * threads
    return each * threads / elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=3200, help="events per measurement")
    ap.add_argument("--repeat", type=int, default=3, help="measurements per thread count (median)")
    ap.add_argument("--quick", action="store_true", help="640 events a measurement")
    args = ap.parse_args()
    events = 640 if args.quick else args.events
    b.header("threads", f"{events} events per measurement, median of {args.repeat}; flush = off")
    with b.Workdir("threads", queue_size=10**9) as work:
        settings = {k: v for k, v in work.config.items() if k != "collector_url"}
        tracker = ClientTracker(
            collector_url=work.config["collector_url"], spool_dir=str(work.spool_dir), **settings
        )
        rate(tracker, 1, events)  # a spool in its steady state (WAL grown, pages cached): not counted
        rates: dict[int, list[float]] = {n: [] for n in THREADS}
        for _ in range(args.repeat):  # interleaved on the same spool, so drift hits every count alike
            for n in THREADS:
                rates[n].append(rate(tracker, n, events))
        tracker.close()
    one = b.median(rates[1])
    worst = 1.0
    for n in THREADS:
        m = b.median(rates[n])
        worst = min(worst, m / one)
        print(f"   {n:>2} thread(s): {m:8.0f} events/s  ratio to 1 thread {m / one:.2f}")
    print(f"   lowest ratio {worst:.2f}  target >= {TARGET}: {b.verdict(worst >= TARGET)}")


if __name__ == "__main__":
    main()
