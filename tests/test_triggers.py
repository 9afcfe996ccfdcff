"""When to send (triggers.py), with a fixed clock: queue size, retention, backoff, halting."""

from __future__ import annotations

from hamustro_cli import triggers
from hamustro_cli.spool import SyncState

# -- the triggers ---------------------------------------------------------------------------

NOW = 1_800_000_000


RECENT = SyncState(created_at=NOW - 60)


def due(sync: SyncState = RECENT, pending: int = 1) -> triggers.Due:
    return triggers.due(sync, pending, queue_size=20, queue_retention=10, now=NOW)


def test_triggers_with_a_fixed_clock():
    assert due(pending=0).why is triggers.Why.NOTHING_PENDING
    assert due(pending=20)[:2] == (True, triggers.Why.QUEUE_SIZE)
    waiting = due()
    assert waiting[:2] == (False, triggers.Why.WAITING) and waiting.next_at == NOW - 60 + 600
    old = due(SyncState(created_at=NOW - 3600, last_sync_time=NOW - 601))
    assert old[:2] == (True, triggers.Why.RETENTION) and old.next_at == NOW
    halted = due(SyncState(halted=True, halt_reason="405"), pending=100)
    assert halted[:2] == (False, triggers.Why.HALTED) and halted.next_at is None


def test_backoff_holds_even_a_full_queue_until_it_ends():
    sync = SyncState(created_at=NOW - 3600, backoff_until=NOW + 30)
    held = due(sync, pending=20)
    assert held[:2] == (False, triggers.Why.BACKING_OFF) and held.next_at == NOW + 30
    # below queue_size, the next send is when both backoff and retention allow it
    assert due(SyncState(created_at=NOW, backoff_until=NOW + 30)).next_at == NOW + 600
    over = due(sync._replace(backoff_until=NOW), pending=20)
    assert over[:2] == (True, triggers.Why.QUEUE_SIZE)


def test_backoff_doubles_to_an_hour_and_honours_retry_after():
    assert [triggers.backoff_until(f, 0, None, 1.0) for f in (1, 2, 3, 7, 8, 10**9)] == [
        60,
        120,
        240,
        3600,
        3600,
        3600,
    ]
    assert triggers.backoff_until(1, 0, None, 0.75) == 45
    assert triggers.backoff_until(1, 0, 900.0, 1.0) == 900
    assert triggers.backoff_until(1, 0, 10.0**9, 1.0) == triggers.RETRY_AFTER_CAP
