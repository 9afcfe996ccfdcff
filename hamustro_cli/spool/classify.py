"""What a failure of the spool is: a sqlite3 or OS error turned into a SpoolError of a
SpoolProblem kind, with a message that says what to do. Loaded only when something failed."""

from __future__ import annotations

import errno
import os

from hamustro_cli.errors import SpoolError
from hamustro_cli.limits import few_descriptors
from hamustro_cli.spool.problems import SpoolProblem
from hamustro_cli.spooldir import BUSY_TIMEOUT, lock_holders, space_advice

# SQLite's primary result codes (the low byte of an extended one), grouped as spool_error
# tells them apart: FULL and IOERR (a write failed: a full disk, a file-size limit), CORRUPT
# and NOTADB, READONLY and PERM, CANTOPEN, BUSY and LOCKED.
_PRIMARY_CODES = {
    13: "full", 10: "full",
    11: "corrupt", 26: "corrupt",
    8: "readonly", 3: "readonly",
    14: "cantopen",
    5: "busy", 6: "busy",
}  # fmt: skip
# The same groups by SQLite's words, in this order, for a Python (3.10) that gives no code.
_WORDS = (
    ("full", ("disk is full", "disk i/o error")),
    ("corrupt", ("not a database", "malformed")),
    ("readonly", ("readonly", "permission")),
    ("cantopen", ("unable to open",)),
    ("busy", ("locked", "busy")),
)


def _error_group(exc: BaseException, low: str) -> str | None:
    """The group of _PRIMARY_CODES an error belongs to: by SQLite's result code where Python
    gives it (3.11+; an unknown code is "other", whatever the words say), else by its words."""
    errorcode: int | None = getattr(exc, "sqlite_errorcode", None)
    if errorcode is not None:
        return _PRIMARY_CODES.get(errorcode & 0xFF, "other")
    return next((group for group, words in _WORDS if any(w in low for w in words)), None)


def spool_error(exc: BaseException, path: str, doing: str) -> SpoolError:
    """Turn a sqlite3/OS error into a message that says what is wrong and what to do."""
    text = str(exc)
    group = _error_group(exc, text.lower())
    no_room = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT)
    if no_room or group == "full":
        kind = SpoolProblem.NO_SPACE
        what = f"{text}: the disk is full or a file-size limit was hit" if group == "full" else text
        why = f"cannot write {path} ({what}); {space_advice(os.path.dirname(path))}"
    elif group == "corrupt":
        kind = SpoolProblem.CORRUPT
        why = (
            f"{path} is corrupt ({text}); move it aside to start a new spool "
            "(its events can then be inspected with sqlite3)"
        )
    elif group == "readonly" or isinstance(exc, PermissionError):
        kind, why = SpoolProblem.NOT_WRITABLE, f"{path} is not writable ({text})"
    elif group == "cantopen":
        kind = SpoolProblem.CANNOT_OPEN
        # SQLite says only "unable to open": out of descriptors (ulimit -n) is one reason
        why = f"cannot open {path} ({text}): " + (
            few_descriptors() or "check that the spool directory exists and is writable"
        )
    elif group == "busy":
        holders = ", ".join(lock_holders(path)) or "another connection"
        kind = SpoolProblem.LOCKED
        why = f"{path} is locked by {holders}, which held it past the {BUSY_TIMEOUT} s wait ({text})"
    else:
        kind, why = SpoolProblem.OTHER, f"{path}: {text}"
    return SpoolError(f"spool error while {doing}: {why}", kind)
