"""The bytes on the wire: the protobuf Collection, and the signature over it.

Imports google.protobuf, so only code that sends (flush, doctor, the collector) loads it.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence

from hamustro_cli import payload_pb2
from hamustro_cli.records import QueuedEvent
from hamustro_cli.session import Session

TRACK_PATH = "/api/v1/track"
CONTENT_TYPE = "application/protobuf"


def encode(session: Session, events: Sequence[QueuedEvent], fallback_ip: str | None = None) -> bytes:
    """One Collection holding `events`, all of `session`. Events stored with an unknown
    address (ip "" while the route was not yet known) get `fallback_ip`."""
    coll = payload_pb2.Collection(
        device_id=session.device_id,
        client_id=session.client_id,
        session=session.session,
        system_version=session.system_version,
        product_version=session.product_version,
    )
    if session.system is not None:
        coll.system = session.system
    if session.product_git_hash is not None:
        coll.product_git_hash = session.product_git_hash
    add = coll.payloads.add
    # Rows are QueuedEvents or the plain tuples Spool.claim returns: same layout.
    for _id, nr, at, event, user_id, ip, parameters, is_testing in events:
        p = add(at=at, event=event, nr=nr)
        if user_id is not None:
            p.user_id = user_id
        if ip == "":
            ip = fallback_ip
        if ip:
            p.ip = ip
        if parameters is not None:
            p.parameters = parameters
        if is_testing:
            p.is_testing = True
    return coll.SerializeToString()


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
