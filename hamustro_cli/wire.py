"""The bytes on the wire: the protobuf Collection, and the signature over it.

The message classes are built on first use from the schema protoc compiled
(payload_descriptor.py), in a private descriptor pool, with protobuf's public API only: the
same bytes and speed as protoc's gencode, on every runtime from 3.20.3 to 7.x and with either
backend (upb/C++ or pure Python), and no clash with another "payload.proto" in the default
pool. Only code that encodes or decodes (flush, doctor, the collector) loads google.protobuf.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Sequence
from typing import Any

from hamustro_cli.errors import DependencyError
from hamustro_cli.session import Session
from hamustro_cli.spool.records import QueuedEvent

TRACK_PATH = "/api/v1/track"
CONTENT_TYPE = "application/protobuf"
PROTOBUF_SUPPORTED = ">=3.20.3,<8"  # as pyproject.toml says; .ci/run tests the range
PROTOBUF_OLDEST = (3, 20, 3)

_classes: tuple[Any, Any] | None = None


def _build() -> tuple[Any, Any]:
    fix = f"hamustro needs protobuf {PROTOBUF_SUPPORTED} (pip install 'protobuf{PROTOBUF_SUPPORTED}')"
    try:
        from google import protobuf
    except Exception as exc:  # noqa: BLE001 - ImportError, or whatever a broken install raises
        _unless_short_of_something(exc)
        raise DependencyError(f"protobuf cannot be imported ({type(exc).__name__}: {exc}); {fix}") from None
    version = str(getattr(protobuf, "__version__", "unknown"))
    found = re.match(r"(\d+)\.(\d+)\.(\d+)", version)
    if found and tuple(map(int, found.groups())) < PROTOBUF_OLDEST:
        raise DependencyError(f"protobuf {version} is installed, too old; {fix}")
    try:
        from google.protobuf import descriptor_pool, message_factory

        from hamustro_cli.payload_descriptor import SERIALIZED

        pool = descriptor_pool.DescriptorPool()
        pool.AddSerializedFile(SERIALIZED)
        # GetMessageClass came in protobuf 4.x; 3.20 has only MessageFactory.GetPrototype.
        get = getattr(message_factory, "GetMessageClass", None)
        if get is None:
            get = message_factory.MessageFactory(pool).GetPrototype
        collection = get(pool.FindMessageTypeByName("payload.Collection"))
        return collection, get(pool.FindMessageTypeByName("payload.Payload"))
    except Exception as exc:  # noqa: BLE001 - a runtime that cannot build them is unusable
        _unless_short_of_something(exc)
        raise DependencyError(
            f"protobuf {version} cannot be used ({type(exc).__name__}: {exc}); {fix}"
        ) from None


def _unless_short_of_something(exc: Exception) -> None:
    """Re-raise `exc` when it came from the host running short of memory or descriptors: that
    is no broken protobuf install, and saying so would send people reinstalling it."""
    from hamustro_cli.limits import short_of

    if short_of(exc) is not None:
        raise exc


def messages() -> tuple[Any, Any]:
    """(Collection, Payload) message classes; DependencyError when protobuf is unusable."""
    global _classes
    if _classes is None:
        _classes = _build()
    return _classes


def __getattr__(name: str) -> Any:
    """wire.Collection and wire.Payload, built on first use."""
    if name == "Collection":
        return messages()[0]
    if name == "Payload":
        return messages()[1]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def encode(session: Session, events: Sequence[QueuedEvent], fallback_ip: str | None = None) -> bytes:
    """One Collection holding `events`, all of `session`. Events stored with an unknown
    address (ip "" while the route was not yet known) get `fallback_ip`."""
    coll = messages()[0](**{name: value for name, value in session.to_dict().items() if value is not None})
    add = coll.payloads.add
    for e in events:
        p = add(at=e.at, event=e.event, nr=e.nr)
        if e.user_id is not None:
            p.user_id = e.user_id
        ip = fallback_ip if e.ip == "" else e.ip
        if ip:
            p.ip = ip
        if e.parameters is not None:
            p.parameters = e.parameters
        if e.is_testing:
            p.is_testing = True
    body: bytes = coll.SerializeToString()  # protobuf has no stubs installed: typed here
    return body


def signature(time_header: str, body: bytes, secret: str) -> str:
    """base64(sha256(time + "|" + md5hex(body) + "|" + secret)), over the raw 32-byte digest."""
    md5 = hashlib.md5(body).hexdigest()
    digest = hashlib.sha256(f"{time_header}|{md5}|{secret}".encode()).digest()
    return base64.b64encode(digest).decode("ascii")


def headers(body: bytes, secret: str, epoch: int) -> dict[str, str]:
    stamp = str(epoch)
    return {
        "Content-Type": CONTENT_TYPE,
        "X-Hamustro-Time": stamp,
        "X-Hamustro-Signature": signature(stamp, body, secret),
    }
