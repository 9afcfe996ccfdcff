"""What each collector answer means (answers.py), as flush, the background flush and doctor act
on it: answers only a person can fix exit 4 and halt; a 413 or a timeout makes batches smaller,
and the size that passes is remembered (issue 14, class 4)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, ScriptedServer, invoke, spawned_env, start_collector, write_config

from hamustro_cli import answers, doctor
from hamustro_cli.answers import Kind
from hamustro_cli.config import load_config
from hamustro_cli.sending import FLUSH_SPLIT_BUDGET, GROW_AFTER, BatchSizer
from hamustro_cli.spool.full import Spool
from hamustro_cli.spool.rows import BatchSize

PERSON = [301, 302, 307, 308, 401, 403, 404, 405, 407, 410, 422, 451]


def _configure(isolated: Path, url: str, **extra: object) -> Path:
    return write_config(isolated / "config.toml", collector_url=url, **extra, **SETTINGS)


def _status() -> dict[str, Any]:
    return json.loads(invoke("status", "--json").stdout)


def _track(n: int, params: str | None = None, prefix: str = "e") -> None:
    line = {"params": params} if params else {}
    lines = "".join(json.dumps({"event": f"{prefix}{i}", **line}) + "\n" for i in range(n))
    invoke("track", "--stdin", input=lines)


# -- the table ----------------------------------------------------------------------------------


def test_every_status_has_one_kind_and_the_exit_code_comes_from_it():
    for status in PERSON:
        said = answers.meaning(status)
        assert said.kind is Kind.PERSON and said.fix and said.kind.exit_status == 4 and said.kind.halts
    for status in (408, 429, 500, 502, 503, 504, 599):
        assert (
            answers.meaning(status).kind is Kind.TRY_LATER and answers.meaning(status).kind.exit_status == 1
        )
    assert [answers.meaning(s).kind for s in (200, 204, 400, 413)] == [
        Kind.DELIVERED,
        Kind.EMPTY,
        Kind.SPLIT,
        Kind.SPLIT,
    ]
    assert answers.meaning(413).smaller and answers.meaning(504).smaller and not answers.meaning(503).smaller
    assert answers.failure(answers.Failure.TIMEOUT, "no answer").smaller


# -- answers only a person can fix ---------------------------------------------------------------


@pytest.mark.parametrize("status", PERSON)
def test_an_answer_only_a_person_can_fix_exits_4_with_the_fix_and_halts(isolated, status):
    server = ScriptedServer([status], {"Location": "https://collector.example/"})
    try:
        _configure(isolated, server.url, retries=2, retry_delay=0.01)
        _track(2)
        result = invoke("flush", expect=4)
        said = answers.meaning(status)
        assert said.fix in result.output and str(status) in result.output
        assert server.hits == 1  # not retried: resending cannot change it
        st = _status()
        assert (st["pending"], st["rejected"], st["sending"]) == (2, 0, 0)
        assert st["halted"] and said.fix in st["halted"] and not st["due"]
        shown = invoke("status").stdout
        assert "STOPPED: " in shown and said.fix in shown
        assert ("signature" in shown) == (status == 405)  # not the 405's words for every stop
        # cron's `flush --if-due` keeps saying so, without sending, until a plain flush succeeds
        again = invoke("flush", "--if-due", "--json", expect=4)
        assert json.loads(again.stdout)["halted"] and server.hits == 1
        invoke("status", "--check", expect=4)
    finally:
        server.close()


def test_answers_that_may_pass_later_exit_1_and_only_a_maybe_stored_one_is_not_resent_whole(isolated):
    # 503, 429: the same batch retried (retries=2). 504 (a proxy gave up; the collector may have
    # stored it): never the same body again, but half of it (3 events pending, then 1). Each
    # server is another destination: the events tracked for the ones before stay theirs.
    for status, hits in ((503, 3), (429, 3), (504, 2)):
        server = ScriptedServer([status])
        try:
            _configure(isolated, server.url, retries=2, retry_delay=0.01)
            _track(3 if status == 504 else 1, prefix=f"s{status}-")
            invoke("flush", expect=1)
            st = _status()
            assert not st["halted"] and st["backoff_until"], status
            assert server.hits == hits, status
            sizes = [len(r["body"]) for r in server.requests]
            assert len(set(sizes)) == (2 if status == 504 else 1) and sizes == sorted(sizes, reverse=True)
        finally:
            server.close()


def test_the_background_flush_exits_with_the_code_of_the_answer(isolated):
    server = ScriptedServer([403])
    try:
        _configure(isolated, server.url, queue_size=1)
        _track(1)
        child = subprocess.run(
            [sys.executable, "-m", "hamustro_cli.background"],
            capture_output=True,
            text=True,
            timeout=60,
            env=spawned_env(),
        )
        assert child.returncode == 4, child.stderr
        fix = answers.meaning(403).fix
        assert fix is not None and fix in child.stderr
    finally:
        server.close()


def test_doctor_gives_the_same_fix_as_a_flush(isolated):
    server = ScriptedServer([401])
    try:
        path = _configure(isolated, server.url)
        check = doctor.check_credentials(load_config(path, None))
        assert not check.ok and check.hint == answers.meaning(401).fix
    finally:
        server.close()


# -- 413: smaller batches, the size that passed remembered ---------------------------------------

PARAMS = "p" * 400  # an event is about 450 bytes on the wire


def test_a_413_halves_the_batch_until_it_passes_and_the_next_flush_starts_there(isolated, tmp_path):
    limited = start_collector(tmp_path, "limited", max_body=20_000)  # 20 KB, as in the issue
    try:
        _configure(isolated, limited.url, max_batch_events=200)
        _track(300, PARAMS)
        out = json.loads(invoke("flush", "--json").stdout)
        assert (out["sent"], out["pending"], out["rejected"]) == (300, 0, 0)
        got = [e["nr"] for e in limited.received()]
        assert sorted(got) == list(range(1, 301))  # each once: a 413 stores nothing
        statuses = [r["status"] for r in limited.requests]
        # 200, 100, 50 events refused; 25 pass (12 batches: fewer than GROW_AFTER, no probe)
        assert statuses.count(413) == 3 and GROW_AFTER >= 12 + 4
        assert max(b["events"] for b in out["batches"] if b["status"] == 200) == 25
        assert _status()["batch_size"] == 25 and "batch size: 25 events" in invoke("status").stdout
        # the next flush starts from the size that passed: not one 413
        _track(100, PARAMS, prefix="later")
        before = len(limited.requests)
        out = json.loads(invoke("flush", "--json").stdout)
        assert out["sent"] == 100
        assert {r["status"] for r in limited.requests[before:]} == {200}
    finally:
        limited.server.stop()


def test_an_event_too_large_alone_is_set_aside_with_its_reason(isolated, tmp_path):
    limited = start_collector(tmp_path, "limited", max_body=20_000)
    try:
        _configure(isolated, limited.url, max_batch_events=64)
        _track(40, PARAMS, prefix="small")
        invoke("track", "huge", "--params", "h" * 30_000)
        _track(40, PARAMS, prefix="after")
        result = invoke("flush", "--json", expect=4)
        out = json.loads(result.stdout)
        assert (out["sent"], out["rejected"], out["pending"]) == (80, 1, 0)
        names = Counter(e["event"] for e in limited.received())
        assert len(names) == 80 and set(names.values()) == {1} and "huge" not in names
        rejected = json.loads(invoke("events", "list", "--state", "rejected", "--json").stdout)
        assert rejected["event"] == "huge" and "413" in rejected["reason"]
        assert answers.TOO_LARGE in rejected["reason"]
    finally:
        limited.server.stop()


def test_a_collector_refusing_every_body_as_too_large_costs_bounded_requests(isolated, tmp_path):
    """Each event is set aside as too large alone after about one request (not log2 of the
    batch size again for each), and a flush stops after its budget of 413s: try later."""
    tiny = start_collector(tmp_path, "tiny", max_body=1)
    try:
        _configure(isolated, tiny.url, max_batch_events=256, retries=0)
        _track(40)
        out = json.loads(invoke("flush", "--json", expect=4).stdout)
        assert (out["sent"], out["rejected"], out["pending"]) == (0, 40, 0)
        assert len(tiny.requests) <= 40 + 8  # halving 40 to 1, then one a event
        _track(FLUSH_SPLIT_BUDGET + 50, prefix="more")
        before = len(tiny.requests)
        out = json.loads(invoke("flush", "--retry-rejected", "--json", expect=4).stdout)
        assert len(tiny.requests) - before == FLUSH_SPLIT_BUDGET + 1
        assert out["pending"] > 0 and out["rejected"] + out["pending"] == FLUSH_SPLIT_BUDGET + 90
        assert _status()["backoff_until"] and tiny.received() == []
    finally:
        tiny.server.stop()


# -- a slow collector: timeouts make batches smaller, duplicates stay bounded --------------------


def _quiet(server, rounds: int = 400) -> None:
    """Wait until the collector has finished every request (it goes on after the client has
    hung up, as the real one does)."""
    for _ in range(rounds):
        if server.busy == 0:
            return
        time.sleep(0.05)
    raise AssertionError("the collector is still storing")


@pytest.mark.heavy
def test_a_slow_collector_gets_smaller_batches_and_the_queue_converges(isolated, tmp_path):
    """Stores every payload, then answers after 25 ms a payload, even to a client that hung
    up: 64 events take 1.6 s against a 1 s timeout, 16 take 0.4 s."""
    slow = start_collector(tmp_path, "slow", delay_per_event=0.025)
    try:
        _configure(isolated, slow.url, max_batch_events=64, timeout=1.0, retries=3, retry_delay=0.01)
        _track(128)
        out = json.loads(invoke("flush", "--json").stdout)
        assert (out["sent"], out["pending"]) == (128, 0)
        _quiet(slow.server)
        copies = Counter(e["nr"] for e in slow.received())
        assert set(copies) == set(range(1, 129))
        duplicates = sum(copies.values()) - 128
        timed_out = [b["events"] for b in out["batches"] if b["status"] is None]
        assert timed_out and duplicates <= sum(timed_out)  # only what timed out came twice
        assert duplicates <= 64 + 32  # halved after each timeout
        # The next flush starts from the size that passed: no timeout, no duplicate.
        _track(64, prefix="later")
        out = json.loads(invoke("flush", "--json").stdout)
        _quiet(slow.server)
        assert out["sent"] == 64 and all(b["status"] == 200 for b in out["batches"])
        assert sum(Counter(e["nr"] for e in slow.received()).values()) - 128 - 64 == duplicates
    finally:
        slow.server.stop()


def test_the_batch_size_shrinks_is_remembered_and_grows_back(tmp_path: Path):
    spool = Spool(str(tmp_path / "spool"))
    try:
        sizer = BatchSizer(spool, 100, timeout=9.0)
        assert sizer.size == 100 and spool.batch_size() is None
        sizer.shrink(100)
        assert spool.batch_size() == BatchSize(50, 0)
        again = BatchSizer(spool, 100, timeout=9.0)  # the next flush
        assert again.size == 50
        again.passed(50, elapsed=5.0)  # slow: no growth
        again.passed(10, elapsed=0.1)  # the queue's tail: says nothing
        assert again.size == 50 and again.streak == 0
        for _ in range(GROW_AFTER):
            again.passed(50, elapsed=0.1)
        assert again.size == 100 and spool.batch_size() is None  # back at max_batch_events
        again.shrink(3)
        assert spool.batch_size() == BatchSize(1, 0)
        assert BatchSizer(spool, 100, timeout=9.0).size == 1
        assert BatchSizer(spool, 100, timeout=9.0).size == 1
    finally:
        spool.close()
