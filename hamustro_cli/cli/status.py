"""`hamustro status` (what is queued, and why it is or is not being sent) and `hamustro
session` (the current session)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click

from hamustro_cli.cli.options import LIMIT, GlobalOptions, help_option, translate
from hamustro_cli.cli.output import emit_json, json_text
from hamustro_cli.errors import ExitStatus
from hamustro_cli.log import count

if TYPE_CHECKING:
    from hamustro_cli.spool.records import Status


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


@click.command(add_help_option=False)
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
    """What is queued, and why it is or is not being sent.

    \b
    Examples:
      hamustro status
      hamustro status --events --limit 20
      hamustro status --json | jq .pending
      hamustro -q status --check       # from a monitor: exit 4 a person must act, 1 backing off
    """
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


def _status_json(data: Status, rows: Any) -> None:
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


def _status_text(data: Status, rows: Any) -> None:
    now = int(time.time())
    echo = click.echo
    echo(f"spool:      {data['spool_dir']}")
    if data["disabled"]:
        from hamustro_cli.disabled import disabled_note

        echo(f"tracking:   {disabled_note()}")
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
    when = "now: " if data["due"] else (f"{_ago(next_due, now)}: " if next_due else "")
    echo(f"next send:  {when}{data['due_reason']}")
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
        from hamustro_cli.cli.events import stream

        stream(rows, as_json=False, header=False)


def _destinations_text(data: Status) -> None:
    """Events this config's flush leaves alone (other destinations), and events it will claim."""
    if data["other_destinations"]:
        from hamustro_cli.destination import others_advice

        click.echo(f"elsewhere:  {others_advice(data['other_destinations'])}")
    for d in data["destinations"]:
        if d["destination"] is None:
            click.echo(
                f"unclaimed:  {count(d['pending'] + d['rejected'], 'event')} queued before destinations were "
                "recorded: the next flush sends them to its own collector"
            )


@click.command(add_help_option=False)
@help_option
@click.option("--json", "as_json", is_flag=True, help="Print the session's attributes as JSON.")
@click.pass_obj
@translate
def session(obj: GlobalOptions, as_json: bool) -> None:
    """Print the current session id (32 lowercase hex characters).

    \b
    Examples:
      hamustro session
      hamustro session --json          # its attributes, last nr and pending events
      hamustro events list --session "$(hamustro session)"
    """
    from hamustro_cli.config import SESSION_KEYS

    with obj.tracker(required=SESSION_KEYS) as tracker:
        if not as_json:
            click.echo(tracker.session.id)
            return
        data = tracker.session_status()
    emit_json(data)
