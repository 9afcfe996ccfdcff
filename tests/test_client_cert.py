"""Client certificates (client_cert, client_key) end to end: a real TLS collector on 127.0.0.1
that requires a certificate signed by the test's CA, certificates made by the openssl command."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SETTINGS, RunningCollector, invoke, run_unprivileged, start_collector, write_config
from test_proxy import Proxy


class Pki:
    """A CA, a server certificate for 127.0.0.1, a client certificate and an unrelated key."""

    def __init__(self, root: Path):
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("the openssl command is not installed: cannot make test certificates")
        self.root = root

        # Extensions enough for Python 3.13's VERIFY_X509_STRICT (on by default there): a CA with
        # key usage and a key identifier, leaves naming the CA's key.
        def make(name: str, subject: str, ext: tuple[str, ...], signer: str | None) -> None:
            args = [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
            args += ["-nodes", "-keyout", str(root / f"{name}.key"), "-out", str(root / f"{name}.pem")]
            args += ["-days", "2", "-subj", subject]
            if signer:
                args += ["-CA", str(root / f"{signer}.pem"), "-CAkey", str(root / f"{signer}.key")]
            for one in ext:
                args += ["-addext", one]
            subprocess.run(args, check=True, capture_output=True)

        ca = ("basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign")
        leaf = ("basicConstraints=critical,CA:FALSE", "authorityKeyIdentifier=keyid")
        make("ca", "/CN=hamustro test CA", ca, None)
        make("server", "/CN=127.0.0.1", (*leaf, "subjectAltName=IP:127.0.0.1"), "ca")
        make("client", "/CN=hamustro client", (*leaf, "extendedKeyUsage=clientAuth"), "ca")
        make("other", "/CN=someone else", (), None)  # other.key is not client.pem's key
        for key in root.glob("*.key"):
            key.chmod(0o600)
        self.ca, self.cert, self.key = root / "ca.pem", root / "client.pem", root / "client.key"
        self.other_key = root / "other.key"
        self.combined = root / "combined.pem"  # certificate and key in one file
        self.combined.write_bytes(self.cert.read_bytes() + self.key.read_bytes())
        self.combined.chmod(0o600)
        self.encrypted = root / "encrypted.key"
        subprocess.run(
            [openssl, "pkey", "-in", str(self.key), "-out", str(self.encrypted), "-aes256"]
            + ["-passout", "pass:a passphrase"],
            check=True,
            capture_output=True,
        )


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def mtls(tmp_path: Path, pki: Pki) -> Iterator[RunningCollector]:
    """The local collector behind TLS that refuses a client without a certificate of the CA's."""
    running = start_collector(tmp_path, "mtls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(pki.root / "server.pem", pki.root / "server.key")
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(pki.ca)
    running.server.socket = ctx.wrap_socket(running.server.socket, server_side=True)
    running.url = running.url.replace("http://", "https://")
    yield running
    running.server.stop()
    running.server.out.close()


def configure(isolated: Path, mtls: RunningCollector, pki: Pki, **values: Any) -> Path:
    settings = {**SETTINGS, "retries": 0, "ca_bundle": str(pki.ca), **values}
    return write_config(isolated / "config.toml", collector_url=mtls.url, **settings)


def pending() -> int:
    return int(json.loads(invoke("status", "--json").stdout)["pending"])


def test_a_flush_delivers_with_the_pair_and_fails_as_tls_without_it(isolated, mtls, pki):
    configure(isolated, mtls, pki)
    invoke("track", "a")
    without = invoke("flush", expect=1)  # try later: the events are kept
    assert "TLS error" in without.stderr, without.output
    assert pending() == 1 and mtls.received() == []
    configure(isolated, mtls, pki, client_cert=str(pki.cert), client_key=str(pki.key))
    invoke("flush")
    assert [e["event"] for e in mtls.received()] == ["a"] and pending() == 0


def test_one_file_may_hold_the_certificate_and_its_key(isolated, mtls, pki, monkeypatch):
    configure(isolated, mtls, pki)
    monkeypatch.setenv("HAMUSTRO_CLIENT_CERT", str(pki.combined))
    invoke("track", "a")
    invoke("flush")
    assert [e["event"] for e in mtls.received()] == ["a"]


@pytest.mark.parametrize(
    "cert,key,words",
    [
        ("cert", "other_key", "not a PEM certificate and its matching private key (KEY_VALUES_MISMATCH)"),
        ("key", "cert", "not a PEM certificate and its matching private key"),
        ("cert", "encrypted", "the key is encrypted"),
    ],
    ids=["another key", "swapped", "encrypted key"],
)
def test_a_pair_that_does_not_load_is_a_config_error_and_nothing_is_sent(
    isolated, mtls, pki, cert, key, words
):
    cert_path, key_path = getattr(pki, cert), getattr(pki, key)
    config = configure(isolated, mtls, pki, client_cert=str(cert_path), client_key=str(key_path))
    invoke("track", "a")  # the files are fine as files: track queues
    result = invoke("flush", expect=2)
    assert words in result.stderr, result.output
    assert f"client_cert from {config}, client_key from {config}" in result.stderr
    assert "Traceback" not in result.output and "passphrase" not in result.output.replace("a passphrase", "")
    assert pending() == 1 and mtls.received() == [] and mtls.requests == []
    doctor = invoke("doctor", "--json", expect=1)
    checks = {c["name"]: c for c in json.loads(doctor.stdout)["checks"]}
    assert checks["config"]["state"] == "fail" and words in checks["config"]["verdict"]


def _fifo(tmp_path: Path) -> str:
    os.mkfifo(tmp_path / "fifo")
    return str(tmp_path / "fifo")


CAPS = {"client_cert": 1024 * 1024, "client_key": 1024 * 1024, "ca_bundle": 16 * 1024 * 1024}


def _big(tmp_path: Path, key: str) -> str:
    with open(tmp_path / "big.pem", "wb") as f:
        f.truncate(CAPS[key] + 1)  # sparse: a size past the cap, no disk
    return str(tmp_path / "big.pem")


@pytest.mark.parametrize(
    "make,words",
    [
        (lambda tmp, key: str(tmp / "missing.pem"), "does not exist"),
        (lambda tmp, key: str(tmp), "is a directory, not a regular file"),
        (lambda tmp, key: _fifo(tmp), "is a FIFO (named pipe), not a regular file"),
        (lambda tmp, key: "/dev/null", "is a character device, not a regular file"),
        (_big, "is larger than {cap} KiB: not "),
    ],
    ids=["missing", "directory", "fifo", "device", "too large"],
)
@pytest.mark.parametrize("key", ["client_cert", "client_key", "ca_bundle"])
def test_a_file_that_cannot_be_a_pem_file_is_refused_naming_key_and_source(
    isolated, mtls, pki, tmp_path, key, make, words
):
    path = make(tmp_path, key)
    words = words.format(cap=CAPS[key] // 1024)
    values = {"client_cert": str(pki.cert), "client_key": str(pki.key), key: path}
    config = configure(isolated, mtls, pki, **values)
    result = invoke("track", "a", expect=2)
    assert f"config key {key} (from {config}): {path} {words}" in result.stderr, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "spool").exists() or pending() == 0


def test_the_source_named_is_the_variable_that_set_it(isolated, mtls, pki, tmp_path, monkeypatch):
    configure(isolated, mtls, pki)
    monkeypatch.setenv("HAMUSTRO_CLIENT_CERT", str(tmp_path))
    result = invoke("flush", expect=2)
    assert "config key client_cert (from environment variable HAMUSTRO_CLIENT_CERT)" in result.stderr


def test_a_key_without_its_certificate_is_refused(isolated, mtls, pki):
    config = configure(isolated, mtls, pki, client_key=str(pki.key))
    result = invoke("track", "a", expect=2)
    assert f"config key client_key (from {config}) is set without client_cert" in result.stderr


@pytest.mark.parametrize("key", ["client_key", "ca_bundle"])
def test_an_unreadable_key_or_ca_file_is_refused(isolated, mtls, pki, tmp_path, key):
    unreadable = tmp_path / "unreadable.pem"
    unreadable.write_bytes(getattr(pki, {"client_key": "key", "ca_bundle": "ca"}[key]).read_bytes())
    unreadable.chmod(0o000)
    values = {"client_cert": str(pki.cert), "client_key": str(pki.key), key: str(unreadable)}
    config = configure(isolated, mtls, pki, **values)
    result = run_unprivileged("track", "a")  # root reads any file: as a plain user
    assert result.returncode == 2, result.stderr
    assert f"config key {key} (from {config}): {unreadable} is not readable" in result.stderr


def test_doctor_checks_the_pair_end_to_end_and_warns_of_a_key_others_can_read(isolated, mtls, pki, tmp_path):
    shared = tmp_path / "shared.key"
    shared.write_bytes(pki.key.read_bytes())
    shared.chmod(0o600)
    configure(isolated, mtls, pki, client_cert=str(pki.cert), client_key=str(shared))
    out = json.loads(invoke("doctor", "--json").stdout)
    assert [c["state"] for c in out["checks"]] == ["ok", "ok", "ok", "ok"], out
    assert "client certificate loads" in out["checks"][0]["verdict"]
    shared.chmod(0o644)
    text = invoke("doctor").stdout
    assert text.startswith("warn  config:"), text
    assert f"{shared} holds the client's private key and is readable by other users" in text
    assert f"chmod 600 {shared}" in text


def test_the_pair_goes_through_an_authenticating_proxys_tunnel(isolated, mtls, pki, monkeypatch):
    """https through a proxy: CONNECT with the proxy's credentials, then TLS end to end with
    the collector (the client certificate reaches the collector, not the proxy)."""
    tunnel = Proxy("fleet-user:tunnel-pw-7731")
    try:
        monkeypatch.setenv("HTTPS_PROXY", tunnel.url_with("fleet-user:tunnel-pw-7731"))
        configure(isolated, mtls, pki, client_cert=str(pki.cert), client_key=str(pki.key))
        invoke("track", "a")
        flushed = invoke("-vv", "flush")
        doctor = invoke("doctor")
        monkeypatch.setenv("HTTPS_PROXY", tunnel.url_with("fleet-user:wrong-pw-2290"))
        invoke("track", "b")
        refused = invoke("-vv", "flush", expect=4)  # the CONNECT's 407: a person acts
    finally:
        tunnel.close()
    assert "a proxy answered 407" in refused.stderr and "wrong-pw-2290" not in refused.output
    assert pending() == 1
    assert [e["event"] for e in mtls.received()] == ["a"]
    port = mtls.url.rsplit(":", 1)[1]
    assert {(s["method"], s["target"]) for s in tunnel.seen} == {("CONNECT", f"127.0.0.1:{port}")}
    assert f"through proxy http://***@127.0.0.1:{tunnel.port}" in doctor.stdout
    assert "tunnel-pw-7731" not in flushed.output + doctor.output
