"""The config file's parse, cached in the spool directory: used only for the very bytes it was
made from, trusted only as the spool is, and never an error when it cannot be used."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SETTINGS, invoke, write_config

from hamustro_cli import configcache
from hamustro_cli.config import load_config
from hamustro_cli.spooldir import CACHE_NAME


@pytest.fixture
def ready(isolated: Path) -> Path:
    """A config, and a spool made by one `track`; the second left the cache there (the first
    found no spool directory to keep it in)."""
    write_config(isolated / "config.toml", collector_url="http://127.0.0.1:9", **SETTINGS)
    invoke("track", "first")
    assert not (isolated / "spool" / CACHE_NAME).exists()
    invoke("track", "second")
    return isolated


def session_of(*argv: str) -> str:
    return str(json.loads(invoke("track", "e", "--json", *argv).stdout)["session"])


def test_track_leaves_an_owner_only_cache_and_then_does_not_load_the_toml_reader(ready: Path) -> None:
    cache = ready / "spool" / CACHE_NAME
    assert cache.stat().st_mode & 0o777 == 0o600
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "hamustro_cli", "track", "e"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "hamustro_cli.config" in proc.stderr
    assert "tomllib" not in proc.stderr and "tomli" not in proc.stderr


def test_a_changed_file_is_read_even_with_the_same_size_and_times(ready: Path) -> None:
    """The entry is for the file's exact bytes: an edit that keeps the size, mtime and ctime-free
    stat fields is still seen (a cache keyed on the stat alone would serve the old values)."""
    config = ready / "config.toml"
    cache = ready / "spool" / CACHE_NAME
    before = session_of()
    st = config.stat()
    config.write_text(config.read_text().replace('"1.0.0"', '"1.0.9"'))
    os.utime(config, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert config.stat().st_size == st.st_size
    assert session_of() != before
    assert b"1.0.9" in cache.read_bytes()  # the entry now holds the new bytes


def test_the_cache_holds_no_secret_and_a_secret_with_an_escape_is_not_cached(ready: Path) -> None:
    cache = ready / "spool" / CACHE_NAME
    assert SETTINGS["shared_secret_key"].encode() not in cache.read_bytes()
    assert load_config().values["shared_secret_key"] == SETTINGS["shared_secret_key"]
    cache.unlink()
    config = ready / "config.toml"
    config.write_text(config.read_text().replace('shared_secret_key = "', 'shared_secret_key = "\\u0041'))
    invoke("track", "e")
    assert load_config().values["shared_secret_key"] == "A" + SETTINGS["shared_secret_key"]
    assert not cache.exists()


def test_the_environment_still_overrides_a_cached_file(ready: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (ready / "spool" / CACHE_NAME).exists()
    plain = session_of()
    monkeypatch.setenv("HAMUSTRO_PRODUCT_VERSION", "2.0.0")
    assert session_of() != plain
    monkeypatch.setenv("HAMUSTRO_QUEUE_SIZE", "many")
    result = invoke("track", "e", expect=2)
    assert "HAMUSTRO_QUEUE_SIZE" in result.stderr


def planted(ready: Path, **values: object) -> bytes:
    """A well-formed entry for the config file's bytes that says `values` instead."""
    config = ready / "config.toml"
    data = config.read_bytes()
    parsed = load_config().values
    forged = {k: parsed[k] for k in ("collector_url", "shared_secret_key", "device_id", "client_id")} | {
        "system_version": "Linux 6.1",
        "product_version": "forged",
        **values,
    }
    configcache.store(str(ready / "spool"), str(config), data, forged, "shared_secret_key")
    return (ready / "spool" / CACHE_NAME).read_bytes()


def test_an_owner_only_entry_is_used_for_the_same_bytes(ready: Path) -> None:
    """The trust model: the cache is believed as the spool is (the check below is that a
    well-formed entry is what load_config reads, so the ones refused next are refused for
    their trust alone)."""
    planted(ready)
    assert load_config().values["product_version"] == "forged"


@pytest.mark.parametrize("damage", ["group-readable", "link", "garbage", "fifo", "other-writable-dir"])
def test_a_cache_that_cannot_be_trusted_is_ignored(ready: Path, damage: str) -> None:
    entry = planted(ready)
    cache = ready / "spool" / CACHE_NAME
    if damage == "group-readable":
        cache.chmod(0o640)
    elif damage == "link":
        cache.unlink()
        (ready / "elsewhere").write_bytes(entry)
        (ready / "elsewhere").chmod(0o600)
        cache.symlink_to(ready / "elsewhere")
    elif damage == "garbage":
        cache.write_bytes(entry[: len(entry) // 2] + b"\xff" * 10)
    elif damage == "fifo":
        cache.unlink()
        os.mkfifo(cache, 0o600)
    else:
        (ready / "spool").chmod(0o777)
    assert load_config().values["product_version"] == "1.0.0"
    if damage == "other-writable-dir":
        (ready / "spool").chmod(0o700)
    assert invoke("track", "e").exit_code == 0


def test_a_spool_dir_set_in_the_file_is_parsed_each_time_and_works(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config(
        isolated / "config.toml",
        collector_url="http://127.0.0.1:9",
        spool_dir=str(isolated / "own"),
        **SETTINGS,
    )
    monkeypatch.delenv("HAMUSTRO_SPOOL_DIR")
    invoke("track", "a")
    invoke("track", "b")
    assert not (isolated / "own" / CACHE_NAME).exists()
    assert len(invoke("events", "list", "--json").stdout.splitlines()) == 2
