"""Regenerate the man pages in man/man1/ from the Click definitions.

Run: python tools/gen_man.py   (from a checkout with hamustro installed, e.g. `pip install -e .`)

One page for `hamustro` and one for each command and subcommand (hamustro-track.1,
hamustro-events-list.1, ...), written from the same help texts `--help` prints, so nothing is
generated when hamustro runs. pyproject.toml ships them as data files in share/man/man1 (wheel
and sdist); tests/test_man.py fails when a committed page is stale and checks the wheel holds
them.
"""

from __future__ import annotations

import inspect
import re
import sys
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "man" / "man1"
MANUAL = "hamustro manual"


def roff(text: str) -> str:
    """Text safe in roff: backslashes and hyphens escaped, no line read as a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in text.split("\n"))


def paragraphs(help_text: str) -> str:
    """Click's help text in roff: `\\b` blocks kept line for line, other paragraphs filled."""
    out = []
    # cleandoc: a docstring is indented as written before Python 3.13 and dedented from 3.13
    # on (and Click passes it as it is), so the pages are the same on every Python
    for block in re.split(r"\n\s*\n", click.unstyle(inspect.cleandoc(help_text)).strip()):
        lines = block.split("\n")
        if lines[0].strip() == "\b":
            body = "\n".join(lines[1:])
            out.append(".PP\n.nf\n" + roff(body) + "\n.fi")
        else:
            out.append(".PP\n" + roff(" ".join(line.strip() for line in lines)))
    return "\n".join(out)


def walk(command: click.Command, ctx: click.Context) -> list[tuple[click.Command, click.Context]]:
    """The command and every command below it, each with its context (for usage and help)."""
    found = [(command, ctx)]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is not None and not sub.hidden:
                found += walk(sub, click.Context(sub, info_name=name, parent=ctx))
    return found


def page(command: click.Command, ctx: click.Context, version: str) -> tuple[str, str]:
    """The file name and the roff text of one command's page."""
    path = ctx.command_path  # "hamustro events list"
    name = path.replace(" ", "-")
    short = command.get_short_help_str(limit=200)
    lines = [
        f'.TH {name.upper()} 1 "" "hamustro {version}" "{MANUAL}"',
        ".SH NAME",
        f"{roff(name)} \\- {roff(short)}",
        ".SH SYNOPSIS",
        f".B {roff(path)}",
        roff(" ".join(command.collect_usage_pieces(ctx))),
        ".SH DESCRIPTION",
        paragraphs(command.help or ""),
    ]
    options = [record for p in command.get_params(ctx) if (record := p.get_help_record(ctx)) and record[1]]
    if options:
        lines.append(".SH OPTIONS")
        for opts, text in options:
            lines += [".TP", f".B {roff(opts)}", roff(text)]
    see_also = ["hamustro(1)"] if ctx.parent else []
    if isinstance(command, click.Group):
        lines.append(".SH COMMANDS")
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                lines += [".TP", f".B {roff(sub_name)}", roff(sub.get_short_help_str(limit=200))]
                see_also.append(f"{name}-{sub_name}(1)")
    elif ctx.parent is not None and ctx.parent.parent is not None:
        see_also.append(f"{ctx.parent.command_path.replace(' ', '-')}(1)")
    lines += [
        ".SH SEE ALSO",
        roff(", ".join(see_also))
        + (",\n" if see_also else "")
        + "the README of hamustro\\-cli (README.md in its sdist).",
    ]
    return f"{name}.1", "\n".join(lines) + "\n"


def generate(out: Path = OUT) -> dict[str, str]:
    """Write every page into `out`; return them by file name."""
    from hamustro_cli import __version__
    from hamustro_cli.cli import cli

    root = click.Context(cli, info_name="hamustro")
    pages = dict(page(command, ctx, __version__) for command, ctx in walk(cli, root))
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("hamustro*.1"):
        if stale.name not in pages:
            stale.unlink()
    for name, text in pages.items():
        (out / name).write_text(text)
    return pages


if __name__ == "__main__":
    written = generate(Path(sys.argv[1]) if len(sys.argv) > 1 else OUT)
    print(f"wrote {len(written)} pages in {OUT if len(sys.argv) < 2 else sys.argv[1]}")
