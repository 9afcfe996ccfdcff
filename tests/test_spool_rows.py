"""Spool rows are typed records, never tuples read by position (issue 17, items 1 and 3): the
spool hands a flush QueuedEvents, no module outside the spool indexes into a row, and the
largest `at` is one rule for what `track` takes and what a flush sends."""

from __future__ import annotations

import ast
from pathlib import Path

from hamustro_cli.events import AT_MAX, NewEvent
from hamustro_cli.session import Session
from hamustro_cli.spool.full import Spool
from hamustro_cli.spool.records import Held, QueuedEvent

SESSION = Session.from_settings("dev", "client", "1", "2")
PACKAGE = Path(__file__).resolve().parent.parent / "hamustro_cli"


def test_next_batch_returns_queued_events_by_name(tmp_path):
    with Spool(tmp_path) as spool:
        spool.enqueue(SESSION, [NewEvent("a", 10, user_id=7), NewEvent("b", 11, parameters='{"k":1}')])
        (row,) = spool.pending_sets()
        batch = spool.next_batch(row, 10)
    assert [type(r) for r in batch] == [QueuedEvent, QueuedEvent]
    assert [(r.nr, r.at, r.event, r.user_id, r.parameters) for r in batch] == [
        (1, 10, "a", 7, None),
        (2, 11, "b", None, '{"k":1}'),
    ]


# tuples that are no spool rows: getaddrinfo's answers, the transport's own heap entries
NOT_ROWS = {"netaddr.py", "transport.py"}
# the caller's events (NewEvents or plain tuples a program passes): `at`, not a spool row
NOT_A_ROW = {"tracker.py: events[-1][1]"}


def _outside_the_spool() -> list[Path]:
    return [
        p
        for p in sorted(PACKAGE.rglob("*.py"))
        if "spool" not in p.relative_to(PACKAGE).parts[0] and p.name not in NOT_ROWS
    ]


def test_no_module_outside_the_spool_reads_a_row_by_position():
    """`rows[0][11]`, `batch[0][ID]`: a row indexed by position, which mypy cannot follow."""
    found = []
    for path in _outside_the_spool():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Subscript):
                if not isinstance(node.slice, ast.Slice) and not isinstance(node.value.slice, ast.Slice):
                    found.append(f"{path.name}: {ast.unparse(node)}")
    assert [f for f in found if f not in NOT_A_ROW] == []


def test_a_flush_sets_aside_a_stored_at_that_track_would_refuse():
    """One largest `at` (events.AT_MAX) for `track` and for a flush: a tampered or old row later
    than 9999-12-31 is set aside with its reason, not sent for the collector to store as a
    year in the billions."""
    from hamustro_cli.sending import screened

    ok = QueuedEvent(1, 1, AT_MAX, "last", None, None, None, False)
    late = QueuedEvent(2, 2, AT_MAX + 1, "later", None, None, None, False)
    rows, body, refused = screened(SESSION, [ok, late])
    assert rows == [ok] and body
    assert [(row, why) for row, why in refused] == [
        (
            late,
            f"stored event cannot be sent: at {AT_MAX + 1} is out of the range a flush sends (0..{AT_MAX})",
        )
    ]


def test_by_destination_returns_held_records(tmp_path):
    with Spool(tmp_path) as spool:
        spool.enqueue(SESSION, [NewEvent("a", 10), NewEvent("b", 11)], "d1")
        (row,) = spool.pending_sets("d1")
        spool.reject(row, [spool.next_batch(row, 1)[0].id], "refused")
        held = spool.by_destination()
    assert list(held) == ["d1"] and type(held["d1"]) is Held
    assert (held["d1"].live, held["d1"].rejected) == (1, 1)
