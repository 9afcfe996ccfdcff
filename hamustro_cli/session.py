"""The session: the collection attributes every event of one session is sent with."""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple


def sha256hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def session_id(device_id_hash: str, client_id: str, system_version: str, product_version: str) -> str:
    """md5hex(sha256hex(raw device id) + ":" + client_id + ":" + system_version + ":" + product_version)."""
    text = f"{device_id_hash}:{client_id}:{system_version}:{product_version}"
    return hashlib.md5(text.encode("utf-8")).hexdigest()


class Session(NamedTuple):
    session: str
    device_id: str  # already sha256hex(raw device id): what is sent
    client_id: str
    system_version: str
    product_version: str
    system: str | None = None
    product_git_hash: str | None = None

    @classmethod
    def from_settings(
        cls,
        device_id: str,
        client_id: str,
        system_version: str,
        product_version: str,
        system: str | None = None,
        product_git_hash: str | None = None,
    ) -> Session:
        """Build from the raw device id, as configured."""
        hashed = sha256hex(device_id)
        return cls(
            session=session_id(hashed, client_id, system_version, product_version),
            device_id=hashed,
            client_id=client_id,
            system_version=system_version,
            product_version=product_version,
            system=system,
            product_git_hash=product_git_hash,
        )

    def to_dict(self) -> dict[str, Any]:
        return self._asdict()
