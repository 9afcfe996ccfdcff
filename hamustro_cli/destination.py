"""Where events go: a keyed fingerprint of the destination (collector_url, client_id and
shared_secret_key), stored with each attribute set so that a spool shared by two configs sends
each event only to the collector, signed only with the secret, it was tracked under.

The fingerprint is HMAC-SHA256 keyed with the secret over the URL and client_id, cut to 16 hex
digits: it tells destinations apart, and the secret cannot be read back from it (nor from
anything else the spool holds). On `track`'s path: digests.hmac_sha256 only, computed once per
tracker (ClientTracker.destination)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hamustro_cli.digests import hmac_sha256
from hamustro_cli.log import count

if TYPE_CHECKING:
    from hamustro_cli.spool.rows import Held

KEYS = ("collector_url", "client_id", "shared_secret_key")  # what names a destination, in order
FINGERPRINT_CHARS = 16  # hex digits kept: 64 bits, plenty to tell a machine's destinations apart
_CONTEXT = b"hamustro destination v1\x00"


def _bytes(text: str) -> bytes:
    # a setting from the environment may hold undecodable bytes as lone surrogates
    return text.encode("utf-8", "surrogatepass")


def fingerprint(collector_url: str, client_id: str, shared_secret_key: str) -> str:
    """The destination's fingerprint: 16 lowercase hex digits."""
    message = _CONTEXT + _bytes(collector_url) + b"\x00" + _bytes(client_id)
    digest: str = hmac_sha256(_bytes(shared_secret_key), message).hexdigest()
    return digest[:FINGERPRINT_CHARS]


def is_fingerprint(text: str) -> bool:
    """Is `text` shaped as `fingerprint` makes them (16 lowercase hex digits)?"""
    return len(text) == FINGERPRINT_CHARS and all(c in "0123456789abcdef" for c in text)


def of_settings(values: Mapping[str, Any]) -> str | None:
    """The fingerprint of the destination these settings name, or None when one is unset."""
    named = [values.get(key) for key in KEYS]
    if any(value in (None, "") for value in named):
        return None
    return fingerprint(*(str(value) for value in named))


def others(held: Mapping[str | None, Held], mine: str) -> dict[str, int]:
    """{destination: events} of `Spool.by_destination()` that a flush for `mine` leaves alone
    (not those from before destinations were recorded: it claims them)."""
    return {d: h.live + h.rejected for d, h in held.items() if d is not None and d != mine}


def others_advice(counts: Mapping[str, int]) -> str:
    """What `status`, `doctor` and `flush` say about other destinations' events."""
    listed = ", ".join(f"{d} ({n})" for d, n in sorted(counts.items()))
    return (
        f"{count(sum(counts.values()), 'event')} queued for other destinations: {listed}; a flush with this "
        "config leaves them (they were tracked with another collector_url, client_id or "
        "shared_secret_key): flush with the config they were tracked under, or send them with this "
        "one ('hamustro events claim FINGERPRINT'), or drop them "
        "('hamustro events drop --destination FINGERPRINT --yes')"
    )
