"""ClientTracker: the protocol's pseudo client, the one object the CLI and Python programs use.

Tracking only touches SQLite (plus a UDP socket for the route); whatever sends is imported
only when a flush runs (ARCHITECTURE.md, Keeping `track` light).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from enum import Enum
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar, cast

from hamustro_cli import caps as bounds
from hamustro_cli import destination, netaddr, spooldir, triggers
from hamustro_cli.config import KEYS, REQUIRED, Config, load_config, without_secret
from hamustro_cli.disabled import tracking_disabled
from hamustro_cli.errors import ConfigError, HamustroError, SpoolError
from hamustro_cli.events import (
    NewEvent,
    check_at,
    check_event_name,
    check_ip,
    check_params,
    check_user_id,
    event_time,
    parse_lines,
)
from hamustro_cli.log import INFO, Log, to_logging
from hamustro_cli.log import count as log_count
from hamustro_cli.session import Session
from hamustro_cli.spool import DB_NAME, SyncState, TrackSpool
from hamustro_cli.spooldir import FlushLock, flush_running

if TYPE_CHECKING:
    from hamustro_cli.reports import FlushReport
    from hamustro_cli.spool.full import Spool
    from hamustro_cli.spool.rows import DestinationCounts, SessionCounts, SessionStatus, Status

_S = TypeVar("_S", bound=TrackSpool)


class Outcome(str, Enum):
    """What `track` did about sending (the `flush` field of its result and of `--json`, which
    prints the value: the strings stay as they are, since scripts read them)."""

    NOT_DUE = "not-due"
    STARTED = "started"  # a background flush was started
    RUNNING = "running"  # a flush is already running
    SENT = "sent"
    FAILED = "failed"
    OFF = "off"
    BACKOFF = "backoff"
    HALTED = "halted"


class TrackResult(NamedTuple):
    """What one track did. `count` 0 (track_lines given no event): nothing was queued, and
    `nr`, `first_nr` and `at` are 0 (null in to_json)."""

    session: str
    nr: int
    at: int
    flush: Outcome
    first_nr: int = 0
    count: int = 1  # type: ignore[assignment]  # (shadows tuple.count; kept for the API)
    flush_detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        """One shape for one event and for many (`track --stdin`): `nr` and `at` are the last
        event's, `first_nr`..`last_nr` the range given to all of them."""
        some = self.count > 0
        return {
            "session": self.session,
            "queued": self.count,
            "first_nr": self.first_nr if some else None,
            "last_nr": self.nr if some else None,
            "nr": self.nr if some else None,
            "at": self.at if some else None,
            "flush": self.flush.value,
        }


# How each argument of one event is named in errors: as a Python caller passed it, or as the
# command line's flags (cli.track).
PYTHON_NAMES = ("event", "user_id", "params", "at", "at=")
FLAG_NAMES = ("event name", "--user-id", "--params", "--at", "--at")


def new_event(
    event: str,
    user_id: int | str | None = None,  # text from the command line only (FLAG_NAMES)
    params: str | Mapping[str, Any] | None = None,
    is_testing: bool = False,
    at: int | float | str | None = None,
    names: tuple[str, ...] = PYTHON_NAMES,
) -> NewEvent:
    """One event, checked, dated now unless `at` is given; errors name the arguments by
    `names` (PYTHON_NAMES also checks the types a Python caller passes)."""
    python = names is PYTHON_NAMES
    name, user, parameters, when, give = names
    return NewEvent(
        event=check_event_name(event, name),
        at=event_time(_clock_now(), give) if at is None else check_at(at, when, python=python),
        user_id=check_user_id(user_id, user, python=python),
        ip=None,
        parameters=check_params(params, parameters, python=python),
        is_testing=bool(is_testing),
    )


GROUP_MAX = 64  # callers committed together at most (see ClientTracker._commit_waiting)


class _Waiting:
    """Events a thread waits to see committed, and once they are: their first and last nr and
    what the triggers read right after the commit."""

    __slots__ = ("done", "events", "session")

    def __init__(self, session: Session, events: list[NewEvent]):
        self.session, self.events = session, events
        self.done: tuple[int, int, tuple[SyncState, int] | Exception] | None = None


def _now() -> int:
    return int(time.time())


def _clock_now() -> int:
    """The clock in whole seconds, rounded toward the past (a clock half a second before 1970
    reads -1, not 0), for dating events tracked without a time (see events.event_time)."""
    return int(time.time() // 1)


class ClientTracker:
    """The protocol's ClientTracker. Construct from settings (like the spec's pseudo client)
    or from the config file with `ClientTracker.from_config()`."""

    def __init__(
        self,
        collector_url: str | None = None,
        shared_secret_key: str | None = None,
        device_id: str | None = None,
        client_id: str | None = None,
        system_version: str | None = None,
        product_version: str | None = None,
        system: str | None = None,
        product_git_hash: str | None = None,
        queue_size: int | None = None,
        queue_retention: int | None = None,
        *,
        config: Config | None = None,
        log: Log | None = None,
        **settings: Any,
    ):
        if config is None:
            given = {
                "collector_url": collector_url,
                "shared_secret_key": shared_secret_key,
                "device_id": device_id,
                "client_id": client_id,
                "system_version": system_version,
                "product_version": product_version,
                "system": system,
                "product_git_hash": product_git_hash,
                "queue_size": queue_size,
                "queue_retention": queue_retention,
                **settings,
            }
            unknown = set(given) - set(KEYS)
            if unknown:
                raise TypeError(f"unknown setting(s): {', '.join(sorted(unknown))}")
            missing = [k for k in REQUIRED if given.get(k) in (None, "")]
            if missing:  # the constructor reads no file and no environment: say what it needs
                raise ConfigError(
                    f"missing required config key {', '.join(missing)}: pass "
                    f"{', '.join(k + '=...' for k in missing)} to ClientTracker, or use "
                    "ClientTracker.from_config() to read the config file and HAMUSTRO_* variables"
                )
            config = load_config(env={}, overrides=given, use_file=False, given_as="ClientTracker").require()
        self.config = config
        self.caps = bounds.from_values(config.values, config.sources)  # the spool's bounds
        self.log: Log = log or to_logging
        # One connection per tracker and process, opened on first use under `_lock`, which
        # every use of it holds (threads wait only as long as one statement or commit takes).
        # A flush uses a connection of its own for its whole run (`_flushes` counts them), so
        # tracking never waits on the network. Before a fork the connection is closed (see
        # _before_fork): SQLite forbids using one opened before fork() in the child.
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._flushes: dict[int, int] = {}  # thread id: flushes running in it
        self._spool: TrackSpool | None = None
        self._destination: str | None = None
        self._closed = False
        # what threads wait to commit (see _commit_waiting), under a lock held for moments
        self._waiting: list[_Waiting] = []
        self._waiting_lock = threading.Lock()
        _live.add(self)

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        log: Log | None = None,
    ) -> ClientTracker:
        """Settings resolved as the CLI does: arguments, HAMUSTRO_* environment, TOML file, defaults."""
        config = load_config(path, spool_dir, given_as="ClientTracker.from_config")
        return cls(config=config.require(), log=log)

    # -- pieces ---------------------------------------------------------------------------

    @property
    def session(self) -> Session:
        return Session.from_config(self.config)

    @property
    def destination(self) -> str:
        """This config's destination fingerprint (destination.py), computed once per tracker; a
        ConfigError names any of its settings that is missing."""
        if self._destination is None:
            values = self.config.require(destination.KEYS).values
            self._destination = destination.fingerprint(*(values[k] for k in destination.KEYS))
        return self._destination

    def _known_destination(self) -> str | None:
        """The destination, or None when the settings lack what names it (`status` on a spool
        alone)."""
        try:
            return self.destination
        except ConfigError:
            return None

    def sync_state(self) -> SyncState:
        """Where sending to this config's destination stands (as recorded before destinations
        were, when the settings lack what names one: `metrics` on a spool alone)."""
        with self._lock:
            return self._open(TrackSpool).sync_state(self._known_destination())

    @property
    def spool(self) -> Spool:
        """The tracker's connection to the spool, for one thread at a time (the tracker's own
        methods may be called from any thread)."""
        with self._lock:
            return self._open(_every_job())

    def _open(self, kind: type[_S]) -> _S:
        """The connection of this process, opened once, as a `kind` (TrackSpool: what `track`
        needs; full.Spool: every job); the caller holds `_lock`. A TrackSpool asked for as a
        full Spool is closed and reopened as one (once: a Spool is a TrackSpool)."""
        if self._closed:
            raise ValueError("this ClientTracker is closed: create a new one to track again")
        if self._spool is not None and self._spool.pid != os.getpid():  # a fork without the hooks
            self._spool.close()  # abandoned, not closed: see Spool.close
            self._spool = None
        spool = self._spool
        if spool is not None and not isinstance(spool, kind):
            spool.close()
            spool = self._spool = None
        if spool is None:
            spool = kind(self.config.spool_dir)
            self._spool = spool
        return spool

    def close(self) -> None:
        """Close the spool connection; any later use raises ValueError. A flush running in
        another thread finishes on its own connection."""
        with self._lock:
            self._closed = True
            self._drop_connection()

    def _drop_connection(self) -> None:
        if self._spool is not None:
            self._spool.close()  # in a forked child, abandoned (Spool.close)
            self._spool = None

    def __getstate__(self) -> None:
        raise TypeError(
            "a ClientTracker cannot be pickled: it holds a spool connection and the shared "
            "secret, which must not travel in a pickle; create one in each process instead "
            "(ClientTracker.from_config(), or the same arguments)"
        )

    def _log(self, level: int, message: str) -> None:
        """self.log, whose failure changes nothing: the caller's callback may raise."""
        try:
            self.log(level, message)
        except Exception:  # noqa: BLE001, S110 - a broken log must not stop queuing or sending
            pass

    # -- fork: nothing of SQLite crosses it (see the module's _before_fork) -----------------

    def _before_fork(self) -> None:
        """In the parent, before fork(): wait for the flushes of other threads (each holds a
        connection), close the connection, and hold the lock over the fork, so the child
        inherits neither an open connection nor SQLite's record of its locks."""
        self._lock.acquire()
        me = threading.get_ident()
        while any(n and ident != me for ident, n in self._flushes.items()):
            self._idle.wait()
        self._drop_connection()

    def _after_fork_in_parent(self) -> None:
        self._lock.release()

    def _after_fork_in_child(self) -> None:
        self._lock = threading.RLock()
        self._idle = threading.Condition(self._lock)
        self._flushes = {}
        self._waiting, self._waiting_lock = [], threading.Lock()  # the other threads are gone
        self._drop_connection()  # closed before the fork already; abandoned if not (Spool.close)

    def __enter__(self) -> ClientTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _event_ip(self, override: str | None) -> str | None:
        """The `ip` attribute for a new event: --ip, the configured literal, the route, or none."""
        if override is not None:
            return check_ip(override, "ip", ipv6=self.config.values["send_ipv6"])
        mode = self.config.values["ip"]
        if mode == "off":
            return None
        if mode != "auto":
            return str(mode)
        host, port = netaddr.split_url(self.config.values["collector_url"])
        if netaddr.valid_ip(host):
            remote: str | None = host
        else:
            with self._lock:
                remote = self._open(TrackSpool).resolved_address(host)
        if not remote:
            return netaddr.UNKNOWN
        return netaddr.route_source(remote, port) or netaddr.UNKNOWN

    # -- tracking -------------------------------------------------------------------------

    def track_event(
        self,
        event: str,
        user_id: int | None = None,
        params: str | Mapping[str, Any] | None = None,
        is_testing: bool = False,
        *,
        at: int | float | str | None = None,
        ip: str | None = None,
        flush: bool | None = None,
    ) -> TrackResult:
        """Queue one event durably, then apply the protocol's flush triggers. Bad arguments
        raise InputError naming them (`user_id` an int, `params` a str or a mapping with
        string keys, `at` epoch seconds as an int or a float, or a time text)."""
        return self.track_many([new_event(event, user_id, params, is_testing, at)], ip=ip, flush=flush)

    def track_many(
        self, events: list[NewEvent], *, ip: str | None = None, flush: bool | None = None
    ) -> TrackResult:
        """Queue many events in one transaction (all or nothing). Events without an ip get
        `ip` (checked) or the configured one."""
        if any(e.ip is None for e in events):
            address = self._event_ip(ip)
            events = [e if e.ip is not None else e._replace(ip=address) for e in events]
        return self._queue(events, flush)

    def track_lines(
        self, lines: Iterable[str], *, ip: str | None = None, flush: bool | None = None, source: str = "stdin"
    ) -> TrackResult:
        """Queue JSON lines (see events.parse_lines) in one transaction: all or nothing."""
        events = parse_lines(lines, _clock_now(), self._event_ip(ip), source)
        if not events:  # nothing to queue is not an error: a pipeline that produced nothing
            self._log(INFO, f"no events on {'standard input' if source == 'stdin' else source}")
            outcome, detail = self._flush_here(if_due=False) if flush is True else (Outcome.NOT_DUE, None)
            return TrackResult(self.session.id, 0, 0, outcome, 0, 0, detail)
        return self._queue(events, flush)

    def _queue(self, events: list[NewEvent], flush: bool | None) -> TrackResult:
        mine = _Waiting(self.session, events)
        with self._waiting_lock:
            self._waiting.append(mine)
        with self._lock:
            done = mine.done or self._commit_waiting(mine)  # None: no other thread committed it
        first, last, seen = done
        # Committed. From here on nothing may raise: a caller (or a script around `track`) that
        # sees an error retries, and the event is queued twice.
        outcome, detail = self._after_queue(mine.session.id, first, last, len(events), flush, seen)
        return TrackResult(mine.session.id, last, events[-1][1], outcome, first, len(events), detail)

    def _commit_waiting(self, mine: _Waiting) -> tuple[int, int, tuple[SyncState, int] | Exception]:
        """Commit `mine` together with what other threads are waiting to queue under the same
        attributes, in one transaction (a group commit: N threads, one sync to disk), each
        caller's events numbered in a range of their own; the caller holds `_lock`. If the
        group fails, the others go back to waiting (each then tries on its own) and `mine` is
        tried alone, so one caller's error (a batch passing the largest nr) is only its own."""
        where = self.destination  # one tracker, one destination: the whole group's
        with self._waiting_lock:
            group = [mine] + [w for w in self._waiting if w is not mine and w.session == mine.session][
                : GROUP_MAX - 1
            ]
            for w in group:
                self._waiting.remove(w)
        try:
            spool = self._open(TrackSpool)
            # a group that does not fit is refused whole (nothing counted), then each caller tries
            # alone: whose events are dropped never depends on who was grouped with whom
            whole = self.caps._replace(when_full="refuse") if len(group) > 1 else self.caps
            first, _ = spool.enqueue(mine.session, [e for w in group for e in w.events], where, whole)
        except BaseException as exc:
            if len(group) > 1:  # the others go back to waiting: each then commits on its own
                with self._waiting_lock:
                    self._waiting.extend(group[1:])
            if len(group) == 1 or not isinstance(exc, Exception):  # alone, or interrupted
                raise
            group = [mine]
            spool = self._open(TrackSpool)
            first, _ = spool.enqueue(mine.session, mine.events, where, self.caps)
        # What the triggers read is read now, under the same hold of the lock.
        try:
            seen: tuple[SyncState, int] | Exception = (spool.sync_state(where), spool.pending(where))
        except Exception as exc:  # noqa: BLE001 - reported by _after_queue's guard
            seen = exc
        for w in group:
            w.done = (first, first + len(w.events) - 1, seen)
            first += len(w.events)
        return mine.done  # type: ignore[return-value]  # set just above: mine is group[0]

    def _after_queue(
        self,
        session_id: str,
        first: int,
        last: int,
        count: int,
        flush: bool | None,
        seen: tuple[SyncState, int] | Exception,
    ) -> tuple[Outcome, str | None]:
        """Everything that follows the commit (log line, triggers, inline flush or spawning the
        background one), guarded: whatever goes wrong becomes a failed flush with a detail."""
        try:
            self._log(INFO, f"queued {log_count(count, 'event')} in session {session_id}, nr {first}..{last}")
            if isinstance(seen, Exception):
                raise seen
            return self._after_track(flush, self._due(*seen))
        except Exception as exc:  # noqa: BLE001 - the guard itself; the event stays queued
            return Outcome.FAILED, self._describe(exc)

    def _describe(self, exc: BaseException) -> str:
        """An exception as one line of a warning: its type and text, the secret masked, capped."""
        try:
            text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, HamustroError) else str(exc)
            text = " ".join(without_secret(text, self.config.values).split())
            return text if len(text) <= 300 else text[:300] + "..."
        except Exception:  # noqa: BLE001 - an exception whose text cannot be had
            return type(exc).__name__

    def _after_track(self, flush: bool | None, due: triggers.Due) -> tuple[Outcome, str | None]:
        mode = self.config.values["flush"]
        if flush is True:  # asked for by name: a plain flush, here, before returning
            self._log(INFO, "flush asked for")
            return self._flush_here(if_due=False)
        if not due.fires:
            if due.why is triggers.Why.HALTED:
                return Outcome.HALTED, due.reason
            return (Outcome.BACKOFF if due.why is triggers.Why.BACKING_OFF else Outcome.NOT_DUE), None
        if flush is False or (flush is None and mode == "off"):
            return Outcome.OFF, None
        self._log(INFO, f"flush due: {due.reason}")
        # The event is queued: whatever goes wrong from here is a failed flush, never an error
        # of track (a script that retried would queue the event twice).
        try:
            if flush_running(self.config.spool_dir):
                return Outcome.RUNNING, None
            if self.flushes_here(flush):
                return self._flush_here(if_due=True)
            from hamustro_cli.spawn import spawn_background_flush

            spawn_background_flush(self.config)
        except (HamustroError, OSError) as exc:
            return Outcome.FAILED, str(exc)
        return Outcome.STARTED, None

    def flushes_here(self, flush: bool | None) -> bool:
        """Whether a track given `flush` (True, False or None: the config decides) flushes in
        this process when it flushes: asked for by name, or flush = "inline"."""
        return flush is True or (flush is None and self.config.values["flush"] == "inline")

    def _flush_here(self, if_due: bool) -> tuple[Outcome, str | None]:
        """A flush in this process, after a track: what it did, as track's outcome. `if_due`
        False (track --flush, flush=True): a plain flush, which waits for a running one's lock
        and sends whatever the triggers say."""
        from hamustro_cli.reports import Skip

        try:
            report = self.flush(if_due=if_due)
        except (HamustroError, OSError) as exc:
            return Outcome.FAILED, str(exc)
        if report.skip is not None:
            return (Outcome.RUNNING if report.skip is Skip.LOCKED else Outcome.NOT_DUE), report.skipped
        if report.ok:
            return Outcome.SENT, None
        return Outcome.FAILED, report.error or "not everything was delivered"

    # -- triggers -------------------------------------------------------------------------

    def due(self, at: int | None = None) -> triggers.Due:
        """Do the protocol's triggers fire now (or at `at`), and if not, when next?"""
        with self._lock:
            spool = self._open(TrackSpool)
            mine = self._known_destination()
            return self._due(spool.sync_state(mine), spool.pending(mine), at)

    def _due(self, sync: SyncState, pending: int, at: int | None = None) -> triggers.Due:
        return triggers.due(
            sync,
            pending,
            self.config.values["queue_size"],
            self.config.values["queue_retention"],
            _now() if at is None else at,
        )

    # -- flushing -------------------------------------------------------------------------

    def flush(
        self,
        if_due: bool = False,
        dry_run: bool = False,
        retry_rejected: bool = False,
        wait: bool = True,
        progress: Callable[[int], None] | None = None,
    ) -> FlushReport:
        """Send pending events, one session at a time, in batches; delete only after a 200.
        May run in one thread while others track: it uses a connection of its own."""
        self.config.require()
        me = threading.get_ident()
        with self._lock:
            if self._closed:
                raise ValueError("this ClientTracker is closed: create a new one to flush")
            self._flushes[me] = self._flushes.get(me, 0) + 1
        try:
            # before the spool opens (its -shm alone takes 32 KiB): on a full disk, the
            # ballast's room
            room = None if dry_run else spooldir.room_for_flush(self.config.spool_dir)
            spool = _every_job()(self.config.spool_dir)
            try:
                spool.check_writable("flushing")  # even a dry run takes the flush lock
                return self._flush(spool, room, if_due, dry_run, retry_rejected, wait, progress)
            finally:
                spool.close()
        finally:
            with self._lock:
                left = self._flushes.pop(me, 1) - 1
                if left > 0:
                    self._flushes[me] = left
                self._idle.notify_all()

    def _flush(
        self,
        spool: Spool,
        room: str | None,
        if_due: bool,
        dry_run: bool,
        retry_rejected: bool,
        wait: bool,
        progress: Callable[[int], None] | None,
    ) -> FlushReport:
        """flush() on its own connection `spool`; `room` says why the disk has no room to record
        answers (spooldir.room_for_flush), None when it has."""
        from hamustro_cli.reports import FlushReport, Skip

        mine = self.destination
        report = FlushReport(dry_run=dry_run)
        if if_due:
            sync = spool.sync_state(mine)
            due = self._due(sync, spool.pending(mine))
            if not due.fires:
                report.skipped_because(Skip.NOT_DUE, f"not due: {due.reason}")
                if due.why is triggers.Why.HALTED:
                    report.halt(sync.halt_reason)
                return self._left(spool, report)
        lock = FlushLock(self.config.spool_dir)
        if not lock.acquire(wait=wait and not if_due):
            report.skipped_because(Skip.LOCKED, "another flush is running")
            return self._left(spool, report)
        try:
            # inside: a load that fails (memory) releases the lock, for a program that goes on
            from hamustro_cli.limits import require_network_room

            require_network_room()
            from hamustro_cli import sending

            if room is not None:
                # sending now could deliver a batch whose 200 cannot be recorded: the next flush
                # would send it again, and so on while the disk stays full
                from hamustro_cli.spool.trouble import SpoolProblem

                raise SpoolError(f"nothing was sent: {room}", SpoolProblem.NO_SPACE)
            sending.require_protobuf(spool, self.destination)
            if retry_rejected and not dry_run:
                # under the lock: a running flush must not see its batch's range gain events
                moved = spool.retry_rejected(self.destination)
                self._log(INFO, f"moved {log_count(moved, 'rejected event')} back to the queue")
            recovered = spool.release()  # a mark left by a flush that died
            if recovered:
                self._log(
                    INFO, f"{log_count(recovered, 'event')} left by an interrupted flush: pending again"
                )
            if not dry_run:
                report.claimed = spool.claim_unrecorded(self.destination)
                if report.claimed:
                    self._log(
                        INFO,
                        f"{log_count(report.claimed, 'event')} queued before destinations were recorded are "
                        f"now this config's (destination {self.destination})",
                    )
            if if_due and not self._due(spool.sync_state(mine), spool.pending(mine)).fires:
                report.skipped_because(Skip.NOT_DUE, "not due (another flush just ran)")
            elif dry_run:
                sending.dry_run(spool, self.config.values["max_batch_events"], report, self.destination)
            else:
                sending.Sender.from_config(
                    spool, self.config, report, self._log, progress, self.destination
                ).send_all()
                if report.sent:
                    with spool.relaxed_sync():  # freeing pages puts no event at risk
                        spool.reclaim()  # give the delivered events' disk back, in short steps
        finally:
            if not dry_run and self.config.values["disk_reserve"]:
                spooldir.keep_reserve(self.config.spool_dir)
            lock.release()
        return self._left(spool, report)

    def _left(self, spool: Spool, report: FlushReport) -> FlushReport:
        """Fill in what the spool still holds: this destination's live events (`pending`) and
        other destinations' events (`elsewhere`), which a flush with this config leaves alone."""
        mine = self.destination
        held = spool.by_destination()
        others = destination.others(held, mine)
        report.pending = sum(h.live for d, h in held.items() if d in (mine, None))
        report.elsewhere = sum(others.values())
        if others:
            self._log(INFO, "left " + destination.others_advice(others))
        return report

    # -- looking --------------------------------------------------------------------------

    def status(self, events: bool = False, limit: int | None = None) -> Status:
        with self._lock:
            return self._status(self._open(_every_job()), events, limit)

    def _status(self, spool: Spool, events: bool, limit: int | None) -> Status:
        counts = spool.counts()
        sessions = spool.session_rows()
        try:
            current = self.session.id
        except ConfigError:  # status works on a spool alone, without the session's settings
            current = None
        out_sessions: list[SessionCounts] = []
        for row_id, c in sorted(counts.items(), key=lambda kv: _oldest_first(kv[1].oldest)):
            row = sessions[row_id]
            out_sessions.append(
                {
                    "session": row.attributes.id,
                    "pending": c.pending,
                    "sending": c.sending,
                    "rejected": c.rejected,
                    "last_nr": row.last_nr,
                    "oldest_at": None if c.oldest_live is None else spool.at_of(c.oldest_live),
                    "product_version": row.attributes.product_version,
                    "system_version": row.attributes.system_version,
                    "current": row.attributes.id == current,
                }
            )
        from hamustro_cli.spool.rows import total

        totals = total(counts)  # the counts read above, not read again
        mine = self._known_destination()
        sync = spool.sync_state(mine)
        now = _now()
        due = self._due(sync, spool.pending(mine), now)
        # what can hold sending now, not what is stored: a backoff set under a clock that ran
        # ahead (or beyond every cap) is void, and is neither shown nor fails `status --check`
        _, backoff_until = triggers.trusted_times(sync, now)
        others, mine_held = self._destinations(spool)
        kept = spool.counters()
        result: Status = {
            "disabled": tracking_disabled(),  # HAMUSTRO_DISABLED: track, exec and flush do nothing
            "spool_dir": str(self.config.spool_dir),
            "pending": totals.pending,
            "sending": totals.sending,
            "rejected": totals.rejected,
            "sessions": out_sessions,
            "last_sync_time": sync.last_sync_time,
            "created_at": sync.created_at,
            "last_error": spool.last_error(mine),
            "due": due.fires,
            "due_reason": due.reason,
            "next_due_at": due.next_at,
            "backoff_until": backoff_until,
            "halted": sync.halt_reason if sync.halted else None,
            # live, not recorded: a full disk may leave no room to record anything
            "no_room": spooldir.room_problem(self.config.spool_dir),
            "batch_size": _learned_size(spool, mine, self.config.values["max_batch_events"]),
            "max_batch_events": self.config.values["max_batch_events"],
            "flush_running": flush_running(self.config.spool_dir),
            "queue_size": self.config.values["queue_size"],
            "queue_retention": self.config.values["queue_retention"],
            "oldest_pending_at": spool.oldest_pending_at(),
            "dropped": kept.dropped_total,  # events dropped undelivered, ever (caps.Reason)
            "dropped_by_reason": kept.dropped,
            "destination": mine,
            "destinations": mine_held,
            "other_destinations": others,
        }
        if events:
            result["events"] = list(spool.iter_events(limit))
        return result

    def _destinations(self, spool: Spool) -> tuple[dict[str, int] | None, list[DestinationCounts]]:
        """`status`'s view of destinations: {destination: events} a flush with this config
        leaves alone (None: it cannot be told), and the events held per destination (None:
        from before destinations were recorded)."""
        mine = self._known_destination()
        found = spool.by_destination()
        held = sorted(found.items(), key=lambda kv: (kv[0] is not None, kv[0] or ""))
        others = destination.others(found, mine) if mine is not None else None
        return others, [
            {
                "destination": d,
                "pending": h.live,
                "rejected": h.rejected,
                "current": mine is not None and d == mine,
            }
            for d, h in held
        ]

    def session_status(self) -> SessionStatus:
        """The current session's attributes, its last nr and how many of its events wait to be
        sent. Reads the spool only if there is one: this never creates it."""
        attrs = self.session
        last_nr, pending = 0, 0
        if os.path.exists(os.path.join(self.config.spool_dir, DB_NAME)):
            with self._lock:
                spool = self._open(_every_job())
                for row in spool.session_rows().values():
                    if row.attributes.id == attrs.id:
                        last_nr = row.last_nr
                        found = spool.counts().get(row.id)
                        pending = found.live if found else 0
        # the attributes under their protocol names, from their one home (Session.to_dict)
        return cast("SessionStatus", {**attrs.to_dict(), "last_nr": last_nr, "pending": pending})


def _every_job() -> type[Spool]:
    """The Spool with every job, for all but `track`: imported here, not at the top, to keep
    `track` light (see spool/__init__.py)."""
    from hamustro_cli.spool.full import Spool

    return Spool


def _oldest_first(oldest_live: int | None) -> float:
    return float("inf") if oldest_live is None else oldest_live


def _learned_size(spool: Spool, destination: str | None, limit: int) -> int | None:
    """The batch size flushes to `destination` start from, when a 413 or a timeout made it
    smaller than max_batch_events (sending.BatchSizer); None otherwise."""
    learned = spool.batch_size(destination)
    return learned.size if learned is not None and learned.size < limit else None


# -- fork -------------------------------------------------------------------------------------
# SQLite forbids using in a child a connection opened before fork(), and even a fresh one in the
# child is unsafe while the parent's is open: SQLite's record of the process's POSIX locks is
# copied into the child, which then believes it holds locks it does not, and a close in the
# parent that believes itself the last connection checkpoints and resets the WAL the children
# are writing (sqlite.org/howtocorrupt.html, 2.6). So every live tracker closes its connection
# before any fork (reopening it on next use), and holds its lock over the fork.

_live: weakref.WeakSet[ClientTracker] = weakref.WeakSet()


def _before_fork() -> None:
    for tracker in list(_live):
        tracker._before_fork()


def _after_fork_in_parent() -> None:
    for tracker in list(_live):
        tracker._after_fork_in_parent()


def _after_fork_in_child() -> None:
    for tracker in list(_live):
        tracker._after_fork_in_child()


os.register_at_fork(
    before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_after_fork_in_child
)
