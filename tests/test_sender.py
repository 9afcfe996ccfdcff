"""The sender (`sending.Sender`) alone, over a transport of our own that answers from a script:
what it sends, in which order and how many events at a time, and what it leaves in the spool
(delivered events gone, refused ones set aside, the rest pending) and in its report and sync
state, for each kind of answer. The transport's interface (`send(body)` returning an `Answer`,
`timeout`, `retries`, `close()`) is ours, so this fakes no dependency; the spool is a real SQLite
file. End to end, over HTTP against a real collector: test_end_to_end_delivery.py, test_answers.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from hamustro_cli.answers import Kind, meaning
from hamustro_cli.events import NewEvent
from hamustro_cli.reports import FlushReport
from hamustro_cli.sending import Sender
from hamustro_cli.session import Session
from hamustro_cli.spool.full import Spool
from hamustro_cli.transport import Answer, Transport

SESSION = Session("s-1", "d" * 64, "client", "1.0", "2.0")


class Scripted:
    """A transport answering each `send` with the next status of its script (what the collector
    would answer); keeps every body it was given."""

    def __init__(self, *statuses: int, timeout: float = 9.0, retries: int = 0):
        self.script = list(statuses)
        self.timeout = timeout
        self.retries = retries
        self.bodies: list[bytes] = []
        self.closed = False

    def send(self, body: bytes) -> Answer:
        self.bodies.append(body)
        if not self.script:
            raise AssertionError(f"request {len(self.bodies)} was not in the script")
        status = self.script.pop(0)
        return Answer(status, meaning(status))

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[Spool]:
    with Spool(tmp_path / "spool") as opened:
        yield opened


def queue(spool: Spool, n: int) -> None:
    spool.enqueue(SESSION, [NewEvent(f"e{i}", 1_700_000_000 + i) for i in range(n)])


def flush(spool: Spool, transport: Scripted, max_batch_events: int = 4) -> FlushReport:
    report = FlushReport()
    Sender(spool, cast(Transport, transport), report, max_batch_events=max_batch_events).send_all()
    return report


def sizes(report: FlushReport) -> list[tuple[int, int | None]]:
    """(events, status) of each request the report recorded, in order."""
    return [(b["events"], b["status"]) for b in report.batches]


def test_every_event_goes_once_in_batches_of_the_maximum_and_leaves_the_spool(spool: Spool) -> None:
    queue(spool, 10)
    transport = Scripted(200, 200, 200)
    report = flush(spool, transport)
    assert sizes(report) == [(4, 200), (4, 200), (2, 200)]
    assert (report.sent, report.failed, report.rejected) == (10, 0, 0)
    assert spool.totals().pending == 0 and spool.totals().rejected == 0
    assert spool.sync_state().failures == 0 and spool.sync_state().last_sync_time is not None
    assert transport.closed and transport.script == []


def test_a_400_is_split_down_to_the_refused_event_which_alone_is_set_aside(spool: Spool) -> None:
    queue(spool, 4)
    # 4 refused; the empty collection accepted (204: the payloads, not the attributes); the
    # halves: 1-2 stored, 3-4 refused again; its halves: 3 stored, 4 refused alone.
    transport = Scripted(400, 204, 200, 400, 200, 400)
    report = flush(spool, transport)
    assert sizes(report) == [(4, 400), (2, 200), (2, 400), (1, 200), (1, 400)]
    assert (report.sent, report.rejected, report.failed) == (3, 1, 0)
    assert len(transport.bodies) == 6 and transport.script == []
    totals = spool.totals()
    assert (totals.pending, totals.sending, totals.rejected) == (0, 0, 1)
    assert not report.halted


def test_a_400_for_the_collection_itself_sets_the_whole_batch_aside_without_splitting(spool: Spool) -> None:
    queue(spool, 4)
    transport = Scripted(400, 400)  # the batch, then the empty collection: its attributes
    report = flush(spool, transport)
    assert sizes(report) == [(4, 400)]
    assert (report.sent, report.rejected) == (0, 4)
    assert spool.totals().rejected == 4 and spool.totals().pending == 0


def test_a_413_halves_the_batch_size_and_sends_everything_at_the_size_that_passes(spool: Spool) -> None:
    queue(spool, 4)
    transport = Scripted(413, 200, 200)
    report = flush(spool, transport)
    assert sizes(report) == [(4, 413), (2, 200), (2, 200)]
    assert (report.sent, report.rejected, report.failed) == (4, 0, 0)
    assert spool.totals().pending == 0
    learned = spool.batch_size()  # the next flush starts at the size that passed
    assert learned is not None and learned.size == 2


def test_try_later_stops_the_flush_keeps_every_event_and_backs_off(spool: Spool) -> None:
    queue(spool, 6)
    transport = Scripted(200, 503)
    report = flush(spool, transport)
    assert sizes(report) == [(4, 200), (2, 503)]
    assert (report.sent, report.failed) == (4, 2)
    totals = spool.totals()
    assert (totals.pending, totals.sending) == (2, 0)  # the mark was released
    state = spool.sync_state()
    assert state.failures == 1 and state.backoff_until is not None and not state.halted
    assert not report.halted and transport.closed


@pytest.mark.parametrize("status", [401, 403, 404])
def test_an_answer_a_person_must_act_on_halts_with_its_reason_and_keeps_the_events(
    spool: Spool, status: int
) -> None:
    queue(spool, 3)
    transport = Scripted(status)
    report = flush(spool, transport)
    assert meaning(status).kind is Kind.PERSON
    assert report.halted and report.failed == 3 and report.sent == 0
    state = spool.sync_state()
    assert state.halt_reason == report.error and state.halted and state.backoff_until is None
    assert spool.totals().pending == 3 and spool.totals().sending == 0


def test_nothing_pending_sends_nothing_and_still_closes_the_transport(spool: Spool) -> None:
    transport = Scripted()
    report = flush(spool, transport)
    assert transport.bodies == [] and report.batches == [] and transport.closed
