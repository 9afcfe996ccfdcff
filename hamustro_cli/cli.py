"""The `hamustro` command: parse options, make one or two library calls, translate errors."""

from __future__ import annotations

import enum
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from hamustro_cli import __version__
from hamustro_cli.errors import ConfigError, FlushBusy, HamustroError, InputError, SpoolError
from hamustro_cli.log import ERROR, INFO, WARNING

if TYPE_CHECKING:
    from hamustro_cli.config import Config
    from hamustro_cli.tracker import ClientTracker


class ExitStatus(enum.IntEnum):
    """The contract's exit codes (README: Exit codes). 1 means "try later", 4 "a person must act"."""

    OK = 0
    UNDELIVERED = 1  # try later: not delivered (still queued): unreachable, 5xx, timeout; a flush runs
    USAGE = 2  # usage, configuration or input error: nothing was queued or sent
    SPOOL = 3  # the spool cannot be used: nothing was lost
    ATTENTION = 4  # a person must act: signature refused (sending halted), events set aside as rejected


EXIT_FOR = {
    FlushBusy: ExitStatus.UNDELIVERED,
    ConfigError: ExitStatus.USAGE,
    InputError: ExitStatus.USAGE,
    SpoolError: ExitStatus.SPOOL,
}


class GlobalOptions:
    """What the global options say, for every command (click's `obj`)."""

    def __init__(self, config_path: str | None, spool_dir: str | None, verbose: int, quiet: bool):
        self.config_path = config_path
        self.spool_dir = spool_dir
        self.verbose = verbose
        self.quiet = quiet

    def log(self, level: int, message: str) -> None:
        """Errors always; warnings unless -q; INFO with -v, DEBUG with -vv (see log.py)."""
        if level > ERROR and (self.quiet or level > max(self.verbose, WARNING)):
            return
        click.echo(f"hamustro: {message}", err=True)

    def config(self, required: tuple[str, ...] | None = None) -> Config:
        from hamustro_cli.config import REQUIRED, load_config

        cfg = load_config(self.config_path, self.spool_dir)
        for warning in cfg.warnings:
            self.log(WARNING, warning)
        cfg.require(REQUIRED if required is None else required)
        return cfg

    def tracker(self, required: tuple[str, ...] | None = None) -> ClientTracker:
        from hamustro_cli.tracker import ClientTracker

        return ClientTracker(config=self.config(required), log=self.log)


def fail(exc: HamustroError) -> NoReturn:
    code = next((c for t, c in EXIT_FOR.items() if isinstance(exc, t)), ExitStatus.USAGE)
    error = click.ClickException(str(exc))
    error.exit_code = int(code)
    raise error


def translate(func: Callable[..., Any]) -> Callable[..., Any]:
    """Library exceptions become ClickExceptions with the contract's exit code."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HamustroError as exc:
            fail(exc)

    return wrapper


def emit_json(data: Any) -> None:
    import json

    click.echo(json.dumps(data, indent=None, sort_keys=False))


# Plain string options and hand-made --version and --help: click.Path, click.version_option
# and click's own help option call gettext, which imports locale: about 1 ms of every `track`.
# Paths are checked by the library, which says which flag or key they came from.


def _print_version(ctx: click.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"hamustro {__version__}")
        ctx.exit()


def _print_help(ctx: click.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(ctx.get_help(), color=ctx.color)
        ctx.exit()


def _complete_file(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Let the shell complete a file name (plain string options: see above)."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")]


def _complete_dir(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="dir")]


help_option = click.option(
    "-h",
    "--help",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, param, value: _print_help(ctx, value),
    help="Show this message and exit.",
)


@click.group(add_help_option=False)
@help_option
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    shell_complete=_complete_file,
    help="Config file (TOML). Default: config.toml in the app dir, or $HAMUSTRO_CONFIG.",
)
@click.option(
    "--spool-dir",
    metavar="DIR",
    shell_complete=_complete_dir,
    help="Spool directory holding the queue. Default: $HAMUSTRO_SPOOL_DIR, spool_dir, "
    "or $XDG_STATE_HOME/hamustro.",
)
@click.option("-v", "--verbose", count=True, help="Say what is being done; twice: requests and answers too.")
@click.option("-q", "--quiet", is_flag=True, help="Print errors only.")
@click.option(
    "--version",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, param, value: _print_version(ctx, value),
    help="Show the version and exit.",
)
@click.pass_context
def cli(
    ctx: click.Context, config_path: str | None, spool_dir: str | None, verbose: int, quiet: bool
) -> None:
    """Queue events durably and send them to a Hamustro collector in signed batches.

    \b
    Examples:
      hamustro track signup --user-id 42 --param plan=pro
      hamustro flush --if-due          # from cron, every few minutes
      hamustro status --check          # non-zero when sending needs attention
      hamustro events list --state rejected

    Exit codes: 0 done, 1 try later (not delivered, still queued), 2 usage, configuration or
    input error, 3 the spool cannot be used, 4 a person must act (signature refused, events
    rejected).
    """
    ctx.obj = GlobalOptions(config_path, spool_dir, verbose, quiet)


# -- track ------------------------------------------------------------------------------------


@cli.command(add_help_option=False)
@help_option
@click.argument("event", required=False)
@click.option("--user-id", metavar="N", help="User id (0 to 4294967295).")
@click.option("--params", metavar="TEXT", help="Parameters string, sent as is.")
@click.option(
    "--param",
    "param_pairs",
    metavar="KEY=VALUE",
    multiple=True,
    help="One parameter; repeat it. Sent as a JSON object string.",
)
@click.option("--testing", is_flag=True, help="Mark the event as a test event.")
@click.option("--at", metavar="TIME", help="Event time: epoch seconds or ISO 8601 (default: now).")
@click.option("--ip", metavar="ADDR", help="Address to send with the event (default: from config ip).")
@click.option(
    "--flush/--no-flush",
    "flush",
    default=None,
    help="Flush now if a trigger fires / never flush from this call (default: config flush).",
)
@click.option(
    "--stdin", "from_stdin", is_flag=True, help="Queue JSON lines from standard input, all or nothing."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
@translate
def track(
    obj: GlobalOptions,
    event: str | None,
    user_id: str | None,
    params: str | None,
    param_pairs: tuple[str, ...],
    testing: bool,
    at: str | None,
    ip: str | None,
    flush: bool | None,
    from_stdin: bool,
    as_json: bool,
) -> None:
    """Queue one EVENT durably, then flush if the protocol's triggers fire.

    \b
    Examples:
      hamustro track signup --user-id 42 --param plan=pro
      hamustro track page_view --at 2026-11-28T12:00:00Z --no-flush
      printf '{"event": "a"}\\n{"event": "b", "user_id": 7}\\n' | hamustro track --stdin --json
    """
    from hamustro_cli import events
    from hamustro_cli.reports import Outcome

    if from_stdin:
        if event is not None or user_id or params or param_pairs or testing or at:
            raise InputError(
                "--stdin takes events from standard input only: give no EVENT, "
                "--user-id, --params, --param, --testing or --at with it"
            )
    elif event is None:
        raise InputError("missing EVENT (or use --stdin)")
    if params is not None and param_pairs:
        raise InputError("use either --params TEXT or --param KEY=VALUE, not both")
    if ip is not None:
        events.check_ip(ip)
    with obj.tracker() as tracker:
        if from_stdin:
            result = tracker.track_lines(sys.stdin, ip=ip, flush=flush, source="stdin")
        else:
            result = tracker.track_event(
                event,  # type: ignore[arg-type]
                user_id=events.check_user_id(user_id),
                params=events.params_from_pairs(param_pairs) if param_pairs else params,
                is_testing=testing,
                at=at,
                ip=ip,
                flush=flush,
            )
    if result.flush == Outcome.HALTED:
        obj.log(WARNING, f"warning: event queued, but sending is {result.flush_detail}")
    if result.flush == Outcome.FAILED:
        obj.log(WARNING, f"warning: event queued, but the flush it triggered failed: {result.flush_detail}")
    if as_json:
        emit_json(result.to_json())


# -- flush ------------------------------------------------------------------------------------


@cli.command(add_help_option=False)
@help_option
@click.option(
    "--if-due", is_flag=True, help="Send only when a trigger fires (and no backoff holds): for cron."
)
@click.option("--dry-run", is_flag=True, help="Encode and report the batches; send nothing.")
@click.option(
    "--retry-rejected", is_flag=True, help="First move events the collector refused back into the queue."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
@translate
def flush(obj: GlobalOptions, if_due: bool, dry_run: bool, retry_rejected: bool, as_json: bool) -> None:
    """Send every pending event, one session at a time, in signed batches.

    Exit 1: try later (collector unreachable, 5xx, timeout; events stay queued). Exit 4: a
    person must act (the collector refused the signature and sending is halted, or events were
    set aside as rejected: see 'hamustro events list --state rejected').

    \b
    Examples:
      hamustro flush --if-due               # cron: */5 * * * *
      hamustro flush --retry-rejected --json
      hamustro flush --dry-run
    """
    with obj.tracker() as tracker:
        bar = None
        if not as_json and not obj.quiet and not dry_run and sys.stderr.isatty():
            total = tracker.status()["pending"]
            if total >= 5000:
                bar = click.progressbar(length=total, label="sending", file=sys.stderr)
        if bar is not None:
            with bar:
                report = tracker.flush(
                    if_due=if_due, dry_run=dry_run, retry_rejected=retry_rejected, progress=bar.update
                )
        else:
            report = tracker.flush(if_due=if_due, dry_run=dry_run, retry_rejected=retry_rejected)
    if as_json:
        emit_json(report.to_json())
    elif report.skipped:
        obj.log(INFO, f"nothing sent: {report.skipped}")
    elif not obj.quiet:
        if dry_run:
            events = sum(b["events"] for b in report.batches)
            size = sum(b["bytes"] for b in report.batches)
            click.echo(
                f"dry run: {events} event(s) in {len(report.batches)} batch(es), {size} bytes; nothing sent"
            )
        else:
            click.echo(
                f"sent {report.sent} event(s) in {sum(1 for b in report.batches if b['status'] == 200)} "
                f"batch(es); {report.pending} pending, {report.rejected} rejected"
            )
    if report.rejected:
        obj.log(
            WARNING,
            f"warning: {report.rejected} event(s) refused by the collector were set aside "
            "(see 'hamustro status'; resend with 'hamustro flush --retry-rejected')",
        )
    if dry_run:
        return
    if report.halted or report.rejected:
        sys.exit(ExitStatus.ATTENTION)
    if not report.ok and not report.skipped:
        sys.exit(ExitStatus.UNDELIVERED)


# -- status -----------------------------------------------------------------------------------


def _ago(epoch: int | None, now: int) -> str:
    """'5m 3s ago' / 'in 2h 10m'."""
    if not epoch:
        return "never"
    delta = abs(now - epoch)
    if delta < 60:
        text = f"{delta}s"
    elif delta < 3600:
        text = f"{delta // 60}m {delta % 60}s"
    elif delta < 86400:
        text = f"{delta // 3600}h {delta % 3600 // 60}m"
    else:
        text = f"{delta // 86400}d {delta % 86400 // 3600}h"
    return f"in {text}" if epoch > now else f"{text} ago"


@cli.command(add_help_option=False)
@help_option
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--events", "with_events", is_flag=True, help="Also list queued events, oldest first.")
@click.option("--limit", type=click.IntRange(min=1), metavar="N", help="List at most N events.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 4 when a person must act (sending halted, rejected events), 1 when the last "
    "flush failed and is backing off.",
)
@click.pass_obj
@translate
def status(obj: GlobalOptions, as_json: bool, with_events: bool, limit: int | None, check: bool) -> None:
    """What is queued, and why it is or is not being sent."""
    with obj.tracker(required=()) as tracker:
        data = tracker.status()
        # the events are streamed from the spool's cursor, never held: a million stay cheap
        rows = tracker.spool.iter_events(limit) if with_events else None
        if as_json:
            _status_json(data, rows)
        else:
            _status_text(data, rows)
    if check:
        if data["halted"] or data["rejected"]:
            sys.exit(ExitStatus.ATTENTION)
        if data["backoff_until"]:  # set by a failed flush, cleared by the next delivery
            sys.exit(ExitStatus.UNDELIVERED)


def _status_json(data: dict[str, Any], rows: Any) -> None:
    """The status object, with `events` (when asked) written one by one as its last key."""
    import json

    if rows is None:
        emit_json(data)
        return
    write = sys.stdout.write
    write(json.dumps(data)[:-1] + ', "events": [')
    dumps = json.dumps
    for n, e in enumerate(rows):
        write((", " if n else "") + dumps(e))
    write("]}\n")


def _status_text(data: dict[str, Any], rows: Any) -> None:
    now = int(time.time())
    echo = click.echo
    echo(f"spool:      {data['spool_dir']}")
    echo(f"pending:    {data['pending']}" + (f" ({data['sending']} being sent)" if data["sending"] else ""))
    if data["rejected"]:
        echo(
            f"rejected:   {data['rejected']} (refused by the collector; "
            "'hamustro flush --retry-rejected' resends, 'hamustro events' shows them)"
        )
    echo(f"last sync:  {_ago(data['last_sync_time'], now)}")
    error = data["last_error"]
    if error:
        echo(f"last error: {error.get('message')} ({_ago(error.get('at'), now)})")
    if data["halted"]:
        echo(
            "sending:    STOPPED: the collector rejected the signature; check shared_secret_key, "
            "then run 'hamustro flush'"
        )
    next_due = data["next_due_at"]
    due_text = "now" if data["due"] else (_ago(next_due, now) if next_due else "-")
    echo(f"next send:  {due_text}: {data['due_reason']}")
    if data["flush_running"]:
        echo("flush:      running now")
    for s in data["sessions"]:
        mark = " (current)" if s["current"] else ""
        oldest = f", oldest {_ago(s['oldest_at'], now)}" if s["oldest_at"] else ""
        rejected = f", {s['rejected']} rejected" if s["rejected"] else ""
        echo(
            f"session {s['session']}{mark}: {s['pending']} pending{rejected}, last nr {s['last_nr']}, "
            f"product {s['product_version']}{oldest}"
        )
    if rows is not None:
        _stream(rows, as_json=False, header=False)


# -- events -----------------------------------------------------------------------------------


def _time_option(name: str, help_text: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(name, metavar="TIME", help=help_text)


def event_filters(func: Callable[..., Any]) -> Callable[..., Any]:
    """The filters every `events` subcommand shares."""
    options = [
        click.option(
            "--state",
            type=click.Choice(["pending", "sending", "rejected"]),
            help="Only events in this state (sending: the batch a flush is sending).",
        ),
        click.option("--session", "session_id", metavar="SID", help="Only events of this session."),
        click.option(
            "--event", "event_glob", metavar="GLOB", help="Only events whose name matches (* ? [..])."
        ),
        _time_option("--since", "Only events at or after TIME (epoch seconds or ISO 8601, as --at)."),
        _time_option("--until", "Only events at or before TIME."),
        click.option(
            "--limit", type=click.IntRange(min=1), metavar="N", help="At most N events, oldest first."
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _filter(
    ids: tuple[int, ...] | None,
    state: str | None,
    session_id: str | None,
    event_glob: str | None,
    since: str | None,
    until: str | None,
    limit: int | None,
) -> Any:
    from hamustro_cli.events import parse_time
    from hamustro_cli.queue import EventFilter, Shown

    return EventFilter(
        ids=ids,
        state=None if state is None else Shown(state),
        session=session_id,
        event=event_glob,
        since=None if since is None else parse_time(since, "--since"),
        until=None if until is None else parse_time(until, "--until"),
        limit=limit,
    )


def _stamp(epoch: int) -> str:
    try:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    except (OverflowError, OSError, ValueError):
        return str(epoch)


def _event_line(e: dict[str, Any]) -> str:
    user = f" user {e['user_id']}" if e["user_id"] is not None else ""
    params = f" {e['parameters']}" if e["parameters"] else ""
    reason = f" ({e['reason']})" if e["reason"] else ""
    return (
        f"{e['id']:>8} {_stamp(e['at'])} {e['session'][:8]} {e['nr']:>6} {e['state']:<8} "
        f"{e['event']}{user}{params}{reason}"
    )


def _stream(rows: Any, as_json: bool, header: bool = True) -> None:
    """One line an event, written as it is read: memory stays flat on any spool."""
    import json

    write = sys.stdout.write
    if header and not as_json:
        write(f"{'ID':>8} {'AT':<20} {'SESSION':<8} {'NR':>6} {'STATE':<8} EVENT\n")
    dumps = json.dumps
    try:
        for e in rows:
            write((dumps(e) if as_json else _event_line(e)) + "\n")
    except BrokenPipeError:  # `| head`: the reader has what it wanted
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@cli.group(add_help_option=False)
@help_option
def events() -> None:
    """The queue by hand: list, show, requeue or drop queued events.

    \b
    Examples:
      hamustro events list --state rejected
      hamustro events list --json --since 2026-11-28 | jq .event
      hamustro events show 42
      hamustro events requeue --event 'signup*'
      hamustro events drop --state rejected --until 2026-11-01 --yes
    """


@events.command("list", add_help_option=False)
@help_option
@event_filters
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@click.pass_obj
@translate
def events_list(obj: GlobalOptions, as_json: bool, **filters: Any) -> None:
    """List queued events, oldest first, as a table or JSON lines."""
    chosen = _filter(None, **filters)
    with obj.tracker(required=()) as tracker:
        _stream(tracker.spool.select(chosen), as_json)


@events.command("show", add_help_option=False)
@help_option
@click.argument("event_id", metavar="ID", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print the event and its session as JSON.")
@click.pass_obj
@translate
def events_show(obj: GlobalOptions, event_id: int, as_json: bool) -> None:
    """Show one event, its session's attributes and why it was rejected."""
    with obj.tracker(required=()) as tracker:
        found = tracker.spool.event(event_id)
        if found is None:
            raise InputError(f"no event with id {event_id} in the spool {tracker.config.spool_dir}")
    event, attrs = found
    if as_json:
        emit_json({"event": event, "session": attrs.to_dict()})
        return
    echo = click.echo
    echo(f"event {event['id']}: {event['event']}")
    echo(f"  state:       {event['state']}" + (f": {event['reason']}" if event["reason"] else ""))
    echo(f"  at:          {_stamp(event['at'])} ({event['at']})")
    echo(f"  session:     {event['session']}, nr {event['nr']}")
    for key in ("user_id", "ip", "parameters", "is_testing"):
        echo(f"  {key + ':':<12} {event[key]}")
    echo("session attributes:")
    for key, value in attrs.to_dict().items():
        echo(f"  {key + ':':<17} {value}")


@events.command("requeue", add_help_option=False)
@help_option
@click.argument("ids", metavar="[ID]...", nargs=-1, type=int)
@event_filters
@click.pass_obj
@translate
def events_requeue(obj: GlobalOptions, ids: tuple[int, ...], **filters: Any) -> None:
    """Move rejected events (the IDs, or those the filters choose) back to pending, without
    sending. Pending events are left as they are."""
    from hamustro_cli.queue import Change

    if filters["state"] not in (None, "rejected"):
        raise InputError(f"--state {filters['state']}: requeue moves rejected events only")
    chosen = _filter(ids or None, **filters)
    with obj.tracker(required=()) as tracker:
        moved = tracker.spool.change(Change.REQUEUE, chosen)
    if not obj.quiet:
        click.echo(f"requeued {moved} rejected event(s)")


@events.command("drop", add_help_option=False)
@help_option
@click.argument("ids", metavar="[ID]...", nargs=-1, type=int)
@event_filters
@click.option("--yes", "-y", is_flag=True, help="Do not ask; needed when not on a terminal.")
@click.pass_obj
@translate
def events_drop(obj: GlobalOptions, ids: tuple[int, ...], yes: bool, **filters: Any) -> None:
    """Delete events (the IDs, or those the filters choose) for good. Asks first on a
    terminal; elsewhere needs --yes.

    \b
    Examples:
      hamustro events drop 17 18
      hamustro events drop --state rejected --yes
    """
    from hamustro_cli.queue import Change

    if not ids and not any(v is not None for v in filters.values()):
        raise InputError("name the events to drop: IDs or a filter (e.g. --state rejected)")
    chosen = _filter(ids or None, **filters)
    with obj.tracker(required=()) as tracker:
        if not yes:
            if not sys.stdin.isatty():
                raise InputError("drop deletes events for good: give --yes (no terminal to ask on)")
            count = tracker.spool.count(chosen)
            if not click.confirm(f"Delete {count} event(s) for good?", default=False):
                click.echo("nothing was deleted", err=True)
                return
        dropped = tracker.spool.change(Change.DROP, chosen)
    if not obj.quiet:
        click.echo(f"dropped {dropped} event(s)")


# -- session ----------------------------------------------------------------------------------


@cli.command(add_help_option=False)
@help_option
@click.option("--json", "as_json", is_flag=True, help="Print the session's attributes as JSON.")
@click.pass_obj
@translate
def session(obj: GlobalOptions, as_json: bool) -> None:
    """Print the current session id (32 lowercase hex characters)."""
    from hamustro_cli.config import SESSION_KEYS

    with obj.tracker(required=SESSION_KEYS) as tracker:
        if not as_json:
            click.echo(tracker.session.id)
            return
        data = tracker.session_status()
    emit_json(data)


# -- doctor -----------------------------------------------------------------------------------


@cli.command(add_help_option=False)
@help_option
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_obj
def doctor(obj: GlobalOptions, as_json: bool) -> None:
    """Check config, spool, collector and credentials, one line each; send no event."""
    from hamustro_cli.doctor import render, run_checks, to_json

    checks = run_checks(obj.config_path, obj.spool_dir, log=obj.log)
    if as_json:
        emit_json(to_json(checks))
    elif obj.quiet:
        failed = [c for c in checks if not c.ok]
        if failed:
            click.echo(render(failed))
    else:
        click.echo(render(checks))
    if not all(c.ok for c in checks):
        sys.exit(ExitStatus.UNDELIVERED)


# -- collector --------------------------------------------------------------------------------


@cli.command(add_help_option=False)
@help_option
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="HAMUSTRO_HOST",
    help="Address to listen on ($HAMUSTRO_HOST).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    envvar="HAMUSTRO_PORT",
    help="Port to listen on; 0 picks a free one ($HAMUSTRO_PORT).",
)
@click.option(
    "--secret",
    envvar="HAMUSTRO_SHARED_SECRET_KEY",
    required=True,
    help="Shared secret that signs requests ($HAMUSTRO_SHARED_SECRET_KEY; prefer it "
    "to the flag, which other users can see).",
)
@click.option(
    "--out",
    type=click.File("a", lazy=False),
    default="-",
    shell_complete=_complete_file,
    help="Where accepted events go, one JSON line each (default: standard output).",
)
@click.option(
    "--fail-rate",
    type=click.FloatRange(0, 1),
    default=0.0,
    help="Answer --fail-status to this share of valid requests (for trying failures).",
)
@click.option(
    "--fail-status",
    type=click.IntRange(100, 599),
    default=503,
    show_default=True,
    help="Status used by --fail-rate.",
)
@click.option(
    "--reject-event",
    multiple=True,
    metavar="NAME",
    help="Answer 400 to collections that hold this event (for trying rejects).",
)
@click.option("--delay", type=click.FloatRange(0), default=0.0, help="Hold each request this many seconds.")
@click.option("--verbose-errors", is_flag=True, help='Error bodies as {"error": "..."} (verbose mode).')
@click.pass_obj
def collector(
    obj: GlobalOptions,
    host: str,
    port: int,
    secret: str,
    out: Any,
    fail_rate: float,
    fail_status: int,
    reject_event: tuple[str, ...],
    delay: float,
    verbose_errors: bool,
) -> None:
    """Run a local collector that answers as the real one and writes accepted events as JSON lines."""
    import signal

    from hamustro_cli.collector import make_server

    try:
        server = make_server(
            host,
            port,
            secret,
            out,
            verbose=verbose_errors,
            fail_rate=fail_rate,
            fail_status=fail_status,
            reject_events=reject_event,
            delay=delay,
            log=sys.stderr if obj.verbose else None,
        )
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    click.echo(f"hamustro collector listening on {server.url}", err=True)

    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.shutting_down = True
        server.server_close()
        click.echo(f"hamustro collector stopped after {server.accepted} event(s)", err=True)


def main() -> None:
    cli(prog_name="hamustro")


if __name__ == "__main__":  # pragma: no cover
    main()
