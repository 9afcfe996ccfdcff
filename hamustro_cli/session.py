"""The session: the collection attributes every event of one session is sent with, and its id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from hamustro_cli.digests import md5, sha256

if TYPE_CHECKING:
    from hamustro_cli.config import Config


def sha256hex(text: str) -> str:
    return str(sha256(text.encode("utf-8")).hexdigest())


# The protocol's Collection fields a Session carries, in the protocol's order, and whether each
# is required; the one list the encoder, a flush's check of stored attributes and the collector
# read (`session` is Session.id).
COLLECTION_FIELDS: tuple[tuple[str, bool], ...] = (
    ("device_id", True),
    ("client_id", True),
    ("session", True),
    ("system_version", True),
    ("product_version", True),
    ("system", False),
    ("product_git_hash", False),
)


def session_id(device_id_hash: str, client_id: str, system_version: str, product_version: str) -> str:
    """md5hex(sha256hex(raw device id) + ":" + client_id + ":" + system_version + ":" + product_version)."""
    text = f"{device_id_hash}:{client_id}:{system_version}:{product_version}"
    return str(md5(text.encode("utf-8")).hexdigest())


class Session(NamedTuple):
    id: str  # the session id (the protocol's `session` field)
    device_id: str  # already sha256hex(raw device id): what is sent
    client_id: str
    system_version: str
    product_version: str
    system: str | None = None
    product_git_hash: str | None = None

    @property
    def session(self) -> str:
        """The session id under its protocol name (kept for programs written against it)."""
        return self.id

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
            id=session_id(hashed, client_id, system_version, product_version),
            device_id=hashed,
            client_id=client_id,
            system_version=system_version,
            product_version=product_version,
            system=system,
            product_git_hash=product_git_hash,
        )

    @classmethod
    def from_config(cls, config: Config) -> Session:
        """The configured session; a ConfigError names any of its settings that is missing."""
        from hamustro_cli.config import SESSION_KEYS

        values = config.require(SESSION_KEYS).values
        return cls.from_settings(
            values["device_id"],
            values["client_id"],
            values["system_version"],
            values["product_version"],
            values["system"],
            values["product_git_hash"],
        )

    def to_dict(self) -> dict[str, Any]:
        """The attributes under their protocol names (`session` for the id): COLLECTION_FIELDS'
        names."""
        data = self._asdict()
        return {"session": data.pop("id"), **data}
