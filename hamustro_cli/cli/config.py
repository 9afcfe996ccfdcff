"""`hamustro config`: the config file by hand. The library part is configfile.py; these commands
only gather input and print."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click

from hamustro_cli.cli.options import GlobalOptions, help_option, translate
from hamustro_cli.cli.output import emit_json
from hamustro_cli.errors import ConfigError, InputError
from hamustro_cli.log import WARNING

MAX_STDIN_VALUE = 64 * 1024  # bytes: more than any key takes (parse_value checks each key's own limit)


def _read_stdin_value() -> str:
    """All of standard input, less one line ending: `printf %s "$S" |` and `echo "$S" |` agree.
    Read no further than MAX_STDIN_VALUE: `< /dev/zero` must not fill the memory."""
    data = sys.stdin.buffer.read(MAX_STDIN_VALUE + 1)  # bytes: a "\r" in the value stays
    if len(data) > MAX_STDIN_VALUE:
        raise InputError(f"standard input holds more than {MAX_STDIN_VALUE // 1024} KiB: not a config value")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError("standard input is not valid UTF-8") from None
    return text[:-2] if text.endswith("\r\n") else text[:-1] if text.endswith("\n") else text


def _ask(key: Any, default: str | None = None) -> Any:
    """One value from the terminal, checked as loading checks it; the secret hidden and asked
    twice. An empty answer to a required key is asked again, saying why."""
    from hamustro_cli.config import SECRET_KEY
    from hamustro_cli.configfile import EXAMPLES, QUESTIONS, parse_value

    def check(text: str) -> Any:
        if text == "" and key.required:
            raise click.BadParameter(
                f"{key.name} is required and has no default: type a value (Ctrl-C stops)"
            )
        try:
            return parse_value(key.name, text, "the terminal")
        except ConfigError as exc:
            raise click.BadParameter(str(exc)) from None

    secret = key.name == SECRET_KEY
    if key.name in QUESTIONS:
        question = QUESTIONS[key.name] + ("" if secret else f", e.g. {EXAMPLES[key.name]}")
    else:
        question = f"{key.name} ({key.doc})"
    return click.prompt(
        question,
        default="" if default is None else default,  # an empty answer reaches check(), said
        show_default=default is not None,
        hide_input=secret,
        confirmation_prompt=secret,
        value_proc=check,
        err=True,
    )


@click.group("config", add_help_option=False)
@help_option
def config_group() -> None:
    """Show, create and change the config file.

    \b
    Examples:
      hamustro config init
      hamustro config show
      hamustro config set queue_size 100
      hamustro config path
    """


@config_group.command("path", add_help_option=False)
@help_option
@click.pass_obj
def config_path_command(obj: GlobalOptions) -> None:
    """Print the config file in use (it may not exist yet).

    \b
    Examples:
      hamustro config path
      HAMUSTRO_CONFIG=./ci.toml hamustro config path
    """
    click.echo(os.path.abspath(obj.config_file()))


@config_group.command("show", add_help_option=False, short_help="Print every setting and where it came from.")
@help_option
@click.option("--json", "as_json", is_flag=True, help="Print the values and their origins as JSON.")
@click.pass_obj
@translate
def config_show(obj: GlobalOptions, as_json: bool) -> None:
    """Every setting, its value and where it came from; the secret only as set/unset.

    \b
    Examples:
      hamustro config show
      hamustro config show --json | jq .queue_size
      hamustro --config ./ci.toml config show
    """
    from hamustro_cli.configfile import describe, show_lines

    description = describe(obj.config(required=()))  # its warnings said as every command says them
    if as_json:
        emit_json(description)
    else:
        click.echo("\n".join(show_lines(description)))


def _required_key_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """--collector-url, --device-id, ...: one option per required key but the secret (a flag
    would show it in the process list), described from config.KEYS."""
    from hamustro_cli.config import KEYS, REQUIRED, SECRET_KEY, env_name, flag_name

    for name in reversed(REQUIRED):
        if name != SECRET_KEY:
            doc = KEYS[name].doc
            help_text = f"{doc[:1].upper()}{doc[1:]} (else ${env_name(name)}, else asked)."
            func = click.option(flag_name(name), name, metavar="TEXT", help=help_text)(func)
    return func


@config_group.command(
    "init", add_help_option=False, short_help="Write a commented config file, asking for the required values."
)
@help_option
@click.option("--force", is_flag=True, help="Replace an existing config file.")
@click.option(
    "--secret-stdin", is_flag=True, help="Read shared_secret_key from standard input (never from a flag)."
)
@_required_key_options
@click.pass_obj
@translate
def config_init(obj: GlobalOptions, force: bool, secret_stdin: bool, **given: str | None) -> None:
    """Write a commented config file (0600) with every key, asking for the required ones.

    Each required value comes from its option, else its HAMUSTRO_<KEY> variable, else a
    question on the terminal (the secret without echo). Without a terminal a missing value is
    an error (exit 2) and nothing is written. An existing file is kept unless --force.

    \b
    Examples:
      hamustro config init
      printf %s "$SECRET" | hamustro config init --secret-stdin \\
          --collector-url https://collector.example --device-id "$(hostname)" \\
          --client-id backup-job --system-version "$(uname -sr)" --product-version 2.3.0
    """
    import platform
    import socket

    from hamustro_cli.configfile import exists_error, init_file, required_values, writable_target

    path = obj.config_file()
    if os.path.lexists(writable_target(path)) and not force:  # said before anything is asked
        raise exists_error(path)
    if secret_stdin:
        given["shared_secret_key"] = _read_stdin_value()
    guesses = {
        "device_id": socket.gethostname(),
        "system_version": f"{platform.system()} {platform.release()}",
    }
    terminal = sys.stdin.isatty() and not secret_stdin
    if terminal:
        click.echo(f"Writing {path}; the required settings:", err=True)
    values = required_values(
        given,
        os.environ,
        (lambda key: _ask(key, guesses.get(key.name))) if terminal else None,
        note=lambda message: click.echo(f"hamustro: {message}", err=True),
    )
    init_file(path, values, force)
    click.echo(f"hamustro: wrote {path} (mode 0600); check it with 'hamustro doctor'", err=True)


def _complete_key(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from hamustro_cli.config import KEYS

    return [name for name in KEYS if name.startswith(incomplete)]


@config_group.command(
    "set", add_help_option=False, short_help="Set one key in the config file, keeping its comments."
)
@help_option
@click.argument("key", shell_complete=_complete_key)
@click.argument("value", required=False)
@click.pass_obj
@translate
def config_set(obj: GlobalOptions, key: str, value: str | None) -> None:
    """Set KEY to VALUE in the config file, keeping its comments and layout.

    VALUE is read as the HAMUSTRO_<KEY> variable would be; "-" reads it from standard input
    (the way to pass the secret); without VALUE it is asked on a terminal, the secret without
    echo. The file is created 0600 when missing and replaced atomically.

    \b
    Examples:
      hamustro config set queue_size 100
      hamustro config set ip off
      printf %s "$SECRET" | hamustro config set shared_secret_key -
    """
    from hamustro_cli.config import KEYS, SECRET_KEY, env_name
    from hamustro_cli.configfile import parse_value, set_key

    if key not in KEYS:
        parse_value(key, "", "the command line")  # the unknown-key error
    if value == "-":
        parsed = parse_value(key, _read_stdin_value(), "standard input")
    elif value is not None:
        if key == SECRET_KEY:
            obj.log(
                WARNING,
                "a secret given as an argument shows in the process list and "
                f"shell history; prefer: hamustro config set {SECRET_KEY} -",
            )
        parsed = parse_value(key, value, "the command line")
    elif sys.stdin.isatty():
        parsed = _ask(KEYS[key])
    else:
        raise InputError(f"missing VALUE for {key} (give it, or - to read it from standard input)")
    path = obj.config_file()
    set_key(path, key, parsed)
    variable = env_name(key)
    if variable in os.environ or (key == "spool_dir" and obj.spool_dir is not None):
        shadow = "--spool-dir" if variable not in os.environ else f"environment variable {variable}"
        obj.log(WARNING, f"{key} is also set by {shadow}, which takes precedence")
