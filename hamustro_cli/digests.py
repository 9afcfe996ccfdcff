"""The digests `track` computes (the session id's SHA-256 and MD5, the destination's
HMAC-SHA256), from CPython's built-in hash modules: they load in microseconds, where hashlib
loads OpenSSL's libcrypto, about a tenth of a whole `track`. hashlib when a build lacks them.
The same digests as hashlib and hmac (tests/test_digests.py holds them to it); what signs a
request (wire) keeps hashlib."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Hash = Callable[[bytes], Any]  # a constructor: hash(data).digest() / .hexdigest()


def _constructor(modules: tuple[str, ...], name: str) -> Hash:
    for module in modules:
        try:
            found: Hash = getattr(__import__(module), name)
            return found
        except (ImportError, AttributeError):
            continue
    import hashlib  # pragma: no cover - a Python built without its own hash modules

    fallback: Hash = getattr(hashlib, name)  # pragma: no cover
    return fallback  # pragma: no cover


sha256 = _constructor(("_sha2", "_sha256"), "sha256")  # _sha2 from Python 3.12
md5 = _constructor(("_md5",), "md5")

_BLOCK = 64  # SHA-256's block size in bytes (RFC 2104's B)
_INNER = bytes(x ^ 0x36 for x in range(256))
_OUTER = bytes(x ^ 0x5C for x in range(256))


def hmac_sha256(key: bytes, message: bytes) -> Any:
    """HMAC-SHA256 (RFC 2104) of `message` keyed with `key`: the outer hash object."""
    if len(key) > _BLOCK:
        key = sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = sha256(key.translate(_INNER) + message).digest()
    return sha256(key.translate(_OUTER) + inner)
