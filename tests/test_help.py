"""`--help`: command lists whose one-line summaries fit, examples in every command's help, and
every example run against a local collector, a config and a spool of a few events."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import click
import pytest
from conftest import SECRET, SETTINGS, invoke

from hamustro_cli.cli import cli


def commands(group: click.Group = cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path below `group`, groups included."""
    ctx = click.Context(group)
    found = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        found.append((*path, name))
        if isinstance(command, click.Group):
            found += commands(command, (*path, name))
    return found


def resolve(path: tuple[str, ...]) -> click.Command:
    command: click.Command | None = cli
    for name in path:
        assert isinstance(command, click.Group)
        command = command.get_command(click.Context(command), name)
    assert command is not None
    return command


ALL = commands()
GROUPS = [path for path in [(), *ALL] if isinstance(resolve(path), click.Group)]


@pytest.mark.parametrize("group", GROUPS, ids=lambda path: " ".join(path) or "hamustro")
def test_the_command_lists_summarise_without_cutting(group: tuple[str, ...], monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("COLUMNS", "80")
    out = invoke(*group, "--help").stdout
    listed = out.split("\nCommands:\n", 1)[1].splitlines()
    assert listed and not [line for line in listed if line.rstrip().endswith("...")], out


def examples(path: tuple[str, ...]) -> list[str]:
    """The example command lines of `hamustro PATH --help` (continued lines joined)."""
    out = invoke(*path, "--help").stdout
    assert "\nExamples:\n" in out.replace("  Examples:", "Examples:"), f"no examples in {path} --help"
    block = re.split(r"\n\s*Examples:\n", out, maxsplit=1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.replace("\\\n", " ").splitlines() if line.strip()]


@pytest.mark.parametrize("path", [(), *ALL], ids=lambda path: " ".join(path) or "hamustro")
def test_every_command_shows_examples(path: tuple[str, ...]):
    lines = examples(path)
    assert lines and all("hamustro " in line for line in lines), lines
    if path:  # its own examples, not its group's
        assert any(f"hamustro {' '.join(path)}" in line for line in lines), lines


# What a shell would put in place of the examples' variables and substitutions.
SHELL_VALUES = {'"$SECRET"': SECRET, '"$(hostname)"': "host-1", '"$(uname -sr)"': "Linux 6.1"}


def printf(args: list[str]) -> str:
    """printf as the examples use it: `%s VALUE`, or a format with backslash escapes."""
    if args[0] == "%s":
        return args[1]
    return args[0].encode().decode("unicode_escape")


def run_example(line: str, state: dict[str, str]) -> None:
    """Run one example in-process as the shell would: VAR=value prefixes, `printf ... |` as
    standard input, `| jq ...` (not installed here) as a check that the output is JSON, `&&`
    and `# comments`."""
    line = line.split("  #", 1)[0].strip()
    for text, value in {**SHELL_VALUES, **state}.items():
        line = line.replace(text, shlex.quote(value))
    for command in line.split(" && "):
        stdin = None
        piped = [shlex.split(part) for part in command.split(" | ")]
        wants_json = piped[-1][0] == "jq"
        if wants_json:
            piped.pop()
        last = piped.pop()
        if piped:
            assert piped[0][0] == "printf", line
            stdin = printf(piped[0][1:])
        env = {}
        while "=" in last[0]:
            name, value = last.pop(0).split("=", 1)
            env[name] = value
        assert last[0] == "hamustro", line
        with pytest.MonkeyPatch.context() as patch:
            for name, value in env.items():
                patch.setenv(name, value)
            result = invoke(*last[1:], input=stdin, expect=None)
        assert result.exit_code == 0, (line, result.output)
        if wants_json:
            text = result.stdout.strip()
            assert text and all(json.loads(part) is not None for part in text.splitlines()), (line, text)


@pytest.fixture
def queue(config: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A config, a ./ci.toml copy of it (the examples name it), three events queued, and one for
    another destination (its fingerprint stands for the example's)."""
    monkeypatch.chdir(isolated)
    shutil.copy(config, isolated / "ci.toml")
    for name in ("signup.a", "signup.b", "page_view"):
        invoke("track", name)
    monkeypatch.setenv("HAMUSTRO_COLLECTOR_URL", "http://127.0.0.1:9")
    invoke("track", "elsewhere")
    monkeypatch.delenv("HAMUSTRO_COLLECTOR_URL")
    status = json.loads(invoke("status", "--json").stdout)
    (other,) = status["other_destinations"]
    return {"3f9c0a1b2c3d4e5f": other, '"$(hamustro session)"': invoke("session").stdout.strip()}


# Examples that cannot run as written, and how they run instead:
# - `collector` serves until stopped: it runs as a process on a free port (not 8080, which
#   may be taken), answers one request, and is stopped with Ctrl-C (SIGINT);
# - `config init` writes a new file: each gets a config path of its own, and the values a
#   terminal would be asked for come from HAMUSTRO_* variables (CliRunner is no terminal).


@pytest.mark.parametrize("path", [(), *ALL], ids=lambda path: " ".join(path) or "hamustro")
def test_every_example_runs(path: tuple[str, ...], queue: dict[str, str], monkeypatch: pytest.MonkeyPatch):
    if path == ("collector",):
        for line in examples(path):
            collector_example_runs(line)
        return
    for number, line in enumerate(examples(path)):
        if "hamustro config init" in line:
            monkeypatch.setenv("HAMUSTRO_CONFIG", f"init-{number}.toml")
            for key, value in {"collector_url": "http://127.0.0.1:9", **SETTINGS}.items():
                if f"--{key.replace('_', '-')}" not in line and key != "flush":
                    monkeypatch.setenv(f"HAMUSTRO_{key.upper()}", value)
        run_example(line, queue)


def collector_example_runs(line: str) -> None:
    words = shlex.split(line.split("  #", 1)[0])
    env = dict(word.split("=", 1) for word in words if "=" in word and not word.startswith("-"))
    args = [word for word in words if word not in {f"{k}={v}" for k, v in env.items()}][1:]
    args[args.index("--port") + 1] = "0"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hamustro_cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        assert proc.stderr is not None
        said = proc.stderr.readline()
        assert "listening on http://127.0.0.1:" in said
        try:  # an answer: it serves (a GET of its root is refused)
            urllib.request.urlopen(said.split()[-1], timeout=30)
        except urllib.error.HTTPError as refused:
            assert refused.code == 404  # not the collector's path
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C, as a person stops it
        assert proc.wait(timeout=30) == 0


def test_config_help_says_where_the_file_is_and_what_wins(isolated: Path, monkeypatch: pytest.MonkeyPatch):
    """What --config's help says, checked against what `config path` and `config show` do:
    the file's default place, and a flag over a variable over the file over the default."""
    out = " ".join(invoke("--help").stdout.split())
    line = out.split("--config PATH", 1)[1].split(" --spool-dir", 1)[0]
    assert "app dir" not in line
    assert "Default: $HAMUSTRO_CONFIG, else $XDG_CONFIG_HOME/hamustro/config.toml" in line
    assert "from its flag, else its HAMUSTRO_<KEY> variable, else this file, else its default" in line
    monkeypatch.delenv("HAMUSTRO_CONFIG")
    home = Path(os.environ["XDG_CONFIG_HOME"])
    assert invoke("config", "path").stdout.strip() == str(home / "hamustro" / "config.toml")
    (home / "hamustro").mkdir(parents=True)
    (home / "hamustro" / "config.toml").write_text(
        "queue_size = 7\nqueue_retention = 7\nmax_batch_events = 7\n"
    )
    monkeypatch.setenv("HAMUSTRO_QUEUE_RETENTION", "8")
    monkeypatch.setenv("HAMUSTRO_MAX_BATCH_EVENTS", "8")
    shown = json.loads(invoke("config", "show", "--json").stdout)
    values = {key: about["value"] for key, about in shown["keys"].items()}
    assert (values["queue_size"], values["queue_retention"], values["max_batch_events"]) == (7, 8, 8)
    spool = isolated / "flagged"
    shown = json.loads(invoke("--spool-dir", str(spool), "config", "show", "--json").stdout)
    assert shown["keys"]["spool_dir"]["value"] == str(spool)  # over HAMUSTRO_SPOOL_DIR
