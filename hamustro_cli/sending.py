"""Sending: batches read from the spool, signed and posted, one session at a time.

Split from tracker.py so that `track` does not load it: only a flush (and `flush --dry-run`)
imports this module, and with it requests and protobuf.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from hamustro_cli import netaddr, wire
from hamustro_cli.errors import DependencyError
from hamustro_cli.session import Session
from hamustro_cli.spool import ID, NR, now
from hamustro_cli.transport import Transport, verify_option

if TYPE_CHECKING:
    from hamustro_cli.tracker import ClientTracker, FlushReport


class _Stop(Exception):
    """Stop this flush: the collector cannot take anything now."""

    def __init__(self, answer: Any):
        self.answer = answer


def require_protobuf(tracker: ClientTracker) -> None:
    """Build the wire messages before anything is claimed: an unusable protobuf is one
    DependencyError, kept as the spool's last error so that `status` shows it."""
    try:
        wire.messages()
    except DependencyError as exc:
        tracker.spool.record_error({"at": now(), "status": None, "message": str(exc)})
        raise


def dry_run(tracker: ClientTracker, report: FlushReport) -> None:
    """Encode the batches a flush would send, in its order; change and send nothing."""
    spool = tracker.spool
    sessions = spool.session_rows()
    for row_id in spool.pending_sessions():
        attrs = sessions[row_id].attributes
        batch = spool.claim(row_id, tracker.config.values["max_batch_events"])
        while batch:
            body = wire.encode(attrs, batch)
            report.batches.append(
                {
                    "session": attrs.session,
                    "events": len(batch),
                    "bytes": len(body),
                    "first_nr": batch[0][NR],
                    "last_nr": batch[-1][NR],
                    "status": None,
                }
            )
            batch = spool.claim(row_id, tracker.config.values["max_batch_events"], after=batch[-1][ID])


def _route(tracker: ClientTracker) -> str | None:
    """Resolve the collector (flush may wait on DNS), cache it for track, return our address."""
    host, port = netaddr.split_url(tracker.config.values["collector_url"])
    remote = netaddr.resolve(host, port)
    if remote is None:
        return None
    if not netaddr.valid_ip(host) and tracker.spool.get_meta(f"resolved:{host}") != remote:
        tracker.spool.set_meta(**{f"resolved:{host}": remote})
    return netaddr.route_source(remote, port)


def send_all(tracker: ClientTracker, report: FlushReport, progress: Callable[[int], None] | None) -> None:
    cfg = tracker.config.values
    spool = tracker.spool
    local_ip = _route(tracker) if cfg["ip"] == "auto" else None
    if local_ip:
        spool.fill_unknown_ip(local_ip)
    transport = Transport(
        cfg["collector_url"],
        cfg["shared_secret_key"],
        cfg["timeout"],
        verify_option(cfg),
        cfg["retries"],
        cfg["retry_delay"],
        tracker.log,
    )
    # A lost mark or ack costs at most a resend, never an event: the flush's own commits
    # need not wait for the disk (track's, which make an event durable, still do).
    spool.db.execute("PRAGMA synchronous = NORMAL")
    limit = cfg["max_batch_events"]
    probed: dict[int, bool] = {}
    # One request in flight on a second thread while this one reads and encodes the next
    # batch: the collector's time and ours overlap. The spool stays on this thread.
    sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hamustro-send")
    try:
        while True:
            order = spool.pending_sessions()
            if not order:
                break
            sessions = spool.session_rows()
            for row_id in order:  # one session at a time, each drained before the next
                attrs = sessions[row_id].attributes
                batch = spool.claim(row_id, limit)
                body = wire.encode(attrs, batch, local_ip) if batch else b""
                while batch:
                    spool.mark(row_id, batch[0][ID], batch[-1][ID])
                    in_flight = sender.submit(transport.send, body)
                    try:
                        following = spool.claim(row_id, limit, after=batch[-1][ID])
                        next_body = wire.encode(attrs, following, local_ip) if following else b""
                        answer = in_flight.result()
                        whole = _handle(
                            tracker,
                            transport,
                            attrs,
                            row_id,
                            batch,
                            body,
                            answer,
                            report,
                            probed,
                            local_ip,
                            progress,
                        )
                    except _Stop as stop:
                        report.failed += spool.release()
                        _record_failure(tracker, stop.answer, report)
                        return
                    except BaseException:
                        # Interrupted (Ctrl-C, a bug): leave nothing marked as sending.
                        spool.release()
                        raise
                    if not whole:
                        spool.release()  # split or set aside: drop the batch's mark
                    batch, body = following, next_body
        if report.sent or report.rejected:
            clear: dict[str, str | None] = {"backoff_until": None, "failures": None, "halted": None}
            if report.rejected == 0:
                clear["last_error"] = None
            spool.set_meta(**clear)
    finally:
        sender.shutdown(wait=True)
        transport.close()


def _handle(
    tracker: ClientTracker,
    transport: Any,
    attrs: Session,
    row_id: int,
    batch: list[Any],
    body: bytes,
    answer: Any,
    report: FlushReport,
    probed: dict[int, bool],
    local_ip: str | None,
    progress: Callable[[int], None] | None,
    whole: bool = True,
) -> bool:
    """Act on the collector's answer for one batch; on a 400 split the batch (sending the
    halves here) to set aside only the payloads the collector refuses.

    True when the batch was delivered whole, its mark dropped with the ack."""
    first, last = batch[0], batch[-1]
    report.batches.append(
        {
            "session": attrs.session,
            "events": len(batch),
            "bytes": len(body),
            "first_nr": first[NR],
            "last_nr": last[NR],
            "status": answer.status,
            "attempts": answer.attempts,
        }
    )
    if answer.ok:
        tracker.spool.ack(row_id, first[ID], last[ID], now(), first_ack=report.sent == 0)
        report.sent += len(batch)
        tracker.log(1, f"sent {len(batch)} event(s) of session {attrs.session} (nr {first[NR]}..{last[NR]})")
        if progress:
            progress(len(batch))
        return whole
    if answer.status != 400:
        raise _Stop(answer)
    if row_id not in probed:
        # Is the collection itself refused (its attributes), or some payloads in it?
        empty = transport.send(wire.encode(attrs, []))
        probed[row_id] = empty.status == 204
        if empty.status not in (204, 400):
            raise _Stop(empty)
    if not probed[row_id] or len(batch) == 1:
        reason = (
            answer.detail
            if probed[row_id]
            else (
                "collector refused the collection attributes of this session (400 for an empty "
                "collection): " + answer.detail
            )
        )
        tracker.spool.reject([e[ID] for e in batch], reason)
        report.rejected += len(batch)
        tracker.log(
            0,
            f"warning: {len(batch)} event(s) of session {attrs.session} set aside as rejected: {reason}",
        )
        tracker.spool.record_error({"at": now(), "status": 400, "message": reason, "session": attrs.session})
        if progress:
            progress(len(batch))
        return False
    half = len(batch) // 2
    for part in (batch[:half], batch[half:]):
        part_body = wire.encode(attrs, part, local_ip)
        _handle(
            tracker,
            transport,
            attrs,
            row_id,
            part,
            part_body,
            transport.send(part_body),
            report,
            probed,
            local_ip,
            progress,
            whole=False,
        )
    return False


def _record_failure(tracker: ClientTracker, answer: Any, report: FlushReport) -> None:
    spool = tracker.spool
    metas = spool.get_metas("failures")
    failures = int(metas.get("failures") or 0) + 1
    t = now()
    extra: dict[str, str | None] = {"failures": str(failures)}
    if answer.status == 405:
        extra["halted"] = answer.detail
        report.halted = True
    else:
        # Persisted backoff: 1, 2, 4 ... minutes, capped at an hour, at least Retry-After.
        wait = min(3600, 60 * 2 ** (failures - 1)) * random.uniform(0.75, 1.0)
        if answer.retry_after:
            wait = max(wait, min(answer.retry_after, 24 * 3600))
        extra["backoff_until"] = str(int(t + wait))
    report.error = answer.detail
    spool.record_error(
        {"at": t, "status": answer.status, "message": answer.detail, "attempts": answer.attempts}, **extra
    )
    tracker.log(0, f"error: {answer.detail}")


# -- looking --------------------------------------------------------------------------
