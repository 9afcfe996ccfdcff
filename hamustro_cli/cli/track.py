"""`hamustro track`: its options, parsed by Click; what it does is trackrun.run_track, which
the fast `track` (entry.py) calls too. Every flag added here is unknown to the fast parser,
which then leaves the call to Click, until it learns it (ARCHITECTURE.md: Keeping track light)."""

from __future__ import annotations

from typing import Any

import click

from hamustro_cli.cli.options import GlobalOptions, help_option, translate
from hamustro_cli.trackrun import run_track


@click.command(add_help_option=False, short_help="Queue one event; send it when a trigger fires.")
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
    help="Send the queue before returning, whatever the triggers say (a failure is a warning: "
    "exit 0, the events stay queued) / never flush from this call (default: config flush).",
)
@click.option(
    "--stdin", "from_stdin", is_flag=True, help="Queue JSON lines from standard input, all or nothing."
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
@translate
def track(obj: GlobalOptions, **args: Any) -> None:
    """Queue one EVENT durably, then flush if the protocol's triggers fire.

    \b
    Examples:
      hamustro track signup --user-id 42 --param plan=pro
      hamustro track page_view --at 2026-11-28T12:00:00Z --no-flush
      printf '{"event": "a"}\\n{"event": "b", "user_id": 7}\\n' | hamustro track --stdin --json
    """
    run_track(obj, **args)
