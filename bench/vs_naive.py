"""Benchmark 6: against the obvious alternative. A naive script posts each event the moment
it happens: a fresh python process that imports requests and protobuf (via hamustro_cli.wire),
signs one Collection and POSTs it. Against it: `hamustro track EVENT` per event (flush = "off")
plus one `hamustro flush` every --flush-every events. Per-event cost and ratio; runs are
interleaved, the project's collector runs as a separate process."""

from __future__ import annotations

import argparse

import benchlib as b

NAIVE = """\
import sys, time
import requests
from hamustro_cli import wire
from hamustro_cli.session import Session
from hamustro_cli.spool.records import QueuedEvent

url, secret, event, nr = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
s = Session.from_settings("bench-device", "bench-client", "Linux 6.1", "1.0.0", "linux", "abc123")
now = int(time.time())
body = wire.encode(s, [QueuedEvent(0, nr, now, event, None, None, '{"path":"/home"}', False)])
r = requests.post(url + wire.TRACK_PATH, data=body, headers=wire.headers(body, secret, now), timeout=10)
r.raise_for_status()
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=60)
    ap.add_argument(
        "--flush-every", type=int, default=20, help="events between two flushes (queue_size's default)"
    )
    ap.add_argument("--quick", action="store_true", help="20 events")
    args = ap.parse_args()
    n = 20 if args.quick else args.events
    b.header(
        "vs naive post-per-event", f"{n} events each, interleaved; one flush every {args.flush_every} events"
    )

    with b.Workdir("naive", queue_size=10**9) as work:
        script = work.root / "naive.py"
        script.write_text(NAIVE)
        with b.Collector(work) as coll:
            work.write_config(collector_url=coll.url)
            env = work.env()
            naive = [*b.python(), str(script), coll.url, b.SECRET, "page_view"]
            track = [*b.hamustro(), "track", "page_view", "--param", "path=/home"]
            flush = [*b.hamustro(), "flush"]
            for i in range(2):  # .pyc files
                b.run([*naive, str(i + 1)], env)
                b.run(track, env)
                b.run(flush, env)
            t_naive, t_track, t_flush = [], [], []
            for i in range(n):
                t_naive.append(b.run([*naive, str(i + 10)], env)[0])
                t_track.append(b.run(track, env)[0])
                if (i + 1) % args.flush_every == 0 or i == n - 1:
                    t_flush.append(b.run(flush, env)[0])

    naive_per = sum(t_naive) / n
    ours_per = (sum(t_track) + sum(t_flush)) / n
    print(f"   naive: median {b.ms(b.median(t_naive))} per event, mean {b.ms(naive_per)}")
    print(
        f"   hamustro: track median {b.ms(b.median(t_track))}, flush median {b.ms(b.median(t_flush))} "
        f"x{len(t_flush)}; per event incl. flushes {b.ms(ours_per)}"
    )
    print(
        f"   ratio naive/hamustro per event = {naive_per / ours_per:.2f}x "
        "(and the naive script loses the event whenever the collector is unreachable)"
    )


if __name__ == "__main__":
    main()
