"""The `hamustro` command through Click: the root group, its global options and `main`. The
console script (entry.main) comes here for every call but `track` in its plain forms.

One module a command group: track (always loaded), flush, status (and session), events,
config, doctor, collector (each loaded when named: defining a command's options costs every
call). What they share: options.py (the option helpers, error translation; the options object
is invocation.GlobalOptions) and output.py (JSON and the broken-stdout handling)."""

from __future__ import annotations

import importlib

import click

from hamustro_cli.cli.options import (
    GlobalOptions,
    complete_dir,
    complete_file,
    help_option,
    version_option,
)
from hamustro_cli.cli.track import track
from hamustro_cli.invocation import guarded


class Commands(click.Group):
    """The root group. Every command but `track` is loaded when named."""

    LAZY = {
        "collector": "collector",
        "config": "config_group",
        "doctor": "doctor",
        "events": "events",
        "flush": "flush",
        "session": "session",
        "status": "status",
    }
    HOME = {"session": "status"}  # the module a command lives in, when not its own name

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.LAZY})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.LAZY:
            module = importlib.import_module(f"hamustro_cli.cli.{self.HOME.get(name, name)}")
            command: click.Command = getattr(module, self.LAZY[name])
            return command
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
@version_option
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


cli.add_command(track)


def main() -> None:
    """The whole CLI through Click (entry.main tries the fast `track` first)."""
    guarded(lambda: cli(prog_name="hamustro"))


if __name__ == "__main__":  # pragma: no cover
    main()
