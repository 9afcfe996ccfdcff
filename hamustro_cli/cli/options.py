"""What every `hamustro` command takes: the global options (GlobalOptions, click's `obj`), the
option helpers (number ranges, completion, the hand-made --help and --version: see below) and
the translation of library errors into the contract's exit codes (errors.exit_status)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click

from hamustro_cli import __version__
from hamustro_cli.errors import HamustroError, exit_status
from hamustro_cli.events import SQLITE_INT_MAX
from hamustro_cli.invocation import GlobalOptions as GlobalOptions  # the commands import it from here
from hamustro_cli.log import ERROR, line

# Numbers given on the command line that reach the spool: beyond SQLite's INTEGER they would
# end in an OverflowError, so click refuses them as usage errors (exit 2) naming the argument.
EVENT_ID = click.IntRange(1, SQLITE_INT_MAX)
LIMIT = click.IntRange(1, SQLITE_INT_MAX)


def show_error(exc: click.ClickException) -> None:
    """How every command prints an error, click's own usage errors included (the root group's
    `main` calls it in place of click's `Error: ...`): the usage and where to find help for a
    usage error, then one `hamustro: error: ...` line."""
    if sys.stderr is None:  # no stderr at all (its descriptor was closed when we started):
        return  # nothing to print to; click 8.1 would end in an AttributeError, later ones return
    ctx = exc.ctx if isinstance(exc, click.UsageError) else None
    if ctx is not None:
        click.echo(f"{ctx.get_usage()}\nTry '{ctx.command_path} --help' for help.\n", err=True)
    click.echo(line(ERROR, exc.format_message()), err=True)


def fail(exc: HamustroError) -> NoReturn:
    error = click.ClickException(str(exc))
    error.exit_code = int(exit_status(exc))  # type: ignore[misc]  # click reads it per instance
    raise error


def translate(func: Callable[..., Any]) -> Callable[..., Any]:
    """Library exceptions become ClickExceptions with the contract's exit code."""
    import functools

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HamustroError as exc:
            fail(exc)

    return wrapper


# Plain string options and hand-made --version and --help: click.Path, click.version_option
# and click's own help option call gettext, which imports locale: about 1 ms of every `track`.
# Paths are checked by the library, which says which flag or key they came from.


def print_version(ctx: click.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"hamustro {__version__}")
        ctx.exit()


def print_help(ctx: click.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(ctx.get_help(), color=ctx.color)
        ctx.exit()


def complete_file(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Let the shell complete a file name (plain string options: see above)."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="file")]


def complete_dir(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="dir")]


def complete_session(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """The sessions in the spool the command line points at (--config, --spool-dir, the
    environment): read only, and nothing when there is no spool or the settings are wrong."""
    from hamustro_cli.config import load_config
    from hamustro_cli.errors import HamustroError
    from hamustro_cli.spool.browsing import session_ids

    root = ctx.find_root().params
    try:
        spool_dir = load_config(root.get("config_path"), root.get("spool_dir")).spool_dir
    except HamustroError:
        return []
    return [sid for sid in session_ids(spool_dir) if sid.startswith(incomplete)]


def _eager_flag(
    *names: str, action: Callable[[click.Context, bool], None], help: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        *names,
        is_flag=True,
        expose_value=False,
        is_eager=True,
        callback=lambda ctx, param, value: action(ctx, value),
        help=help,
    )


help_option = _eager_flag("-h", "--help", action=print_help, help="Show this message and exit.")
version_option = _eager_flag("--version", action=print_version, help="Show the version and exit.")
