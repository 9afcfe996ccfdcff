"""Sending: batches read from the spool, signed and posted, one attribute set at a time (a
Collection never mixes events tracked under different attributes).

Only a flush (and `flush --dry-run`) imports this module, and with it requests and protobuf.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial

from hamustro_cli import netaddr, spooldir, triggers, wire
from hamustro_cli.answers import TOO_LARGE, Kind, Meaning
from hamustro_cli.config import Config
from hamustro_cli.errors import DependencyError, SpoolError
from hamustro_cli.events import AT_MAX, UINT32_MAX
from hamustro_cli.log import ERROR, INFO, Log, count, no_log
from hamustro_cli.reports import FlushReport
from hamustro_cli.session import COLLECTION_FIELDS, Session
from hamustro_cli.spool.full import Spool
from hamustro_cli.spool.problems import SpoolProblem
from hamustro_cli.spool.records import BatchSize, QueuedEvent
from hamustro_cli.transport import Answer, Transport

Progress = Callable[[int], None]

# A collector that refuses events costs requests to find which: a 400 batch is split in halves
# until the refused payloads stand alone (2n requests for n events all refused). Past these
# budgets of split requests the parts still unresolved are set aside whole. A flush that gets
# more than FLUSH_SPLIT_BUDGET 413s stops there (try later): a collector refusing every body.
BATCH_SPLIT_BUDGET = 64
FLUSH_SPLIT_BUDGET = 256
NOT_TRIED = (
    "the collector refused a batch holding this event ({detail}); its {n} event(s) were set aside "
    "together, not tried one by one (the flush's budget of split requests was spent): "
    "'hamustro flush --retry-rejected' tries them again"
)
# Stored text acked per transaction (see ack_slices), and what a row costs besides its text.
ACK_SLICE_BYTES = 1024 * 1024
ROW_OVERHEAD = 64
# A collector that timed out (it may have stored the batch) or said 413 gets half as many events
# a request; the size doubles back after GROW_AFTER full batches in a row each delivered within
# QUICK of the timeout (so that twice as many would most likely pass too), up to max_batch_events.
GROW_AFTER = 16
QUICK = 1 / 3


class BatchSizer:
    """How many events go in one request. The size a 413 or a timeout taught is remembered in
    the spool (only while below max_batch_events), so the next flushes start from it: a slow
    collector is not sent, and does not store, a full batch it cannot answer in time again and
    again. The whole rule is here."""

    def __init__(self, spool: Spool, limit: int, timeout: float, destination: str | None = None):
        self.spool = spool
        self.destination = destination
        self.limit = limit
        self.quick = timeout * QUICK
        learned = spool.batch_size(destination)
        self.size = min(limit, learned.size) if learned else limit
        self.streak = learned.streak if learned and learned.size < limit else 0
        self._before_413: int | None = None  # the size before this flush's first 413
        self._passed_since_413 = False  # a batch was delivered since then

    def shrink(self, tried: int, too_large: bool = False) -> None:
        """A batch of `tried` events was too large (413) or maybe stored (no answer in time)."""
        if too_large and self._before_413 is None:
            self._before_413, self._passed_since_413 = self.size, False
        self._set(max(1, min(self.size, tried) // 2), 0)

    def one_too_large(self) -> None:
        """One event was too large on its own: the 413s that led to it say nothing of the others
        (which would otherwise go one at a time from now on). Back to the size before them, if
        anything passed since (else the collector may refuse every body: stay small); a real
        body limit costs a few 413s again (nothing is stored twice by a 413)."""
        if self._before_413 is not None and self._passed_since_413:
            self._set(max(self.size, self._before_413), 0)
            self._before_413 = None

    def passed(self, sent: int, elapsed: float) -> None:
        """A batch of `sent` events was delivered in `elapsed` seconds."""
        self._passed_since_413 = True
        if self.size >= self.limit or sent < self.size:
            return  # at the maximum already, or the queue's tail: says nothing of the size
        if elapsed > self.quick:
            self._set(self.size, 0)
        elif self.streak + 1 >= GROW_AFTER:
            self._set(min(self.limit, self.size * 2), 0)
        else:
            self._set(self.size, self.streak + 1)

    def _set(self, size: int, streak: int) -> None:
        if (size, streak) != (self.size, self.streak):
            self.size, self.streak = size, streak
            self.spool.remember_batch_size(
                BatchSize(size, streak) if size < self.limit else None, self.destination
            )


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
        return f"{name} {value} is out of the range a flush sends ({low}..{high})"
    return None


def wire_problem(row: QueuedEvent) -> str | None:
    """Why a stored row cannot go on the wire (a tampered or old spool), or None."""
    for problem in (
        _int_problem("nr", row.nr, 1, UINT32_MAX, True),
        _int_problem("at", row.at, 0, AT_MAX, True),  # what `track` takes: what the collector stores
        _text_problem("event", row.event, True),
        _int_problem("user_id", row.user_id, 0, UINT32_MAX, False),
        _text_problem("ip", row.ip, False),
        _text_problem("parameters", row.parameters, False),
    ):
        if problem:
            return "stored event cannot be sent: " + problem
    return None


def attributes_problem(attrs: Session) -> str | None:
    """Why a stored attribute set cannot go on the wire (a tampered or damaged spool), or None:
    then none of its events can, whatever they hold."""
    values = attrs.to_dict()
    for name, required in COLLECTION_FIELDS:
        problem = _text_problem(name, values[name], required)
        if problem:
            return "stored session attributes cannot be sent: " + problem
    return None


class _Stop(Exception):
    """Stop this flush: the collector cannot take anything now."""

    def __init__(self, answer: Answer):
        self.answer = answer


class _Smaller(Exception):
    """A batch of `tried` events was too large (413), or got no answer in time and may have
    been stored (`maybe_stored`): send fewer at a time."""

    def __init__(self, answer: Answer, tried: int):
        self.answer = answer
        self.tried = tried
        self.maybe_stored = answer.kind is Kind.TRY_LATER  # else too large (413)


def require_protobuf(spool: Spool, destination: str | None = None) -> None:
    """Build the wire messages before anything is claimed: an unusable protobuf is one
    DependencyError, kept as the destination's last error so that `status` shows it."""
    try:
        wire.messages()
    except DependencyError as exc:
        spool.record_error({"at": _now(), "status": None, "message": str(exc)}, destination)
        raise


Screened = tuple[list[QueuedEvent], bytes, list[tuple[QueuedEvent, str]]]


def screened(attrs: Session, rows: list[QueuedEvent], local_ip: str | None = None) -> Screened:
    """(the rows the wire can carry, their Collection, the rest with why they cannot go: a
    tampered or old spool). The row by row check runs only when encoding fails, an nr is
    below 1 or an `at` above AT_MAX. Changes nothing: the caller sets the rest aside (a flush)
    or counts it (a dry run)."""
    refused: list[tuple[QueuedEvent, str]] = []
    if rows and (problem := attributes_problem(attrs)):
        return [], b"", [(row, problem) for row in rows]
    while rows:
        error: Exception | None = None
        try:
            # nr 0 encodes, but is no event's number; an `at` past AT_MAX encodes, but the collector
            # stores it as a year past 9999
            if min(row.nr for row in rows) >= 1 and max(row.at for row in rows) <= AT_MAX:
                return rows, wire.encode(attrs, rows, local_ip), refused
        except Exception as exc:  # noqa: BLE001 - a row the encoder refuses: screened below
            error = exc
        bad = [(row, problem) for row in rows if (problem := wire_problem(row))]
        if not bad:
            raise error or ValueError("a batch failed its check but no row has a problem")
        refused += bad
        bad_ids = {row.id for row, _ in bad}
        rows = [row for row in rows if row.id not in bad_ids]
    return [], b"", refused


def ack_slices(batch: list[QueuedEvent]) -> Iterator[list[QueuedEvent]]:
    """The delivered batch in slices of at most ACK_SLICE_BYTES of stored text, each acked in a
    transaction of its own: the WAL one ack writes stays bounded (deleting 32 MB of events in
    one transaction wrote 9 MB of WAL), so FLUSH_ROOM is always enough to record it."""
    part: list[QueuedEvent] = []
    size = 0
    for row in batch:
        cost = len(row.event) + len(row.parameters or "") + ROW_OVERHEAD
        if part and size + cost > ACK_SLICE_BYTES:
            yield part
            part, size = [], 0
        part.append(row)
        size += cost
    if part:
        yield part


def dry_run(spool: Spool, max_batch_events: int, report: FlushReport, destination: str | None = None) -> None:
    """Encode the batches a flush for `destination` would send, in its order, and count the
    rows it would set aside (report.would_reject); change and send nothing."""
    sets = spool.attr_rows()
    size = BatchSizer(spool, max_batch_events, 0, destination).size
    for attr_id in spool.pending_sets(destination):
        attrs = sets[attr_id].attributes
        batch = spool.next_batch(attr_id, size)
        while batch:
            rows, body, refused = screened(attrs, batch)
            report.would_reject += len(refused)
            if rows:
                report.add_batch(attrs, rows, len(body), None, None)
            batch = spool.next_batch(attr_id, size, after=batch[-1].id)


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
        destination: str | None = None,
    ):
        self.spool = spool
        self.transport = transport
        self.report = report
        self.sizer = BatchSizer(spool, max_batch_events, transport.timeout, destination)
        self._too_large_left = FLUSH_SPLIT_BUDGET  # 413s this flush takes before it stops
        self._smaller_left = transport.retries  # tries with fewer events after no answer in time
        self.local_ip = local_ip
        self.log = log
        self.progress = progress
        self.destination = destination  # only its events are sent (None: every destination's)
        # per attribute set row: does the collector accept its attributes (an empty
        # collection answered 204)? Asked once, on the first 400.
        self._collection_ok: dict[int, bool] = {}
        self._short = False  # short of room on the spool's file system (set by send_all)
        self._hold = False  # ... and checkpoints held until the flush ends
        self._flush_splits = FLUSH_SPLIT_BUDGET  # split requests left to this flush
        self._batch_splits = BATCH_SPLIT_BUDGET  # ... and to the batch being settled

    @classmethod
    def from_config(
        cls,
        spool: Spool,
        config: Config,
        report: FlushReport,
        log: Log,
        progress: Progress | None,
        destination: str | None = None,
    ) -> Sender:
        values = config.values
        local_ip = local_address(spool, values["collector_url"]) if values["ip"] == "auto" else None
        return cls(
            spool,
            Transport.from_config(values, log, sources=config.sources),
            report,
            max_batch_events=values["max_batch_events"],
            local_ip=local_ip,
            log=log,
            progress=progress,
            destination=destination,
        )

    def send_all(self) -> None:
        """Send every pending event; on a failure the collector cannot get past (it is down, the
        secret is wrong) stop, and record the backoff or the stop. Closes the transport."""
        spool = self.spool
        # Short of room (the ballast could not be kept): give the delivered events' pages back
        # to the file system after every batch, not only at the end, so tracks can queue again.
        # Unless the WAL holds pages past the database file's end that would take more than a
        # quarter of the room: then no checkpoint runs until the flush ends (Spool.saving_room).
        self._short = spooldir.room_problem(spool.directory, 2 * spooldir.FLUSH_ROOM) is not None
        self._hold = self._short and 4 * spool.checkpoint_growth() > spooldir.room_bytes(spool.directory)
        if self.local_ip:
            spool.fill_unknown_ip(self.local_ip)
        # One request in flight on a second thread while this one reads and encodes the next
        # batch: the collector's time and ours overlap. The spool stays on this thread.
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hamustro-send")
        try:
            with spool.relaxed_sync(), spool.saving_room(self._short, self._hold):
                try:
                    self._drain(pool)
                except _Stop as stop:
                    self._record_failure(stop.answer)
                    return
                if self.report.sent or self.report.rejected:
                    spool.record_success(self.report.rejected > 0, self.destination)
                if self._hold:  # reclaimed before a checkpoint may run: it then shrinks the file
                    spool.reclaim()
        finally:
            pool.shutdown(wait=True)
            self.transport.close()

    def _drain(self, pool: ThreadPoolExecutor) -> None:
        spool = self.spool
        while True:
            order = spool.pending_sets(self.destination)
            if not order:
                return
            sets = spool.attr_rows()
            for attr_id in order:  # one attribute set at a time, each drained before the next
                attrs = sets[attr_id].attributes
                sizer = self.sizer
                batch, body = self._encoded(attrs, attr_id, spool.next_batch(attr_id, sizer.size))
                while batch:
                    self._batch_splits = min(BATCH_SPLIT_BUDGET, self._flush_splits)
                    self._write(partial(spool.mark, attr_id, batch[0].id, batch[-1].id))
                    in_flight = pool.submit(self.transport.send, body)
                    size = sizer.size
                    try:
                        following, next_body = self._encoded(
                            attrs, attr_id, spool.next_batch(attr_id, size, after=batch[-1].id)
                        )
                        delivered = self._settle(attrs, attr_id, batch, body, in_flight.result())
                    except _Smaller as smaller:
                        released = spool.release()
                        sizer.shrink(smaller.tried, too_large=not smaller.maybe_stored)
                        if smaller.maybe_stored:  # each try may store a copy: a budget
                            if smaller.tried <= 1 or self._smaller_left < 1:
                                self.report.failed += released
                                raise _Stop(smaller.answer) from None
                            self._smaller_left -= 1
                        self.log(
                            INFO,
                            f"{smaller.answer.detail}; "
                            f"trying again with {count(sizer.size, 'event')} a batch",
                        )
                        batch, body = self._encoded(attrs, attr_id, spool.next_batch(attr_id, sizer.size))
                        continue
                    except _Stop:
                        self.report.failed += spool.release()
                        raise
                    except BaseException:
                        # Interrupted (Ctrl-C, a bug, a full disk): leave nothing marked as
                        # sending, if the spool can still be written (else the next flush does)
                        try:
                            spool.release()
                        except SpoolError:
                            pass
                        raise
                    if not delivered:
                        spool.release()  # split or set aside: drop the batch's mark
                    if sizer.size != size:  # what was read ahead has the old size: read again
                        following, next_body = self._encoded(
                            attrs, attr_id, spool.next_batch(attr_id, sizer.size)
                        )
                    batch, body = following, next_body

    def _encoded(
        self, attrs: Session, attr_id: int, rows: list[QueuedEvent]
    ) -> tuple[list[QueuedEvent], bytes]:
        """The rows and their Collection; rows the wire cannot carry (see `screened`) are set
        aside as rejected with the reason, and the rest are encoded without them."""
        rows, body, refused = screened(attrs, rows, self.local_ip)
        by_problem: dict[str, list[QueuedEvent]] = {}
        for row, problem in refused:
            by_problem.setdefault(problem, []).append(row)
        for problem, group in by_problem.items():  # one change and one warning per reason
            self._set_aside(attrs, attr_id, group, problem)
        return rows, body

    def _set_aside(
        self, attrs: Session, attr_id: int, rows: list[QueuedEvent], reason: str, status: int = 400
    ) -> None:
        self.spool.reject(attr_id, [e.id for e in rows], reason)
        self.report.rejected += len(rows)
        # one line per set: -v (flush.log too); the flush says the total once (cli.flush)
        self.log(INFO, f"{count(len(rows), 'event')} of session {attrs.id} set aside as rejected: {reason}")
        self.spool.record_error(
            {"at": _now(), "status": status, "message": reason, "session": attrs.id}, self.destination
        )
        if self.progress:
            self.progress(len(rows))

    def _settle(
        self, attrs: Session, attr_id: int, batch: list[QueuedEvent], body: bytes, answer: Answer
    ) -> bool:
        """Act on the collector's answer for one batch (what it means: answers.py). On a 400,
        split the batch (sending the halves here) to set aside only the payloads the collector
        refuses; on a 413 or no answer in time, raise _Smaller (an event too large on its own
        is set aside).

        True when the batch was delivered whole, its mark dropped with the ack."""
        report = self.report
        first, last = batch[0], batch[-1]
        report.add_batch(attrs, batch, len(body), answer.status, answer.attempts)
        if answer.ok:
            first_ack = report.sent == 0
            recorded = 0
            for part in ack_slices(batch):
                try:
                    self._write(partial(self.spool.ack, attr_id, part[0].id, part[-1].id, _now(), first_ack))
                except SpoolError as exc:
                    self._unrecorded(attrs, batch[recorded:], exc)  # this slice and the ones after it
                first_ack = False
                recorded += len(part)
            report.sent += len(batch)
            if self._short and not self._hold:
                self.spool.reclaim()
            self.log(
                INFO, f"sent {count(len(batch), 'event')} of session {attrs.id} (nr {first.nr}..{last.nr})"
            )
            if self.progress:
                self.progress(len(batch))
            self.sizer.passed(len(batch), answer.elapsed)
            return True
        meaning = answer.meaning
        if meaning.smaller and meaning.kind is Kind.SPLIT:
            self._too_large_left -= 1
            if self._too_large_left < 0:  # a collector that refuses every body: try later
                raise _Stop(answer)
        if meaning.smaller and meaning.kind in (Kind.TRY_LATER, Kind.SPLIT):
            if len(batch) == 1 and meaning.kind is Kind.SPLIT:  # too large (413) on its own
                self._set_aside(attrs, attr_id, batch, f"{TOO_LARGE}: {answer.detail}", 413)
                self.sizer.one_too_large()
                return False
            # Not split here: halving the size and reading again takes log2(n) requests to
            # find a size that passes, where splitting every refused half would take O(n).
            raise _Smaller(answer, len(batch))
        if meaning.kind is not Kind.SPLIT:
            raise _Stop(answer)
        collection_ok = self._accepts_collection(attrs, attr_id)
        if not collection_ok or len(batch) == 1:
            reason = (
                answer.detail
                if collection_ok
                else "collector refused the collection attributes of this session (400 for an empty "
                "collection): " + answer.detail
            )
            self._set_aside(attrs, attr_id, batch, reason)
            return False
        if self._batch_splits < 2:
            self._set_aside(attrs, attr_id, batch, NOT_TRIED.format(detail=answer.detail, n=len(batch)))
            return False
        self._batch_splits -= 2
        self._flush_splits -= 2
        half = len(batch) // 2
        for part in (batch[:half], batch[half:]):
            part_body = wire.encode(attrs, part, self.local_ip)
            self._settle(attrs, attr_id, part, part_body, self.transport.send(part_body))
        return False

    def _write(self, write: Callable[[], None]) -> None:
        """A write the flush cannot do without (the mark before a send, the ack after a 200).
        When the disk filled under the flush: the ballast's room, and the WAL started over (its
        file already holds the room), then once more."""
        try:
            write()
            return
        except SpoolError as exc:
            if exc.kind is not SpoolProblem.NO_SPACE:
                raise
        spooldir.use_reserve(self.spool.directory)
        if not self._hold:  # a checkpoint now would grow the database file into the room
            self.spool.restart_wal()
        write()

    def _unrecorded(self, attrs: Session, batch: list[QueuedEvent], exc: SpoolError) -> None:
        """The collector took a batch, and the spool cannot record it: stop here (every further
        batch would be the same), and back off if that can still be written. The next flush
        sends only when there is room again (tracker.flush), so this batch goes at most twice."""
        detail = (
            f"the collector took {count(len(batch), 'event')} of session {attrs.id} (nr {batch[0].nr}.."
            f"{batch[-1].nr}), but the spool could not record it, so they will be sent once more: {exc}"
        )
        try:
            # recorded as one that may pass later (a backoff), not as a stop: room is all it needs
            self._record_failure(Answer(200, Meaning(Kind.TRY_LATER, detail)), log=False)  # raised below
        except SpoolError:
            pass
        raise SpoolError(detail, exc.kind, exc.fix) from None

    def _accepts_collection(self, attrs: Session, attr_id: int) -> bool:
        """Is it some payloads the collector refuses, or the collection itself (its attributes)?"""
        if attr_id not in self._collection_ok:
            empty = self.transport.send(wire.encode(attrs, []))
            if empty.kind not in (Kind.EMPTY, Kind.SPLIT) or empty.meaning.smaller:
                raise _Stop(empty)
            self._collection_ok[attr_id] = empty.kind is Kind.EMPTY
        return self._collection_ok[attr_id]

    def _record_failure(self, answer: Answer, log: bool = True) -> None:
        t = _now()
        failures = self.spool.sync_state(self.destination).failures + 1
        error = {"at": t, "status": answer.status, "message": answer.detail, "attempts": answer.attempts}
        if answer.kind.halts:  # nothing changes until a person acts
            self.spool.record_failure(
                error, failures, halt_reason=answer.detail, destination=self.destination
            )
            self.report.halt(answer.detail)
        else:
            until = triggers.backoff_until(failures, t, answer.retry_after, random.uniform(0.75, 1.0))
            self.spool.record_failure(error, failures, backoff_until=until, destination=self.destination)
        self.report.error = answer.detail
        if log:
            self.log(ERROR, answer.detail)
