"""Benchmark (issue 15): what the spool's bounds cost `track`, and what `hamustro metrics`
costs, at a backlog of N events (default 1,000,000).

One spool of N pending events (queued in-process, as bench/backlog.py does), three configs on
it, `hamustro track EVENT` run under each in turn, alternated, --pairs times: no bound at all
(spool_max_events = spool_max_mb = spool_keep_free_mb = 0: the code path before the bounds),
every bound on but none reached (spool_max_events 2N, spool_max_mb 100000, the default 8 MiB
keep-free floor: the counters' sum, the header's page counts and a statvfs on every call),
and at the cap with when_full = "drop_oldest" (spool_max_events = N: every call deletes the
oldest event too). The ratio of the medians against the no-bound run is the figure. The same
three in-process (Spool.enqueue of one event, --calls times each, alternated), which sees
smaller differences than a process start can. Then `hamustro metrics` on the N-event spool
against a one-event spool, alternated. Goals are printed, never enforced."""

from __future__ import annotations

import argparse
import time
from typing import Any

import benchlib as b

GOAL_RATIO = 1.05  # "nothing measurable": within a process start's noise
TRACK = ["track", "page_view", "--param", "path=/home"]
OFF = {"spool_max_events": 0, "spool_max_mb": 0, "spool_keep_free_mb": 0}


def configs(n: int) -> dict[str, dict[str, Any]]:
    return {
        "no bound": OFF,
        "bounds on, none reached": {
            "spool_max_events": 2 * n,
            "spool_max_mb": 100_000,
            "spool_keep_free_mb": 8,
        },
        "at the cap, drop_oldest": {**OFF, "spool_max_events": n, "when_full": "drop_oldest"},
    }


def track_ratios(work: b.Workdir, n: int, pairs: int) -> dict[str, float]:
    """{config: median seconds of `hamustro track EVENT`}, the configs alternated."""
    envs = {}
    for name, bounds in configs(n).items():
        path = work.root / f"{name.replace(' ', '-').replace(',', '')}.toml"
        path.write_text("".join(f"{k} = {b.toml_value(v)}\n" for k, v in {**work.config, **bounds}.items()))
        path.chmod(0o600)
        envs[name] = work.env(HAMUSTRO_CONFIG=str(path))
    cmd = [*b.hamustro(), *TRACK]
    for env in envs.values():  # warm-up
        b.run(cmd, env)
    times: dict[str, list[float]] = {name: [] for name in envs}
    for i in range(pairs):
        order = list(envs.items())
        if i % 2:
            order.reverse()
        for name, env in order:
            times[name].append(b.run(cmd, env)[0])
    return {name: b.median(t) for name, t in times.items()}


def enqueue_ratios(work: b.Workdir, n: int, calls: int) -> dict[str, float]:
    """{config: median seconds of one Spool.enqueue}, in this process, alternated."""
    from hamustro_cli import caps
    from hamustro_cli.config import load_config
    from hamustro_cli.session import Session
    from hamustro_cli.spool import NewEvent
    from hamustro_cli.spool.full import Spool

    bounds = {}
    for name, values in configs(n).items():
        config = load_config(env={}, overrides={**work.config, **values}, use_file=False, given_as="argument")
        bounds[name] = caps.from_values(config.values, config.sources)
    s = b.SETTINGS
    attrs = Session.from_settings(
        s["device_id"], s["client_id"], s["system_version"], "1.0.0", s["system"], s["product_git_hash"]
    )
    event = [NewEvent("page_view", int(time.time()), parameters='{"path":"/home"}')]
    times: dict[str, list[float]] = {name: [] for name in bounds}
    with Spool(work.spool_dir) as spool:
        for i in range(calls):
            order = list(bounds.items())
            if i % 2:
                order.reverse()
            for name, given in order:
                start = time.perf_counter()
                spool.enqueue(attrs, event, caps=given)
                times[name].append(time.perf_counter() - start)
    return {name: b.median(t) for name, t in times.items()}


def added_work(work: b.Workdir, n: int, calls: int) -> float:
    """Median seconds of what the bounds and counters add to one enqueue (every bound on, none
    reached: spool._make_room's reads and the tracked_total UPDATE), timed alone inside a
    transaction that is rolled back."""
    from hamustro_cli import caps
    from hamustro_cli.spool import _bump, _make_room
    from hamustro_cli.spool.full import Spool

    given = caps.Caps(max_events=2 * n, max_bytes=100_000 * caps.MIB, keep_free=8 * caps.MIB)
    times = []
    with Spool(work.spool_dir) as spool:
        for _ in range(calls):
            spool.db.execute("BEGIN IMMEDIATE")
            start = time.perf_counter()
            _make_room(spool.db, given, 1, spool.directory)
            _bump(spool.db, {"tracked_total": 1})
            times.append(time.perf_counter() - start)
            spool.db.execute("ROLLBACK")
    return b.median(times)


def metrics_cost(big: b.Workdir, one: b.Workdir, pairs: int) -> tuple[float, float]:
    cmd = [*b.hamustro(), "metrics"]
    env_big, env_one = big.env(), one.env()
    b.run(cmd, env_big)
    b.run(cmd, env_one)
    t_big: list[float] = []
    t_one: list[float] = []
    for i in range(pairs):
        order = [(env_big, t_big), (env_one, t_one)]
        if i % 2:
            order.reverse()
        for env, into in order:
            into.append(b.run(cmd, env)[0])
    return b.median(t_big), b.median(t_one)


def metrics_in_process(work: b.Workdir, calls: int) -> float:
    """Median seconds of reading and rendering the figures (no process start), in this process."""
    from hamustro_cli import metrics
    from hamustro_cli.tracker import ClientTracker

    times = []
    with ClientTracker.from_config(work.config_path, work.spool_dir) as tracker:
        for _ in range(calls):
            start = time.perf_counter()
            metrics.render(metrics.collect(tracker))
            times.append(time.perf_counter() - start)
    return b.median(times)


def report(title: str, medians: dict[str, float]) -> None:
    base = medians["no bound"]
    for name, t in medians.items():
        ratio = t / base
        goal = "" if name == "no bound" else f"  goal <= {GOAL_RATIO:.2f}x: {b.verdict(ratio <= GOAL_RATIO)}"
        print(f"  {title} {name:<26} {t * 1000:8.3f} ms  {ratio:5.2f}x{goal}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--pairs", type=int, default=15)
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="100,000 events, fewer pairs")
    args = parser.parse_args()
    if args.quick:
        args.events, args.pairs, args.calls = 100_000, 5, 100
    b.header(f"Bounds: track's cost at {args.events:,} pending; hamustro metrics", "medians, alternated")
    with b.Workdir("caps", queue_size=10**9) as big, b.Workdir("caps-one", queue_size=10**9) as one:
        b.fill_spool(big.spool_dir, args.events, sessions=1)
        b.fill_spool(one.spool_dir, 1, sessions=1)
        report("track", track_ratios(big, args.events, args.pairs))
        enqueued = enqueue_ratios(big, args.events, args.calls)
        report("enqueue", enqueued)
        extra = added_work(big, args.events, args.calls)
        print(
            f"  the bounds' and counters' own work in one enqueue: {extra * 1e6:.1f} us "
            f"({extra / enqueued['no bound'] * 100:.2f}% of an enqueue without bounds)"
        )
        t_big, t_one = metrics_cost(big, one, args.pairs)
        print(
            f"  hamustro metrics at {args.events:,}: {b.ms(t_big)}, at one event: {b.ms(t_one)} "
            f"({t_big / t_one:.2f}x)"
        )
        m_big, m_one = metrics_in_process(big, args.calls), metrics_in_process(one, args.calls)
        print(
            f"  in-process collect+render at {args.events:,}: {m_big * 1000:.3f} ms, at one event: "
            f"{m_one * 1000:.3f} ms ({m_big / m_one:.2f}x)"
        )


if __name__ == "__main__":
    main()
