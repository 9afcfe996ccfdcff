"""`hamustro metrics`: the spool's figures in the Prometheus text format."""

from __future__ import annotations

import click

from hamustro_cli.cli.options import GlobalOptions, complete_file, help_option, translate


@click.command(add_help_option=False)
@help_option
@click.option(
    "--textfile",
    metavar="PATH",
    shell_complete=complete_file,
    help="Write to PATH atomically, not to standard output (node_exporter reads *.prom files).",
)
@click.pass_obj
@translate
def metrics(obj: GlobalOptions, textfile: str | None) -> None:
    """Print the spool's figures in the Prometheus text format (0.0.4).

    \b
    Examples:
      hamustro metrics
      hamustro metrics --textfile hamustro.prom   # node_exporter: its textfile directory
    """
    from hamustro_cli import metrics as prometheus

    with obj.tracker(required=()) as tracker:
        text = prometheus.render(prometheus.collect(tracker))
    if textfile is None:
        click.echo(text, nl=False)
    else:
        prometheus.write_textfile(textfile, text)
