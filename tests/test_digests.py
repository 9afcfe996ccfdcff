"""digests: the built-in hash modules give what hashlib and hmac give, and `track`'s path does
not load OpenSSL's hashlib for them."""

from __future__ import annotations

import hashlib
import hmac
import subprocess
import sys

import pytest

from hamustro_cli import digests

KEYS = [b"", b"k", b"s" * 63, b"s" * 64, b"s" * 65, b"\xff" * 200, "s\u00e9cret".encode()]
MESSAGES = [b"", b"hamustro destination v1\x00http://127.0.0.1:9\x00client", b"\x00" * 1000]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("message", MESSAGES)
def test_hmac_sha256_is_hmacs(key: bytes, message: bytes) -> None:
    assert digests.hmac_sha256(key, message).hexdigest() == hmac.new(key, message, hashlib.sha256).hexdigest()


@pytest.mark.parametrize("data", MESSAGES)
def test_sha256_and_md5_are_hashlibs(data: bytes) -> None:
    assert digests.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
    assert digests.md5(data).hexdigest() == hashlib.md5(data).hexdigest()


def test_the_session_and_destination_load_no_openssl() -> None:
    code = (
        "import sys\nfrom hamustro_cli import destination, session\n"
        "session.session_id(session.sha256hex('d'), 'c', 's', 'p'); destination.fingerprint('u', 'c', 'k')\n"
        "print('_hashlib' in sys.modules, 'hashlib' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["False", "False"], proc.stderr
