"""What people see: a progress bar on a terminal only, and shell completion."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import invoke, run_on_terminal


def backlog(n: int) -> None:
    invoke("track", "--stdin", input="".join(json.dumps({"event": f"e{i}"}) + "\n" for i in range(n)))


def test_long_flush_shows_progress_on_a_terminal(config, collector):
    backlog(6000)
    code, shown = run_on_terminal(["flush"])
    assert code == 0
    assert "sending" in shown and "100%" in shown
    assert len(collector.received()) == 6000


def test_no_progress_bar_when_not_a_terminal(config, collector):
    backlog(6000)
    result = subprocess.run(
        [sys.executable, "-m", "hamustro_cli", "flush"], capture_output=True, text=True, env=os.environ.copy()
    )
    assert result.returncode == 0
    assert "%" not in result.stderr and "sending" not in result.stderr
    assert result.stdout.startswith("sent 6000 events")


def test_shell_completion_scripts_are_generated(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "hamustro")
    for shell, marker in (
        ("bash", "complete -o nosort -F"),
        ("zsh", "compdef"),
        ("fish", "complete --no-files --command hamustro"),
    ):
        out = subprocess.run(
            [exe], env={**os.environ, "_HAMUSTRO_COMPLETE": f"{shell}_source"}, capture_output=True, text=True
        )
        assert out.returncode == 0 and marker in out.stdout, shell
    # and bash really completes the subcommands
    out = subprocess.run(
        [exe],
        env={
            **os.environ,
            "_HAMUSTRO_COMPLETE": "bash_complete",
            "COMP_WORDS": "hamustro st",
            "COMP_CWORD": "1",
        },
        capture_output=True,
        text=True,
    )
    assert "plain,status" in out.stdout
