"""Sending: batches read from the spool, signed and posted, one session at a time.

Only a flush (and `flush --dry-run`) imports this module, and with it requests and protobuf.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from hamustro_cli import netaddr, triggers, wire
from hamustro_cli.config import Config
from hamustro_cli.log import ERROR, INFO, WARNING, Log, no_log
from hamustro_cli.reports import FlushReport
from hamustro_cli.session import Session
from hamustro_cli.spool import ID, NR, Spool
from hamustro_cli.transport import Answer, Transport

Progress = Callable[[int], None]


class _Stop(Exception):
    """Stop this flush: the collector cannot take anything now."""

    def __init__(self, answer: Answer):
        self.answer = answer


def dry_run(spool: Spool, max_batch_events: int, report: FlushReport) -> None:
    """Encode the batches a flush would send, in its order; change and send nothing."""
    sessions = spool.session_rows()
    for row_id in spool.pending_sessions():
        attrs = sessions[row_id].attributes
        batch = spool.next_batch(row_id, max_batch_events)
        while batch:
            report.add_batch(attrs, batch, len(wire.encode(attrs, batch)), None, None)
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
        # per session row: does the collector accept the session's attributes (an empty
        # collection answered 204)? Asked once, on the first 400.
        self._collection_ok: dict[int, bool] = {}

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
        spool, encode, local_ip = self.spool, wire.encode, self.local_ip
        while True:
            order = spool.pending_sessions()
            if not order:
                return
            sessions = spool.session_rows()
            for row_id in order:  # one session at a time, each drained before the next
                attrs = sessions[row_id].attributes
                batch = spool.next_batch(row_id, self.limit)
                body = encode(attrs, batch, local_ip) if batch else b""
                while batch:
                    spool.mark(row_id, batch[0][ID], batch[-1][ID])
                    in_flight = pool.submit(self.transport.send, body)
                    try:
                        following = spool.next_batch(row_id, self.limit, after=batch[-1][ID])
                        next_body = encode(attrs, following, local_ip) if following else b""
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

    def _settle(self, attrs: Session, row_id: int, batch: list[Any], body: bytes, answer: Answer) -> bool:
        """Act on the collector's answer for one batch; on a 400, split the batch (sending the
        halves here) to set aside only the payloads the collector refuses.

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
        if answer.status != 400:
            raise _Stop(answer)
        collection_ok = self._accepts_collection(attrs, row_id)
        if not collection_ok or len(batch) == 1:
            reason = (
                answer.detail
                if collection_ok
                else "collector refused the collection attributes of this session (400 for an empty "
                "collection): " + answer.detail
            )
            self.spool.reject([e[ID] for e in batch], reason)
            report.rejected += len(batch)
            self.log(
                WARNING,
                f"warning: {len(batch)} event(s) of session {attrs.id} set aside as rejected: {reason}",
            )
            self.spool.record_rejection({"at": _now(), "status": 400, "message": reason, "session": attrs.id})
            if self.progress:
                self.progress(len(batch))
            return False
        half = len(batch) // 2
        for part in (batch[:half], batch[half:]):
            part_body = wire.encode(attrs, part, self.local_ip)
            self._settle(attrs, row_id, part, part_body, self.transport.send(part_body))
        return False

    def _accepts_collection(self, attrs: Session, row_id: int) -> bool:
        """Is it some payloads the collector refuses, or the collection itself (its attributes)?"""
        if row_id not in self._collection_ok:
            empty = self.transport.send(wire.encode(attrs, []))
            if empty.status not in (204, 400):
                raise _Stop(empty)
            self._collection_ok[row_id] = empty.status == 204
        return self._collection_ok[row_id]

    def _record_failure(self, answer: Answer) -> None:
        t = _now()
        failures = self.spool.sync_state().failures + 1
        error = {"at": t, "status": answer.status, "message": answer.detail, "attempts": answer.attempts}
        if triggers.halts(answer.status):
            self.spool.record_failure(error, failures, halted=answer.detail)
            self.report.halted = True
        else:
            until = triggers.backoff_until(failures, t, answer.retry_after, random.uniform(0.75, 1.0))
            self.spool.record_failure(error, failures, backoff_until=until)
        self.report.error = answer.detail
        self.log(ERROR, f"error: {answer.detail}")
