"""Every command and option explains itself; the README documents every config key and runs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import click
import pytest

from hamustro_cli.cli import cli
from hamustro_cli.config import KEYS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def commands(group=cli, prefix="hamustro"):
    """Every command and subcommand, as "hamustro config set" and so on (the lazily loaded ones too)."""
    yield prefix, group
    if isinstance(group, click.Group):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            yield from commands(group.get_command(ctx, name), f"{prefix} {name}")


@pytest.mark.parametrize("name,command", list(commands()), ids=[n for n, _ in commands()])
def test_every_command_and_option_has_help(name, command):
    assert command.help and command.help.strip(), f"{name} has no help text"
    for param in command.params:
        if isinstance(param, click.Option) and param.name not in ("help", "version"):
            assert param.help and param.help.strip(), f"{name} {param.opts} has no help text"


def test_readme_documents_every_config_key():
    table = re.findall(r"^\| `([a-z_0-9]+)` \|", README, re.M)
    missing = [k for k in KEYS if k not in table]
    assert not missing, f"README's configuration table lacks {missing}"


def test_readme_documents_every_command_and_exit_code():
    for name, _ in commands():
        assert name in README, name
    for code in range(5):
        assert re.search(rf"^\| {code} \|", README, re.M), code


def test_readme_test_command_is_what_ci_runs():
    ci = (ROOT / ".ci" / "run").read_text()
    blocks = re.findall(r"```sh\n(.*?)\n```", README, re.S)
    test_command = next(b for b in blocks if "pytest" in b)
    assert test_command.strip() in ci


@pytest.mark.heavy
def test_readme_demo_runs_end_to_end():
    assert "bash tools/demo.sh" in README
    result = subprocess.run(
        ["bash", str(ROOT / "tools" / "demo.sh")], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "sent 4 event(s)" in out
    received = out.split("what the collector received", 1)[1]
    assert received.count('"event": ') == 4 and '"nr": 4' in received
