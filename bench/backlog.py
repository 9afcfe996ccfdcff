"""Benchmark 7 (issue 10): does one call cost the same whatever the backlog?

Two spools with the same config (flush = "off", queue_size huge, so nothing is ever due and
nothing is sent): one holding N events (default 1,000,000, in 2 sessions, queued with
`track --stdin`), one holding a single event. `hamustro track EVENT`, `status`,
`session --json` and `flush --if-due` run on both, alternated, --pairs times each; the ratio
of the medians is the figure. Then a copy of the big spool (the directory copied while no
process has it open) is flushed alone to the project's collector (its own process, writing
to /dev/null): its rate against 100,000-event flushes run just before and after it (median
of three; a shared machine drifts), its peak RSS (wait4 on the flush process) and the spool
files' size once it has emptied them. The big spool itself is flushed by the flush `track`
starts in the background (at nice 10) while `track EVENT` runs again and again beside it:
track's p95 then against its p95 on the same spool just before (and on the one-event spool,
as the flush shrinks the backlog track pays for today).
The collector stands for another machine: during that flush it runs at nice 19, so that on a
2-core machine it takes only the CPU the flush and the tracks leave. The -wal file's peak size
is watched while filling and during both flushes.
`--big` repeats all of it at 5,000,000. Goals are issue 10's; they are printed, never
enforced."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import tempfile
import time
from typing import Any

import benchlib as b

GOAL_RATIO = {"track EVENT": 1.10, "status": 1.5}  # session and flush --if-due: constant asked
GOAL_DISK_MIB = 8
GOAL_P95 = 1.25
GOAL_RSS_MIB = 48
GOAL_RATE = 0.85  # flush throughput at least 85% of the 100k figure
REFERENCE = 100_000
COMMANDS = {
    "track EVENT": ["track", "page_view", "--param", "path=/home"],
    "status": ["status"],
    "session --json": ["session", "--json"],
    "flush --if-due": ["flush", "--if-due", "--json"],
}


def pending(work: b.Workdir) -> int:
    _, proc = b.run([*b.hamustro(), "status", "--json"], work.env(), capture=True)
    return int(json.loads(proc.stdout)["pending"])


def check_nothing_sent(work: b.Workdir) -> None:
    """The commands compared must not send: a track that flushed or a due flush would make the
    comparison meaningless."""
    env = work.env()
    _, proc = b.run([*b.hamustro(), "track", "page_view", "--json"], env, capture=True)
    outcome = json.loads(proc.stdout)["flush"]
    if outcome not in ("off", "not-due"):
        raise SystemExit(f"bench: track's flush outcome is {outcome!r}; expected off or not-due")
    _, proc = b.run([*b.hamustro(), "flush", "--if-due", "--json"], env, capture=True)
    if json.loads(proc.stdout)["sent"]:
        raise SystemExit("bench: flush --if-due sent events; it must not be due here")


def compare(big: b.Workdir, one: b.Workdir, pairs: int) -> dict[str, tuple[float, float]]:
    """{command: (median on the big spool, median on the one-event spool)}, calls alternated."""
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in COMMANDS}
    env_big, env_one = big.env(), one.env()
    for args in COMMANDS.values():  # warm-up: .pyc files, page cache
        b.run([*b.hamustro(), *args], env_big)
        b.run([*b.hamustro(), *args], env_one)
    for i in range(pairs):
        for name, args in COMMANDS.items():
            cmd = [*b.hamustro(), *args]
            order = [(env_big, 0), (env_one, 1)]
            if i % 2:
                order.reverse()
            for env, side in order:
                times[name][side].append(b.run(cmd, env)[0])
    return {name: (b.median(t_big), b.median(t_one)) for name, (t_big, t_one) in times.items()}


def track_samples(work: b.Workdir, count: int) -> list[float]:
    env = work.env()
    cmd = [*b.hamustro(), *COMMANDS["track EVENT"]]
    return [b.run(cmd, env)[0] for _ in range(count)]


def child_environment(work: b.Workdir) -> dict[str, str]:
    """The environment `track` gives the background flush: its settings as HAMUSTRO_* variables
    (the child reads no config file), made by the installed hamustro's own spawn.child_environment."""
    code = (
        "import json, os; from hamustro_cli.config import load_config; "
        "from hamustro_cli.spawn import child_environment; "
        "print(json.dumps(child_environment(load_config(), os.environ)))"
    )
    out = subprocess.run(
        [*b.python(), "-c", code], env=work.env(), capture_output=True, text=True, check=True
    )
    environment: dict[str, str] = json.loads(out.stdout)
    return environment


def claim_all(work: b.Workdir) -> None:
    """The events were tracked before the collector's address was known, so they are another
    destination's (its fingerprint keys collector_url): made this config's with `events claim`,
    as for a collector that moved. Not timed."""
    env = work.env()
    status = subprocess.run(
        [*b.hamustro(), "status", "--json"], env=env, capture_output=True, text=True, check=True
    )
    for fingerprint in json.loads(status.stdout)["other_destinations"] or {}:
        subprocess.run(
            [*b.hamustro(), "events", "claim", fingerprint], env=env, capture_output=True, check=True
        )


def flush(work: b.Workdir, expect: int, beside: bool = False) -> dict[str, Any]:
    """`hamustro flush` to the project's collector, alone; or with `track EVENT` running in a
    loop beside it, the flush a `track` starts (`python -m hamustro_cli.background`, as
    spawn.py runs it, made due by a queue_size of 1). Returns its wall time, peak RSS (KiB),
    how many it sent, the track latencies seen while it ran, the spool files' size before and
    after, and the -wal file's peak size."""
    before = b.dir_bytes(work.spool_dir)
    with b.Collector(work) as coll, b.WalWatch(work.spool_dir) as wal:
        if beside:
            # The collector stands for another machine: here it shares the 2 cores with the
            # flush and the tracks measured, so it gets only the CPU they leave (nice 19).
            os.setpriority(os.PRIO_PROCESS, coll.proc.pid, 19)
            work.write_config(collector_url=coll.url, queue_size=1)  # flush = "off": tracks start none
            claim_all(work)
            command = [*b.python(), "-m", "hamustro_cli.background"]
            env = child_environment(work)
        else:
            work.write_config(collector_url=coll.url)
            claim_all(work)
            command = [*b.hamustro(), "flush", "--json"]
            env = work.env()
        track = [*b.hamustro(), *COMMANDS["track EVENT"]]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            start = time.perf_counter()
            proc = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
            during: list[float] = []
            while beside:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                during.append(b.run(track, env)[0])
            else:
                _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - start
            proc.returncode = os.waitstatus_to_exitcode(status)
            out.seek(0)
            err.seek(0)
            raw, problem = out.read(), err.read().decode(errors="replace")[-2000:]
    if beside:
        work.write_config(queue_size=10**9)
        done = re.search(r"flush done: sent (\d+)", problem)  # the background flush's last log line
        report = {"sent": int(done.group(1))} if done else {}
    else:
        report = json.loads(raw) if raw else {}
    # the tracks beside it may be sent too: at least the backlog, and nothing left behind
    if proc.returncode != 0 or report.get("sent", 0) < expect:
        raise SystemExit(
            f"bench: flush exited {proc.returncode}, sent {report.get('sent')} of {expect}: {problem}"
        )
    return {
        "wall": wall,
        "rss_kib": usage.ru_maxrss,
        "sent": report["sent"],
        "during": during,
        "before": before,
        "after": b.dir_bytes(work.spool_dir),
        "wal_peak": wal.peak,
    }


def measure(n: int, pairs: int, idle_samples: int) -> dict[str, Any]:
    with (
        b.Workdir("backlog-big", queue_size=10**9) as big,
        b.Workdir("backlog-one", queue_size=10**9) as one,
    ):
        start = time.perf_counter()
        with b.WalWatch(big.spool_dir) as fill_wal:
            b.fill_spool_cli(big, n)
        fill = time.perf_counter() - start
        b.run([*b.hamustro(), *COMMANDS["track EVENT"]], one.env())
        if pending(big) != n or pending(one) != 1:
            raise SystemExit(f"bench: spools hold {pending(big)} and {pending(one)}, expected {n} and 1")
        check_nothing_sent(big)
        check_nothing_sent(one)
        ratios = compare(big, one, pairs)
        idle = track_samples(big, idle_samples)
        # today track's own cost grows with the backlog, which the flush shrinks: against the
        # one-event spool's p95 as well, so that contention is not hidden by it
        idle_one = track_samples(one, idle_samples)
        queued = pending(big)
        # no process has the spool open now: a copy of its directory is the same spool
        alone_dir = big.root / "spool-copy"
        b.shutil.copytree(big.spool_dir, alone_dir)
        big.spool_dir, original = alone_dir, big.spool_dir
        # the 100k reference next to it in time (a shared machine drifts): 2 before, 1 after
        with b.Workdir("backlog-ref", queue_size=10**9) as ref:
            ref_rates = [reference_rate(ref), reference_rate(ref)]
            alone = flush(big, queued)
            ref_rates.append(reference_rate(ref))
        b.shutil.rmtree(alone_dir)
        big.spool_dir = original
        beside = flush(big, queued, beside=True)
    return {
        "n": n,
        "fill": fill,
        "fill_wal": fill_wal.peak,
        "ratios": ratios,
        "idle": idle,
        "idle_one": idle_one,
        "alone": alone,
        "beside": beside,
        "ref_rate": b.median(ref_rates),
    }


def reference_rate(work: b.Workdir) -> float:
    """Events/s of one REFERENCE-event flush, alone, on a fresh spool in `work`."""
    work.reset_spool()
    b.fill_spool_cli(work, REFERENCE)
    done = flush(work, REFERENCE)
    return done["sent"] / done["wall"]


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def report(fig: dict[str, Any]) -> None:
    n = fig["n"]
    print(f"-- {n:,} events pending vs 1 (spool filled with track --stdin in {fig['fill']:.1f} s)")
    for name, (m_big, m_one) in fig["ratios"].items():
        ratio = m_big / m_one
        goal = GOAL_RATIO.get(name)
        judged = f"goal <= {goal}x: {b.within(ratio <= goal)}" if goal else "goal: constant (no figure set)"
        print(f"   {name:<15} {b.ms(m_big):>10} vs {b.ms(m_one):>10}  ratio {ratio:.2f}x  {judged}")
    beside, alone = fig["beside"], fig["alone"]
    idle, during = b.p95(fig["idle"]), b.p95(beside["during"])
    print(
        f"   track p95 while the background flush of it runs {b.ms(during)} "
        f"({len(beside['during'])} calls) vs "
        f"idle {b.ms(idle)} ({len(fig['idle'])} calls, same spool, before): {during / idle:.2f}x  "
        f"goal <= {GOAL_P95}x: {b.within(during / idle <= GOAL_P95)}"
    )
    idle_one = b.p95(fig["idle_one"])
    print(f"     (and {during / idle_one:.2f}x its idle p95 of {b.ms(idle_one)} on the one-event spool)")
    after = alone["after"]
    print(
        f"   spool files: {mib(alone['before'])} full, {mib(after)} after a flush emptied them "
        f"({mib(beside['after'])} after the one with track beside)  "
        f"goal <= {GOAL_DISK_MIB} MiB: {b.within(after <= GOAL_DISK_MIB * 2**20)}"
    )
    print(
        f"   WAL peak: {mib(fig['fill_wal'])} while filling (track --stdin, 250,000 events a call: one "
        f"transaction each), {mib(alone['wal_peak'])} during the flush alone, "
        f"{mib(beside['wal_peak'])} during the one with track beside"
    )
    rss = alone["rss_kib"] / 1024
    rate, ref_rate = alone["sent"] / alone["wall"], fig["ref_rate"]
    print(
        f"   flush alone: {alone['sent']:,} in {alone['wall']:.2f} s, peak RSS {rss:.1f} MiB  "
        f"goal <= {GOAL_RSS_MIB} MiB: {b.within(rss <= GOAL_RSS_MIB)}"
    )
    print(
        f"   flush rate {rate:,.0f} events/s vs {ref_rate:,.0f} at {REFERENCE:,} (median of 3 around it): "
        f"{rate / ref_rate:.2f}x  goal >= {GOAL_RATE}x: {b.within(rate / ref_rate >= GOAL_RATE)}"
        f"  (with track beside: {beside['wall']:.2f} s)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--pairs", type=int, default=15, help="alternated calls of each command on each spool")
    ap.add_argument("--idle", type=int, default=40, help="track calls for the idle p95")
    ap.add_argument("--big", action="store_true", help="also at 5,000,000 events")
    ap.add_argument("--quick", action="store_true", help="200,000 events, 7 pairs")
    args = ap.parse_args()
    n, pairs = (200_000, 7) if args.quick else (args.events, args.pairs)
    sizes = [n, 5_000_000] if args.big else [n]
    b.header(
        "cost at a large backlog (issue 10)",
        f"{' and '.join(f'{s:,}' for s in sizes)} events vs 1; {pairs} alternated pairs, medians; "
        'flush = "off", queue_size huge',
    )
    started = time.perf_counter()
    for size in sizes:
        report(measure(size, pairs, args.idle))
    print(f"   ({time.perf_counter() - started:.0f} s in all)")


if __name__ == "__main__":
    main()
