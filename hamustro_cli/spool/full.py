"""The Spool with every job: what every command but `track` opens (`track` opens a
`TrackSpool`, the base of all of them, which needs no other module of the package)."""

from __future__ import annotations

from hamustro_cli.spool.changes import ManualChanges
from hamustro_cli.spool.counting import Counting
from hamustro_cli.spool.syncstate import SyncRecords
from hamustro_cli.spool.upkeep import Upkeep


class Spool(ManualChanges, Counting, SyncRecords, Upkeep):
    """One connection to the spool database, with every job (see the package's docstring)."""
