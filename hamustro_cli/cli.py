"""The `hamustro` command: parse options, make one or two library calls, translate errors.

The hot commands (track, flush, status, session) live here; the others load when named (Commands)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from hamustro_cli.cliparts import (  # noqa: F401 - ExitStatus: tests and scripts import it from here
    LIMIT,
    ExitStatus,
    GlobalOptions,
    complete_dir,
    complete_file,
    emit_json,
    help_option,
    json_text,
    print_version,
    translate,
)
from hamustro_cli.errors import InputError
from hamustro_cli.log import INFO, WARNING

if TYPE_CHECKING:
    from hamustro_cli.tracker import ClientTracker, TrackResult


class Commands(click.Group):
    """The root group. Commands people run now and then (the queue and the config by hand, doctor,
    the local collector) are loaded when named: defining their options would cost every `track`."""

    LAZY = ("collector", "config", "doctor", "events")

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name == "events":
            from hamustro_cli.cli_events import events

            return events
        if name == "config":
            from hamustro_cli.cli_config import config_group

            return config_group
        if name == "doctor":
            from hamustro_cli.cli_doctor import doctor

            return doctor
        if name == "collector":
            from hamustro_cli.cli_collector import collector

            return collector
        return self.commands.get(name)


@click.group(cls=Commands, add_help_option=False)
@help_option
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    shell_complete=complete_file,
    help="Config file (TOML). Default: config.toml in the app dir, or $HAMUSTRO_CONFIG.",
)
@click.option(
    "--spool-dir",
    metavar="DIR",
    shell_complete=complete_dir,
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
    callback=lambda ctx, param, value: print_version(ctx, value),
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
    tracker = obj.tracker()
    if ip is not None:
        events.check_ip(ip, ipv6=tracker.config.values["send_ipv6"])
    try:
        if from_stdin:
            result = tracker.track_lines(_stdin_lines(), ip=ip, flush=flush, source="stdin")
        else:
            from hamustro_cli.tracker import FLAG_NAMES, new_event

            one = new_event(
                event,  # type: ignore[arg-type]
                user_id=user_id,
                params=events.params_from_pairs(param_pairs) if param_pairs else params,
                is_testing=testing,
                at=at,
                names=FLAG_NAMES,
            )
            result = tracker.track_many([one], ip=ip, flush=flush)
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
    person must act (an answer only a person can fix: a redirect, 401, 403, 404, the signature
    refused..., and sending is halted; or events were set aside as rejected: see 'hamustro
    events list --state rejected').

    \b
    Examples:
      hamustro flush --if-due               # cron: */5 * * * *
      hamustro flush --retry-rejected --json
      hamustro flush --dry-run
    """
    with obj.tracker() as tracker:
        bar = None
        if not as_json and not obj.quiet and not dry_run and sys.stderr.isatty():
            total = tracker.spool.pending(tracker.destination)
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
            elsewhere = f", {report.elsewhere} left for other destination(s)" if report.elsewhere else ""
            click.echo(
                f"sent {report.sent} event(s) in {sum(1 for b in report.batches if b['status'] == 200)} "
                f"batch(es); {report.pending} pending, {report.rejected} rejected{elsewhere}"
            )
    if report.would_reject:
        obj.log(
            WARNING,
            f"warning: {report.would_reject} event(s) a flush would set aside as rejected: stored "
            "rows the wire cannot carry (a damaged or tampered spool; 'hamustro events list' shows them)",
        )
    if report.rejected:
        obj.log(
            WARNING,
            f"warning: {report.rejected} event(s) set aside as rejected, refused by the collector or "
            "stored as the wire cannot carry ('hamustro events list --state rejected' says why; "
            "'hamustro flush --retry-rejected' resends)",
        )
    if report.exit_status:
        sys.exit(report.exit_status)


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
@click.option("--limit", type=LIMIT, metavar="N", help="List at most N events.")
@click.option(
    "--check",
    is_flag=True,
    help="Exit 4 when a person must act (sending halted, rejected events, no room on the disk "
    "for a flush), 1 when the last "
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
        if data["halted"] or data["rejected"] or data["no_room"]:
            sys.exit(ExitStatus.ATTENTION)
        if data["backoff_until"]:  # set by a failed flush, cleared by the next delivery
            sys.exit(ExitStatus.UNDELIVERED)


def _status_json(data: dict[str, Any], rows: Any) -> None:
    """The status object, with `events` (when asked) written one by one as its last key."""
    if rows is None:
        emit_json(data)
        return
    write = sys.stdout.write
    dumps = json_text()
    write(dumps(data)[:-1] + ', "events": [')
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
            f"rejected:   {data['rejected']} (set aside: refused by the collector, or stored as the "
            "wire cannot carry; 'hamustro events list --state rejected' says why, "
            "'hamustro flush --retry-rejected' resends)"
        )
    echo(f"last sync:  {_ago(data['last_sync_time'], now)}")
    error = data["last_error"]
    if error:
        echo(f"last error: {error.get('message')} ({_ago(error.get('at'), now)})")
    if data["halted"]:
        echo(f"sending:    STOPPED: {data['halted']}; once that is fixed, run 'hamustro flush'")
        if data["destination"]:
            echo(
                f"            (fixing collector_url, client_id or shared_secret_key makes another "
                f"destination: the events queued so far stay with {data['destination']}, and "
                f"'hamustro events claim {data['destination']}' sends them with the fixed config)"
            )
    if data["batch_size"] is not None:
        echo(
            f"batch size: {data['batch_size']} events (after a 413 or a timeout; grows back to "
            f"max_batch_events, {data['max_batch_events']}, while batches pass quickly)"
        )
    if data["no_room"]:
        echo(f"disk:       FULL: sending waits until there is room: {data['no_room']}")
    next_due = data["next_due_at"]
    due_text = "now" if data["due"] else (_ago(next_due, now) if next_due else "-")
    echo(f"next send:  {due_text}: {data['due_reason']}")
    if data["flush_running"]:
        echo("flush:      running now")
    _destinations_text(data)
    for s in data["sessions"]:
        mark = " (current)" if s["current"] else ""
        oldest = f", oldest {_ago(s['oldest_at'], now)}" if s["oldest_at"] else ""
        rejected = f", {s['rejected']} rejected" if s["rejected"] else ""
        echo(
            f"session {s['session']}{mark}: {s['pending']} pending{rejected}, last nr {s['last_nr']}, "
            f"product {s['product_version']}{oldest}"
        )
    if rows is not None:
        from hamustro_cli.cli_events import stream

        stream(rows, as_json=False, header=False)


def _destinations_text(data: dict[str, Any]) -> None:
    """Events this config's flush leaves alone (other destinations), and events it will claim."""
    if data["other_destinations"]:
        from hamustro_cli.destination import others_advice

        click.echo(f"elsewhere:  {others_advice(data['other_destinations'])}")
    for d in data["destinations"]:
        if d["destination"] is None:
            click.echo(
                f"unclaimed:  {d['pending'] + d['rejected']} event(s) queued before destinations were "
                "recorded: the next flush sends them to its own collector"
            )


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


def main() -> None:
    try:
        cli(prog_name="hamustro")
    except Exception as exc:  # noqa: BLE001 - resource trouble, told apart below; the rest re-raised
        try:
            from hamustro_cli.limits import short_of

            why = short_of(exc)
        except Exception:  # noqa: BLE001 - not even a small module loads: no descriptor or memory left
            why = (
                f"out of memory or file descriptors ({type(exc).__name__}); raise the limits "
                "(ulimit -v, ulimit -n) or free memory and run again. Nothing was lost"
            )
        if why is None:
            raise
        _give_up(why)


def _give_up(why: str) -> None:
    """One `Error:` line and exit 3 (local trouble), without the interpreter's shutdown: out of
    memory or threads, it can wait for ever on a worker that will not finish."""
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001 - a stream it cannot flush now
            pass
    try:
        os.write(2, f"Error: {why}\n".encode("utf-8", "replace"))
    except OSError:
        pass
    os._exit(ExitStatus.SPOOL)


if __name__ == "__main__":  # pragma: no cover
    main()
