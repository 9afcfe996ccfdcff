"""Shell completion through Click's protocol (`_HAMUSTRO_COMPLETE=bash_complete`, COMP_WORDS,
COMP_CWORD), as bash's completion script asks it: config keys after `config set`, the spool's
sessions after `--session`, and nothing that a TAB would wait for or change."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import invoke

from hamustro_cli.cli import cli
from hamustro_cli.config import KEYS


def complete(words: str) -> list[str]:
    """What bash would be offered for the last word of `words` (a trailing space: a new word)."""
    env = {
        "_HAMUSTRO_COMPLETE": "bash_complete",
        "COMP_WORDS": words,
        "COMP_CWORD": str(len(words.split()) - (0 if words.endswith(" ") else 1)),
    }
    result = CliRunner().invoke(cli, [], env=env, prog_name="hamustro")
    assert result.exit_code == 0, result.output
    return [line.split(",", 1)[1] for line in result.stdout.splitlines() if line]


def test_config_set_completes_the_key_names():
    assert complete("hamustro config set ") == list(KEYS)
    assert complete("hamustro config set queue_") == ["queue_size", "queue_retention"]
    assert complete("hamustro config set shared") == ["shared_secret_key"]


def test_session_completes_the_sessions_in_the_spool(config: Path, monkeypatch: pytest.MonkeyPatch):
    spool = Path(os.environ["HAMUSTRO_SPOOL_DIR"])
    assert complete("hamustro events list --session ") == []  # no spool yet: none, and none made
    assert not spool.exists()
    invoke("track", "a")
    first = invoke("session").stdout.strip()
    monkeypatch.setenv("HAMUSTRO_PRODUCT_VERSION", "9.9.9")
    invoke("track", "b")
    second = invoke("session").stdout.strip()
    assert first != second
    assert complete("hamustro events list --session ") == [second, first]  # newest first
    assert complete(f"hamustro events drop --session {first[:6]}") == [first]
    assert complete("hamustro events list --session zz") == []
    broken = config.parent / "broken.toml"
    broken.write_text("queue_size = 'many'\n")  # settings that do not load: nothing, no error
    assert complete(f"hamustro --config {broken} events list --session ") == []
    assert complete(f"hamustro --spool-dir {spool} --config {broken} events list --session ") == []


def test_completion_loads_no_sending_code(config: Path):
    """A TAB starts the program: it must not load what only a flush needs."""
    invoke("track", "a")
    code = (
        "import os, sys\n"
        "os.environ.update(_HAMUSTRO_COMPLETE='bash_complete', COMP_WORDS='hamustro events list --session ',"
        " COMP_CWORD='4')\n"
        "from hamustro_cli.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('requests', 'google.protobuf', 'hamustro_cli.sending')"
        " if m in sys.modules))"
    )
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    lines = shown.stdout.splitlines()
    assert lines[-1] == "[]" and len(lines) == 2 and lines[0].startswith("plain,"), shown
