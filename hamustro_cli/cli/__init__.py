"""The `hamustro` command: the root group, its global options and `main`.

One module a command group: track (always loaded: it is the hot path), flush, status (and
session), events, config, doctor, collector (each loaded when named: defining a command's
options costs every `track`). What they share: options.py (the options object, the option
helpers, error translation) and output.py (JSON and the broken-stdout handling)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from typing import Any

import click

from hamustro_cli.cli.options import (
    GlobalOptions,
    complete_dir,
    complete_file,
    help_option,
    show_error,
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
        "exec": "exec_command",
        "flush": "flush",
        "metrics": "metrics",
        "session": "session",
        "status": "status",
    }
    HOME = {"session": "status", "exec": "execute"}  # the module a command lives in, when not its own name

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        """click's main, with errors printed as every hamustro message is (show_error), not as
        click's `Error: ...`. Not standalone (a caller that handles errors): click's own."""
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            show_error(exc)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

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
    help="Config file (TOML). Default: $HAMUSTRO_CONFIG, else $XDG_CONFIG_HOME/hamustro/config.toml "
    "(~/.config/hamustro/config.toml). A setting is taken from its flag, else its HAMUSTRO_<KEY> "
    "variable, else this file, else its default.",
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
