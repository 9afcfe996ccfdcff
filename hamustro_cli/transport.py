"""HTTP to the collector: one signed POST, retried when the failure is transient.

Imports requests, so only code that sends loads it. Redirects are never followed (a signed
body must not be replayed to another host).

Every byte of an answer is untrusted: only its status decides what happens to a batch, the
headers and body are read within limits and shown escaped. `timeout` bounds the whole
exchange (connect, send, the whole answer), not each read: requests' own timeout applies to
each socket operation alone, so a deadline watchdog shuts the exchange's socket down when the
time is up (see _Deadline).
"""

from __future__ import annotations

import heapq
import http.client
import os
import random
import socket
import threading
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, NamedTuple
from urllib.parse import unquote

with warnings.catch_warnings():
    # requests warns when no character-detection package imports (chardet, charset_normalizer:
    # also when memory is short, under ulimit -v, where that warning would stand before our one
    # Error line). Nothing here lets requests guess an encoding: Reply.text decodes the body.
    warnings.filterwarnings("ignore", "Unable to find acceptable character detection", module="requests")
    import requests

from hamustro_cli import __version__, answers, wire
from hamustro_cli.answers import Failure, Kind, Meaning
from hamustro_cli.config import MASK
from hamustro_cli.errors import ConfigError
from hamustro_cli.log import DEBUG, INFO, Log, no_log

# Who calls, for the collector's logs (and requests' own part, as curl-like tools do).
USER_AGENT = f"hamustro-cli/{__version__} {requests.utils.default_user_agent()}"

MAX_WAIT = 30.0  # longest pause between two tries within one flush (seconds)
MAX_RETRY_AFTER = 24 * 3600.0  # a longer Retry-After counts as this (seconds)
SHOWN_CHARS = 200  # characters of collector text (body, Location, errors) shown to people
BODY_READ = 4096  # bytes of an answer's body read at most


class RequestProblem(NamedTuple):
    kind: Failure
    detail: str  # what happened, without the fix
    meaning: Meaning


def request_problem(exc: Exception, url: str, timeout: float) -> RequestProblem:
    """What a requests exception (or urllib3's ValueError for a bad URL) means, for a POST
    to the collector and for doctor's GET alike."""
    if isinstance(exc, requests.exceptions.SSLError):
        kind, what = Failure.TLS, f"TLS error talking to {url}: {_short(exc)}"
    elif isinstance(exc, (requests.exceptions.Timeout, DeadlinePassed)):
        kind, what = Failure.TIMEOUT, f"no answer from {url} within {timeout:g} s"
    elif isinstance(exc, requests.exceptions.ProxyError):
        proxy = proxy_for(url) or "the proxy"
        kind, what = Failure.UNREACHABLE, f"cannot reach {url} through proxy {proxy}: {_short(exc)}"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        kind, what = Failure.UNREACHABLE, f"cannot reach {url}: {_short(exc)}"
    elif isinstance(exc, requests.exceptions.RequestException):
        kind, what = Failure.REQUEST, f"request to {url} failed: {_short(exc)}"
    else:
        kind, what = Failure.BAD_URL, f"cannot send to {url}: {shown(str(exc))}"
    what = without_proxy_credentials(what)
    return RequestProblem(kind, what, answers.failure(kind, what))


@dataclass(frozen=True)
class Answer:
    status: int | None  # None: no HTTP answer at all (refused, reset, timeout, TLS)
    meaning: Meaning  # what it means (answers.py): its kind decides, its detail is shown
    retry_after: float | None = None
    attempts: int = 1
    elapsed: float = 0.0  # seconds the last attempt took (monotonic)

    @property
    def ok(self) -> bool:
        return self.meaning.kind is Kind.DELIVERED

    @property
    def kind(self) -> Kind:
        return self.meaning.kind

    @property
    def transient(self) -> bool:
        return self.meaning.kind is Kind.TRY_LATER

    @property
    def detail(self) -> str:
        """What happened, for people and for `status`."""
        return self.meaning.detail


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date), within
    [0, MAX_RETRY_AFTER]; None for anything else. Never raises: the value is the collector's."""
    try:
        if not value or len(value) > 100:
            return None
        value = value.strip()
        if value.isascii() and value.isdigit():
            # ASCII digits only ("²" and "１２" are digits to isdigit); a long run is just "long"
            return min(float(value), MAX_RETRY_AFTER) if len(value) < 12 else MAX_RETRY_AFTER
        from email.utils import parsedate_to_datetime

        when = parsedate_to_datetime(value)
        if when is None:
            return None
        wait = when.timestamp() - now
    except Exception:  # noqa: BLE001 - whatever a hostile header makes the date parser do
        return None
    if wait != wait:  # pragma: no cover - a NaN from the date arithmetic
        return None
    return min(max(0.0, wait), MAX_RETRY_AFTER)


def shown(text: str, limit: int = SHOWN_CHARS) -> str:
    """Text from outside (a collector's body, header or error) made safe to print on one line:
    control and format characters escaped (no terminal escapes, newlines, bidi overrides),
    capped at `limit` characters."""
    text = without_proxy_credentials(text)
    out = []
    size = 0
    for ch in text:
        piece = ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
        size += len(piece)
        if size > limit:
            out.append("…")
            break
        out.append(piece)
    return "".join(out).strip()


class DeadlinePassed(Exception):
    """The whole exchange took longer than its timeout (it was cut off)."""


# What a request can fail with before any answer (request_problem says which kind): requests'
# own errors, the deadline, and ValueError (urllib3's LocationParseError and kin: a bad URL).
REQUEST_FAILED = (requests.exceptions.RequestException, DeadlinePassed, ValueError)


class Reply:
    """What came back within the deadline: the status, the headers, and the first BODY_READ
    bytes of the body (all that was read)."""

    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: Any, body: bytes):
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def text(self) -> str:
        """The body for people: decoded, escaped and capped by shown()."""
        return shown(self.body.decode("utf-8", "replace"))

    def header(self, name: str) -> str | None:
        try:
            value = self.headers.get(name)
        except Exception:  # noqa: BLE001 - defensive: headers come from outside
            return None
        return value if isinstance(value, str) else None


_current = threading.local()  # the _Deadline of the exchange running on this thread


class _Deadline:
    """Shuts down the socket(s) of one exchange when `seconds` have passed.

    A blocked read or write on a socket that is shut down returns at once (EOF or EPIPE), so
    requests raises and the exchange ends, however the collector drips its bytes. The
    connections register themselves (see _guarded) while this is the thread's current
    deadline; each keeps a dup of its socket, which still reaches it during the TLS handshake
    (when urllib3's own reference is not yet the wrapped socket). One watchdog thread serves
    every deadline (a thread per exchange would cost about 0.7 ms each)."""

    def __init__(self, seconds: float):
        self._lock = threading.Lock()
        self._conns: list[Any] = []
        self.fired = False
        self.done = False
        self.when = time.monotonic() + seconds
        self.status: int | None = None  # the answer's final status, noted before its headers

    def watch(self, conn: Any) -> None:
        with self._lock:
            if self.done:
                return
            if not any(c is conn for c in self._conns):
                self._conns.append(conn)
            if self.fired:
                _shut(conn)

    def fire(self) -> None:
        with self._lock:
            if self.done:
                return
            self.fired = True
            for conn in self._conns:
                _shut(conn)

    def __enter__(self) -> _Deadline:
        _current.deadline = self
        _watchdog.add(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self.done = True
            self._conns.clear()
        _current.deadline = None


class _Watchdog:
    """A daemon thread that fires each _Deadline when its time comes."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Deadline]] = []
        self._seq = 0
        self._thread: threading.Thread | None = None

    def add(self, deadline: _Deadline) -> None:
        with self._cond:
            self._seq += 1
            heapq.heappush(self._heap, (deadline.when, self._seq, deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="hamustro-deadline", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is deadline:
                self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while True:
                now = time.monotonic()
                while self._heap and (self._heap[0][2].done or self._heap[0][0] <= now):
                    heapq.heappop(self._heap)[2].fire()  # fire() of a finished one does nothing
                self._cond.wait(self._heap[0][0] - now if self._heap else None)

    def forget_thread(self) -> None:
        """In a forked child the thread is gone: the next deadline starts a new one."""
        self._cond = threading.Condition()
        self._heap = []
        self._thread = None


_watchdog = _Watchdog()
os.register_at_fork(after_in_child=_watchdog.forget_thread)


def _shut(conn: Any) -> None:
    dup = getattr(conn, "_hamustro_dup", None)
    if dup is not None:
        try:
            dup.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _watch(conn: Any) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.watch(conn)


class _StatusFirst(http.client.HTTPResponse):
    """http.client's response, noting the answer's status on the exchange's _Deadline as soon
    as the status line is read. http.client refuses an answer with more than 100 headers
    (its _MAXHEADERS) or a header line over 64 KiB only after that, and the exchange then
    fails: a delivered batch would be resent on every flush. exchange() answers with the
    noted status instead (only the status decides). Overrides _read_status, private but the
    the same on Python 3.10 to 3.13 (tests/test_hostile_collector.py proves it); rather
    than raising the module-wide _MAXHEADERS, which would change it for the whole process."""

    def _read_status(self) -> tuple[str, int, str]:
        version, status, reason = super()._read_status()  # type: ignore[misc]
        deadline = getattr(_current, "deadline", None)
        if deadline is not None and status >= 200:  # not a 100 Continue
            deadline.status = status
        return version, status, reason


def _guarded(base: type) -> type:
    """urllib3 connection class whose sockets the current _Deadline can shut down, and whose
    answers note their status before their headers (_StatusFirst)."""

    class Guarded(base):  # type: ignore[misc]
        _hamustro_dup: socket.socket | None = None
        response_class = _StatusFirst

        def _new_conn(self) -> Any:
            sock = super()._new_conn()
            self._drop_dup()
            self._hamustro_dup = sock.dup()
            _watch(self)
            return sock

        def request(self, *args: Any, **kwargs: Any) -> Any:
            _watch(self)  # a kept-alive connection serves this exchange too
            return super().request(*args, **kwargs)

        def close(self) -> None:
            try:
                super().close()
            finally:
                self._drop_dup()

        def _drop_dup(self) -> None:
            dup, self._hamustro_dup = self._hamustro_dup, None
            if dup is not None:
                dup.close()

    Guarded.__name__ = "Guarded" + base.__name__
    return Guarded


def _guarded_pools() -> dict[str, type]:
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class GuardedHTTPPool(HTTPConnectionPool):
        ConnectionCls = _guarded(HTTPConnection)

    class GuardedHTTPSPool(HTTPSConnectionPool):
        ConnectionCls = _guarded(HTTPSConnection)

    return {"http": GuardedHTTPPool, "https": GuardedHTTPSPool}


class _GuardedAdapter(requests.adapters.HTTPAdapter):
    """requests' adapter, its pools making guarded connections (direct and through an HTTP
    proxy; a SOCKS proxy keeps its own pools, bounded per read only)."""

    pools: dict[str, type] | None = None

    def _guard(self, manager: Any) -> Any:
        import urllib3

        if type(manager) in (urllib3.PoolManager, urllib3.ProxyManager):
            if _GuardedAdapter.pools is None:
                _GuardedAdapter.pools = _guarded_pools()
            manager.pool_classes_by_scheme = _GuardedAdapter.pools
        return manager

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self._guard(self.poolmanager)

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        return self._guard(super().proxy_manager_for(*args, **kwargs))


PROXY_VARIABLES = tuple(
    name
    for scheme in ("https", "http", "all", "no")
    for name in (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")
)


def _environ_proxy(url: str) -> str | None:
    """The proxy requests uses for `url` (from HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, lower case
    too, unless NO_PROXY covers the host), as the variable gives it; None when it goes direct."""
    try:
        proxy: str | None = requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url))
    except Exception:  # noqa: BLE001 - a malformed URL or variable: sending says what is wrong
        return None
    return proxy or None


def proxy_for(url: str) -> str | None:
    """The proxy requests uses for `url`, without its credentials; None when it goes direct."""
    proxy = _environ_proxy(url)
    return without_userinfo(proxy) if proxy else None


PROXY_SCHEMES = ("http", "https", "socks4", "socks4a", "socks5", "socks5h")  # what requests speaks
PROXY_FIX = "fix or unset it (a proxy is http://HOST:PORT)"  # for a proxy_problem


def proxy_problem(url: str) -> str | None:
    """What is wrong with the proxy the environment names for `url`, when requests would fail
    on it at every try (not a URL, no host, a port that is not one, a scheme it does not speak,
    SOCKS without PySocks): the variable, its value (credentials masked) and why. None when
    there is no proxy for `url` or it is well formed. A flush that cannot send through it is
    a configuration error, not a collector to try again later (PROXY_FIX says what to do)."""
    proxy = _environ_proxy(url)
    if not proxy:
        return None
    from urllib3.util import parse_url

    try:
        # as requests reads it: "host:port" is an http:// proxy
        parsed = parse_url(requests.utils.prepend_scheme_if_needed(proxy, "http"))
    except Exception as exc:  # noqa: BLE001 - urllib3's LocationParseError, or a ValueError
        why = f"not a proxy URL ({_short(exc)})"
    else:
        scheme = (parsed.scheme or "").lower()
        if scheme not in PROXY_SCHEMES:
            why = f"requests cannot use a {scheme}:// proxy (http, https, socks5 ...)"
        elif not parsed.host:
            why = "it names no host"
        elif scheme.startswith("socks") and not _has_pysocks():
            why = "a SOCKS proxy needs PySocks: pip install 'requests[socks]'"
        else:
            return None
    names = [name for name in PROXY_VARIABLES if os.environ.get(name) == proxy]
    return shown(f"{' and '.join(names) or 'a proxy variable'} = {without_userinfo(proxy)}: {why}", 400)


def _has_pysocks() -> bool:
    import importlib.util

    return importlib.util.find_spec("socks") is not None


def without_userinfo(url: str) -> str:
    """A proxy URL with its user and password (if any) shown as MASK."""
    scheme, sep, rest = url.rpartition("://")
    host = rest.rpartition("@")
    return f"{scheme}{sep}{MASK}@{host[2]}" if host[1] else url


def without_proxy_credentials(text: str) -> str:
    """`text` with the credentials of every proxy variable masked, raw and percent-decoded:
    an error may quote a proxy URL, an answer may come from the proxy itself (a chatty 407
    page quoting what it refused). The user alone counts too, not only the password."""
    for name in PROXY_VARIABLES:
        value = os.environ.get(name)
        if not value or "@" not in value:
            continue
        userinfo = value.rpartition("://")[2].rpartition("@")[0]
        if not userinfo:
            continue
        secrets = {userinfo, unquote(userinfo)}
        for part in userinfo.split(":", 1):
            secrets.update((part, unquote(part)))
        for secret in sorted((x for x in secrets if len(x) >= 3), key=len, reverse=True):
            text = text.replace(secret, MASK)
    return text


def http_session() -> requests.Session:
    """A requests Session whose exchanges exchange() can bound as a whole, that says who calls
    (USER_AGENT) and that takes proxies from the environment (requests' trust_env)."""
    http = requests.Session()
    http.headers["User-Agent"] = USER_AGENT
    adapter = _GuardedAdapter()
    http.mount("http://", adapter)
    http.mount("https://", adapter)
    return http


def exchange(
    http: requests.Session,
    method: str,
    url: str,
    timeout: float,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    verify: bool | str = True,
    cert: str | tuple[str, str] | None = None,
) -> Reply:
    """One request and its whole answer within `timeout` seconds (http from http_session()).

    Raises requests' exceptions for a failed exchange, DeadlinePassed when it was cut off at
    the deadline before the status arrived. Once the status is in, nothing else can fail it:
    headers http.client refuses leave the reply without headers, and a body that is cut off,
    lies about its length or cannot be decoded just shortens the excerpt."""
    sent_headers = {"Accept-Encoding": "identity", **(headers or {})}
    with _Deadline(timeout) as deadline:
        try:
            resp = http.request(
                method,
                url,
                data=body,
                headers=sent_headers,
                timeout=timeout,
                allow_redirects=False,
                verify=verify,
                cert=cert,
                stream=True,
            )
        except requests.exceptions.RequestException:
            if deadline.status is not None:  # what failed came after the status (_StatusFirst)
                return Reply(deadline.status, {}, b"")
            if deadline.fired:
                raise DeadlinePassed() from None
            raise
        try:
            status = resp.status_code
            raw = b""
            try:
                for chunk in resp.iter_content(1024):
                    raw += chunk
                    if len(raw) >= BODY_READ:
                        break
            except Exception:  # noqa: BLE001 - a broken body shortens the excerpt, nothing more
                pass
        finally:
            resp.close()
    return Reply(status, resp.headers, raw[:BODY_READ])


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
        cert: str | tuple[str, str] | None = None,
    ):
        self.url = collector_url.rstrip("/") + wire.TRACK_PATH
        problem = proxy_problem(self.url)
        if problem is not None:
            raise ConfigError(f"{problem}; {PROXY_FIX}")
        self._secret = secret
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.log = log or no_log
        self.http = http_session()
        # Passed with each request: requests lets REQUESTS_CA_BUNDLE override a Session's verify.
        self.verify = verify
        self.cert = cert  # requests' cert=: the client certificate (and key), checked by client_cert()
        self.proxy = proxy_for(self.url)  # for the log only: requests finds it again per request
        if verify is False:
            # The CLI already warned once (config.load_config); urllib3 would repeat it per request.
            import urllib3

            urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)

    @classmethod
    def from_config(
        cls,
        values: Mapping[str, Any],
        log: Log | None = None,
        retries: int | None = None,
        sources: Mapping[str, str] | None = None,
    ) -> Transport:
        """A transport as the settings describe it (`retries` overrides the configured count).
        Raises ConfigError when client_cert and client_key do not load (`sources` names where
        they came from), or when the proxy the environment names cannot be used (proxy_problem)."""
        return cls(
            values["collector_url"],
            values["shared_secret_key"],
            values["timeout"],
            verify_option(values),
            values["retries"] if retries is None else retries,
            values["retry_delay"],
            log,
            client_cert(values, sources),
        )

    def close(self) -> None:
        self.http.close()

    def post_once(self, body: bytes) -> Answer:
        headers = wire.headers(body, self._secret, int(time.time()))
        via = f" through proxy {self.proxy}" if self.proxy else ""
        self.log(DEBUG, f"POST {self.url}{via} ({len(body)} bytes)")
        started = time.monotonic()
        try:
            reply = exchange(
                self.http,
                "POST",
                self.url,
                self.timeout,
                body=body,
                headers=headers,
                verify=self.verify,
                cert=self.cert,
            )
        except REQUEST_FAILED as exc:
            problem = request_problem(exc, self.url, self.timeout)
            return Answer(None, problem.meaning, elapsed=time.monotonic() - started)
        elapsed = time.monotonic() - started
        status, text = reply.status, reply.text
        self.log(DEBUG, f"answer {status}" + (f": {text}" if text else ""))
        said = answers.meaning(status, self.url, shown(reply.header("Location") or ""), text)
        if said.kind is Kind.DELIVERED:
            # Delivered: nothing else in the answer may change that.
            return Answer(status, said, elapsed=elapsed)
        return Answer(
            status,
            said,
            retry_after=parse_retry_after(reply.header("Retry-After"), time.time()),
            elapsed=elapsed,
        )

    def send(self, body: bytes, sleep: Callable[[float], None] = time.sleep) -> Answer:
        """POST, retrying a transient failure up to `retries` times. Returns the last answer.

        An answer that says the request may have been stored (a timeout, a proxy's 504) is not
        retried with the same body: the sender tries again with fewer events (answers.py)."""
        attempt = 0
        while True:
            attempt += 1
            answer = self.post_once(body)
            if not answer.transient or answer.meaning.smaller or attempt > self.retries:
                return replace(answer, attempts=attempt)
            delay = backoff_delay(attempt, self.retry_delay)
            if answer.retry_after is not None:
                if answer.retry_after > MAX_WAIT:
                    # Too long to wait inside one flush: give up now, the persisted backoff honours it.
                    return replace(answer, attempts=attempt)
                delay = max(delay, answer.retry_after)
            self.log(INFO, f"{answer.detail}; retry {attempt} of {self.retries} in {delay:.2f} s")
            sleep(delay)


def verify_option(values: Mapping[str, Any]) -> bool | str:
    """requests' verify= from the config: the CA bundle when one is set, else tls_verify."""
    return str(values["ca_bundle"]) if values["ca_bundle"] else bool(values["tls_verify"])


def client_cert(
    values: Mapping[str, Any], sources: Mapping[str, str] | None = None
) -> str | tuple[str, str] | None:
    """requests' cert= from client_cert and client_key (config.py has checked that they are
    readable regular files), after loading them as Python's ssl does for the connection: a
    certificate that is not one, a key that is not its key or that is encrypted is a
    ConfigError (exit 2), not a TLS failure that a flush would retry for ever. An encrypted key
    is refused here, before OpenSSL could ask for its passphrase on the terminal."""
    cert, key = values.get("client_cert"), values.get("client_key")
    if not cert:
        return None
    import ssl

    asked: list[bool] = []

    def no_passphrase() -> bytes:
        asked.append(True)
        return b""

    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(cert, key, password=no_passphrase)
    except (ssl.SSLError, OSError, ValueError) as exc:
        keys = ("client_cert", "client_key") if key else ("client_cert",)
        names = " and ".join(keys)
        where = ", ".join(f"{n} from {(sources or {}).get(n, 'the settings')}" for n in keys)
        files = f"{cert} and {key}" if key else cert
        if asked:
            why = "the key is encrypted; hamustro needs it unencrypted (openssl pkey -in KEY -out NEW)"
        else:
            why = f"not a PEM certificate and its matching private key ({_ssl_reason(exc)})"
        raise ConfigError(f"config keys {names} ({where}): {files}: {why}") from None
    return (cert, key) if key else cert


def _ssl_reason(exc: Exception) -> str:
    """OpenSSL's reason (KEY_VALUES_MISMATCH, NO_START_LINE...) or the error's words."""
    reason = getattr(exc, "reason", None)
    return str(reason) if reason else shown(getattr(exc, "strerror", None) or str(exc))


def _short(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error, without the long wrapper text."""
    seen = exc
    while seen.__cause__ is not None or seen.__context__ is not None:
        seen = seen.__cause__ or seen.__context__  # type: ignore[assignment]
    for arg in getattr(seen, "args", ()):
        if isinstance(arg, str) and arg:
            # escaped: a bad status line or header quoted here comes from the collector
            return shown(arg.split(": ", 1)[-1] if "object at 0x" in arg else arg)
    return type(seen).__name__
