"""Issue 14, class 3: events go only where they were tracked for. Two configs (two real
collectors on 127.0.0.1, different secrets and client_ids) share one spool: each flush sends
only its own destination's events, signed with its own secret, and says how many it left;
`status`, `doctor` and `events` show the others. Real SQLite files, real processes for the
migration killed half-way."""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, RunningCollector, invoke, start_collector, write_config
from specschema import decode
from test_schema import kill_migration_at_its_end, make_v1_spool

from hamustro_cli.destination import fingerprint
from hamustro_cli.migrations import MIGRATIONS
from hamustro_cli.spool.full import Spool
from hamustro_cli.spooldir import SCHEMA_VERSION

ROOT = Path(__file__).resolve().parent.parent
SECRETS = {"a": "secret-of-a-41c9", "b": "secret-of-b-9e02"}


class Destination:
    """One config file and its own collector (its own secret and client_id)."""

    def __init__(self, tmp_path: Path, name: str, **extra: Any):
        self.name = name
        self.secret = SECRETS[name]
        self.collector: RunningCollector = start_collector(tmp_path, f"collector-{name}", secret=self.secret)
        settings = {**SETTINGS, "shared_secret_key": self.secret, "client_id": f"client-{name}", **extra}
        self.config = write_config(tmp_path / f"{name}.toml", collector_url=self.collector.url, **settings)
        self.fingerprint = fingerprint(self.collector.url, f"client-{name}", self.secret)

    def __call__(self, *args: str, expect: int | None = 0, input: str | None = None) -> Any:
        return invoke("--config", str(self.config), *args, expect=expect, input=input)

    def close(self) -> None:
        self.collector.server.stop()
        self.collector.server.out.close()


@pytest.fixture
def two(tmp_path: Path) -> Iterator[tuple[Destination, Destination]]:
    a, b = Destination(tmp_path, "a"), Destination(tmp_path, "b")
    yield a, b
    a.close()
    b.close()


def signed_with(request: dict[str, Any], secret: str) -> bool:
    """The spec's signature, computed here from the raw request: base64(sha256(X-Time + "|" +
    md5hex(body) + "|" + secret))."""
    headers = {k.lower(): v for k, v in request["headers"].items()}
    md5 = hashlib.md5(request["body"]).hexdigest()
    digest = hashlib.sha256(f"{headers['x-hamustro-time']}|{md5}|{secret}".encode()).digest()
    return headers["x-hamustro-signature"] == base64.b64encode(digest).decode()


def sent_events(collector: RunningCollector) -> list[tuple[str, str]]:
    """(client_id, event) of every payload the collector took, in order."""
    return [
        (body.client_id, p.event)
        for r in collector.requests
        if r["status"] == 200
        for body in [decode(r["body"])]
        for p in body.payloads
    ]


def spool_bytes(spool_dir: Path) -> bytes:
    return b"".join(p.read_bytes() for p in spool_dir.iterdir() if p.is_file())


# -- two destinations, one spool ---------------------------------------------------------------


def test_each_collector_receives_exactly_its_events_signed_with_its_own_secret(two, spool_dir):
    a, b = two
    for i in range(6):  # interleaved
        (a if i % 2 == 0 else b)("track", f"{'a' if i % 2 == 0 else 'b'}-{i}")
    b("track", "--stdin", input="".join(json.dumps({"event": f"b-many-{n}"}) + "\n" for n in range(3)))

    out = json.loads(a("flush", "--json").stdout)
    assert sent_events(a.collector) == [("client-a", "a-0"), ("client-a", "a-2"), ("client-a", "a-4")]
    assert (out["sent"], out["pending"], out["left_for_other_destinations"]) == (3, 0, 6)
    assert b.collector.requests == []

    text = b("flush").output
    assert "sent 6 events" in text and "other destination" not in text
    assert sorted(e for _, e in sent_events(b.collector)) == sorted(
        ["b-1", "b-3", "b-5", "b-many-0", "b-many-1", "b-many-2"]
    )
    assert {c for c, _ in sent_events(b.collector)} == {"client-b"}
    assert len(sent_events(a.collector)) == 3  # nothing more reached a
    # every request verified here, independently, with its own collector's secret (and not the other's)
    for mine, other in ((a, b), (b, a)):
        assert mine.collector.requests
        for request in mine.collector.requests:
            assert signed_with(request, mine.secret) and not signed_with(request, other.secret)
    assert sorted(e["event"] for e in b.collector.received()) == sorted(
        e for _, e in sent_events(b.collector)
    )
    for secret in SECRETS.values():  # a keyed fingerprint, never the secret, is stored
        assert secret.encode() not in spool_bytes(spool_dir)


def test_a_flush_that_leaves_other_destinations_events_says_so_and_exits_0(two):
    a, b = two
    for n in range(4):
        b("track", f"b-{n}")
    result = a("flush")
    assert "sent 0 events" in result.output
    assert "4 left for other destinations" in result.output
    verbose = a("-v", "flush").output
    assert b.fingerprint in verbose and "hamustro events claim" in verbose
    assert a.collector.requests == [] and b.collector.requests == []
    dry = json.loads(a("flush", "--dry-run", "--json").stdout)
    assert dry["batches"] == [] and dry["left_for_other_destinations"] == 4
    assert json.loads(b("status", "--json").stdout)["pending"] == 4  # left as they were


def test_other_destinations_events_never_make_a_flush_due(tmp_path, spool_dir):
    """A flush with this config would leave them: they must not make `track` start one on every
    call (a loop of flushes that send nothing)."""
    a = Destination(tmp_path, "a", queue_size=3, flush="inline")
    b = Destination(tmp_path, "b")
    try:
        for n in range(5):
            b("track", f"b-{n}")
        outcome = json.loads(a("track", "a-0", "--json").stdout)["flush"]
        assert outcome == "not-due"
        status = json.loads(a("status", "--json").stdout)
        assert status["due"] is False
        assert a.collector.requests == [] and b.collector.requests == []
        outcomes = [json.loads(a("track", f"a-{n}", "--json").stdout)["flush"] for n in (1, 2)]
        assert outcomes == ["not-due", "sent"]  # its own third event fires the trigger
        assert [e for _, e in sent_events(a.collector)] == ["a-0", "a-1", "a-2"]
    finally:
        a.close()
        b.close()


def test_one_destinations_stop_or_backoff_never_holds_the_other(tmp_path, spool_dir):
    """A refused signature (405) stops sending to its own collector only; another config sharing
    the spool keeps sending, and each `status --check` speaks for its own destination."""
    a = Destination(tmp_path, "a", queue_size=1, flush="inline")
    b = Destination(tmp_path, "b", queue_size=1, flush="inline")
    wrong = write_config(
        tmp_path / "wrong.toml",
        collector_url=a.collector.url,
        **{**SETTINGS, "shared_secret_key": "not-a-s-secret", "client_id": "client-a", "queue_size": 1},
    )
    try:
        invoke("--config", str(wrong), "flush", expect=0)  # nothing queued: nothing sent, no stop
        invoke("--config", str(wrong), "track", "w-0")
        assert json.loads(invoke("--config", str(wrong), "flush", "--json", expect=4).stdout)["halted"]
        invoke("--config", str(wrong), "status", "--check", expect=4)
        assert json.loads(b("track", "b-0", "--json").stdout)["flush"] == "sent"
        b("status", "--check")
        assert json.loads(a("track", "a-0", "--json").stdout)["flush"] == "sent"
        assert json.loads(a("status", "--json").stdout)["halted"] is None
        assert sent_events(b.collector) == [("client-b", "b-0")]
        assert sent_events(a.collector) == [("client-a", "a-0")]  # and never w-0, signed wrongly
        stopped = invoke("--config", str(wrong), "status").output
        assert "STOPPED" in stopped and "hamustro events claim" in stopped
    finally:
        a.close()
        b.close()


def test_retry_rejected_moves_only_its_own_destinations_events(tmp_path, spool_dir):
    a = Destination(tmp_path, "a")
    picky = start_collector(tmp_path, "picky-b", secret=SECRETS["b"], reject_events=["b-bad"])
    b_config = write_config(
        tmp_path / "b.toml",
        collector_url=picky.url,
        **{**SETTINGS, "shared_secret_key": SECRETS["b"], "client_id": "client-b"},
    )
    try:
        invoke("--config", str(b_config), "track", "b-bad")
        invoke("--config", str(b_config), "flush", expect=4)  # set aside as rejected
        a("track", "a-0")
        out = json.loads(a("flush", "--retry-rejected", "--json").stdout)
        assert out["sent"] == 1 and sent_events(a.collector) == [("client-a", "a-0")]
        rows = [json.loads(line) for line in a("events", "list", "--json").stdout.splitlines()]
        assert [(r["event"], r["state"]) for r in rows] == [("b-bad", "rejected")]  # left as it was
    finally:
        a.close()
        picky.server.stop()
        picky.server.out.close()


def test_status_and_doctor_say_when_the_spool_holds_events_for_another_destination(two):
    a, b = two
    a("track", "a-0")
    b("track", "b-0")
    b("track", "b-1")
    st = json.loads(a("status", "--json").stdout)
    assert st["destination"] == a.fingerprint
    assert st["other_destinations"] == {b.fingerprint: 2}
    assert {d["destination"]: (d["pending"], d["current"]) for d in st["destinations"]} == {
        a.fingerprint: (1, True),
        b.fingerprint: (2, False),
    }
    text = a("status").output
    assert "elsewhere:" in text and f"{b.fingerprint} (2)" in text
    assert "a flush with this config leaves them" in text
    doctor = json.loads(a("doctor", "--json", expect=None).stdout)
    (spool_check,) = [c for c in doctor["checks"] if c["name"] == "spool"]
    assert spool_check["state"] == "warn"
    assert spool_check["details"]["other_destinations"] == {b.fingerprint: 2}
    assert "other destination" in spool_check["hint"]
    assert "elsewhere" not in b("status").output.replace("elsewhere:  1", "")  # b: a's one event
    assert json.loads(b("status", "--json").stdout)["other_destinations"] == {a.fingerprint: 1}
    for output in (text, json.dumps(st), json.dumps(doctor)):
        assert all(secret not in output for secret in SECRETS.values())


def test_a_spool_alone_lists_its_destinations_without_judging_them(two, isolated):
    """`status` without the settings that name a destination (no secret) cannot tell which
    events are its own: it lists them all, and says nothing is elsewhere only when it knows."""
    a, b = two
    a("track", "a-0")
    b("track", "b-0")
    bare = write_config(isolated / "bare.toml", flush="off")
    st = json.loads(invoke("--config", str(bare), "status", "--json").stdout)
    assert st["destination"] is None and st["other_destinations"] is None
    assert sorted(d["destination"] for d in st["destinations"]) == sorted([a.fingerprint, b.fingerprint])


def test_events_list_and_show_give_each_events_destination(two):
    a, b = two
    a("track", "a-0")
    b("track", "b-0")
    rows = [json.loads(line) for line in a("events", "list", "--json").stdout.splitlines()]
    assert [(r["event"], r["destination"]) for r in rows] == [("a-0", a.fingerprint), ("b-0", b.fingerprint)]
    only_b = a("events", "list", "--json", "--destination", b.fingerprint).stdout.splitlines()
    assert [json.loads(line)["event"] for line in only_b] == ["b-0"]
    shown = json.loads(a("events", "show", str(rows[1]["id"]), "--json").stdout)
    assert shown["event"]["destination"] == b.fingerprint
    assert f"destination: {b.fingerprint}" in a("events", "show", str(rows[1]["id"])).output


def test_claim_sends_another_destinations_events_here_and_only_when_asked(two):
    """A collector that moved or a secret that changed: the user says so, by fingerprint."""
    a, b = two
    b("track", "b-0")
    b("track", "b-1")
    a("track", "a-0")
    wrong = a("events", "claim", "0123456789abcdef", expect=2)
    assert "no events are queued for destination 0123456789abcdef" in wrong.output
    assert "Traceback" not in wrong.output
    for bad in ("", "XYZ", "0123456789ABCDEF", "\x1b[31m" + "0" * 9, "0" * 10_000):
        refused = a("events", "claim", bad, expect=2)
        assert "16 lowercase hex digits" in refused.output and "\x1b" not in refused.output
        assert len(refused.output) < 500
    own = a("events", "claim", a.fingerprint, expect=2)
    assert "this config's destination already" in own.output
    assert json.loads(a("status", "--json").stdout)["other_destinations"] == {b.fingerprint: 2}
    assert "claimed 2 events" in a("events", "claim", b.fingerprint).output
    a("flush")
    assert sorted(e for _, e in sent_events(a.collector)) == ["a-0", "b-0", "b-1"]
    assert all(signed_with(r, a.secret) for r in a.collector.requests)
    assert b.collector.requests == []


# -- the upgrade from version 2 ------------------------------------------------------------------


def make_v2_spool(directory: Path) -> Path:
    """A spool as version 2 made it (from test_schema's version 1 spool, upgraded by version 2's
    own migration): events pending, rejected and in a batch a dead flush left marked, in two
    sessions; no destinations."""
    path = make_v1_spool(directory)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN")
    for statement in MIGRATIONS[1]:
        db.execute(statement)
    db.execute("PRAGMA user_version = 2")
    db.execute("COMMIT")
    db.close()
    return path


def test_a_version_2_spool_is_upgraded_and_its_events_go_to_the_first_flush(two, spool_dir):
    a, b = two
    make_v2_spool(spool_dir)
    with Spool(spool_dir) as spool:
        assert spool.schema_version == SCHEMA_VERSION == 3
        assert spool.check_counts() == []
        assert spool.by_destination() == {None: (7, 2)}
    st = json.loads(b("status", "--json").stdout)
    assert st["other_destinations"] == {}  # not another destination's: unclaimed
    assert "unclaimed:  9 events queued before destinations were recorded" in b("status").output
    assert json.loads(b("track", "b-new", "--json").stdout)["queued"] == 1
    out = json.loads(a("flush", "--json").stdout)  # the first flush claims them, as it always sent them
    assert (out["sent"], out["claimed"], out["left_for_other_destinations"]) == (7, 7, 1)
    old = [f"s1e{n}" for n in (1, 3, 4, 5, 6)] + ["s2e1", "s2e3"]
    assert sorted(e for _, e in sent_events(a.collector)) == old
    assert all(signed_with(r, a.secret) for r in a.collector.requests)
    rejected = json.loads(a("status", "--json").stdout)
    assert rejected["rejected"] == 2 and rejected["other_destinations"] == {b.fingerprint: 1}
    assert json.loads(b("flush", "--json").stdout)["sent"] == 1
    assert sent_events(b.collector) == [("client-b", "b-new")]  # and none of the old ones
    with Spool(spool_dir) as spool:
        assert spool.check_counts() == []
        assert spool.by_destination() == {a.fingerprint: (0, 2)}  # the rejected ones, a's now


def test_a_migration_to_version_3_killed_half_way_leaves_version_2_intact(tmp_path, spool_dir):
    path = make_v2_spool(spool_dir)
    with sqlite3.connect(path) as db:
        before = db.execute("SELECT * FROM events ORDER BY id").fetchall()
        attributes = db.execute("SELECT * FROM attributes ORDER BY id").fetchall()
    kill_migration_at_its_end(path, tmp_path / "inside")
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = [r[1] for r in db.execute("PRAGMA table_info(attributes)")]
        assert "destination" not in columns
        assert db.execute("SELECT * FROM attributes ORDER BY id").fetchall() == attributes
        assert db.execute("SELECT * FROM events ORDER BY id").fetchall() == before
    with Spool(spool_dir) as spool:  # and the next open upgrades it whole
        assert spool.schema_version == 3
        assert spool.by_destination() == {None: (7, 2)}
        assert spool.check_counts() == []
