"""`hamustro flush`: send what is queued (the library part is tracker.flush and sending.py)."""

from __future__ import annotations

import sys

import click

from hamustro_cli.cli.options import GlobalOptions, help_option, translate
from hamustro_cli.cli.output import emit_json
from hamustro_cli.errors import exit_status
from hamustro_cli.log import INFO, WARNING


@click.command(add_help_option=False, short_help="Send the queued events now, in signed batches.")
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
    elif report.skip is not None:
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
    status = exit_status(report)
    if status:
        sys.exit(status)
