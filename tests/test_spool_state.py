"""Where sending stands is decided on typed state, never on text (issue 17, item 5): `halted`
is a flag with its reason beside it."""

from __future__ import annotations

import sqlite3

from hamustro_cli import triggers
from hamustro_cli.spool.full import Spool


def test_a_halt_without_a_reason_still_halts(tmp_path):
    """A halt recorded with an empty reason (an answer with no text, or a spool another
    program wrote) stops sending all the same, and says so."""
    with Spool(tmp_path) as spool:
        spool.record_failure({"message": ""}, 1, halt_reason="")
        sync = spool.sync_state()
    assert sync.halted is True and sync.halt_reason
    due = triggers.due(sync, pending=100, queue_size=1, queue_retention=1, now=10**9)
    assert (due.fires, due.why) == (False, triggers.Why.HALTED)


def test_a_stored_empty_halt_reads_as_halted(tmp_path):
    Spool(tmp_path).close()
    with sqlite3.connect(tmp_path / "spool.sqlite3") as db:
        db.execute("INSERT INTO meta (key, value) VALUES ('halted', '')")
    with Spool(tmp_path) as spool:
        sync = spool.sync_state()
    assert sync.halted is True and sync.halt_reason
