"""HTTP to the collector: one signed POST, retried when the failure is transient.

Imports requests, so only code that sends loads it. Redirects are never followed (a signed
body must not be replayed to another host); every request has a timeout.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, NamedTuple

import requests

from hamustro_cli import wire
from hamustro_cli.log import DEBUG, INFO, Log, no_log

TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504}) | frozenset(range(505, 600))
MAX_WAIT = 30.0  # longest pause between two tries within one flush (seconds)


class Failure(IntEnum):
    """How a request failed without an HTTP answer."""

    TLS = 1
    TIMEOUT = 2
    UNREACHABLE = 3
    REQUEST = 4  # another requests error
    BAD_URL = 5


class RequestProblem(NamedTuple):
    kind: Failure
    detail: str
    transient: bool


def request_problem(exc: Exception, url: str, timeout: float) -> RequestProblem:
    """What a requests exception (or urllib3's ValueError for a bad URL) means, for a POST
    to the collector and for doctor's GET alike."""
    if isinstance(exc, requests.exceptions.SSLError):
        return RequestProblem(Failure.TLS, f"TLS error talking to {url}: {_short(exc)}", False)
    if isinstance(exc, requests.exceptions.Timeout):
        return RequestProblem(Failure.TIMEOUT, f"no answer from {url} within {timeout:g} s", True)
    if isinstance(exc, requests.exceptions.ConnectionError):
        return RequestProblem(Failure.UNREACHABLE, f"cannot reach {url}: {_short(exc)}", True)
    if isinstance(exc, requests.exceptions.RequestException):
        return RequestProblem(Failure.REQUEST, f"request to {url} failed: {_short(exc)}", True)
    return RequestProblem(Failure.BAD_URL, f"cannot send to {url}: {exc}", False)


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer at all (refused, reset, timeout, TLS)
    detail: str  # what happened, for people and for `status`
    transient: bool
    retry_after: float | None = None
    attempts: int = 1

    @property
    def ok(self) -> bool:
        return self.status == 200


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - now)


def backoff_delay(attempt: int, base: float, cap: float = MAX_WAIT) -> float:
    """Capped exponential backoff with full jitter: uniform in [base*2^(attempt-1)/2, base*2^(attempt-1)]."""
    high = min(cap, base * (2 ** (attempt - 1)))
    return random.uniform(high / 2, high)


class Transport:
    def __init__(
        self,
        collector_url: str,
        secret: str,
        timeout: float,
        verify: bool | str = True,
        retries: int = 3,
        retry_delay: float = 0.5,
        log: Log | None = None,
    ):
        self.url = collector_url.rstrip("/") + wire.TRACK_PATH
        self._secret = secret
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.log = log or no_log
        self.http = requests.Session()
        # Passed with each request: requests lets REQUESTS_CA_BUNDLE override a Session's verify.
        self.verify = verify
        if verify is False:
            # The CLI already warned once (config.load_config); urllib3 would repeat it per request.
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    @classmethod
    def from_config(
        cls, values: Mapping[str, Any], log: Log | None = None, retries: int | None = None
    ) -> Transport:
        """A transport as the settings describe it (`retries` overrides the configured count)."""
        return cls(
            values["collector_url"],
            values["shared_secret_key"],
            values["timeout"],
            verify_option(values),
            values["retries"] if retries is None else retries,
            values["retry_delay"],
            log,
        )

    def close(self) -> None:
        self.http.close()

    def post_once(self, body: bytes) -> Answer:
        headers = wire.headers(body, self._secret, int(time.time()))
        self.log(DEBUG, f"POST {self.url} ({len(body)} bytes)")
        try:
            resp = self.http.post(
                self.url,
                data=body,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                verify=self.verify,
            )
        except (requests.exceptions.RequestException, ValueError) as exc:
            # ValueError: urllib3's LocationParseError and kin: the URL itself is bad
            problem = request_problem(exc, self.url, self.timeout)
            return Answer(None, problem.detail, transient=problem.transient)
        status = resp.status_code
        try:
            text = resp.text[:200].strip()
        except Exception:  # pragma: no cover - undecodable body
            text = ""
        resp.close()
        self.log(DEBUG, f"answer {status}" + (f": {text}" if text else ""))
        retry_after = parse_retry_after(resp.headers.get("Retry-After"), time.time())
        return Answer(
            status,
            describe(status, self.url, resp.headers.get("Location"), text),
            transient=status in TRANSIENT_STATUS,
            retry_after=retry_after,
        )

    def send(self, body: bytes, sleep: Callable[[float], None] = time.sleep) -> Answer:
        """POST, retrying a transient failure up to `retries` times. Returns the last answer."""
        attempt = 0
        while True:
            attempt += 1
            answer = self.post_once(body)
            if not answer.transient or attempt > self.retries:
                return Answer(answer.status, answer.detail, answer.transient, answer.retry_after, attempt)
            delay = backoff_delay(attempt, self.retry_delay)
            if answer.retry_after is not None:
                if answer.retry_after > MAX_WAIT:
                    # Too long to wait inside one flush: give up now, the persisted backoff honours it.
                    return Answer(answer.status, answer.detail, True, answer.retry_after, attempt)
                delay = max(delay, answer.retry_after)
            self.log(INFO, f"{answer.detail}; retry {attempt} of {self.retries} in {delay:.2f} s")
            sleep(delay)


def verify_option(values: Mapping[str, Any]) -> bool | str:
    """requests' verify= from the config: the CA bundle when one is set, else tls_verify."""
    return str(values["ca_bundle"]) if values["ca_bundle"] else bool(values["tls_verify"])


def _short(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the long wrapper text."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    for arg in getattr(seen, "args", ()):
        if isinstance(arg, str) and arg:
            return arg.split(": ", 1)[-1] if "object at 0x" in arg else arg
    return type(seen).__name__


def describe(status: int, url: str, location: str | None, text: str) -> str:
    """What a status code from the collector means for the person reading `status`."""
    if status == 200:
        return "accepted (200)"
    if status == 204:
        return "collector answered 204 (no payloads accepted)"
    if status == 400:
        return "collector refused the batch as invalid (400)" + (f": {text}" if text else "")
    if status == 405:
        return (
            "collector rejected the signature (405): shared_secret_key is probably wrong "
            "(or the clock or a proxy altered the request)"
        )
    if 300 <= status < 400:
        return (
            f"collector answered {status} redirect to {location or '?'}; redirects are not "
            "followed: set collector_url to the final address"
        )
    if status == 404:
        return f"collector answered 404 for {url}: check collector_url"
    if status in TRANSIENT_STATUS:
        return f"collector answered {status} (temporary)"
    return f"collector answered {status}"
