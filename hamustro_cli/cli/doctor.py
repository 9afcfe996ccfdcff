"""`hamustro doctor`: the checks are doctor.py; this prints them."""

from __future__ import annotations

import sys

import click

from hamustro_cli.cli.options import GlobalOptions, help_option
from hamustro_cli.cli.output import emit_json
from hamustro_cli.errors import ExitStatus
from hamustro_cli.invocation import quiet_library_logs


@click.command(add_help_option=False, short_help="Check config, spool, collector and credentials.")
@help_option
@click.option("--json", "as_json", is_flag=True, help="Print the checks as JSON.")
@click.pass_obj
def doctor(obj: GlobalOptions, as_json: bool) -> None:
    """Check config, spool, collector and credentials, one line each; send no event.

    \b
    Examples:
      hamustro doctor
      hamustro doctor --json
      hamustro -q doctor               # only what fails
    """
    from hamustro_cli.doctor import render, run_checks, to_json

    quiet_library_logs()
    checks = run_checks(obj.config_path, obj.spool_dir, log=obj.log)
    if as_json:
        emit_json(to_json(checks))
    elif obj.quiet:
        from hamustro_cli.doctor import CheckState

        failed = [c for c in checks if c.state is CheckState.FAIL]  # not those skipped
        if failed:
            click.echo(render(failed))
    else:
        click.echo(render(checks))
    if not all(c.ok for c in checks):
        sys.exit(ExitStatus.UNDELIVERED)
