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


def quick_start() -> list[str]:
    """The Quick start's command lines, comments dropped, in order."""
    section = README.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    lines = "\n".join(re.findall(r"```sh\n(.*?)\n```", section, re.S)).splitlines()
    return [line.split("#", 1)[0].strip() for line in lines if line.split("#", 1)[0].strip()]


def test_quick_start_installs_what_exists_and_starts_a_collector_before_doctor():
    """The package is not on the index: the Quick start installs from the checkout or a wheel
    built from it, and names the index command only as what it will be."""
    commands = quick_start()
    assert commands[0] == "pipx install ."
    assert "pipx install dist/hamustro_cli-0.1.0-py3-none-any.whl" in commands[1]
    assert not [
        c for c in commands if c.startswith(("pipx install hamustro-cli", "pip install hamustro-cli"))
    ]
    assert "# once it is published, this will do: pipx install hamustro-cli" in README
    collector = next(i for i, c in enumerate(commands) if " hamustro collector " in f" {c} ")
    assert collector < commands.index("hamustro config init") < commands.index("hamustro doctor")


def test_readme_says_which_collector_and_that_delivery_is_at_least_once():
    """collector-behaviour.md: the Go collector (0cc29d4) never removes duplicates."""
    text = " ".join(README.split())
    assert "as of April 2016, commit 0cc29d4" in text and "`new_proto_schema`" in text
    assert "is not supported" in text.split("`new_proto_schema`", 1)[1][:200]
    assert "Delivery is at least once: the collector does not drop duplicates" in text
    assert "receiving side drops" not in text


def test_the_project_urls_are_real():
    """No invented addresses in the package's metadata: only the collector's repository."""
    from hamustro_cli.config import parse_toml

    urls = parse_toml((ROOT / "pyproject.toml").read_text())["project"].get("urls", {})
    assert urls == {"Protocol": "https://github.com/wunderlist/hamustro"}


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
    assert "sent 4 events" in out
    received = out.split("what the collector received", 1)[1]
    assert received.count('"event": ') == 4 and '"nr": 4' in received
