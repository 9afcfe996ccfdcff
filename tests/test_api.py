"""The Python API: the spec's pseudo client, over the same spool the CLI uses."""

from __future__ import annotations

import hashlib
import json

import pytest
from conftest import SECRET, invoke

from hamustro_cli import ClientTracker
from hamustro_cli.errors import ConfigError, InputError


def make(collector, spool_dir, url=None, **extra):
    return ClientTracker(
        collector_url=url or collector.url,
        shared_secret_key=SECRET,
        device_id="dev",
        client_id="api",
        system_version="1",
        product_version="2",
        spool_dir=spool_dir,
        flush="off",
        **extra,
    )


def test_track_flush_status_session(collector, spool_dir):
    with make(collector, spool_dir) as t:
        assert len(t.session.session) == 32
        first = t.track_event("api.start", user_id=3, params={"a": 1}, is_testing=True)
        second = t.track_event("api.stop")
        assert (first.nr, second.nr) == (1, 2)
        assert t.status()["pending"] == 2
        report = t.flush()
        assert report.ok and report.sent == 2
        assert t.status()["pending"] == 0
    got = collector.received()
    assert [(e["event"], e["nr"], e["user_id"], e["is_testing"]) for e in got] == [
        ("api.start", 1, 3, True),
        ("api.stop", 2, None, None),
    ]
    assert json.loads(got[0]["parameters"]) == {"a": 1}
    # the session the collector received is the one the tracker reports, md5 of its attributes
    device = hashlib.sha256(b"dev").hexdigest()
    assert got[0]["session"] == hashlib.md5(f"{device}:api:1:2".encode()).hexdigest()


def test_api_and_cli_share_one_spool(collector, spool_dir, config):
    t = ClientTracker.from_config()
    t.track_event("from-api")
    t.close()
    invoke("track", "from-cli")
    invoke("flush")
    assert [(e["event"], e["nr"]) for e in collector.received()] == [("from-api", 1), ("from-cli", 2)]


def test_api_errors_are_library_exceptions(collector, spool_dir):
    with pytest.raises(ConfigError, match="missing required config key shared_secret_key"):
        ClientTracker(
            collector_url=collector.url,
            device_id="d",
            client_id="c",
            system_version="1",
            product_version="1",
            spool_dir=spool_dir,
        )
    with pytest.raises(TypeError, match="unknown setting"):
        make(collector, spool_dir, colour="blue")
    with make(collector, spool_dir) as t, pytest.raises(InputError, match="user_id|--user-id"):
        t.track_event("x", user_id=-1)


def synchronous(tracker: ClientTracker) -> int:
    return tracker.spool.db.execute("PRAGMA synchronous").fetchone()[0]


FULL = 2  # PRAGMA synchronous: 1 is NORMAL, which does not sync a WAL commit


@pytest.mark.parametrize("outcome", ["delivered", "collector down"])
def test_track_after_flush_on_the_same_tracker_still_syncs(collector, spool_dir, outcome):
    # A flush relaxes its own commits to synchronous = NORMAL; the tracker's next track_event
    # must again commit with FULL, which fsyncs the WAL: otherwise a power cut loses the event.
    url = collector.url if outcome == "delivered" else "http://127.0.0.1:9"
    with make(collector, spool_dir, url=url, retries=0) as t:
        t.track_event("before")
        assert synchronous(t) == FULL
        report = t.flush()
        assert report.ok is (outcome == "delivered")
        assert synchronous(t) == FULL
        t.track_event("after")
        assert synchronous(t) == FULL
