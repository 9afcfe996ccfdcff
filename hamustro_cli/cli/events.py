"""`hamustro events`: the queue by hand (the library part: spool/changes.py, spool/browsing.py,
spool/queue.py)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import click

from hamustro_cli.cli.options import EVENT_ID, LIMIT, GlobalOptions, complete_session, help_option, translate
from hamustro_cli.cli.output import emit_json, json_text, write_lines
from hamustro_cli.errors import InputError
from hamustro_cli.log import count, shown


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
        click.option(
            "--session",
            "session_id",
            metavar="SID",
            shell_complete=complete_session,
            help="Only events of this session.",
        ),
        click.option(
            "--destination",
            metavar="FINGERPRINT",
            help="Only events tracked for this destination ('hamustro status' lists them).",
        ),
        click.option(
            "--event", "event_glob", metavar="GLOB", help="Only events whose name matches (* ? [..])."
        ),
        _time_option("--since", "Only events at or after TIME (epoch seconds or ISO 8601, as --at)."),
        _time_option("--until", "Only events at or before TIME."),
        click.option("--limit", type=LIMIT, metavar="N", help="At most N events, the first queued."),
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
    destination: str | None,
) -> Any:
    from hamustro_cli.events import SQLITE_INT_MAX, parse_time
    from hamustro_cli.spool.queue import EventFilter, Shown

    def bound(text: str | None, where: str) -> int | None:
        """A time as a filter: beyond what SQLite stores no event is, so the bound is exact there."""
        return (
            None if text is None else max(-SQLITE_INT_MAX - 1, min(parse_time(text, where), SQLITE_INT_MAX))
        )

    return EventFilter(
        ids=ids,
        state=None if state is None else Shown(state),
        session=session_id,
        event=event_glob,
        since=bound(since, "--since"),
        until=bound(until, "--until"),
        limit=limit,
        destination=destination,
    )


def _named(ids: tuple[int, ...], filters: dict[str, Any], doing: str) -> Any:
    """The events a command that changes the queue is given: IDs or a filter, never all of
    them by default (`--state rejected` says "every rejected event")."""
    if not ids and not any(v is not None for v in filters.values()):
        raise InputError(f"name the events to {doing}: IDs or a filter (e.g. --state rejected)")
    return _filter(ids or None, **filters)


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


# what `events list` prints for an empty answer (a table: JSON lines print nothing)
NO_EVENTS = "no events queued"
NO_MATCH = "no queued event matches"


def stream(rows: Any, as_json: bool, header: bool = True, empty: str = NO_EVENTS) -> None:
    """One line an event, written as it is read: memory stays flat on any spool."""
    dumps = json_text()

    def lines() -> Iterator[str]:
        listed = 0
        for e in rows:
            if header and not as_json and not listed:
                yield f"{'ID':>8} {'AT':<20} {'SESSION':<8} {'NR':>6} {'STATE':<8} EVENT\n"
            listed += 1
            yield (dumps(e) if as_json else _event_line(e)) + "\n"
        if header and not as_json and not listed:  # JSON lines: no line is the empty answer
            yield f"{empty}\n"

    write_lines(lines())


@click.group(add_help_option=False)
@help_option
def events() -> None:
    """The queue by hand: list, show, requeue or drop queued events.

    \b
    Examples:
      hamustro events list --state rejected
      hamustro events list --json --since 2026-11-28 | jq .event
      hamustro events show 1
      hamustro events requeue --event 'signup*'
      hamustro events drop --state rejected --until 2026-11-01 --yes
      hamustro events claim 3f9c0a1b2c3d4e5f
    """


@events.command(
    "list", add_help_option=False, short_help="List queued events, in the order they were queued."
)
@help_option
@event_filters
@click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
@click.pass_obj
@translate
def events_list(obj: GlobalOptions, as_json: bool, **filters: Any) -> None:
    """List queued events in the order they were queued (by id, not by `at`), as a table or
    JSON lines.

    \b
    Examples:
      hamustro events list
      hamustro events list --state rejected --event 'signup*'
      hamustro events list --json --since 2026-11-28 | jq .event
    """
    chosen = _filter(None, **filters)
    with obj.tracker(required=()) as tracker:
        filtered = any(value is not None for value in filters.values())
        stream(tracker.spool.select(chosen), as_json, empty=NO_MATCH if filtered else NO_EVENTS)


@events.command("show", add_help_option=False)
@help_option
@click.argument("event_id", metavar="ID", type=EVENT_ID)
@click.option("--json", "as_json", is_flag=True, help="Print the event and its session as JSON.")
@click.pass_obj
@translate
def events_show(obj: GlobalOptions, event_id: int, as_json: bool) -> None:
    """Show one event, its session's attributes and why it was rejected.

    \b
    Examples:
      hamustro events show 1
      hamustro events show 1 --json | jq .reason
    """
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
    echo(f"  destination: {event['destination'] or 'not recorded (queued before destinations were)'}")
    for key in ("user_id", "ip", "parameters", "is_testing"):
        echo(f"  {key + ':':<12} {shown(event[key])}")
    echo("session attributes:")
    for key, value in attrs.to_dict().items():
        echo(f"  {key + ':':<17} {shown(value)}")


@events.command("requeue", add_help_option=False, short_help="Move rejected events back to pending.")
@help_option
@click.argument("ids", metavar="[ID]...", nargs=-1, type=EVENT_ID)
@event_filters
@click.pass_obj
@translate
def events_requeue(obj: GlobalOptions, ids: tuple[int, ...], **filters: Any) -> None:
    """Move rejected events (the IDs, or those the filters choose; --state rejected: all of
    them) back to pending, without sending. Pending events are left as they are.

    \b
    Examples:
      hamustro events requeue 1 2
      hamustro events requeue --event 'signup*' --since 2026-11-28
    """
    from hamustro_cli.spool.queue import Change

    if filters["state"] not in (None, "rejected"):
        raise InputError(f"--state {filters['state']}: requeue moves rejected events only")
    chosen = _named(ids, filters, "requeue")
    with obj.tracker(required=()) as tracker:
        moved = tracker.spool.change(Change.REQUEUE, chosen)
    if not obj.quiet:
        click.echo(f"requeued {count(moved, 'rejected event')}")


@events.command("drop", add_help_option=False)
@help_option
@click.argument("ids", metavar="[ID]...", nargs=-1, type=EVENT_ID)
@event_filters
@click.option("--yes", "-y", is_flag=True, help="Do not ask; needed when not on a terminal.")
@click.pass_obj
@translate
def events_drop(obj: GlobalOptions, ids: tuple[int, ...], yes: bool, **filters: Any) -> None:
    """Delete events (the IDs, or those the filters choose) for good. Asks first on a
    terminal; elsewhere needs --yes.

    \b
    Examples:
      hamustro events drop 1 2 --yes
      hamustro events drop --state rejected --yes
    """
    from hamustro_cli.spool.queue import Change

    chosen = _named(ids, filters, "drop")
    with obj.tracker(required=()) as tracker:
        if not yes:
            if not sys.stdin.isatty():
                raise InputError("drop deletes events for good: give --yes (no terminal to ask on)")
            found = tracker.spool.count(chosen)
            if not click.confirm(f"Delete {count(found, 'event')} for good?", default=False):
                click.echo("nothing was deleted", err=True)
                return
        dropped = tracker.spool.change(Change.DROP, chosen)
    if not obj.quiet:
        click.echo(f"dropped {count(dropped, 'event')}")


@events.command(
    "claim", add_help_option=False, short_help="Send another destination's events with this config."
)
@help_option
@click.argument("other", metavar="FINGERPRINT")
@click.pass_obj
@translate
def events_claim(obj: GlobalOptions, other: str) -> None:
    """Make the events queued for another destination this config's: the next flush sends them
    to this collector_url, signed with this secret. For a collector that moved or a secret
    that changed; 'hamustro status' lists the destinations the spool holds events for.

    \b
    Examples:
      hamustro status                          # elsewhere: ... 3f9c0a1b2c3d4e5f (12)
      hamustro events claim 3f9c0a1b2c3d4e5f
    """
    from hamustro_cli.destination import FINGERPRINT_CHARS, is_fingerprint

    if not is_fingerprint(other):
        raise InputError(
            f"FINGERPRINT: expected {FINGERPRINT_CHARS} lowercase hex digits, as 'hamustro status' "
            "prints a destination's"
        )
    with obj.tracker() as tracker:
        mine = tracker.destination
        where = tracker.config.spool_dir
        if other == mine:
            raise InputError(
                f"{other} is this config's destination already: 'hamustro flush' sends its events"
            )
        if other not in tracker.spool.by_destination():
            raise InputError(
                f"no events are queued for destination {other} in {where} "
                "('hamustro status' lists the destinations it holds events for)"
            )
        moved = tracker.spool.claim(other, mine)
    if not obj.quiet:
        click.echo(f"claimed {count(moved, 'event')} of destination {other}: 'hamustro flush' sends them")
