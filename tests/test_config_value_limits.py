"""Settings are checked whole when the config loads (issue #9, sections 2 and 7).

A value that could only break after an event is queued (an integer beyond SQLite's, a timeout
that overflows, a NUL byte, undecodable bytes, an over-long string, a collector_url that cannot
be posted to) is refused up front: `hamustro track` exits 2 with one line naming the key and
where it came from, and queues nothing. The command runs in-process where the config file is
the input; the environment's cases run a real process (only a real environ carries bytes that
are not text).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import SECRET, SETTINGS, invoke, run, write_config

from hamustro_cli.config import KEYS, load_config

URL = "http://127.0.0.1:9"  # nothing listens: no case here may get as far as sending


def _pending() -> int | None:
    result = invoke("status", "--json", expect=None)
    return json.loads(result.stdout)["pending"] if result.exit_code == 0 else None


def _refused(result, *words: str) -> str:
    """result: a process's (returncode) or an in-process run's (exit_code)."""
    code = result.returncode if hasattr(result, "returncode") else result.exit_code
    assert code == 2, (code, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("hamustro: error:"), result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    assert SECRET not in result.stdout + result.stderr
    return lines[0]


@pytest.fixture
def queued_one(isolated: Path) -> Path:
    """A working config and spool holding one event; each case then breaks one setting."""
    path = write_config(isolated / "config.toml", collector_url=URL, **SETTINGS)
    assert invoke("track", "first", expect=None).exit_code == 0
    assert _pending() == 1
    return path


FILE_CASES = {
    "queue_size 2**63-1": ({"queue_size": 2**63 - 1}, ["queue_size", "at most 2147483647"]),
    "queue_retention 2**63-1": ({"queue_retention": 2**63 - 1}, ["queue_retention", "at most 525600"]),
    "max_batch_events 2**62": ({"max_batch_events": 2**62}, ["max_batch_events", "at most 100000"]),
    "retries 2**40": ({"retries": 2**40}, ["retries", "at most 100"]),
    "timeout 1e300 inline": (
        {"timeout": 1e300, "flush": "inline", "queue_size": 1},
        ["timeout", "at most 86400"],
    ),
    "retry_delay 1e300": ({"retry_delay": 1e300}, ["retry_delay", "at most 3600"]),
    "NUL in collector_url": ({"collector_url": "http://127.0.0.1:9/\x00"}, ["collector_url", "NUL"]),
    "NUL in device_id": ({"device_id": "dev\x00ice"}, ["device_id", "NUL"]),
    "NUL in system": ({"system": "li\x00nux"}, ["system", "NUL"]),
    "NUL in spool_dir": ({"spool_dir": "/tmp/a\x00b"}, ["spool_dir", "NUL"]),
    "NUL in ca_bundle": ({"ca_bundle": "/etc/\x00ca.pem"}, ["ca_bundle", "NUL"]),
    "NUL in the secret": ({"shared_secret_key": SECRET + "\x00"}, ["shared_secret_key", "NUL"]),
    "long device_id": ({"device_id": "d" * 5000}, ["device_id", "too long", "5000"]),
    "long secret": ({"shared_secret_key": SECRET * 500}, ["shared_secret_key", "too long"]),
    "long collector_url": ({"collector_url": "http://h/" + "p" * 3000}, ["collector_url", "too long"]),
    "long spool_dir": ({"spool_dir": "/tmp/" + "s" * 5000}, ["spool_dir", "too long"]),
}


@pytest.mark.parametrize("changes,words", list(FILE_CASES.values()), ids=list(FILE_CASES))
def test_a_value_out_of_range_in_the_file_is_refused_before_queuing(queued_one, monkeypatch, changes, words):
    write_config(queued_one, **{**SETTINGS, "collector_url": URL, **changes})
    spool = os.environ["HAMUSTRO_SPOOL_DIR"]
    if "spool_dir" in changes:  # else the environment's spool_dir wins over the file's
        monkeypatch.delenv("HAMUSTRO_SPOOL_DIR")
    line = _refused(invoke("track", "second", expect=None), str(queued_one), *words)
    assert len(line) < 400
    monkeypatch.setenv("HAMUSTRO_SPOOL_DIR", spool)
    write_config(queued_one, collector_url=URL, **SETTINGS)
    assert _pending() == 1


ENV_CASES = {
    "HAMUSTRO_QUEUE_SIZE": (str(2**70), ["queue_size", "at most"]),
    "HAMUSTRO_QUEUE_RETENTION": (str(2**64), ["queue_retention", "at most"]),
    "HAMUSTRO_MAX_BATCH_EVENTS": ("9" * 5000, ["max_batch_events"]),
    "HAMUSTRO_RETRIES": (str(2**70), ["retries", "at most"]),
    "HAMUSTRO_TIMEOUT": ("1e300", ["timeout", "at most"]),
    "HAMUSTRO_RETRY_DELAY": ("1e308", ["retry_delay", "at most"]),
    "HAMUSTRO_DEVICE_ID": (b"dev\xff\xfe", ["device_id", "not valid text"]),
    "HAMUSTRO_SYSTEM_VERSION": (b"\xc3(", ["system_version", "not valid text"]),
    "HAMUSTRO_SHARED_SECRET_KEY": (SECRET.encode() + b"\xff", ["shared_secret_key", "not valid text"]),
}


@pytest.mark.parametrize("name,value,words", [(n, *v) for n, v in ENV_CASES.items()], ids=list(ENV_CASES))
def test_a_value_out_of_range_in_the_environment_is_refused_before_queuing(queued_one, name, value, words):
    env = {"LC_ALL": "C.UTF-8", name: value}
    line = _refused(run("track", "second", env=env), name, *words)
    assert len(line) < 400
    assert _pending() == 1


def test_the_maxima_themselves_are_accepted(isolated):
    path = write_config(
        isolated / "config.toml",
        collector_url=URL,
        **{
            **SETTINGS,
            "queue_size": 2**31 - 1,
            "queue_retention": 525_600,
            "max_batch_events": 100_000,
            "retries": 100,
            "timeout": 86_400.0,
            "retry_delay": 3600.0,
            "device_id": "d" * 1024,
        },
    )
    assert invoke("track", "a", expect=None).exit_code == 0
    assert _pending() == 1
    assert path.exists()


def test_every_number_key_has_a_maximum():
    assert [k.name for k in KEYS.values() if k.kind in ("int", "float") and k.maximum is None] == []


# -- collector_url -----------------------------------------------------------------------------

BAD_URLS = {
    "query string": ("http://127.0.0.1:9/base?x=1", "query string"),
    "fragment": ("http://127.0.0.1:9/#frag", "fragment"),
    "user info": ("http://alice:s3cr3tpw@127.0.0.1:9/", "user info"),
    "unclosed bracket": ("http://[::1:9/", "unclosed"),
    "bracketed non-IPv6": ("http://[example.org]/", "not an IPv6"),
    "unbracketed IPv6": ("http://::1:8080/", "brackets"),
    "junk after bracket": ("http://[::1]junk/", "after the host"),
    "port out of range": ("http://127.0.0.1:70000/", "port"),
    "port not a number": ("http://127.0.0.1:8o8o/", "port"),
    "port in other digits": ("http://127.0.0.1:٨٠/", "port"),
    "port zero": ("http://127.0.0.1:0/", "port"),
}


@pytest.mark.parametrize("url,words", list(BAD_URLS.values()), ids=list(BAD_URLS))
def test_a_collector_url_that_cannot_be_posted_to_is_refused(queued_one, url, words):
    write_config(queued_one, **{**SETTINGS, "collector_url": url})
    line = _refused(invoke("track", "second", expect=None), "collector_url", str(queued_one), words)
    assert "s3cr3tpw" not in line
    write_config(queued_one, collector_url=URL, **SETTINGS)
    assert _pending() == 1


@pytest.mark.parametrize(
    "url", ["http://[::1]:9/", "https://[2001:db8::1]/", "http://h:/", "HTTP://H.example"]
)
def test_good_collector_urls_are_accepted(isolated, url):
    write_config(isolated / "config.toml", **{**SETTINGS, "collector_url": url})
    assert invoke("track", "a", expect=None).exit_code == 0


# -- the default spool directory -----------------------------------------------------------------


def test_a_relative_xdg_state_home_is_ignored(isolated):
    home = isolated / "another-home"
    cfg = load_config(use_file=False, env={"XDG_STATE_HOME": "relative/state", "HOME": str(home)})
    assert cfg.spool_dir == str(home / ".local" / "state" / "hamustro")


def test_the_default_spool_dir_follows_the_given_environment(isolated):
    """load_config(env=...) decides the spool dir from that env, not from os.environ."""
    assert os.environ["XDG_STATE_HOME"] != str(isolated / "elsewhere")
    cfg = load_config(use_file=False, env={"XDG_STATE_HOME": str(isolated / "elsewhere")})
    assert cfg.spool_dir == str(isolated / "elsewhere" / "hamustro")
    cfg = load_config(use_file=False, env={"HOME": str(isolated / "other-home")})
    assert cfg.spool_dir == str(isolated / "other-home" / ".local" / "state" / "hamustro")


def test_track_with_a_relative_xdg_state_home_uses_the_home_state_dir(isolated):
    write_config(isolated / "config.toml", collector_url=URL, **SETTINGS)
    env = {k: v for k, v in os.environ.items() if k != "HAMUSTRO_SPOOL_DIR"}
    env["XDG_STATE_HOME"] = "rel-state"
    import subprocess
    import sys

    work = isolated / "cwd"
    work.mkdir()
    result = subprocess.run(
        [sys.executable, "-m", "hamustro_cli", "track", "a"],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (isolated / "home" / ".local" / "state" / "hamustro").is_dir()
    assert not (work / "rel-state").exists()
