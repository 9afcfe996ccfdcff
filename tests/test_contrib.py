"""contrib/: the systemd user units and the crontab example are at least well formed.

The unit files are always parsed here; `systemd-analyze verify` runs in addition where it is
installed, with ExecStart pointed at the hamustro of this environment (verify insists that
the program exists).
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
SERVICE = CONTRIB / "hamustro-flush.service"
TIMER = CONTRIB / "hamustro-flush.timer"
CRONTAB = CONTRIB / "crontab.example"


class _CaseSensitive(configparser.ConfigParser):
    def optionxform(self, optionstr: str) -> str:
        return optionstr  # keys are case-sensitive in systemd


def parse_unit(path: Path) -> configparser.ConfigParser:
    """systemd unit syntax is close enough to INI: sections, Key=Value, # and ; comments."""
    parser = _CaseSensitive(
        interpolation=None,
        strict=True,
        delimiters=("=",),
        comment_prefixes=("#", ";"),
        empty_lines_in_values=False,
    )
    parser.read_string(path.read_text(), source=str(path))
    return parser


def exec_argv(service: configparser.ConfigParser) -> list[str]:
    return shlex.split(service["Service"]["ExecStart"])


def test_service_syntax():
    unit = parse_unit(SERVICE)
    assert unit.sections() == ["Unit", "Service"]
    assert unit["Unit"]["Description"]
    assert unit["Service"]["Type"] == "oneshot"
    argv = exec_argv(unit)
    program = argv[0]
    assert program.startswith("/") or program.startswith("%h/"), program
    assert Path(program).name == "hamustro"
    assert argv[1:] == ["-q", "flush", "--if-due"]
    assert unit["Service"]["NoNewPrivileges"] == "yes"
    assert unit["Service"]["UMask"] == "0077"
    for key in unit["Service"]:
        # Mount namespacing needs privileges (or user namespaces) in a user manager.
        assert not key.startswith(("ProtectSystem", "ProtectHome", "PrivateTmp", "User")), key


def test_units_point_at_this_client_and_order_only_on_what_a_user_manager_has():
    """network-online.target is a system unit: in a user manager After= on it orders nothing.
    Documentation= names this client's pages (shipped with it), not the collector's repository."""
    for path in (SERVICE, TIMER):
        unit = parse_unit(path)["Unit"]
        assert "network-online.target" not in unit.get("After", ""), path.name
        docs = unit["Documentation"].split()
        assert docs and all(doc.startswith("man:hamustro") for doc in docs), (path.name, docs)


def test_timer_syntax():
    unit = parse_unit(TIMER)
    assert unit.sections() == ["Unit", "Timer", "Install"]
    timer = unit["Timer"]
    assert timer["OnCalendar"] == "*:0/5"  # every 5 minutes
    assert timer.get("Unit", SERVICE.name) == SERVICE.name
    assert unit["Install"]["WantedBy"] == "timers.target"


def test_unit_keys_are_known_to_systemd():
    """A typo in a key is only a warning for systemd: catch it here even without systemd."""
    known = {
        "Unit": {"Description", "Documentation", "After", "Wants"},
        "Service": {
            "Type",
            "ExecStart",
            "Environment",
            "TimeoutStartSec",
            "Nice",
            "IOSchedulingClass",
            "UMask",
            "NoNewPrivileges",
            "LockPersonality",
            "RestrictRealtime",
            "RestrictSUIDSGID",
            "RestrictNamespaces",
            "SystemCallArchitectures",
            "RestrictAddressFamilies",
        },
        "Timer": {"OnCalendar", "RandomizedDelaySec", "AccuracySec", "Persistent", "Unit"},
        "Install": {"WantedBy"},
    }
    for path in (SERVICE, TIMER):
        unit = parse_unit(path)
        for section in unit.sections():
            assert set(unit[section]) <= known[section], (path.name, set(unit[section]) - known[section])


def hamustro_program() -> str:
    found = Path(sys.executable).parent / "hamustro"
    return str(found) if found.exists() else (shutil.which("hamustro") or "/bin/true")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_analyze_verify(tmp_path):
    units = tmp_path / "units"
    units.mkdir()
    text = SERVICE.read_text()
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={hamustro_program()}", text, flags=re.M)
    (units / SERVICE.name).write_text(text)
    shutil.copy(TIMER, units / TIMER.name)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    # Documentation= names man pages, which verify looks up: the generated ones of this checkout.
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    env["MANPATH"] = str(CONTRIB.parent / "man")
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(units / TIMER.name), str(units / SERVICE.name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    # Unknown keys and bad values are only warnings ("file:line: ..."): fail on those too.
    complaints = [line for line in proc.stderr.splitlines() if "hamustro-flush" in line]
    assert proc.returncode == 0 and not complaints, proc.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_calendar_expression():
    spec = parse_unit(TIMER)["Timer"]["OnCalendar"]
    proc = subprocess.run(["systemd-analyze", "calendar", spec], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert "*-*-* *:00/5:00" in proc.stdout


# -- cron -------------------------------------------------------------------------------------

RANGES = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]  # minute hour day-of-month month day-of-week
ITEM = re.compile(r"^(?:\*|(\d+)(?:-(\d+))?)(?:/(\d+))?$")


def valid_field(text: str, low: int, high: int) -> bool:
    for item in text.split(","):
        m = ITEM.match(item)
        if not m:
            return False
        start, end, step = m.groups()
        numbers = [int(n) for n in (start, end) if n is not None]
        if any(not low <= n <= high for n in numbers):
            return False
        if len(numbers) == 2 and numbers[0] > numbers[1]:
            return False
        if step is not None and int(step) == 0:
            return False
    return True


def cron_entries() -> list[tuple[list[str], str]]:
    entries = []
    for line in CRONTAB.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split(None, 5)
        assert len(parts) == 6, line
        entries.append((parts[:5], parts[5]))
    return entries


@pytest.mark.parametrize(
    "text, ok",
    [
        ("*/5", True),
        ("17", True),
        ("1-5", True),
        ("0,30", True),
        ("60", False),
        ("5-1", False),
        ("*/0", False),
        ("x", False),
    ],
)
def test_cron_field_checker(text, ok):
    assert valid_field(text, 0, 59) is ok


def test_crontab_example():
    entries = cron_entries()
    assert len(entries) == 2
    for fields, _ in entries:
        for text, (low, high) in zip(fields, RANGES, strict=False):
            assert valid_field(text, low, high), fields
    (every5, cmd5), (daily, cmd_daily) = entries
    assert every5 == ["*/5", "*", "*", "*", "*"]
    assert shlex.split(cmd5)[1:] == ["-q", "flush", "--if-due"]
    assert daily[2:] == ["*", "*", "*"] and daily[0].isdigit() and daily[1].isdigit()
    assert shlex.split(cmd_daily)[1:] == ["-q", "flush"]
    for cmd in (cmd5, cmd_daily):
        program = shlex.split(cmd)[0]
        assert program.startswith(("/", "$HOME/")) and program.endswith("/hamustro"), program
