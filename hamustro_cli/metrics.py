"""`hamustro metrics`: the spool's figures in the Prometheus text format (version 0.0.4), for a
scrape or for node_exporter's textfile collector (written atomically: a temp file in the same
directory, fsync, rename). Every figure is read at the same cost at any backlog: the spool's
counters and meta rows, one index seek per attribute set for the oldest pending event, and a
stat of the database's files."""

from __future__ import annotations

import contextlib
import os
import stat
from typing import TYPE_CHECKING, NamedTuple

from hamustro_cli import __version__
from hamustro_cli.caps import Reason
from hamustro_cli.errors import InputError, OutputError
from hamustro_cli.spooldir import DB_NAME, file_kind, sync_directory, write_whole

if TYPE_CHECKING:
    from hamustro_cli.tracker import ClientTracker

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
TEXTFILE_MODE = 0o644  # node_exporter runs as its own user; the figures hold no event data


class Sample(NamedTuple):
    labels: tuple[tuple[str, str], ...]
    value: float


class Family(NamedTuple):
    name: str  # a counter's name ends in _total (as 0.0.4 writes it)
    kind: str  # "gauge" or "counter"
    help: str
    samples: tuple[Sample, ...]


def _one(value: float | None) -> tuple[Sample, ...]:
    return () if value is None else (Sample((), value),)


def collect(tracker: ClientTracker) -> list[Family]:
    """The figures, read from the tracker's spool (its destination's sync state when the
    settings name one)."""
    spool = tracker.spool
    totals = spool.totals()
    kept = spool.counters()
    sync = tracker.sync_state()
    dropped = {reason.value: 0 for reason in Reason}
    dropped.update(kept.dropped)
    return [
        Family("hamustro_events_pending", "gauge", "Events waiting to be sent.", _one(totals.pending)),
        Family(
            "hamustro_events_sending",
            "gauge",
            "Events in the batch a flush is sending.",
            _one(totals.sending),
        ),
        Family(
            "hamustro_events_rejected",
            "gauge",
            "Events the collector refused, set aside until a person acts.",
            _one(totals.rejected),
        ),
        Family("hamustro_events_tracked_total", "counter", "Events queued.", _one(kept.tracked)),
        Family("hamustro_events_sent_total", "counter", "Events the collector took.", _one(kept.sent)),
        Family(
            "hamustro_events_dropped_total",
            "counter",
            "Events that left the spool undelivered, by reason.",
            tuple(Sample((("reason", r),), n) for r, n in sorted(dropped.items())),
        ),
        Family(
            "hamustro_flush_failures_total",
            "counter",
            "Flushes that could not deliver.",
            _one(kept.flush_failures),
        ),
        Family(
            "hamustro_last_sync_timestamp_seconds",
            "gauge",
            "When the collector last took a batch (Unix time; 0: never).",
            _one(sync.last_sync_time or 0),
        ),
        Family(
            "hamustro_oldest_pending_timestamp_seconds",
            "gauge",
            "The at of the oldest event still to be sent (Unix time; no sample when none is).",
            _one(spool.oldest_pending_at()),
        ),
        Family(
            "hamustro_sending_halted",
            "gauge",
            "1 when sending stopped until a person acts, else 0.",
            _one(1 if sync.halted else 0),
        ),
        Family(
            "hamustro_spool_bytes",
            "gauge",
            "Bytes of the spool's database and its WAL.",
            _one(spool_bytes(spool.directory)),
        ),
        Family(
            "hamustro_info",
            "gauge",
            "The hamustro client's version.",
            (Sample((("version", __version__),), 1),),
        ),
    ]


def spool_bytes(directory: str) -> int:
    """The size of the database and its WAL (lstat: regular files only, nothing followed)."""
    total = 0
    for name in (DB_NAME, DB_NAME + "-wal"):
        try:
            st = os.lstat(os.path.join(directory, name))
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode):
            total += st.st_size
    return total


def escape_label(value: str) -> str:
    """A label value as the text format quotes it: backslash, double quote and newline escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def render(families: list[Family]) -> str:
    """The text format 0.0.4: # HELP and # TYPE, then the samples, of each family."""
    lines = []
    for f in families:
        lines.append(f"# HELP {f.name} {_escape_help(f.help)}")
        lines.append(f"# TYPE {f.name} {f.kind}")
        for s in f.samples:
            labels = ",".join(f'{k}="{escape_label(v)}"' for k, v in s.labels)
            lines.append(f"{f.name}{'{' + labels + '}' if labels else ''} {_number(s.value)}")
    return "\n".join(lines) + "\n"


def write_textfile(path: str, text: str) -> None:
    """Replace `path` with `text` atomically, for node_exporter's textfile collector (which reads
    only *.prom files, so the temp file, named .NAME.*.tmp, is never read half-written).

    What is at `path` must be a regular file or nothing: a directory, a FIFO, a device, a socket
    or a symbolic link (dangling or not) is refused (InputError, exit 2) and left alone; so is a
    parent that is not a directory. A write that fails (no room, no permission) is an
    OutputError (exit 3), and the old file stays whole."""
    path = os.path.abspath(path)
    directory, name = os.path.split(path)
    flag = f"--textfile {path}"
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise InputError(f"{flag}: {exc.strerror}") from None
    if st is not None and stat.S_ISLNK(st.st_mode):
        raise InputError(f"{flag}: is a symbolic link; give the file itself (it is replaced, never followed)")
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InputError(f"{flag}: is {file_kind(st.st_mode)}, not a regular file; nothing was written")
    if not os.path.isdir(directory):
        raise InputError(f"{flag}: {directory} is not a directory")
    try:
        write_whole(path, text.encode("utf-8"), TEXTFILE_MODE)
    except OSError as exc:
        raise OutputError(f"cannot write the metrics to {path} ({exc.strerror})") from None
    with contextlib.suppress(OSError):  # the rename itself made durable, where it can be
        sync_directory(directory)
