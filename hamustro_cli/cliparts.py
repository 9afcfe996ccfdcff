"""What every `hamustro` command shares: the exit codes, the global options, the translation
of library errors, and the hand-made --help (see below)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

import click

from hamustro_cli import __version__
from hamustro_cli.errors import (
    ConfigError,
    FlushBusy,
    HamustroError,
    InputError,
    SpoolError,
)
from hamustro_cli.errors import ExitStatus as ExitStatus  # cli and tests import it from here
from hamustro_cli.events import SQLITE_INT_MAX
from hamustro_cli.log import ERROR, WARNING

if TYPE_CHECKING:
    from hamustro_cli.config import Config
    from hamustro_cli.tracker import ClientTracker


EXIT_FOR = {
    FlushBusy: ExitStatus.UNDELIVERED,
    ConfigError: ExitStatus.USAGE,
    InputError: ExitStatus.USAGE,
    SpoolError: ExitStatus.SPOOL,
}


# Numbers given on the command line that reach the spool: beyond SQLite's INTEGER they would
# end in an OverflowError, so click refuses them as usage errors (exit 2) naming the argument.
EVENT_ID = click.IntRange(1, SQLITE_INT_MAX)
LIMIT = click.IntRange(1, SQLITE_INT_MAX)


class GlobalOptions:
    """What the global options say, for every command (click's `obj`)."""

    def __init__(self, config_path: str | None, spool_dir: str | None, verbose: int, quiet: bool):
        self.config_path = config_path
        self.spool_dir = spool_dir
        self.verbose = verbose
        self.quiet = quiet

    def log(self, level: int, message: str) -> None:
        """Errors always; warnings unless -q; INFO with -v, DEBUG with -vv (see log.py)."""
        if level > ERROR and (self.quiet or level > max(self.verbose, WARNING)):
            return
        click.echo(f"hamustro: {message}", err=True)

    def config(self, required: tuple[str, ...] | None = None) -> Config:
        from hamustro_cli.config import REQUIRED, load_config

        cfg = load_config(self.config_path, self.spool_dir)
        for warning in cfg.warnings:
            self.log(WARNING, warning)
        cfg.require(REQUIRED if required is None else required)
        return cfg

    def tracker(self, required: tuple[str, ...] | None = None) -> ClientTracker:
        from hamustro_cli.tracker import ClientTracker

        return ClientTracker(config=self.config(required), log=self.log)


def fail(exc: HamustroError) -> NoReturn:
    code = next((c for t, c in EXIT_FOR.items() if isinstance(exc, t)), ExitStatus.USAGE)
    error = click.ClickException(str(exc))
    error.exit_code = int(code)  # type: ignore[misc]  # click reads it per instance
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


def emit_json(data: Any) -> None:
    click.echo(json_text()(data))


def json_text() -> Callable[[Any], str]:
    """json.dumps for what commands print. A value stored as a BLOB where text belongs (a
    tampered or damaged spool) is written as its text, bad bytes escaped (\\xff), where
    json.dumps would end the command in a traceback."""
    import json

    return json.JSONEncoder(default=_blob_text).encode


def _blob_text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


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


help_option = click.option(
    "-h",
    "--help",
    is_flag=True,
    expose_value=False,
    is_eager=True,
    callback=lambda ctx, param, value: print_help(ctx, value),
    help="Show this message and exit.",
)
