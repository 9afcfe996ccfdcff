"""What each collector answer means: one table, read by `flush` (sending.py, through
transport.py), the background flush (the same Sender), `doctor` and the local collector's tests.

An answer is an HTTP status, or a request that got none (a Failure). Its Meaning has a Kind,
which decides what happens to the batch and the exit code; the words are for people only.
Imports neither click nor requests: doctor and the tests read it without sending anything.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple

from hamustro_cli.errors import ExitStatus


class Kind(IntEnum):
    """What an answer means for the events it was about."""

    DELIVERED = 1  # 200: stored; the batch is deleted
    EMPTY = 2  # 204: the collection was accepted and held no payloads (doctor's signed check)
    SPLIT = 3  # 400, 413: send smaller parts, to set aside only what the collector refuses
    TRY_LATER = 4  # 5xx, 408, 429, timeouts, no connection: unchanged, may pass later
    PERSON = 5  # 3xx, 401, 403, 404, 405, other 4xx and 2xx: nothing changes until a person acts

    @property
    def exit_status(self) -> ExitStatus:
        """The exit code of a flush that ends on an answer of this kind."""
        return _EXIT[self]

    @property
    def halts(self) -> bool:
        """Does a flush that ends on it stop sending (`flush --if-due`, `track`'s trigger) until
        a plain `hamustro flush` succeeds? Resending cannot change such an answer."""
        return self in (Kind.PERSON, Kind.EMPTY)


_EXIT = {
    Kind.DELIVERED: ExitStatus.OK,
    Kind.EMPTY: ExitStatus.ATTENTION,  # to a batch of events: the collector stored none of them
    Kind.SPLIT: ExitStatus.ATTENTION,  # whatever is still refused alone is set aside as rejected
    Kind.TRY_LATER: ExitStatus.UNDELIVERED,
    Kind.PERSON: ExitStatus.ATTENTION,
}


class Failure(IntEnum):
    """How a request failed without an HTTP answer."""

    TLS = 1
    TIMEOUT = 2
    UNREACHABLE = 3
    REQUEST = 4  # another requests error
    BAD_URL = 5


class Meaning(NamedTuple):
    kind: Kind
    what: str  # what happened, for people
    fix: str | None = None  # what a person should do, when someone must
    # The collector may have stored the request though it did not say so (a timeout, a proxy's
    # 504), or said it was too large (413): the next attempt sends fewer events.
    smaller: bool = False

    @property
    def detail(self) -> str:
        """One line for `status`, logs and errors: what happened and the fix."""
        return f"{self.what}: {self.fix}" if self.fix else self.what


CHECK_URL = "check collector_url"
NOT_HAMUSTRO = "collector_url may not point at a Hamustro collector (or a proxy answers for it)"
SIGNATURE_FIX = (
    "set shared_secret_key to the collector's secret (if it is right, check this machine's "
    "clock and any proxy that rewrites requests)"
)
TOO_LARGE = "too large for the collector on its own (413)"

_FAILURES = {
    Failure.TLS: Meaning(
        Kind.TRY_LATER,
        "",
        "set ca_bundle to the CA that signed the collector's certificate (and client_cert, "
        "client_key when it asks for a client certificate)",
    ),
    # The collector may have stored the batch before the time was up (it keeps storing when the
    # client has hung up): the next attempt is smaller.
    Failure.TIMEOUT: Meaning(
        Kind.TRY_LATER,
        "",
        "check that the collector is up and reachable from here; raise timeout if it is slow",
        smaller=True,
    ),
    Failure.UNREACHABLE: Meaning(
        Kind.TRY_LATER, "", "is the collector running? check collector_url (and HTTPS_PROXY/NO_PROXY)"
    ),
    Failure.REQUEST: Meaning(Kind.TRY_LATER, "", CHECK_URL),
    Failure.BAD_URL: Meaning(Kind.PERSON, "", CHECK_URL),
}


def failure(kind: Failure, what: str) -> Meaning:
    """What a request that got no HTTP answer means; `what` says what happened."""
    return _FAILURES[kind]._replace(what=what)


def meaning(status: int, url: str = "the collector", location: str = "", text: str = "") -> Meaning:
    """What an HTTP status from the collector means. `location` (a redirect's target) and `text`
    (the answer's body) are shown only, already escaped by the caller."""
    said = f": {text}" if text else ""
    if status == 200:
        return Meaning(Kind.DELIVERED, "accepted (200)")
    if status == 204:
        return Meaning(Kind.EMPTY, "collector answered 204 (no payloads accepted)")
    if status == 400:
        return Meaning(Kind.SPLIT, "collector refused the batch as invalid (400)" + said)
    if status == 413:
        return Meaning(Kind.SPLIT, "collector refused the batch as too large (413)" + said, smaller=True)
    if status == 405:
        return Meaning(
            Kind.PERSON,
            "collector rejected the signature (405): shared_secret_key is probably wrong",
            SIGNATURE_FIX,
        )
    if 300 <= status < 400:
        return Meaning(
            Kind.PERSON,
            f"collector answered {status} redirect to {location or '?'}; redirects are not followed",
            "set collector_url to the final address",
        )
    if status == 401:
        return Meaning(
            Kind.PERSON,
            "collector answered 401: it asks for credentials this client never sends",
            "point collector_url at a collector that needs none, or ask its operator",
        )
    if status == 407:
        return Meaning(
            Kind.PERSON,
            "a proxy answered 407: it wants credentials, and none or wrong ones were given",
            "put the proxy's user and password in its URL (HTTPS_PROXY or HTTP_PROXY="
            "http://USER:PASSWORD@HOST:PORT), or exempt the collector with NO_PROXY",
        )
    if status == 403:
        return Meaning(
            Kind.PERSON,
            f"collector answered 403 (forbidden) for {url}",
            "ask the collector's operator to let this machine in, or check collector_url",
        )
    if status == 404:
        return Meaning(Kind.PERSON, f"collector answered 404 for {url}", CHECK_URL)
    if status == 504:
        return Meaning(
            Kind.TRY_LATER,
            "collector answered 504 (a proxy gave up waiting for it; it may have stored the batch)",
            smaller=True,
        )
    if status in (408, 429) or 500 <= status < 1000:
        return Meaning(Kind.TRY_LATER, f"collector answered {status} (temporary)")
    return Meaning(Kind.PERSON, f"collector answered {status}" + said, f"{CHECK_URL}; {NOT_HAMUSTRO}")
