"""`hamustro flush`: send what is queued (the library part is tracker.flush and sending.py)."""

from __future__ import annotations

import sys

import click

from hamustro_cli.cli.options import GlobalOptions, help_option, translate
from hamustro_cli.cli.output import emit_json
from hamustro_cli.disabled import disabled_note, tracking_disabled
from hamustro_cli.errors import exit_status
from hamustro_cli.invocation import quiet_library_logs
from hamustro_cli.log import ERROR, INFO, WARNING, count


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
    if tracking_disabled():  # before the config: nothing is read or sent
        if as_json:
            emit_json(
                {"disabled": True, "sent": 0, "failed": 0, "rejected": 0, "pending": None, "batches": []}
            )
        else:
            obj.log(WARNING, f"nothing sent: tracking is {disabled_note()}")
        return
    quiet_library_logs()
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
        if not report.halted:  # halted: the error line below says it
            obj.log(INFO, f"nothing sent: {report.skipped}")
    elif not obj.quiet:
        if dry_run:
            events = sum(b["events"] for b in report.batches)
            size = sum(b["bytes"] for b in report.batches)
            click.echo(
                f"dry run: {count(events, 'event')} in {count(len(report.batches), 'batch', 'batches')}, "
                f"{size} bytes; nothing sent"
            )
        else:
            elsewhere = f", {report.elsewhere} left for other destinations" if report.elsewhere else ""
            batches = sum(1 for b in report.batches if b["status"] == 200)
            click.echo(
                f"sent {count(report.sent, 'event')} in {count(batches, 'batch', 'batches')}; "
                f"{report.pending} pending, {report.rejected} rejected{elsewhere}"
            )
    if report.skip is not None and report.halted:
        # `--if-due` from cron: exit 4 and one line even under -q, which cron mails to someone
        obj.log(ERROR, f"sending is halted: {report.halted_reason}; once that is fixed, run 'hamustro flush'")
    if report.would_reject:
        obj.log(
            WARNING,
            f"{count(report.would_reject, 'event')} a flush would set aside as rejected: stored "
            "rows the wire cannot carry (a damaged or tampered spool; 'hamustro events list' shows them)",
        )
    if report.rejected:
        obj.log(
            WARNING,
            f"{count(report.rejected, 'event')} set aside as rejected, refused by the collector or "
            "stored as the wire cannot carry ('hamustro events list --state rejected' says why; "
            "'hamustro flush --retry-rejected' resends)",
        )
    status = exit_status(report)
    if status:
        sys.exit(status)
