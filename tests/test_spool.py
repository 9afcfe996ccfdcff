"""The spool's state changes on a real SQLite file (marks, acks, releases, rejects, sessions,
sync state, threads and processes sharing it), and its errors told apart by SQLite's result code."""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from hamustro_cli.events import NewEvent
from hamustro_cli.session import Session
from hamustro_cli.spool import State
from hamustro_cli.spool.full import Spool
from hamustro_cli.spool.rows import Counts, QueuedEvent

SESSION = Session.from_settings("dev", "client", "1", "2")
OTHER = Session.from_settings("dev", "client", "1", "3")


def queue(spool: Spool, n: int, session: Session = SESSION) -> tuple[int, int]:
    return spool.enqueue(session, [NewEvent(f"e{i}", 1_700_000_000 + i) for i in range(n)])


def marked_batch(spool: Spool, n: int) -> tuple[int, list[QueuedEvent]]:
    """The first n events of the one pending set, read and marked as a flush marks its batch."""
    (row,) = spool.pending_sets()
    batch = spool.next_batch(row, n)
    spool.mark(row, batch[0].id, batch[-1].id)
    return row, batch


def states(path: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(path / "spool.sqlite3") as db:
        return db.execute("SELECT nr, state FROM events ORDER BY id").fetchall()


# -- the spool ------------------------------------------------------------------------------


def test_mark_then_ack_deletes_the_batch_and_drops_the_mark(tmp_path):
    with Spool(tmp_path) as spool:
        queue(spool, 5)
        (row,) = spool.pending_sets()
        batch = spool.next_batch(row, 3)
        assert [r.nr for r in batch] == [1, 2, 3]
        assert spool.totals() == Counts(5, 0, 0, batch[0].id, batch[0].id)  # a read claims nothing
        spool.mark(row, batch[0].id, batch[-1].id)
        assert spool.totals()[:3] == (2, 3, 0)
        spool.ack(row, batch[0].id, batch[-1].id, sync_time=1234)
        assert spool.totals()[:3] == (2, 0, 0)
        assert spool.release() == 0  # the ack that ended the batch dropped its mark
        assert spool.sync_state().last_sync_time == 1234
        assert [nr for nr, _ in states(tmp_path)] == [4, 5]


def test_release_puts_the_unacked_rest_back(tmp_path):
    with Spool(tmp_path) as spool:
        queue(spool, 4)
        row, batch = marked_batch(spool, 4)
        spool.ack(row, batch[0].id, batch[1].id, sync_time=1)  # the first half of a split
        assert spool.totals()[:2] == (0, 2)
        assert spool.release() == 2
        assert spool.totals()[:2] == (2, 0)


def test_reject_and_retry_rejected(tmp_path):
    with Spool(tmp_path) as spool:
        queue(spool, 3)
        (row,) = spool.pending_sets()
        batch = spool.next_batch(row, 3)
        spool.reject(row, [batch[1].id], "bad payload")
        assert states(tmp_path) == [(1, State.PENDING), (2, State.REJECTED), (3, State.PENDING)]
        assert [r.nr for r in spool.next_batch(row, 10)] == [1, 3]
        events = list(spool.iter_events())
        assert [(e["state"], e["reason"]) for e in events] == [
            ("pending", None),
            ("rejected", "bad payload"),
            ("pending", None),
        ]
        assert spool.retry_rejected() == 1
        assert spool.totals()[:3] == (3, 0, 0)


def test_sessions_are_sent_oldest_first_and_counted_apart(tmp_path):
    with Spool(tmp_path) as spool:
        queue(spool, 2, OTHER)
        queue(spool, 3, SESSION)
        rows = spool.session_rows()
        order = spool.pending_sets()
        assert [rows[r].attributes for r in order] == [OTHER, SESSION]
        assert sorted(c.pending for c in spool.counts().values()) == [2, 3]
        assert spool.pending() == 5


def test_sync_state_records_and_ignores_malformed_values(tmp_path):
    with Spool(tmp_path) as spool:
        assert spool.sync_state().created_at > 0
        spool.record_failure({"message": "down"}, 1, backoff_until=500)
        spool.record_failure({"message": "bad secret"}, 2, halt_reason="405")
        state = spool.sync_state()
        assert (state.failures, state.backoff_until, state.halted, state.halt_reason) == (2, 500, True, "405")
        assert spool.last_error() == {"message": "bad secret"}
        spool.record_success(keep_error=False)
        state = spool.sync_state()
        assert (state.failures, state.backoff_until, state.halted) == (0, None, False)
        assert spool.last_error() is None
    with sqlite3.connect(tmp_path / "spool.sqlite3") as db:
        db.execute("INSERT INTO meta VALUES ('backoff_until', 'soon'), ('last_error', '[1')")
    with Spool(tmp_path) as spool:
        assert spool.sync_state().backoff_until is None
        assert spool.last_error() is None


def test_threads_each_with_a_connection_never_share_an_nr(tmp_path):
    Spool(tmp_path).close()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            with Spool(tmp_path) as spool:
                for _ in range(20):
                    queue(spool, 3)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(nr for nr, _ in states(tmp_path)) == list(range(1, 241))


def _enqueue_in_process(path: str) -> None:
    with Spool(path) as spool:
        for _ in range(10):
            queue(spool, 2)


def test_processes_enqueue_while_a_batch_is_marked_and_acked(tmp_path):
    with Spool(tmp_path) as spool:
        queue(spool, 10)
        row, batch = marked_batch(spool, 10)
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=_enqueue_in_process, args=(str(tmp_path),)) for _ in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        assert all(p.exitcode == 0 for p in procs)
        # new events got higher ids: the mark's range still holds exactly the batch
        assert spool.totals()[:2] == (60, 10)
        spool.ack(row, batch[0].id, batch[-1].id, sync_time=1)
        assert spool.totals()[:2] == (60, 0)
    assert sorted(nr for nr, _ in states(tmp_path)) == list(range(11, 71))


# -- spool errors told apart by SQLite's result code, not its words ---------------------------

needs_codes = pytest.mark.skipif(
    not hasattr(sqlite3, "SQLITE_FULL"), reason="sqlite3 gives result codes from Python 3.11"
)


@needs_codes
@pytest.mark.parametrize(
    "code, kind",
    [
        (13, "NO_SPACE"),  # SQLITE_FULL
        (10 | (4 << 8), "NO_SPACE"),  # SQLITE_IOERR_WRITE: an extended code
        (11, "CORRUPT"),  # SQLITE_CORRUPT
        (26, "CORRUPT"),  # SQLITE_NOTADB
        (8, "NOT_WRITABLE"),  # SQLITE_READONLY
        (14, "CANNOT_OPEN"),  # SQLITE_CANTOPEN
        (5, "LOCKED"),  # SQLITE_BUSY
        (1, "OTHER"),  # SQLITE_ERROR, whatever its words say
    ],
)
def test_spool_errors_are_told_apart_by_result_code(code, kind):
    from hamustro_cli.spool.classify import spool_error
    from hamustro_cli.spool.trouble import SpoolProblem

    words = "database is locked" if kind != "LOCKED" else "disk is full"  # words that mislead
    exc = sqlite3.OperationalError(words)
    exc.sqlite_errorcode = code  # type: ignore[attr-defined]
    assert spool_error(exc, "/x/spool.sqlite3", "reading the spool").kind is SpoolProblem[kind]


@needs_codes
def test_a_real_sqlite_error_carries_the_code_the_spool_decides_on(tmp_path):
    from hamustro_cli.spool.classify import spool_error
    from hamustro_cli.spool.trouble import SpoolProblem

    path = tmp_path / "not-a-database"
    path.write_bytes(b"\xa5" * 4096)
    with pytest.raises(sqlite3.DatabaseError) as caught:
        sqlite3.connect(path).execute("PRAGMA user_version").fetchall()
    assert caught.value.sqlite_errorcode == sqlite3.SQLITE_NOTADB  # type: ignore[attr-defined]
    assert spool_error(caught.value, str(path), "opening the spool").kind is SpoolProblem.CORRUPT
