"""The child end of the background flush that `track` starts (spawn.py is the parent end):
`python -m hamustro_cli.background`.

Its settings come in HAMUSTRO_* variables alone (no config file is read); its output goes to
flush.log in the spool directory, one timestamped line per message.
"""

from __future__ import annotations

import os
import sys
import time

from hamustro_cli.config import load_config
from hamustro_cli.errors import HamustroError, exit_status
from hamustro_cli.log import ERROR, INFO, LABELS
from hamustro_cli.tracker import ClientTracker


def log(level: int, message: str) -> None:
    if level <= INFO:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        try:
            sys.stderr.write(f"{stamp} [{os.getpid()}] {LABELS.get(level, '')}{message}\n")
            sys.stderr.flush()
        except OSError:  # flush.log on a full disk: the flush goes on (it may free the disk)
            pass


# Nobody waits for this flush, while every `track` beside it is waited for: it yields the CPU
# to them (a track started beside a flush and its collector on a 2-core machine otherwise
# gets a third of the CPU it needs; issue 10).
NICENESS = 10


def main() -> int:
    try:
        os.nice(NICENESS)
    except OSError:  # not allowed here: run as we are
        pass
    try:
        with ClientTracker(config=load_config(use_file=False).require(), log=log) as tracker:
            report = tracker.flush(if_due=True)
    except HamustroError as exc:
        log(ERROR, str(exc))
        return int(exit_status(exc))
    except Exception as exc:  # noqa: BLE001 - resource trouble as one line; the rest re-raised
        from hamustro_cli.limits import short_of

        why = short_of(exc)
        if why is None:
            raise
        log(ERROR, why)
        return int(exit_status(exc))
    if report.skip is not None:
        log(INFO, f"flush skipped: {report.skipped}")
        return 0
    log(
        INFO,
        f"flush done: sent {report.sent}, failed {report.failed}, rejected {report.rejected}, "
        f"pending {report.pending}",
    )
    return int(exit_status(report))


if __name__ == "__main__":
    sys.exit(main())
