"""Sending: batches read from the spool, signed and posted, one attribute set at a time (a
Collection never mixes events tracked under different attributes).

Only a flush (and `flush --dry-run`) imports this module, and with it requests and protobuf.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from hamustro_cli import netaddr, triggers, wire
from hamustro_cli.answers import Kind
from hamustro_cli.config import Config
from hamustro_cli.errors import DependencyError
from hamustro_cli.log import ERROR, INFO, WARNING, Log, no_log
from hamustro_cli.records import QueuedEvent
from hamustro_cli.reports import FlushReport
from hamustro_cli.session import Session
from hamustro_cli.spool import ID, MAX_NR, NR, Spool
from hamustro_cli.transport import Answer, Transport

Progress = Callable[[int], None]

# A collector that refuses events costs requests to find which: a 400 batch is split in halves
# until the refused payloads stand alone (2n requests for n events all refused). Past these
# budgets of split requests the parts still unresolved are set aside whole.
BATCH_SPLIT_BUDGET = 64
FLUSH_SPLIT_BUDGET = 256
NOT_TRIED = (
    "the collector refused a batch holding this event ({detail}); its {n} event(s) were set aside "
    "together, not tried one by one (the flush's budget of split requests was spent): "
    "'hamustro flush --retry-rejected' tries them again"
)
MAX_AT = 2**64 - 1


def _text_problem(name: str, value: object, required: bool) -> str | None:
    if value is None:
        return f"{name} is missing (NULL)" if required else None
    if not isinstance(value, str):
        return f"{name} is not text ({type(value).__name__})"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return f"{name} is not valid UTF-8 (lone surrogates or undecodable bytes)"
    return None


def _int_problem(name: str, value: object, low: int, high: int, required: bool) -> str | None:
    if value is None:
        return f"{name} is missing (NULL)" if required else None
    if type(value) is not int:
        return f"{name} is not an integer ({value!r:.40})"
    if not low <= value <= high:
        return f"{name} {value} is out of the wire's range ({low}..{high})"
    return None


def wire_problem(row: QueuedEvent) -> str | None:
    """Why a stored row cannot go on the wire (a tampered or old spool), or None."""
    _id, nr, at, event, user_id, ip, parameters, _is_testing = row
    for problem in (
        _int_problem("nr", nr, 1, MAX_NR, True),
        _int_problem("at", at, 0, MAX_AT, True),
        _text_problem("event", event, True),
        _int_problem("user_id", user_id, 0, MAX_NR, False),
        _text_problem("ip", ip, False),
        _text_problem("parameters", parameters, False),
    ):
        if problem:
            return "stored event cannot be sent: " + problem
    return None


def attributes_problem(attrs: Session) -> str | None:
    """Why a stored attribute set cannot go on the wire (a tampered or damaged spool), or None:
    then none of its events can, whatever they hold."""
    for name, required in (
        ("session", True),
        ("device_id", True),
        ("client_id", True),
        ("system_version", True),
        ("product_version", True),
        ("system", False),
        ("product_git_hash", False),
    ):
        value = attrs.id if name == "session" else getattr(attrs, name)
        problem = _text_problem(name, value, required)
        if problem:
            return "stored session attributes cannot be sent: " + problem
    return None


class _Stop(Exception):
    """Stop this flush: the collector cannot take anything now."""

    def __init__(self, answer: Answer):
        self.answer = answer


def require_protobuf(spool: Spool) -> None:
    """Build the wire messages before anything is claimed: an unusable protobuf is one
    DependencyError, kept as the spool's last error so that `status` shows it."""
    try:
        wire.messages()
    except DependencyError as exc:
        spool.record_error({"at": _now(), "status": None, "message": str(exc)})
        raise


Screened = tuple[list[QueuedEvent], bytes, list[tuple[QueuedEvent, str]]]


def screened(attrs: Session, rows: list[QueuedEvent], local_ip: str | None = None) -> Screened:
    """(the rows the wire can carry, their Collection, the rest with why they cannot go: a
    tampered or old spool). The row by row check runs only when encoding fails or an nr is
    below 1. Changes nothing: the caller sets the rest aside (a flush) or counts it (a dry run)."""
    refused: list[tuple[QueuedEvent, str]] = []
    if rows and (problem := attributes_problem(attrs)):
        return [], b"", [(row, problem) for row in rows]
    while rows:
        error: Exception | None = None
        try:
            if min(row[NR] for row in rows) >= 1:  # nr 0 encodes, but is no event's number
                return rows, wire.encode(attrs, rows, local_ip), refused
        except Exception as exc:  # noqa: BLE001 - a row the encoder refuses: screened below
            error = exc
        bad = [(row, problem) for row in rows if (problem := wire_problem(row))]
        if not bad:
            raise error or ValueError("a batch failed its check but no row has a problem")
        refused += bad
        bad_ids = {row[ID] for row, _ in bad}
        rows = [row for row in rows if row[ID] not in bad_ids]
    return [], b"", refused


def dry_run(spool: Spool, max_batch_events: int, report: FlushReport) -> None:
    """Encode the batches a flush would send, in its order, and count the rows it would set
    aside (report.would_reject); change and send nothing."""
    sets = spool.attr_rows()
    for row_id in spool.pending_sets():
        attrs = sets[row_id].attributes
        batch = spool.next_batch(row_id, max_batch_events)
        while batch:
            rows, body, refused = screened(attrs, batch)
            report.would_reject += len(refused)
            if rows:
                report.add_batch(attrs, rows, len(body), None, None)
            batch = spool.next_batch(row_id, max_batch_events, after=batch[-1][ID])


def local_address(spool: Spool, collector_url: str) -> str | None:
    """Resolve the collector (a flush may wait on DNS), remember its address for `track`, and
    return ours on the route to it."""
    host, port = netaddr.split_url(collector_url)
    remote = netaddr.resolve(host, port)
    if remote is None:
        return None
    if not netaddr.valid_ip(host):
        spool.remember_address(host, remote)
    return netaddr.route_source(remote, port)


def _now() -> int:
    return int(time.time())


class Sender:
    """Drains the spool into the collector through one transport, recording what happens in
    the spool's sync state and in `report`. Holds no tracker: only what it sends with."""

    def __init__(
        self,
        spool: Spool,
        transport: Transport,
        report: FlushReport,
        *,
        max_batch_events: int,
        local_ip: str | None = None,
        log: Log = no_log,
        progress: Progress | None = None,
    ):
        self.spool = spool
        self.transport = transport
        self.report = report
        self.limit = max_batch_events
        self.local_ip = local_ip
        self.log = log
        self.progress = progress
        # per attribute set row: does the collector accept its attributes (an empty
        # collection answered 204)? Asked once, on the first 400.
        self._collection_ok: dict[int, bool] = {}
        self._flush_splits = FLUSH_SPLIT_BUDGET  # split requests left to this flush
        self._batch_splits = BATCH_SPLIT_BUDGET  # ... and to the batch being settled

    @classmethod
    def from_config(
        cls, spool: Spool, config: Config, report: FlushReport, log: Log, progress: Progress | None
    ) -> Sender:
        values = config.values
        local_ip = local_address(spool, values["collector_url"]) if values["ip"] == "auto" else None
        return cls(
            spool,
            Transport.from_config(values, log),
            report,
            max_batch_events=values["max_batch_events"],
            local_ip=local_ip,
            log=log,
            progress=progress,
        )

    def send_all(self) -> None:
        """Send every pending event; on a failure the collector cannot get past (it is down, the
        secret is wrong) stop, and record the backoff or the stop. Closes the transport."""
        spool = self.spool
        if self.local_ip:
            spool.fill_unknown_ip(self.local_ip)
        # One request in flight on a second thread while this one reads and encodes the next
        # batch: the collector's time and ours overlap. The spool stays on this thread.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hamustro-send")
        try:
            with spool.relaxed_sync():
                try:
                    self._drain(pool)
                except _Stop as stop:
                    self._record_failure(stop.answer)
                    return
                if self.report.sent or self.report.rejected:
                    spool.record_success(keep_error=self.report.rejected > 0)
        finally:
            pool.shutdown(wait=True)
            self.transport.close()

    def _drain(self, pool: ThreadPoolExecutor) -> None:
        spool = self.spool
        while True:
            order = spool.pending_sets()
            if not order:
                return
            sets = spool.attr_rows()
            for row_id in order:  # one attribute set at a time, each drained before the next
                attrs = sets[row_id].attributes
                batch, body = self._encoded(attrs, row_id, spool.next_batch(row_id, self.limit))
                while batch:
                    self._batch_splits = min(BATCH_SPLIT_BUDGET, self._flush_splits)
                    spool.mark(row_id, batch[0][ID], batch[-1][ID])
                    in_flight = pool.submit(self.transport.send, body)
                    try:
                        following, next_body = self._encoded(
                            attrs, row_id, spool.next_batch(row_id, self.limit, after=batch[-1][ID])
                        )
                        delivered = self._settle(attrs, row_id, batch, body, in_flight.result())
                    except _Stop:
                        self.report.failed += spool.release()
                        raise
                    except BaseException:
                        # Interrupted (Ctrl-C, a bug): leave nothing marked as sending.
                        spool.release()
                        raise
                    if not delivered:
                        spool.release()  # split or set aside: drop the batch's mark
                    batch, body = following, next_body

    def _encoded(
        self, attrs: Session, row_id: int, rows: list[QueuedEvent]
    ) -> tuple[list[QueuedEvent], bytes]:
        """The rows and their Collection; rows the wire cannot carry (see `screened`) are set
        aside as rejected with the reason, and the rest are encoded without them."""
        rows, body, refused = screened(attrs, rows, self.local_ip)
        by_problem: dict[str, list[QueuedEvent]] = {}
        for row, problem in refused:
            by_problem.setdefault(problem, []).append(row)
        for problem, group in by_problem.items():  # one change and one warning per reason
            self._set_aside(attrs, row_id, group, problem)
        return rows, body

    def _set_aside(self, attrs: Session, row_id: int, rows: list[QueuedEvent], reason: str) -> None:
        self.spool.reject(row_id, [e[ID] for e in rows], reason)
        self.report.rejected += len(rows)
        self.log(
            WARNING, f"warning: {len(rows)} event(s) of session {attrs.id} set aside as rejected: {reason}"
        )
        self.spool.record_error({"at": _now(), "status": 400, "message": reason, "session": attrs.id})
        if self.progress:
            self.progress(len(rows))

    def _settle(
        self, attrs: Session, row_id: int, batch: list[QueuedEvent], body: bytes, answer: Answer
    ) -> bool:
        """Act on the collector's answer for one batch (what it means: answers.py). On a 400,
        split the batch (sending the halves here) to set aside only the payloads the collector
        refuses.

        True when the batch was delivered whole, its mark dropped with the ack."""
        report = self.report
        first, last = batch[0], batch[-1]
        report.add_batch(attrs, batch, len(body), answer.status, answer.attempts)
        if answer.ok:
            self.spool.ack(row_id, first[ID], last[ID], _now(), first_ack=report.sent == 0)
            report.sent += len(batch)
            self.log(INFO, f"sent {len(batch)} event(s) of session {attrs.id} (nr {first[NR]}..{last[NR]})")
            if self.progress:
                self.progress(len(batch))
            return True
        meaning = answer.meaning
        if meaning.kind is not Kind.SPLIT:
            raise _Stop(answer)
        collection_ok = self._accepts_collection(attrs, row_id)
        if not collection_ok or len(batch) == 1:
            reason = (
                answer.detail
                if collection_ok
                else "collector refused the collection attributes of this session (400 for an empty "
                "collection): " + answer.detail
            )
            self._set_aside(attrs, row_id, batch, reason)
            return False
        if self._batch_splits < 2:
            self._set_aside(attrs, row_id, batch, NOT_TRIED.format(detail=answer.detail, n=len(batch)))
            return False
        self._batch_splits -= 2
        self._flush_splits -= 2
        half = len(batch) // 2
        for part in (batch[:half], batch[half:]):
            part_body = wire.encode(attrs, part, self.local_ip)
            self._settle(attrs, row_id, part, part_body, self.transport.send(part_body))
        return False

    def _accepts_collection(self, attrs: Session, row_id: int) -> bool:
        """Is it some payloads the collector refuses, or the collection itself (its attributes)?"""
        if row_id not in self._collection_ok:
            empty = self.transport.send(wire.encode(attrs, []))
            if empty.kind not in (Kind.EMPTY, Kind.SPLIT) or empty.meaning.smaller:
                raise _Stop(empty)
            self._collection_ok[row_id] = empty.kind is Kind.EMPTY
        return self._collection_ok[row_id]

    def _record_failure(self, answer: Answer) -> None:
        t = _now()
        failures = self.spool.sync_state().failures + 1
        error = {"at": t, "status": answer.status, "message": answer.detail, "attempts": answer.attempts}
        if answer.kind.halts:  # nothing changes until a person acts
            self.spool.record_failure(error, failures, halted=answer.detail)
            self.report.halted = True
        else:
            until = triggers.backoff_until(failures, t, answer.retry_after, random.uniform(0.75, 1.0))
            self.spool.record_failure(error, failures, backoff_until=until)
        self.report.error = answer.detail
        self.log(ERROR, f"error: {answer.detail}")
