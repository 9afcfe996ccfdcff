"""ClientTracker: the protocol's pseudo client, over the durable spool.

`track_event` only touches SQLite (plus a UDP socket for the route); everything that sends
(requests, protobuf) is imported inside `flush`, so tracking stays close to Python's
start-up cost.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

from hamustro_cli import netaddr
from hamustro_cli.config import KEYS, SESSION_KEYS, Config, load_config
from hamustro_cli.errors import ConfigError, HamustroError, InputError, SpoolError
from hamustro_cli.session import Session
from hamustro_cli.spool import LOCK_NAME, LOG_NAME, PENDING, REJECTED, SENDING, NewEvent, Spool, now

MAX_EVENT_BYTES = 1024
MAX_PARAMS_BYTES = 64 * 1024
UINT32_MAX = 2**32 - 1
AT_MAX = 2**63 - 1  # `at` is a uint64 on the wire, but the spool stores it as SQLite's signed INTEGER
LOG_LIMIT = 1024 * 1024  # flush.log is rotated to flush.log.1 past this size

Log = Callable[[int, str], None]


def _no_log(level: int, message: str) -> None:
    pass


# -- validating input ---------------------------------------------------------------------


def check_event_name(event: Any, where: str = "event name") -> str:
    if not isinstance(event, str):
        raise InputError(f"{where}: expected a string, got {type(event).__name__}")
    if not event.strip():
        raise InputError(f"{where}: must not be empty")
    if len(event.encode("utf-8", "surrogatepass")) > MAX_EVENT_BYTES:
        raise InputError(f"{where}: longer than {MAX_EVENT_BYTES} bytes")
    _check_utf8(event, where)
    return event


def _check_utf8(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InputError(f"{where}: not valid UTF-8 text") from None


def check_user_id(value: Any, where: str = "--user-id") -> int | None:
    if value is None:
        return None
    if isinstance(value, str):
        text = value.strip()
        digits = text[1:] if text[:1] in "+-" else text
        if not (digits.isascii() and digits.isdigit()):
            raise InputError(f"{where}: expected a whole number from 0 to {UINT32_MAX}, got {value!r}")
        value = int(text)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: expected a whole number from 0 to {UINT32_MAX}, got {value!r}")
    if not 0 <= value <= UINT32_MAX:
        raise InputError(f"{where}: {value} is outside 0..{UINT32_MAX} (user_id is a uint32)")
    return value


def check_params(value: Any, where: str = "--params") -> str | None:
    """A string goes as is; a mapping becomes a compact JSON object string."""
    if value is None:
        return None
    if type(value) is dict or isinstance(value, Mapping):
        import json

        value = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=False)
    if not isinstance(value, str):
        raise InputError(f"{where}: expected a string or a JSON object, got {type(value).__name__}")
    _check_utf8(value, where)
    size = len(value.encode("utf-8"))
    if size > MAX_PARAMS_BYTES:
        raise InputError(f"{where}: {size} bytes, more than the limit of {MAX_PARAMS_BYTES} bytes")
    return value


def params_from_pairs(pairs: Iterable[str], where: str = "--param") -> str:
    obj: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise InputError(f"{where} {pair!r}: expected KEY=VALUE with a non-empty KEY")
        obj[key] = value
    return check_params(obj, where)  # type: ignore[return-value]


def check_at(value: Any, where: str = "--at") -> int:
    """Epoch seconds (UTC), from an integer or an ISO 8601 time (naive means UTC)."""
    if isinstance(value, str):
        text = value.strip()
        if text.isascii() and text.isdigit():
            value = int(text)
        else:
            from datetime import datetime, timezone

            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
            except ValueError:
                raise InputError(
                    f"{where}: expected epoch seconds or an ISO 8601 time "
                    f"(2026-11-28T12:00:00Z), got {value!r}"
                ) from None
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=timezone.utc)
            value = int(parsed.timestamp())
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: expected epoch seconds (a whole number), got {value!r}")
    if not 0 <= value <= AT_MAX:
        raise InputError(f"{where}: {value} is not a valid epoch time (0..2^63-1)")
    return value


def check_ip(value: str, where: str = "--ip") -> str:
    if not netaddr.valid_ip(value):
        raise InputError(f"{where}: {value!r} is not an IPv4 or IPv6 address")
    return value


STDIN_KEYS = frozenset({"event", "user_id", "params", "is_testing", "at"})


def parse_lines(
    lines: Iterable[str], default_at: int, ip: str | None, source: str = "stdin"
) -> list[NewEvent]:
    """JSON lines into events; all or nothing: the first bad line raises with its number.

    A line of the common shape (ASCII text, values in range) takes a fast path that checks the
    same rules with cheap tests; anything else goes through `_parse_line`, which checks
    thoroughly and says exactly what is wrong. The rows are plain tuples laid out as NewEvent."""
    import json

    scan = json.JSONDecoder().scan_once  # the C scanner, without json.loads' two Python frames
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    events: list[Any] = []
    append = events.append
    keys = STDIN_KEYS
    for number, line in enumerate(lines, 1):
        try:
            obj, end = scan(line, 0)
        except (StopIteration, ValueError):
            obj = None
        if type(obj) is dict and obj.keys() <= keys and (end == len(line) or not line[end:].strip()):
            event = obj.get("event")
            user_id = obj.get("user_id")
            testing = obj.get("is_testing", False)
            at = obj.get("at", default_at)
            params = obj.get("params")
            if type(params) is dict:
                params = encode(params)
            if (
                type(event) is str
                and event.isascii()
                and 0 < len(event) <= MAX_EVENT_BYTES
                and not event.isspace()
                and (user_id is None or (type(user_id) is int and 0 <= user_id <= UINT32_MAX))
                and (testing is False or testing is True)
                and type(at) is int
                and 0 <= at <= AT_MAX
                and (
                    params is None
                    or (type(params) is str and params.isascii() and len(params) <= MAX_PARAMS_BYTES)
                )
            ):
                append((event, at, user_id, ip, params, testing))
                continue
        if not line.strip():
            continue
        append(_parse_line(line, f"{source} line {number}", default_at, ip))
    return events


def _parse_line(line: str, where: str, default_at: int, ip: str | None) -> NewEvent:
    import json

    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise InputError(f"{where}: not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise InputError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if obj.keys() - STDIN_KEYS:
        unknown = ", ".join(sorted(obj.keys() - STDIN_KEYS))
        raise InputError(f"{where}: unknown key {unknown} (allowed: {', '.join(sorted(STDIN_KEYS))})")
    if "event" not in obj:
        raise InputError(f"{where}: missing key 'event'")
    event = check_event_name(obj["event"], f"{where}: event")
    testing = obj.get("is_testing", False)
    if not isinstance(testing, bool):
        raise InputError(f"{where}: is_testing: expected true or false, got {testing!r}")
    user_id = obj.get("user_id")
    if isinstance(user_id, str):
        raise InputError(
            f"{where}: user_id: expected a JSON integer from 0 to {UINT32_MAX}, got the string {user_id!r}"
        )
    user_id = check_user_id(user_id, f"{where}: user_id")
    params = check_params(obj.get("params"), f"{where}: params")
    at = obj.get("at", default_at)
    if isinstance(at, str):
        raise InputError(f"{where}: at: expected epoch seconds (a whole number), got {at!r}")
    at = check_at(at, f"{where}: at")
    return NewEvent(event, at, user_id, ip, params, testing)


# -- results --------------------------------------------------------------------------------


# Value types are NamedTuples and a plain class, not dataclasses: see spool.NewEvent.
class TrackResult(NamedTuple):
    session: str
    nr: int
    at: int
    flush: str  # not-due, started, running, sent, failed, off, backoff, halted
    first_nr: int = 0
    count: int = 1
    flush_detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"session": self.session, "nr": self.nr, "at": self.at, "flush": self.flush}


class FlushReport:
    """What one flush did; filled in as it goes."""

    def __init__(self, dry_run: bool = False):
        self.sent = 0
        self.failed = 0
        self.rejected = 0
        self.pending = 0
        self.batches: list[dict[str, Any]] = []
        self.skipped: str | None = None  # why nothing was attempted
        self.error: str | None = None
        self.halted = False
        self.dry_run = dry_run

    @property
    def ok(self) -> bool:
        """Everything this flush took up was delivered. (Events tracked while it finished may
        be pending: they are not undelivered, just new.)"""
        return self.failed == 0 and self.rejected == 0 and self.error is None

    def to_json(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "failed": self.failed,
            "rejected": self.rejected,
            "pending": self.pending,
            "batches": self.batches,
            "skipped": self.skipped,
            "error": self.error,
            "dry_run": self.dry_run,
        }


class Due(NamedTuple):
    due: bool
    reason: str
    next_due_at: int | None


# -- the tracker ----------------------------------------------------------------------------


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
        self.log: Log = log or _no_log
        self._spool: Spool | None = None

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
        cfg = self.config.values
        self.config.require(SESSION_KEYS)
        return Session.from_settings(
            cfg["device_id"],
            cfg["client_id"],
            cfg["system_version"],
            cfg["product_version"],
            cfg["system"],
            cfg["product_git_hash"],
        )

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
            return check_ip(override)
        mode = self.config.values["ip"]
        if mode == "off":
            return None
        if mode != "auto":
            return mode
        host, port = netaddr.split_url(self.config.values["collector_url"])
        remote = host if netaddr.valid_ip(host) else self.spool.get_meta(f"resolved:{host}")
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
            at=now() if at is None else check_at(at),
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
        """Queue JSON lines (see parse_lines) in one transaction: all or nothing."""
        events = parse_lines(lines, now(), self._event_ip(ip), source)
        if not events:
            raise InputError(f"no events on {'standard input' if source == 'stdin' else source}")
        return self._queue(events, flush)

    def _queue(self, events: list[Any], flush: bool | None) -> TrackResult:
        session = self.session
        first, last = self.spool.enqueue(session, events)
        self.log(1, f"queued {len(events)} event(s) in session {session.session}, nr {first}..{last}")
        outcome, detail = self._after_track(flush)
        return TrackResult(session.session, last, events[-1][1], outcome, first, len(events), detail)

    def _after_track(self, flush: bool | None) -> tuple[str, str | None]:
        mode = self.config.values["flush"]
        due = self.due()
        if not due.due:
            if due.reason.startswith("halted"):
                return "halted", due.reason
            return ("backoff" if due.reason.startswith("backing off") else "not-due"), None
        if flush is False or (flush is None and mode == "off"):
            return "off", None
        self.log(1, f"flush due: {due.reason}")
        # The event is queued: whatever goes wrong from here is a failed flush, never an error
        # of track (a script that retried would queue the event twice).
        try:
            if flush_running(self.config.spool_dir):
                return "running", None
            if mode == "inline":
                report = self.flush(if_due=True)
                if report.skipped:
                    return ("not-due" if report.skipped.startswith("not due") else "running"), report.skipped
                return (
                    ("sent", None)
                    if report.ok
                    else ("failed", report.error or "not everything was delivered")
                )
            spawn_background_flush(self.config)
        except (HamustroError, OSError) as exc:
            return "failed", str(exc)
        return "started", None

    # -- triggers -------------------------------------------------------------------------

    def due(self, at: int | None = None) -> Due:
        """Do the protocol's triggers fire now, and if not, when next?"""
        spool = self.spool
        cfg = self.config.values
        t = now() if at is None else at
        metas = spool.get_metas("last_sync_time", "created_at", "backoff_until", "halted")
        last_sync = int(metas.get("last_sync_time") or metas.get("created_at") or 0)
        if metas.get("halted"):
            return Due(False, f"halted: {metas['halted']} (run 'hamustro flush' after fixing it)", None)
        if not spool.pending_at_least(1):
            return Due(False, "nothing pending", None)
        retention_at = last_sync + cfg["queue_retention"] * 60
        backoff_until = int(metas.get("backoff_until") or 0)
        if backoff_until > t:
            return Due(
                False,
                f"backing off after failures until {_clock(backoff_until)}",
                max(backoff_until, retention_at)
                if not spool.pending_at_least(cfg["queue_size"])
                else backoff_until,
            )
        if spool.pending_at_least(cfg["queue_size"]):
            return Due(True, f"queue_size reached ({cfg['queue_size']} or more pending)", t)
        if t >= retention_at:
            return Due(True, f"last sync older than queue_retention ({cfg['queue_retention']} min)", t)
        return Due(
            False,
            f"below queue_size ({cfg['queue_size']}) and last sync within "
            f"queue_retention ({cfg['queue_retention']} min)",
            retention_at,
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
        self.config.require()
        spool = self.spool
        report = FlushReport(dry_run=dry_run)
        if if_due:
            due = self.due()
            if not due.due:
                report.skipped = f"not due: {due.reason}"
                report.pending = self._pending_count()
                return report
        lock = FlushLock(self.config.spool_dir)
        if not lock.acquire(wait=wait and not if_due):
            report.skipped = "another flush is running"
            report.pending = self._pending_count()
            return report
        from hamustro_cli import sending  # only now: it brings requests and protobuf

        try:
            sending.require_protobuf(self)
            if retry_rejected and not dry_run:
                # under the lock: a running flush must not see its batch's range gain events
                moved = spool.retry_rejected()
                self.log(1, f"moved {moved} rejected event(s) back to the queue")
            recovered = spool.release()  # a mark left by a flush that died
            if recovered:
                self.log(1, f"{recovered} event(s) left by an interrupted flush are pending again")
            if if_due and not self.due().due:
                report.skipped = "not due (another flush just ran)"
            elif dry_run:
                sending.dry_run(self, report)
            else:
                sending.send_all(self, report, progress)
        finally:
            lock.release()
        report.pending = self._pending_count()
        return report

    def _pending_count(self) -> int:
        return sum(
            c.get(PENDING, (0, 0))[0] + c.get(SENDING, (0, 0))[0] for c in self.spool.counts().values()
        )

    def status(self, events: bool = False, limit: int | None = None) -> dict[str, Any]:
        spool = self.spool
        counts = spool.counts()
        sessions = spool.session_rows()
        try:
            current = self.session.session
        except ConfigError:  # status works on a spool alone, without the session's settings
            current = None
        out_sessions = []
        totals = {PENDING: 0, SENDING: 0, REJECTED: 0}
        for row_id, by_state in sorted(counts.items(), key=lambda kv: min(v[1] for v in kv[1].values())):
            row = sessions[row_id]
            entry = {
                "session": row.attributes.session,
                "pending": by_state.get(PENDING, (0, 0))[0],
                "sending": by_state.get(SENDING, (0, 0))[0],
                "rejected": by_state.get(REJECTED, (0, 0))[0],
                "last_nr": row.last_nr,
                "oldest_at": None,
                "product_version": row.attributes.product_version,
                "system_version": row.attributes.system_version,
                "current": row.attributes.session == current,
            }
            live = [by_state[s][1] for s in (PENDING, SENDING) if s in by_state]
            if live:
                entry["oldest_at"] = spool.at_of(min(live))
            for s in totals:
                totals[s] += by_state.get(s, (0, 0))[0]
            out_sessions.append(entry)
        metas = spool.get_metas("last_sync_time", "created_at", "backoff_until", "halted", "failures")
        due = self.due()
        result: dict[str, Any] = {
            "spool_dir": str(self.config.spool_dir),
            "pending": totals[PENDING],
            "sending": totals[SENDING],
            "rejected": totals[REJECTED],
            "sessions": out_sessions,
            "last_sync_time": int(metas["last_sync_time"]) if "last_sync_time" in metas else None,
            "created_at": int(metas.get("created_at") or 0),
            "last_error": spool.last_error(),
            "due": due.due,
            "due_reason": due.reason,
            "next_due_at": due.next_due_at,
            "backoff_until": int(metas["backoff_until"]) if metas.get("backoff_until") else None,
            "halted": metas.get("halted"),
            "flush_running": flush_running(self.config.spool_dir),
            "queue_size": self.config.values["queue_size"],
            "queue_retention": self.config.values["queue_retention"],
        }
        if events:
            result["events"] = list(spool.iter_events(limit))
        return result


def _clock(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


# -- one flush at a time ----------------------------------------------------------------------


class FlushLock:
    """An flock on flush.lock: released by the kernel when the holder dies, so a crashed flush
    never blocks the next one (which then puts the dead one's claimed events back)."""

    def __init__(self, spool_dir: str | os.PathLike[str]):
        self.path = os.path.join(spool_dir, LOCK_NAME)
        self.fd: int | None = None

    def acquire(self, wait: bool) -> bool:
        import fcntl

        try:
            self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            raise SpoolError(f"cannot open the flush lock {self.path}: {exc.strerror}") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(self.fd)
            self.fd = None
            return False
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def flush_running(spool_dir: str | os.PathLike[str]) -> bool:
    lock = FlushLock(spool_dir)
    if not os.path.exists(lock.path):
        return False
    try:
        if lock.acquire(wait=False):
            lock.release()
            return False
    except SpoolError:
        return False
    return True


def spawn_background_flush(config: Config) -> None:
    """Start a detached `flush --if-due` that holds none of the caller's terminal or pipes.

    The resolved settings go to the child in HAMUSTRO_* variables (never in argv, where other
    users could read the secret), so it flushes with exactly this configuration."""
    import subprocess

    # Only the resolved settings: HAMUSTRO_* variables the caller's config ignored (the Python
    # API reads none) must not change what the child does.
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAMUSTRO_")}
    for key, value in config.values.items():
        if config.sources.get(key) == "default" or value is None:
            continue
        env["HAMUSTRO_" + key.upper()] = (
            ("true" if value else "false") if isinstance(value, bool) else str(value)
        )
    env["HAMUSTRO_SPOOL_DIR"] = config.spool_dir  # absolute (load_config), as the child runs in /
    env["HAMUSTRO_CONFIG"] = os.devnull  # everything it needs is in the environment
    log_path = os.path.join(config.spool_dir, LOG_NAME)
    try:
        if os.stat(log_path).st_size > LOG_LIMIT:
            os.replace(log_path, log_path + ".1")
    except OSError:
        pass
    fd = os.open(log_path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    try:
        subprocess.Popen(
            [sys.executable, "-m", "hamustro_cli.background"],
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            env=env,
            close_fds=True,
            start_new_session=True,
            cwd="/",
        )
    finally:
        os.close(fd)
