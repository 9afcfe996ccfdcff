"""ClientTracker: the protocol's pseudo client, the one object the CLI and Python programs use.

Tracking only touches SQLite (plus a UDP socket for the route); whatever sends is imported
only when a flush runs (ARCHITECTURE.md, Keeping `track` light).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

from hamustro_cli import destination, netaddr, spooldir, triggers
from hamustro_cli.config import KEYS, Config, load_config
from hamustro_cli.errors import ConfigError, HamustroError, InputError, SpoolError
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
from hamustro_cli.session import Session
from hamustro_cli.spool import DB_NAME, Spool
from hamustro_cli.spooldir import FlushLock, flush_running

if TYPE_CHECKING:
    from hamustro_cli.reports import FlushReport


class Outcome:
    """What `track` did about sending (the `flush` field of its result and of `--json`)."""

    NOT_DUE = "not-due"
    STARTED = "started"  # a background flush was started
    RUNNING = "running"  # a flush is already running
    SENT = "sent"
    FAILED = "failed"
    OFF = "off"
    BACKOFF = "backoff"
    HALTED = "halted"


class TrackResult(NamedTuple):
    session: str
    nr: int
    at: int
    flush: str  # an Outcome
    first_nr: int = 0
    count: int = 1  # type: ignore[assignment]  # (shadows tuple.count; kept for the API)
    flush_detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        """One shape for one event and for many (`track --stdin`): `nr` and `at` are the last
        event's, `first_nr`..`last_nr` the range given to all of them."""
        return {
            "session": self.session,
            "queued": self.count,
            "first_nr": self.first_nr,
            "last_nr": self.nr,
            "nr": self.nr,
            "at": self.at,
            "flush": self.flush,
        }


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
            config = load_config(env={}, overrides=given, use_file=False).require()
        self.config = config
        self.log: Log = log or to_logging
        self._spool: Spool | None = None
        self._destination: str | None = None

    @classmethod
    def from_config(
        cls,
        path: str | os.PathLike[str] | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        log: Log | None = None,
    ) -> ClientTracker:
        """Settings resolved as the CLI does: arguments, HAMUSTRO_* environment, TOML file, defaults."""
        return cls(config=load_config(path, spool_dir).require(), log=log)

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

    @property
    def spool(self) -> Spool:
        if self._spool is None:
            self._spool = Spool(self.config.spool_dir)
        return self._spool

    def close(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None

    def __enter__(self) -> ClientTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _event_ip(self, override: str | None) -> str | None:
        """The `ip` attribute for a new event: --ip, the configured literal, the route, or none."""
        if override is not None:
            return check_ip(override, ipv6=self.config.values["send_ipv6"])
        mode = self.config.values["ip"]
        if mode == "off":
            return None
        if mode != "auto":
            return str(mode)
        host, port = netaddr.split_url(self.config.values["collector_url"])
        remote = host if netaddr.valid_ip(host) else self.spool.resolved_address(host)
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
        at: int | str | None = None,
        ip: str | None = None,
        flush: bool | None = None,
    ) -> TrackResult:
        """Queue one event durably, then apply the protocol's flush triggers."""
        new = NewEvent(
            event=check_event_name(event),
            at=event_time(_clock_now(), "--at") if at is None else check_at(at),
            user_id=check_user_id(user_id),
            ip=None,
            parameters=check_params(params),
            is_testing=bool(is_testing),
        )
        return self.track_many([new], ip=ip, flush=flush)

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
        if not events:
            raise InputError(f"no events on {'standard input' if source == 'stdin' else source}")
        return self._queue(events, flush)

    def _queue(self, events: list[NewEvent], flush: bool | None) -> TrackResult:
        session = self.session
        first, last = self.spool.enqueue(session, events, self.destination)
        # Committed. From here on nothing may raise: a caller (or a script around `track`) that
        # sees an error retries, and the event is queued twice.
        outcome, detail = self._after_queue(session.id, first, last, len(events), flush)
        return TrackResult(session.id, last, events[-1][1], outcome, first, len(events), detail)

    def _after_queue(
        self, session_id: str, first: int, last: int, count: int, flush: bool | None
    ) -> tuple[str, str | None]:
        """Everything that follows the commit (log line, triggers, inline flush or spawning the
        background one), guarded: whatever goes wrong becomes a failed flush with a detail."""
        try:
            self.log(INFO, f"queued {count} event(s) in session {session_id}, nr {first}..{last}")
            return self._after_track(flush)
        except Exception as exc:  # noqa: BLE001 - the guard itself; the event stays queued
            return Outcome.FAILED, self._describe(exc)

    def _describe(self, exc: BaseException) -> str:
        """An exception as one line of a warning: its type and text, the secret masked, capped."""
        try:
            text = f"{type(exc).__name__}: {exc}" if not isinstance(exc, HamustroError) else str(exc)
            secret = self.config.values.get("shared_secret_key")
            if secret:
                text = text.replace(str(secret), "***")
            text = " ".join(text.split())
            return text if len(text) <= 300 else text[:300] + "..."
        except Exception:  # noqa: BLE001 - an exception whose text cannot be had
            return type(exc).__name__

    def _after_track(self, flush: bool | None) -> tuple[str, str | None]:
        mode = self.config.values["flush"]
        due = self.due()
        if not due.fires:
            if due.why is triggers.Why.HALTED:
                return Outcome.HALTED, due.reason
            return (Outcome.BACKOFF if due.why is triggers.Why.BACKING_OFF else Outcome.NOT_DUE), None
        if flush is False or (flush is None and mode == "off"):
            return Outcome.OFF, None
        self.log(INFO, f"flush due: {due.reason}")
        # The event is queued: whatever goes wrong from here is a failed flush, never an error
        # of track (a script that retried would queue the event twice).
        try:
            if flush_running(self.config.spool_dir):
                return Outcome.RUNNING, None
            if mode == "inline":
                from hamustro_cli.reports import Skip

                report = self.flush(if_due=True)
                if report.skip is not None:
                    return (
                        Outcome.RUNNING if report.skip is Skip.LOCKED else Outcome.NOT_DUE
                    ), report.skipped
                if report.ok:
                    return Outcome.SENT, None
                return Outcome.FAILED, report.error or "not everything was delivered"
            from hamustro_cli.spawn import spawn_background_flush

            spawn_background_flush(self.config)
        except (HamustroError, OSError) as exc:
            return Outcome.FAILED, str(exc)
        return Outcome.STARTED, None

    # -- triggers -------------------------------------------------------------------------

    def due(self, at: int | None = None) -> triggers.Due:
        """Do the protocol's triggers fire now (or at `at`), and if not, when next?"""
        queue_size = self.config.values["queue_size"]
        return triggers.due(
            self.spool.sync_state(self._known_destination()),
            self.spool.pending(self._known_destination()),
            queue_size,
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
        """Send pending events, one session at a time, in batches; delete only after a 200."""
        from hamustro_cli.reports import FlushReport, Skip

        self.config.require()
        spool_dir = self.config.spool_dir
        # before the spool opens (its -shm alone takes 32 KiB): on a full disk, the ballast's room
        room = None if dry_run else spooldir.room_for_flush(spool_dir)
        spool = self.spool
        spool.check_writable("flushing")  # even a dry run takes the flush lock
        report = FlushReport(dry_run=dry_run)
        if if_due:
            due = self.due()
            if not due.fires:
                report.skipped_because(Skip.NOT_DUE, f"not due: {due.reason}")
                report.halted = due.why is triggers.Why.HALTED
                return self._left(report)
        lock = FlushLock(self.config.spool_dir)
        if not lock.acquire(wait=wait and not if_due):
            report.skipped_because(Skip.LOCKED, "another flush is running")
            return self._left(report)
        from hamustro_cli import sending

        try:
            if room is not None:
                # sending now could deliver a batch whose 200 cannot be recorded: the next flush
                # would send it again, and so on while the disk stays full
                from hamustro_cli.problems import SpoolProblem

                raise SpoolError(f"nothing was sent: {room}", SpoolProblem.NO_SPACE)
            sending.require_protobuf(spool, self.destination)
            if retry_rejected and not dry_run:
                # under the lock: a running flush must not see its batch's range gain events
                moved = spool.retry_rejected(self.destination)
                self.log(INFO, f"moved {moved} rejected event(s) back to the queue")
            recovered = spool.release()  # a mark left by a flush that died
            if recovered:
                self.log(INFO, f"{recovered} event(s) left by an interrupted flush are pending again")
            if not dry_run:
                report.claimed = spool.claim_unrecorded(self.destination)
                if report.claimed:
                    self.log(
                        INFO,
                        f"{report.claimed} event(s) queued before destinations were recorded are "
                        f"now this config's (destination {self.destination})",
                    )
            if if_due and not self.due().fires:
                report.skipped_because(Skip.NOT_DUE, "not due (another flush just ran)")
            elif dry_run:
                sending.dry_run(spool, self.config.values["max_batch_events"], report, self.destination)
            else:
                sending.Sender.from_config(
                    spool, self.config, report, self.log, progress, self.destination
                ).send_all()
                if report.sent:
                    with spool.relaxed_sync():  # freeing pages puts no event at risk
                        spool.reclaim()  # give the delivered events' disk back, in short steps
        finally:
            if not dry_run and self.config.values["disk_reserve"]:
                spooldir.keep_reserve(spool_dir)
            lock.release()
        return self._left(report)

    def _left(self, report: FlushReport) -> FlushReport:
        """Fill in what the spool still holds: this destination's live events (`pending`) and
        other destinations' events (`elsewhere`), which a flush with this config leaves alone."""
        mine = self.destination
        held = self.spool.by_destination()
        others = destination.others(held, mine)
        report.pending = sum(live for d, (live, _) in held.items() if d in (mine, None))
        report.elsewhere = sum(others.values())
        if others:
            self.log(INFO, "left " + destination.others_advice(others))
        return report

    # -- looking --------------------------------------------------------------------------

    def status(self, events: bool = False, limit: int | None = None) -> dict[str, Any]:
        spool = self.spool
        counts = spool.counts()
        sessions = spool.session_rows()
        try:
            current = self.session.id
        except ConfigError:  # status works on a spool alone, without the session's settings
            current = None
        out_sessions = []
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
        from hamustro_cli.records import total

        totals = total(counts)  # the counts read above, not read again
        mine = self._known_destination()
        sync = spool.sync_state(mine)
        now = _now()
        due = self.due(now)
        # what can hold sending now, not what is stored: a backoff set under a clock that ran
        # ahead (or beyond every cap) is void, and is neither shown nor fails `status --check`
        _, backoff_until = triggers.trusted_times(sync, now)
        result: dict[str, Any] = {
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
            "halted": sync.halted,
            # live, not recorded: a full disk may leave no room to record anything
            "no_room": spooldir.room_problem(self.config.spool_dir),
            "batch_size": _learned_size(spool, mine, self.config.values["max_batch_events"]),
            "max_batch_events": self.config.values["max_batch_events"],
            "flush_running": flush_running(self.config.spool_dir),
            "queue_size": self.config.values["queue_size"],
            "queue_retention": self.config.values["queue_retention"],
        }
        result.update(self._destinations(spool))
        if events:
            result["events"] = list(spool.iter_events(limit))
        return result

    def _destinations(self, spool: Spool) -> dict[str, Any]:
        """`status`'s view of destinations: this config's fingerprint (None when the settings
        lack what names it), the events held per destination (None: from before destinations
        were recorded), and {destination: events} a flush with this config leaves alone (None:
        it cannot be told)."""
        mine = self._known_destination()
        found = spool.by_destination()
        held = sorted(found.items(), key=lambda kv: (kv[0] is not None, kv[0] or ""))
        others = destination.others(found, mine) if mine is not None else None
        return {
            "destination": mine,
            "destinations": [
                {
                    "destination": d,
                    "pending": live,
                    "rejected": rejected,
                    "current": mine is not None and d == mine,
                }
                for d, (live, rejected) in held
            ],
            "other_destinations": others,
        }

    def session_status(self) -> dict[str, Any]:
        """The current session's attributes, its last nr and how many of its events wait to be
        sent. Reads the spool only if there is one: this never creates it."""
        attrs = self.session
        data = attrs.to_dict()
        last_nr, pending = 0, 0
        if os.path.exists(os.path.join(self.config.spool_dir, DB_NAME)):
            for row in self.spool.session_rows().values():
                if row.attributes.id == attrs.id:
                    last_nr = row.last_nr
                    found = self.spool.counts().get(row.id)
                    pending = found.live if found else 0
        data.update(last_nr=last_nr, pending=pending)
        return data


def _oldest_first(oldest_live: int | None) -> float:
    return float("inf") if oldest_live is None else oldest_live


def _learned_size(spool: Spool, destination: str | None, limit: int) -> int | None:
    """The batch size flushes to `destination` start from, when a 413 or a timeout made it
    smaller than max_batch_events (sending.BatchSizer); None otherwise."""
    learned = spool.batch_size(destination)
    return learned.size if learned is not None and learned.size < limit else None
