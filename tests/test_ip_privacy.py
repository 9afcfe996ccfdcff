"""The address sent as `ip` (issue 14, class 6): the collector masks the last octet of an IPv4
address and stores an IPv6 one whole, so hamustro never sends an IPv6 address unless the user
asked for exactly that (send_ipv6). What a real collector on 127.0.0.1 or [::1] receives."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SETTINGS, RunningCollector, invoke, ipv6_loopback, serve_in_background, write_config

from hamustro_cli.spool import DB_NAME
from hamustro_cli.spool.full import Spool

IPV6 = ["2001:db8::1", "::1", "fe80::1", "2001:0db8:0000:0000:0000:ff00:0042:8329", "::"]


def error_line(output: str) -> str:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.startswith("hamustro: error:")]
    assert len(lines) == 1, output
    return lines[0]


def queued_ips() -> list[str | None]:
    """Read through the library: `events list` loads the config, which may be the refused one."""
    spool_dir = Path(os.environ["HAMUSTRO_SPOOL_DIR"])
    if not (spool_dir / DB_NAME).exists():
        return []
    with Spool(spool_dir) as spool:
        return [e["ip"] for e in spool.iter_events()]


def sent_ips(collector: RunningCollector) -> list[str | None]:
    invoke("flush")
    return [e["ip"] for e in collector.received()]


@pytest.mark.parametrize("address", IPV6)
def test_an_ipv6_address_given_with_ip_is_refused_unless_asked_for(
    config: Path, collector: RunningCollector, address: str
) -> None:
    line = error_line(invoke("track", "e", "--ip", address, expect=2).output)
    assert "--ip" in line and "IPv6" in line and "send_ipv6" in line, line
    assert queued_ips() == []
    invoke("--quiet", "config", "set", "send_ipv6", "true")
    invoke("track", "e", "--ip", address)
    assert sent_ips(collector) == [address]


@pytest.mark.parametrize("address", IPV6)
def test_an_ipv6_address_set_as_ip_is_refused_unless_asked_for(
    isolated: Path, collector: RunningCollector, address: str
) -> None:
    path = write_config(isolated / "config.toml", collector_url=collector.url, ip=address, **SETTINGS)
    line = error_line(invoke("track", "e", expect=2).output)
    assert "config key ip" in line and str(path) in line and "send_ipv6" in line, line
    assert queued_ips() == []
    write_config(path, collector_url=collector.url, ip=address, send_ipv6=True, **SETTINGS)
    invoke("track", "e")
    assert sent_ips(collector) == [address]


def test_an_ipv4_mapped_address_is_sent_as_the_ipv4_address_it_is(
    config: Path, collector: RunningCollector
) -> None:
    invoke("track", "flag", "--ip", "::ffff:192.0.2.7")
    invoke("--quiet", "config", "set", "ip", "::ffff:198.51.100.9")
    invoke("track", "key")
    assert sent_ips(collector) == ["192.0.2.7", "198.51.100.9"]


@pytest.fixture
def collector6(tmp_path: Path) -> Iterator[RunningCollector]:
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback (::1) on this machine: the IPv6 route cannot be made")
    from hamustro_cli.collector import make_server

    out_path = tmp_path / "collector6.jsonl"
    with open(out_path, "a") as out:
        server = make_server("::1", 0, SETTINGS["shared_secret_key"], out)
        serve_in_background(server)
        yield RunningCollector(server, out_path)
        server.stop()


def test_auto_over_an_ipv6_route_sends_no_address(isolated: Path, collector6: RunningCollector) -> None:
    """ip = "auto" sent the IPv6 source of the route (::1 here), which the collector stores whole."""
    assert collector6.url.startswith("http://[::1]:")
    write_config(isolated / "config.toml", collector_url=collector6.url, **SETTINGS)
    invoke("track", "first")
    invoke("track", "--stdin", input='{"event": "second"}\n')
    assert sent_ips(collector6) == [None, None]


def test_auto_over_an_ipv4_route_sends_its_ipv4_source(config: Path, collector: RunningCollector) -> None:
    """The same rule, where the collector can mask what it gets: unchanged."""
    invoke("track", "e")
    invoke("--quiet", "config", "set", "send_ipv6", "true")  # asks for given IPv6, changes no route
    invoke("track", "f")
    assert sent_ips(collector) == ["127.0.0.1", "127.0.0.1"]
