"""The Python API: the spec's pseudo client, over the same spool the CLI uses."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

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
    with make(collector, spool_dir) as t, pytest.raises(InputError, match="^user_id: ") as raised:
        t.track_event("x", user_id=-1)
    assert "--user-id" not in str(raised.value)


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


# -- issue 19: what a Python program meets ------------------------------------------------------


def test_a_log_callback_that_raises_changes_nothing(collector, spool_dir):
    def broken(level: int, message: str) -> None:
        raise RuntimeError("log is broken")

    with make(collector, spool_dir, log=broken, queue_size=1) as t:
        t.config.values["flush"] = "inline"
        result = t.track_event("logged")
        assert (result.flush, result.flush_detail) == ("sent", None)
        assert t.flush().ok
    assert [e["event"] for e in collector.received()] == ["logged"]


@pytest.mark.parametrize(
    ("argument", "value", "message"),
    [
        ("user_id", "7", "user_id: expected a whole number from 0 to 4294967295, got '7'"),
        ("user_id", 2**32, "user_id: 4294967296 is outside"),
        ("params", {1: "x"}, "params: keys must be strings, got the key 1"),
        ("params", {"a": [{"b": {2: 0}}]}, "params: keys must be strings, got the key 2"),
        ("at", float("nan"), "at: nan is not a valid epoch time"),
        ("at", True, "at: expected epoch seconds (an int or a float), got True"),
    ],
)
def test_python_arguments_are_checked_as_python_and_named(collector, spool_dir, argument, value, message):
    with make(collector, spool_dir) as t:
        with pytest.raises(InputError) as raised:
            t.track_event("x", **{argument: value})
        assert str(raised.value).startswith(message)
        assert "--" not in str(raised.value)
        assert t.status()["pending"] == 0


def test_at_takes_a_float_as_time_time_gives(collector, spool_dir):
    with make(collector, spool_dir) as t:
        assert t.track_event("x", at=1764331200.9).at == 1764331200
        assert t.track_event("x", at=1764331200).at == 1764331200


def test_from_config_errors_name_its_arguments(tmp_path, monkeypatch):
    """A Python caller passed `path` and `spool_dir`, not --config and --spool-dir."""
    missing = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as raised:
        ClientTracker.from_config(missing)
    assert str(raised.value).endswith("(given with ClientTracker.from_config argument path)")
    (tmp_path / "empty.toml").write_text("")
    monkeypatch.setenv("HAMUSTRO_CONFIG", str(tmp_path / "empty.toml"))
    with pytest.raises(ConfigError) as raised:
        ClientTracker.from_config(spool_dir="")
    assert "(from ClientTracker.from_config argument spool_dir)" in str(raised.value)
    assert "--" not in str(raised.value)


def test_the_package_gives_its_typed_names_when_used_and_loads_nothing_before():
    code = (
        "import sys, hamustro_cli\n"
        "before = sorted(m for m in sys.modules if m.startswith('hamustro_cli.'))\n"
        "found = {name: getattr(hamustro_cli, name).__module__ for name in hamustro_cli.__all__[:-1]}\n"
        "print(before, hamustro_cli.__all__[-1], sorted(set(found.values())))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert shown.stdout.split() == [
        "[]",
        "__version__",
        "['hamustro_cli.errors',",
        "'hamustro_cli.reports',",
        "'hamustro_cli.spool.records',",
        "'hamustro_cli.tracker']",
    ], shown.stderr


def test_constructor_errors_name_its_arguments(collector, spool_dir):
    with pytest.raises(ConfigError) as raised:
        make(collector, spool_dir, queue_size=0)
    assert "(from ClientTracker argument queue_size)" in str(raised.value)
    assert "--queue-size" not in str(raised.value)
    with pytest.raises(ConfigError) as raised:
        ClientTracker(collector_url=collector.url, device_id="d", client_id="c", system_version="1",
                      product_version="1", spool_dir=spool_dir)  # fmt: skip
    text = str(raised.value)
    assert "pass shared_secret_key=... to ClientTracker" in text
    assert "config file" not in text.split(", or use")[0]


def test_a_closed_tracker_refuses_to_be_used(collector, spool_dir):
    t = make(collector, spool_dir)
    t.track_event("x")
    t.close()
    for use in (lambda: t.track_event("y"), t.status, t.flush, t.due):
        with pytest.raises(ValueError, match="this ClientTracker is closed"):
            use()
    t.close()  # twice is fine, as for a file
    with make(collector, spool_dir) as again:
        assert again.status()["pending"] == 1


@pytest.mark.parametrize("used", [False, True])
def test_a_tracker_is_not_pickled(collector, spool_dir, used):
    import pickle

    with make(collector, spool_dir) as t:
        if used:
            t.track_event("x")
        with pytest.raises(TypeError, match="cannot be pickled") as raised:
            pickle.dumps(t)
        assert SECRET not in str(raised.value)
