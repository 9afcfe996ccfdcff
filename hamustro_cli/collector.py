"""A local Hamustro collector that answers as the real one does (collector-behaviour.md).

Checks run in the real collector's order: method, time header, signature header, signature,
content type and decoding, session, payloads present. Every accepted event is written as one
JSON line (collection fields plus payload fields) before the 200 goes out.

Where the real collector's behaviour is not in the spec, it follows what was observed of it
(collector-behaviour.md, "Observed"): string fields keep their bytes (an `event` that is not
UTF-8 is stored with U+FFFD, not refused), `/api/health` answers any method, and a chunked
body without Content-Length is read like any other. tests/test_collector_conformance.py holds
the table of requests and the real collector's answers.

For trying the client and for tests it can also misbehave on purpose: fail a share of
requests (`fail_rate`), refuse collections holding a given event (`reject_events`), hold
each request before answering (`delay`), refuse bodies over `max_body` bytes with a 413 (as
nginx's client_max_body_size does), or take `delay_per_event` seconds per payload before
answering, storing them whether or not the client is still there (as the real one does with a
slow backend).
"""

from __future__ import annotations

import hmac
import json
import random
import socket
import sys
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from json.encoder import encode_basestring_ascii
from typing import IO, Any

from hamustro_cli import wire
from hamustro_cli.session import COLLECTION_FIELDS, session_id

TESTING = {True: "true", False: "false"}


class CollectorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self,
        address: tuple[str, int],
        secret: str,
        out: IO[str],
        verbose: bool = False,
        fail_rate: float = 0.0,
        fail_status: int = 503,
        reject_events: Iterable[str] = (),
        delay: float = 0.0,
        log: IO[str] | None = None,
        max_body: int | None = None,
        delay_per_event: float = 0.0,
    ):
        # An IPv6 literal (bare or in brackets, as in a URL) listens on an AF_INET6 socket.
        host = address[0].strip("[]") if address[0].startswith("[") else address[0]
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        super().__init__((host, *address[1:]), CollectorHandler)
        self.secret = secret.encode("utf-8")
        self.out = out
        self.verbose = verbose
        self.fail_rate = fail_rate
        self.fail_status = fail_status
        self.reject_events = frozenset(reject_events)
        self.delay = delay
        self.log = log
        self.max_body = max_body
        self.delay_per_event = delay_per_event
        self.write_lock = threading.Lock()
        self.busy = 0  # track requests being handled (a client that hung up leaves them running)
        self.connections = 0  # connections accepted and not yet closed (wind_down waits for them)
        self.shutting_down = False
        self.accepted = 0  # events written
        self.requests: list[dict[str, Any]] = []  # (status, headers, body) of each track request, for tests
        self.keep_requests = False

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.write_lock:  # counted before its thread starts: no gap wind_down could miss
            self.connections += 1
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self.write_lock:
                self.connections -= 1

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away mid-request (killed, timed out) is not the collector's error."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        address, port = self.server_address[:2]
        host = address.decode() if isinstance(address, bytes) else address  # typeshed: str | bytes
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{port}"

    def stop(self) -> None:
        self.shutting_down = True
        self.shutdown()
        self.server_close()

    def wind_down(self, grace: float = 5.0) -> None:
        """Close as the README says, once serve_forever has returned: the requests in flight and
        those that arrived as it stopped (still in the listen backlog) are answered 503
        "shutting down", each within `grace` seconds (plus --delay), then the socket closes."""
        self.shutting_down = True
        self.socket.settimeout(0)
        while True:
            try:
                request, address = self.socket.accept()
            except OSError:  # the backlog is empty
                break
            request.settimeout(grace)
            try:
                self.finish_request(request, address)
            except OSError:  # the client went away
                pass
            finally:
                self.shutdown_request(request)
        deadline = time.monotonic() + grace + self.delay
        while self.connections and time.monotonic() < deadline:  # an idle keep-alive one: grace
            time.sleep(0.01)
        self.server_close()


class CollectorHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: CollectorServer

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.log is not None:
            self.server.log.write("collector: " + (format % args) + "\n")
            self.server.log.flush()

    def _answer(
        self,
        status: int,
        error: str | None = None,
        body: bytes | None = None,
        content_type: str = "application/json",
    ) -> None:
        if body is None and error is not None and self.server.verbose:
            body = json.dumps({"error": error}).encode()
        self.send_response(status)
        if self.server.shutting_down:  # no next request on this connection
            self.close_connection = True
            self.send_header("Connection", "close")
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _drain(self) -> bytes | None:
        """The request body; None (and the connection closes) when Content-Length is not a
        length or a chunked body is malformed, which Go's server answers 400 before any handler
        runs. A chunked body is read whole, as Go's server reads it for the handler."""
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._chunked()
        text = (self.headers.get("Content-Length") or "0").strip()
        if not (text.isascii() and text.isdigit()) or len(text) > 18:
            self.close_connection = True
            return None
        length = int(text)
        return self.rfile.read(length) if length > 0 else b""

    def _chunked(self) -> bytes | None:
        parts: list[bytes] = []
        while True:
            line = self.rfile.readline(MAX_LINE)
            size_text = line.split(b";", 1)[0].strip()
            if not line.endswith(b"\n") or not size_text or size_text.strip(HEX_DIGITS):
                self.close_connection = True
                return None
            size = int(size_text, 16)
            if size == 0:
                while self.rfile.readline(MAX_LINE).strip():  # trailers, up to the blank line
                    pass
                return b"".join(parts)
            chunk = self.rfile.read(size)
            if len(chunk) < size or self.rfile.readline(MAX_LINE).strip():
                self.close_connection = True
                return None
            parts.append(chunk)

    def _bad_length(self) -> None:
        self._answer(400, "invalid Content-Length or chunked body")

    def _route(self) -> None:
        """Every method but POST: /api/health answers any method (the real collector does)."""
        if self._drain() is None:
            return self._bad_length()
        path = self.path.split("?", 1)[0]
        if path == "/api/health":
            self._answer(200, body=b'{"up":true}')
        elif path == wire.TRACK_PATH:
            self._answer(405, "method not allowed")
        else:
            self._answer(404, "not found")

    do_GET = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _route

    def do_HEAD(self) -> None:
        if self._drain() is None:
            return self._bad_length()
        path = self.path.split("?", 1)[0]
        status = 200 if path == "/api/health" else 405 if path == wire.TRACK_PATH else 404
        self.send_response(status)
        if status == 200:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "11" if status == 200 else "0")
        self.end_headers()

    def do_POST(self) -> None:
        srv = self.server
        with srv.write_lock:
            srv.busy += 1
        try:
            self._post()
        finally:
            with srv.write_lock:
                srv.busy -= 1

    def _post(self) -> None:
        body = self._drain()
        if body is None:
            return self._bad_length()
        path = self.path.split("?", 1)[0]
        if path == "/api/health":
            return self._answer(200, body=b'{"up":true}')
        if path != wire.TRACK_PATH:
            self._answer(404, "not found")
            return
        status, error = (
            (413, "request entity too large")
            if self.server.max_body is not None and len(body) > self.server.max_body
            else self._track(body)
        )
        if self.server.keep_requests:
            self.server.requests.append(
                {"status": status, "headers": dict(self.headers.items()), "body": body}
            )
        self._answer(status, error)

    def _track(self, body: bytes) -> tuple[int, str | None]:
        srv = self.server
        if srv.delay:
            time.sleep(srv.delay)
        if srv.shutting_down:
            return 503, "shutting down"
        stamp = self.headers.get("X-Hamustro-Time")
        if not stamp:
            return 405, "missing X-Hamustro-Time"
        signature = self.headers.get("X-Hamustro-Signature")
        if not signature:
            return 405, "missing X-Hamustro-Signature"
        expected = wire.signature(stamp, body, srv.secret.decode("utf-8"))
        if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
            return 405, "signature mismatch"
        ctype = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ctype not in ("application/protobuf", "application/json"):
            return 400, f"unsupported content type {ctype!r}"
        coll = raw_collection()()
        try:
            if ctype == "application/json":
                from google.protobuf import json_format

                parsed = wire.Collection()
                json_format.Parse(body.decode("utf-8"), parsed)
                body = parsed.SerializePartialToString()
            coll.ParseFromString(body)
        except Exception as exc:  # noqa: BLE001 - any decoding failure is a 400
            return 400, f"invalid collection: {exc}"
        if not coll.IsInitialized():
            # The upb backend parses without checking required fields; the real collector
            # (Go, proto2) refuses a Collection or Payload that lacks one.
            missing = ", ".join(coll.FindInitializationErrors())
            return 400, f"invalid collection: missing required fields: {missing}"
        # (Go hashes the fields' bytes; fields that are not UTF-8 are a mismatch here.)
        fields = (coll.device_id, coll.client_id, coll.system_version, coll.product_version)
        if _text(coll.session) != session_id(*map(_text, fields)):
            return 400, "session does not match the collection fields"
        if not coll.payloads:
            return 204, None
        if srv.reject_events and any(_text(p.event) in srv.reject_events for p in coll.payloads):
            return 400, "event refused"
        if srv.fail_rate and random.random() < srv.fail_rate:
            return srv.fail_status, "failing on purpose"
        if srv.delay_per_event:  # a slow backend: stored in the end, whether the client waits or not
            time.sleep(srv.delay_per_event * len(coll.payloads))
        self._write(coll)
        return 200, None

    def _write(self, coll: Any) -> None:
        # Formatted by hand rather than json.dumps of a dict per event: the same JSON, about
        # four times faster, and the client waits for this before its 200.
        head = {n: (_text(getattr(coll, n)) if coll.HasField(n) else None) for n, _ in COLLECTION_FIELDS}
        prefix = json.dumps(head)[:-1] + ', "at": '
        q = encode_basestring_ascii
        lines = [
            f'{prefix}{p.at}, "event": {q(_text(p.event))}, "nr": {p.nr}, '
            f'"user_id": {p.user_id if p.HasField("user_id") else "null"}, '
            f'"ip": {q(_text(p.ip)) if p.HasField("ip") else "null"}, '
            f'"parameters": {q(_text(p.parameters)) if p.HasField("parameters") else "null"}, '
            f'"is_testing": {TESTING[p.is_testing] if p.HasField("is_testing") else "null"}}}\n'
            for p in coll.payloads
        ]
        text = "".join(lines)
        srv = self.server
        with srv.write_lock:
            srv.out.write(text)
            srv.out.flush()
            srv.accepted += len(lines)


MAX_LINE = 65_536  # bytes of one chunk-size line or trailer read at most
HEX_DIGITS = b"0123456789abcdefABCDEF"
_raw: Any = None


def raw_collection() -> Any:
    """The Collection class with every string field read as bytes (the same wire format). The
    real collector (Go) keeps a string's bytes as they came: an `event` that is not UTF-8 is
    stored, with U+FFFD once written as JSON, not refused; protobuf's Python backends would
    refuse it (pure Python) or hand back bytes (upb)."""
    global _raw
    if _raw is None:
        from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

        from hamustro_cli.payload_descriptor import SERIALIZED

        proto = descriptor_pb2.FileDescriptorProto.FromString(SERIALIZED)
        for message in proto.message_type:
            for field in message.field:
                if field.type == field.TYPE_STRING:
                    field.type = field.TYPE_BYTES
        pool = descriptor_pool.DescriptorPool()
        pool.AddSerializedFile(proto.SerializeToString())
        get = getattr(message_factory, "GetMessageClass", None)
        if get is None:  # protobuf 3.20
            get = message_factory.MessageFactory(pool).GetPrototype
        _raw = get(pool.FindMessageTypeByName("payload.Collection"))
    return _raw


def _text(raw: bytes) -> str:
    """A string field as it is stored: bytes that are not UTF-8 become U+FFFD."""
    return raw.decode("utf-8", "replace")


def make_server(
    host: str = "127.0.0.1", port: int = 0, secret: str = "", out: IO[str] | None = None, **options: Any
) -> CollectorServer:
    return CollectorServer((host, port), secret, out if out is not None else sys.stdout, **options)
