"""`hamustro doctor`: check, in order, what a working client needs, and say what to fix.

The checks are the config (and where each value came from), the spool, the collector's
`/api/health`, and the credentials end to end: a signed Collection with no payloads, which
the collector answers 204 when secret and session are right, 405 when the secret is wrong and
400 when the session or body is wrong. No event is ever sent. A check that needs an earlier
one that failed is reported as skipped, so the first failure is the one to fix.
"""

from __future__ import annotations

import json
import os
import stat
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from hamustro_cli import answers
from hamustro_cli.answers import Kind
from hamustro_cli.config import KEYS, REQUIRED, SECRET_KEY, Config, load_config, secret_state
from hamustro_cli.disabled import VARIABLE, disabled_note, tracking_disabled
from hamustro_cli.errors import ConfigError, DependencyError, SpoolError
from hamustro_cli.log import DEBUG, INFO, Log, count, no_log
from hamustro_cli.session import Session
from hamustro_cli.spool.trouble import SpoolProblem
from hamustro_cli.spooldir import DB_NAME, FILES, file_kind, room_problem

HEALTH_PATH = "/api/health"


class CheckState(str, Enum):
    OK = "ok"
    WARN = "warn"  # passed, with advice
    FAIL = "fail"
    SKIPPED = "skipped"  # needs an earlier check that failed


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    verdict: str
    hint: str | None = None  # what to do; on a passing check, a warning worth acting on
    details: dict[str, Any] = field(default_factory=dict)
    skipped: bool = False

    @property
    def state(self) -> CheckState:
        if self.ok:
            return CheckState.WARN if self.hint else CheckState.OK
        return CheckState.SKIPPED if self.skipped else CheckState.FAIL


def _skipped(name: str, because: str) -> Check:
    return Check(name, False, because, skipped=True)


# -- config -------------------------------------------------------------------------------------


def _shown(key: str, value: Any) -> Any:
    """A JSON-safe value; the secret only as set/unset, never its value."""
    if key == SECRET_KEY:
        return secret_state(value)
    return value


def check_config(
    config_path: str | os.PathLike[str] | None,
    spool_dir: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
) -> tuple[Check, Config | None]:
    """The config check, and the Config when it could be loaded (even with required keys
    missing: the spool and the collector can still be checked then)."""
    try:
        cfg = load_config(config_path, spool_dir, env)
    except ConfigError as exc:
        return Check(
            "config", False, str(exc), "fix the value named above, then run 'hamustro doctor' again"
        ), None

    keys = {
        name: {
            "value": _shown(name, cfg.values.get(name)),
            "source": cfg.origins.get(name, "default"),
            "from": cfg.sources.get(name, "default"),
        }
        for name in KEYS
    }
    tally: dict[str, int] = {}
    for info in keys.values():
        tally[info["source"]] = tally.get(info["source"], 0) + 1
    order = ("flag", "environment", "file", "default")
    summary = ", ".join(
        f"{tally[k]} {'default' if k == 'default' else 'from ' + k}" for k in order if k in tally
    )
    shown = os.path.abspath(cfg.config_path)
    where = shown if cfg.config_found else f"{shown} (not found; not needed)"  # when all is set
    details = {
        "path": shown,
        "found": cfg.config_found,
        "keys": keys,
        "warnings": list(cfg.warnings),
    }
    try:
        cfg.require(REQUIRED)
    except ConfigError as exc:
        return Check(
            "config",
            False,
            f"{shown}: {exc}" if cfg.config_found else str(exc),  # the error names the missing file
            "set the missing keys, then run 'hamustro doctor' again",
            details,
        ), cfg
    from hamustro_cli.transport import client_cert

    try:
        client_cert(cfg.values, cfg.sources)
    except ConfigError as exc:
        return Check("config", False, f"{where}: {exc}", "fix the value named above", details), cfg
    secret = "secret set" if cfg.values.get(SECRET_KEY) else "secret unset"
    if cfg.values.get("client_cert"):
        secret += "; client certificate loads"
    verdict = f"{where} ({summary}; {secret})"
    hint = None
    warned = [*cfg.warnings, *_key_file_warnings(cfg)]
    if warned:
        hint = "; ".join(warned)
    return Check("config", True, verdict, hint, details), cfg


def _key_file_warnings(cfg: Config) -> list[str]:
    """The client's private key (client_key, else client_cert, which then holds it) readable
    by other users: as ssh says of a private key, though sending still works."""
    path = cfg.values.get("client_key") or cfg.values.get("client_cert")
    try:
        private = path is None or not os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH)
    except OSError:  # gone since the config loaded: the pair did load, sending will say
        private = True
    if private:
        return []
    return [f"{path} holds the client's private key and is readable by other users; run: chmod 600 {path}"]


# -- spool --------------------------------------------------------------------------------------


def check_spool(directory: str, destination: str | None = None) -> Check:
    """Exists or can be created, writable, private (0700 / 0600), its schema and its counts,
    and whether it holds events for destinations other than `destination` (this config's).

    Opening the spool does what every command does when it opens it: it creates the directory
    0700 if missing, tightens a directory we own, and applies pending schema migrations.
    """
    from hamustro_cli.spool import SCHEMA_VERSION, State
    from hamustro_cli.spool.full import Spool
    from hamustro_cli.spool.rows import total as spool_totals

    directory = os.path.abspath(directory)
    details: dict[str, Any] = {"path": directory, "existed": os.path.exists(directory)}
    mode_before = None
    if os.path.isdir(directory) and not os.path.islink(directory):
        mode_before = stat.S_IMODE(os.stat(directory).st_mode)
    try:
        spool = Spool(directory)
    except SpoolError as exc:
        return Check("spool", False, str(exc), _spool_hint(exc, directory), details)
    try:
        problems = spool.integrity_problems()
        if problems:
            details["integrity"] = problems
            db_path = os.path.join(directory, DB_NAME)
            return Check(
                "spool",
                False,
                f"{db_path} is corrupt: SQLite's integrity check found {'; '.join(problems)}",
                f"stop hamustro, move {db_path} (and its -wal, -shm) aside, and recover what it holds "
                f"with 'sqlite3 {db_path} .recover'; a new spool is created on the next track",
                details,
            )
        version = spool.schema_version
        # The counters `status` and the triggers read must agree with the rows; if they do not
        # (a bug), recount them in one write transaction, which no change of state can interleave.
        wrong = spool.check_counts()
        if wrong:
            spool.recount()
        counts = spool.counts()
        sync = spool.sync_state(destination)
        held = spool.by_destination()
        kept = spool.counters()
        read_only = spool.read_only
    except SpoolError as exc:
        return Check("spool", False, str(exc), _spool_hint(exc, directory), details)
    finally:
        spool.close()
    all_counts = spool_totals(counts)
    totals = {"pending": all_counts.pending, "sending": all_counts.sending, "rejected": all_counts.rejected}
    dir_mode = stat.S_IMODE(os.stat(directory).st_mode)
    loose = {}
    odd = {}  # names taken by a link, a FIFO, a directory...: the spool never follows or opens them
    for name in FILES:
        path = os.path.join(directory, name)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            continue
        if not stat.S_ISREG(st.st_mode):
            odd[name] = file_kind(st.st_mode)
        elif stat.S_IMODE(st.st_mode) & 0o077:
            loose[name] = f"{stat.S_IMODE(st.st_mode):04o}"
    unwritable = [
        name
        for name in FILES[:3]
        if os.path.exists(os.path.join(directory, name))
        and not os.access(os.path.join(directory, name), os.W_OK)
    ]
    details.update(
        mode=f"{dir_mode:04o}",
        schema_version=version,
        schema_expected=SCHEMA_VERSION,
        loose_files=loose,
        not_regular_files=odd,
        sessions=len(counts),
        **totals,
        dropped=kept.dropped_total,
        dropped_by_reason=kept.dropped,
    )
    if wrong:
        details["recounted"] = [
            {"attr_id": w.attr_id, "state": State(w.state).name.lower(), "counted": w.counted, "kept": w.kept}
            for w in wrong
        ]
    if mode_before is not None and mode_before != dir_mode:
        details["mode_was"] = f"{mode_before:04o}"

    if read_only is not None:
        details["read_only"] = read_only
        return Check(
            "spool",
            False,
            f"{directory} can be read but not written ({read_only}): {totals['pending']} pending, "
            f"{totals['rejected']} rejected; track and flush cannot work",
            f"make {directory} writable by the user running hamustro (remount it read-write)",
            details,
        )
    if unwritable:
        names = ", ".join(os.path.join(directory, n) for n in unwritable)
        return Check(
            "spool",
            False,
            f"{names} not writable by this user",
            f"chown/chmod them to the user running hamustro (chmod 600 {names})",
            details,
        )
    if dir_mode & 0o077:
        return Check(
            "spool",
            False,
            f"{directory} is {dir_mode:04o}: other users can read queued events",
            f"chmod 700 {directory}",
            details,
        )
    files = _files_problem(directory, odd, loose)
    if files is not None:
        return Check("spool", False, *files, details)

    no_room = room_problem(directory)
    if no_room:
        details["no_room"] = no_room
        return Check(
            "spool",
            False,
            f"no room for a flush: {no_room}",
            "a flush sends nothing until there is room (so that it can record what the collector answers)",
            details,
        )
    created = "" if details["existed"] else "created, "
    tightened = f"tightened from {details['mode_was']}, " if "mode_was" in details else ""
    verdict = (
        f"{directory} ({created}{tightened}{dir_mode:04o}, schema {version}; "
        f"{totals['pending']} pending, {totals['sending']} sending, {totals['rejected']} rejected)"
    )
    notes = []
    if wrong:
        notes.append(
            f"{count(len(wrong), 'event counter')} disagreed with the queued events and were recounted "
            "(nothing to do; please report it, with 'hamustro doctor --json')"
        )
    if sync.halted:
        details["halted"] = sync.halt_reason
        notes.append(
            f"sending is stopped: {sync.halt_reason}; once that is fixed and the credentials check "
            "passes, run 'hamustro flush' to resume"
        )
    from hamustro_cli.triggers import trusted_times

    _, backoff = trusted_times(sync, int(time.time()))
    if backoff is not None:
        details["backoff_until"] = backoff
        notes.append(
            f"backing off after failed sends for {int(backoff - time.time())} s more "
            "('hamustro flush' tries at once)"
        )
    if kept.dropped:
        from hamustro_cli.caps import dropped_text

        notes.append(f"{dropped_text(kept.dropped)} (the spool's bounds: spool_max_events, spool_max_mb, ")
        notes[-1] += "spool_keep_free_mb and when_full in 'hamustro config show')"
    if totals["rejected"]:
        notes.append(
            "the collector refused some events; see 'hamustro status --events', "
            "resend with 'hamustro flush --retry-rejected'"
        )
    if destination is not None:
        from hamustro_cli.destination import others, others_advice

        details["destination"] = destination
        elsewhere = others(held, destination)
        if elsewhere:
            details["other_destinations"] = elsewhere
            notes.append(others_advice(elsewhere))
    hint = "; ".join(notes) or None
    return Check("spool", True, verdict, hint, details)


def _spool_hint(exc: SpoolError, directory: str) -> str:
    if exc.fix:
        return exc.fix
    if exc.kind is SpoolProblem.NEWER_SCHEMA:
        return "upgrade hamustro, or use another --spool-dir"
    if exc.kind is SpoolProblem.NO_SPACE:
        return "free room on the spool's file system (the error says where, and how much)"
    if exc.kind is SpoolProblem.CORRUPT:
        return f"move {os.path.join(directory, DB_NAME)} aside; a new spool is created on the next track"
    if exc.kind is SpoolProblem.NOT_A_DIRECTORY:
        return "set spool_dir (or --spool-dir, HAMUSTRO_SPOOL_DIR) to a directory"
    return f"make {directory} a directory this user can write, or set spool_dir elsewhere"


# -- the collector ------------------------------------------------------------------------------


def check_health(cfg: Config, log: Log = no_log) -> Check:
    from hamustro_cli.transport import (
        PROXY_FIX,
        REQUEST_FAILED,
        client_cert,
        exchange,
        http_session,
        proxy_for,
        proxy_problem,
        request_problem,
        shown,
        verify_option,
    )

    try:
        cert = client_cert(cfg.values, cfg.sources)
    except ConfigError:  # the config check says what is wrong with them
        return _skipped("collector", "the client certificate does not load (see config)")
    url = cfg.values["collector_url"].rstrip("/") + HEALTH_PATH
    proxy = proxy_for(url)  # without its credentials
    details: dict[str, Any] = {"url": url, "status": None, "proxy": proxy}
    bad_proxy = proxy_problem(url)
    if bad_proxy is not None:
        return Check("collector", False, bad_proxy, PROXY_FIX, details)
    via = f" through proxy {proxy}" if proxy else ""
    log(INFO, f"GET {url}{via}")
    started = time.monotonic()
    try:
        with warnings.catch_warnings():
            # tls_verify = false is already reported (and warned about) by the config check.
            warnings.simplefilter("ignore")
            with http_session() as http:  # the whole exchange within timeout, as a flush's
                resp = exchange(
                    http,
                    "GET",
                    url,
                    cfg.values["timeout"],
                    verify=verify_option(cfg.values),
                    cert=cert,
                )
    except REQUEST_FAILED as exc:
        problem = request_problem(exc, url, cfg.values["timeout"])
        return Check("collector", False, problem.detail, problem.meaning.fix, details)
    elapsed = time.monotonic() - started
    status = resp.status
    details.update(status=status, elapsed_ms=round(elapsed * 1000, 1))
    log(DEBUG, f"answer {status}")
    try:
        up = json.loads(resp.body).get("up") is True if status == 200 else False
    except (ValueError, AttributeError):
        up = False
    if status == 200 and up:
        return Check("collector", True, f"{url} is up ({details['elapsed_ms']:g} ms){via}", None, details)
    if status == 200:
        return Check(
            "collector",
            False,
            f'{url} answered 200 but not {{"up":true}}',
            "collector_url may point at something other than a Hamustro collector",
            details,
        )
    said = answers.meaning(status, url, shown(resp.header("Location") or ""))
    if status == 404:  # the health path is ours: the base URL is what is wrong
        said = said._replace(fix="collector_url should be the collector's base URL, without /api/...")
    return Check(
        "collector",
        False,
        f"{url}{via}: {said.what}",
        said.fix or "the collector is not healthy; try again later or ask its operator",
        details,
    )


def check_credentials(cfg: Config, session: Session | None = None, log: Log = no_log) -> Check:
    """POST a signed Collection with no payloads. `session` defaults to the configured one."""
    from hamustro_cli import wire
    from hamustro_cli.transport import Transport

    if session is None:
        session = Session.from_config(cfg)
    try:
        body = wire.encode(session, [])
    except DependencyError as exc:
        return Check("credentials", False, f"cannot encode a Collection: {exc}")
    transport = Transport.from_config(cfg.values, log, retries=0, sources=cfg.sources)
    details: dict[str, Any] = {"url": transport.url, "session": session.id, "status": None}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            answer = transport.post_once(body)
    finally:
        transport.close()
    details["status"] = answer.status
    said = answer.meaning  # what it means: the same table as a flush's (answers.py)
    if said.kind is Kind.EMPTY:
        return Check(
            "credentials",
            True,
            f"collector answered 204 to a signed Collection with no payloads (session {session.id})",
            None,
            details,
        )
    if said.kind is Kind.SPLIT and not said.smaller:  # 400: no payload to split, so the rest
        return Check(
            "credentials",
            False,
            f"collector answered 400: session or body refused (session {session.id})",
            "the session must be md5 of sha256(device_id):client_id:system_version:product_version; "
            "check that the collector speaks this protocol version (Content-Type application/protobuf)",
            details,
        )
    if said.kind is Kind.DELIVERED:
        # Cannot happen for an empty Collection on a conforming collector.
        return Check(
            "credentials",
            False,
            "collector answered 200 to a Collection with no payloads",
            "collector_url may not point at a Hamustro collector",
            details,
        )
    if answer.status == 405:  # the words only: the kind (a person must act) is the table's
        said = said._replace(what="collector answered 405: shared_secret_key is wrong")
    return Check(
        "credentials",
        False,
        said.what,
        said.fix or "check collector_url and the collector's state",
        details,
    )


def _files_problem(directory: str, odd: dict[str, str], loose: dict[str, str]) -> tuple[str, str] | None:
    """(verdict, fix) for the spool's files: a name taken by something that is not a regular
    file first (a link: its fix is never a chmod, which would follow it), then loose modes."""
    if odd:
        listed = ", ".join(f"{os.path.join(directory, n)} is {kind}" for n, kind in odd.items())
        paths = " ".join(os.path.join(directory, n) for n in odd)
        return (
            f"{listed}, not a regular file: hamustro never follows or opens it",
            f"move it away (mv {paths} ELSEWHERE; if it is not yours, find out who put it there)",
        )
    if loose:
        listed = ", ".join(f"{n} {m}" for n, m in loose.items())
        paths = " ".join(os.path.join(directory, n) for n in loose)
        return f"{directory}: files readable by other users ({listed})", f"chmod 600 {paths}"
    return None


# -- all of them --------------------------------------------------------------------------------


def run_checks(
    config_path: str | os.PathLike[str] | None,
    spool_dir: str | os.PathLike[str] | None,
    env: Mapping[str, str] | None = None,
    log: Log | None = None,
) -> list[Check]:
    """config, spool, collector, credentials, in that order; each one line, none sends an event."""
    from hamustro_cli.limits import require_network_room

    require_network_room()  # the checks below load it
    log = log or no_log
    checks: list[Check] = []
    if tracking_disabled(env):  # passes, with the note: the other checks still run
        checks.append(
            Check("tracking", True, disabled_note(env), hint=f"unset {VARIABLE} to track and send again")
        )
    config_check, cfg = check_config(config_path, spool_dir, env)
    checks.append(config_check)

    if cfg is None:
        checks.append(_skipped("spool", "the config could not be loaded"))
    else:
        from hamustro_cli.destination import of_settings

        checks.append(check_spool(cfg.spool_dir, of_settings(cfg.values)))

    if cfg is None or not cfg.values.get("collector_url"):
        health = _skipped(
            "collector", "collector_url is not set" if cfg else "the config could not be loaded"
        )
    else:
        health = check_health(cfg, log)
    checks.append(health)

    if not config_check.ok:
        checks.append(_skipped("credentials", "the config check failed"))
    elif not health.ok and health.details.get("status") is None:
        # No HTTP answer at all: a POST would fail the same way. An unexpected health answer
        # (a proxy, an old collector without /api/health) still lets the POST say more.
        checks.append(_skipped("credentials", "the collector cannot be reached"))
    else:
        checks.append(check_credentials(cfg, log=log))  # type: ignore[arg-type]
    return checks


def render(checks: list[Check]) -> str:
    """One line a check: `ok    config: ...`, `FAIL  credentials: ... → fix: ...`."""
    labels = {
        CheckState.OK: "ok",
        CheckState.WARN: "warn",
        CheckState.FAIL: "FAIL",
        CheckState.SKIPPED: "skip",
    }
    lines = []
    for c in checks:
        line = f"{labels[c.state]:<6}{c.name}: {c.verdict}"
        if c.hint:
            line += f" → {'fix' if not c.ok else 'note'}: {c.hint}"
        lines.append(line)
    return "\n".join(lines)


def to_json(checks: list[Check]) -> dict[str, Any]:
    """{"ok": bool, "checks": [{"name", "ok", "state", "verdict", "hint", "details"}]}; a
    skipped check's "ok" is null: it was not checked, so it neither passed nor failed."""
    return {
        "ok": all(c.ok for c in checks),
        "checks": [
            {
                "name": c.name,
                "ok": None if c.skipped else c.ok,  # a third state: not checked
                "verdict": f"skipped: {c.verdict}" if c.skipped else c.verdict,
                "hint": c.hint,
                "details": c.details,
                "state": c.state.value,
            }
            for c in checks
        ],
    }
