"""The `hamustro` command: parse options, make one or two library calls, translate errors."""

from __future__ import annotations

import enum
import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import click

from hamustro_cli import __version__
from hamustro_cli.errors import ConfigError, FlushBusy, HamustroError, InputError, SpoolError
from hamustro_cli.log import ERROR, INFO, WARNING

if TYPE_CHECKING:
    from hamustro_cli.config import Config
    from hamustro_cli.tracker import ClientTracker, TrackResult


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
    error.exit_code = int(code)  # type: ignore[misc]  # click reads it per instance
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
    tracker = obj.tracker()
    try:
        if from_stdin:
            result = tracker.track_lines(_stdin_lines(), ip=ip, flush=flush, source="stdin")
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
    except BaseException:
        tracker.close()
        raise
    _after_queued(obj, tracker, result, as_json)


def _stdin_lines() -> Iterator[str]:
    """Standard input's lines, decoded as UTF-8 whatever the locale or PYTHONIOENCODING say (bytes
    that are not UTF-8 stay as surrogates, which the checks refuse with the line's number), a
    byte order mark at the very start skipped, CRLF read as LF. A closed or unreadable standard
    input is an input error."""
    import io

    stream = sys.stdin
    binary = getattr(stream, "buffer", None) if stream is not None else None
    if stream is None or (binary is None and not hasattr(stream, "read")):
        raise InputError("--stdin: standard input is closed")
    text = (
        io.TextIOWrapper(binary, encoding="utf-8-sig", errors="surrogateescape")
        if binary is not None
        else stream
    )
    try:
        yield from text
    except OSError as exc:
        raise InputError(f"--stdin: cannot read standard input ({exc.strerror or exc})") from None
    except ValueError:  # read from a closed file
        raise InputError("--stdin: standard input is closed") from None
    finally:
        if text is not stream and isinstance(text, io.TextIOWrapper):
            try:
                text.detach()  # leave sys.stdin's buffer open
            except ValueError:
                pass


def _after_queued(obj: GlobalOptions, tracker: ClientTracker, result: TrackResult, as_json: bool) -> None:
    """Everything `track` does once the events are committed: close the spool, warn, print.
    Nothing here can change the exit status, which is 0: a script that saw a failure would track
    again. Each step is guarded on its own, so a closed or broken stderr does not lose the JSON
    on stdout and the other way round. A reader that went away (EPIPE: `track --json | head -c0`)
    is not an error of track; Python ignores SIGPIPE, so the process is never killed by it."""
    from hamustro_cli.tracker import Outcome

    def guarded(step: Callable[[], None]) -> None:
        try:
            step()
        except Exception:  # noqa: BLE001 - the events are queued: nothing may escape
            pass

    guarded(tracker.close)
    if result.flush == Outcome.HALTED:
        guarded(lambda: obj.log(WARNING, f"warning: event queued, but sending is {result.flush_detail}"))
    if result.flush == Outcome.FAILED:
        guarded(
            lambda: obj.log(
                WARNING, f"warning: event queued, but the flush it triggered failed: {result.flush_detail}"
            )
        )
    if as_json:
        try:
            emit_json(result.to_json())
            if sys.stdout is not None:
                sys.stdout.flush()  # here, not at exit, where a broken pipe would still cost status 120
        except Exception:  # noqa: BLE001 - the reader is gone (EPIPE) or stdout is unusable
            _silence(sys.stdout)
            guarded(lambda: obj.log(WARNING, "warning: event queued, but its result could not be printed"))
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001
            _silence(stream)


def _silence(stream: Any) -> None:
    """Point a broken standard stream at /dev/null, so that the flush at interpreter exit does not
    fail on it again (Python would then exit 120)."""
    import os

    try:
        if stream is not None and stream.fileno() in (1, 2):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, stream.fileno())
            os.close(null)
    except Exception:  # noqa: BLE001 - under CliRunner or already closed: nothing to protect
        pass


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
    options: list[Callable[[Callable[..., Any]], Callable[..., Any]]] = [
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


# -- config -----------------------------------------------------------------------------------
# The library part is configfile.py; these commands only gather input and print.


def _config_path(obj: Any) -> str:
    from hamustro_cli.configfile import config_file_path

    return config_file_path(obj.config_path, os.environ)


def _read_stdin_value() -> str:
    """All of standard input, less one line ending: `printf %s "$S" |` and `echo "$S" |` agree."""
    try:
        text = sys.stdin.buffer.read().decode("utf-8")  # bytes: a "\r" in the value stays
    except UnicodeDecodeError:
        raise InputError("standard input is not valid UTF-8") from None
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text


def _ask(key: Any, default: str | None = None) -> Any:
    """One value from the terminal, checked as loading checks it; the secret hidden and asked twice."""
    from hamustro_cli.config import SECRET_KEY
    from hamustro_cli.configfile import parse_value

    def check(text: str) -> Any:
        try:
            return parse_value(key.name, text, "the terminal")
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None

    secret = key.name == SECRET_KEY
    return click.prompt(
        f"{key.name} ({key.doc})",
        default=default,
        hide_input=secret,
        confirmation_prompt=secret,
        value_proc=check,
        err=True,
    )


@cli.group("config", add_help_option=False)
@help_option
def config_group() -> None:
    """Show, create and change the config file."""


@config_group.command("path", add_help_option=False)
@help_option
@click.pass_obj
def config_path_command(obj: Any) -> None:
    """Print the config file in use (it may not exist yet)."""
    click.echo(os.path.abspath(_config_path(obj)))


@config_group.command("show", add_help_option=False)
@help_option
@click.option("--json", "as_json", is_flag=True, help="Print the values and their origins as JSON.")
@click.pass_obj
@translate
def config_show(obj: Any, as_json: bool) -> None:
    """Every setting, its value and where it came from; the secret only as set/unset."""
    from hamustro_cli.config import load_config
    from hamustro_cli.configfile import describe, show_lines

    cfg = load_config(obj.config_path, obj.spool_dir)
    description = describe(cfg)
    if not getattr(obj, "quiet", False):
        for warning in cfg.warnings:
            click.echo(f"hamustro: {warning}", err=True)
    if as_json:
        emit_json(description)
    else:
        click.echo("\n".join(show_lines(description)))


def _required_key_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--collector-url, --device-id, ...: one option per required key but the secret (a flag
    would show it in the process list), described from config.KEYS."""
    from hamustro_cli.config import ENV_PREFIX, KEYS, REQUIRED, SECRET_KEY

    for name in reversed(REQUIRED):
        if name != SECRET_KEY:
            doc = KEYS[name].doc
            help_text = f"{doc[:1].upper()}{doc[1:]} (else ${ENV_PREFIX}{name.upper()}, else asked)."
            func = click.option("--" + name.replace("_", "-"), name, metavar="TEXT", help=help_text)(func)
    return func


@config_group.command("init", add_help_option=False)
@help_option
@click.option("--force", is_flag=True, help="Replace an existing config file.")
@click.option(
    "--secret-stdin", is_flag=True, help="Read shared_secret_key from standard input (never from a flag)."
)
@_required_key_options
@click.pass_obj
@translate
def config_init(obj: Any, force: bool, secret_stdin: bool, **given: str | None) -> None:
    """Write a commented config file (0600) with every key, asking for the required ones.

    Each required value comes from its option, else its HAMUSTRO_<KEY> variable, else a
    question on the terminal (the secret without echo). Without a terminal a missing value is
    an error (exit 2) and nothing is written. An existing file is kept unless --force.
    """
    import platform
    import socket

    from hamustro_cli.configfile import exists_error, init_file, required_values

    path = _config_path(obj)
    if os.path.lexists(path) and not force:
        raise exists_error(path)
    if secret_stdin:
        given["shared_secret_key"] = _read_stdin_value()
    guesses = {
        "device_id": socket.gethostname(),
        "system_version": f"{platform.system()} {platform.release()}",
    }
    terminal = sys.stdin.isatty() and not secret_stdin
    if terminal:
        click.echo(f"Writing {path}; the required settings:", err=True)
    values = required_values(
        given,
        os.environ,
        (lambda key: _ask(key, guesses.get(key.name))) if terminal else None,
        note=lambda message: click.echo(f"hamustro: {message}", err=True),
    )
    init_file(path, values, force)
    click.echo(f"hamustro: wrote {path} (mode 0600); check it with 'hamustro doctor'", err=True)


@config_group.command("set", add_help_option=False)
@help_option
@click.argument("key")
@click.argument("value", required=False)
@click.pass_obj
@translate
def config_set(obj: Any, key: str, value: str | None) -> None:
    """Set KEY to VALUE in the config file, keeping its comments and layout.

    VALUE is read as the HAMUSTRO_<KEY> variable would be; "-" reads it from standard input
    (the way to pass the secret); without VALUE it is asked on a terminal, the secret without
    echo. The file is created 0600 when missing and replaced atomically.
    """
    from hamustro_cli.config import ENV_PREFIX, KEYS, SECRET_KEY
    from hamustro_cli.configfile import parse_value, set_key

    if key not in KEYS:
        parse_value(key, "", "the command line")  # the unknown-key error
    if value == "-":
        parsed = parse_value(key, _read_stdin_value(), "standard input")
    elif value is not None:
        if key == SECRET_KEY:
            click.echo(
                "hamustro: warning: a secret given as an argument shows in the process list and "
                f"shell history; prefer: hamustro config set {SECRET_KEY} -",
                err=True,
            )
        parsed = parse_value(key, value, "the command line")
    elif sys.stdin.isatty():
        parsed = _ask(KEYS[key])
    else:
        raise InputError(f"missing VALUE for {key} (give it, or - to read it from standard input)")
    path = _config_path(obj)
    set_key(path, key, parsed)
    env_name = ENV_PREFIX + key.upper()
    if env_name in os.environ or (key == "spool_dir" and obj.spool_dir is not None):
        shadow = "--spool-dir" if env_name not in os.environ else f"environment variable {env_name}"
        click.echo(f"hamustro: warning: {key} is also set by {shadow}, which takes precedence", err=True)


def main() -> None:
    cli(prog_name="hamustro")


if __name__ == "__main__":  # pragma: no cover
    main()
