"""contrib/: the systemd user units, the crontab example and the Prometheus alert rules are
at least well formed.

The unit files are always parsed here; `systemd-analyze verify` runs in addition where it is
installed, with ExecStart pointed at the hamustro of this environment (verify insists that
the program exists). The rules are parsed as YAML and their metric names checked against the
agreed ones; `promtool check rules` and `promtool test rules` run where promtool is installed.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

CONTRIB = Path(__file__).resolve().parent.parent / "contrib"
SERVICE = CONTRIB / "hamustro-flush.service"
TIMER = CONTRIB / "hamustro-flush.timer"
CRONTAB = CONTRIB / "crontab.example"
METRICS_SERVICE = CONTRIB / "hamustro-metrics.service"
METRICS_TIMER = CONTRIB / "hamustro-metrics.timer"
RULES = CONTRIB / "hamustro.rules.yml"
TEXTFILE = "/var/lib/node_exporter/textfile_collector/hamustro.prom"


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
    for path in (SERVICE, TIMER, METRICS_SERVICE, METRICS_TIMER):
        unit = parse_unit(path)
        for section in unit.sections():
            assert set(unit[section]) <= known[section], (path.name, set(unit[section]) - known[section])


def hamustro_program() -> str:
    found = Path(sys.executable).parent / "hamustro"
    return str(found) if found.exists() else (shutil.which("hamustro") or "/bin/true")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize(("service", "timer"), [(SERVICE, TIMER), (METRICS_SERVICE, METRICS_TIMER)])
def test_systemd_analyze_verify(tmp_path, service, timer):
    units = tmp_path / "units"
    units.mkdir()
    text = service.read_text()
    text = re.sub(r"^ExecStart=\S+", f"ExecStart={hamustro_program()}", text, flags=re.M)
    (units / service.name).write_text(text)
    shutil.copy(timer, units / timer.name)
    runtime = tmp_path / "runtime"
    runtime.mkdir(mode=0o700)
    # Documentation= names man pages, which verify looks up: the generated ones of this checkout.
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "SYSTEMD_LOG_LEVEL": "notice"}
    env["MANPATH"] = str(CONTRIB.parent / "man")
    proc = subprocess.run(
        ["systemd-analyze", "verify", "--user", str(units / timer.name), str(units / service.name)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    # Unknown keys and bad values are only warnings ("file:line: ..."): fail on those too.
    complaints = [line for line in proc.stderr.splitlines() if service.stem in line]
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
    assert len(entries) == 3
    for fields, _ in entries:
        for text, (low, high) in zip(fields, RANGES, strict=False):
            assert valid_field(text, low, high), fields
    (every5, cmd5), (daily, cmd_daily), (minutely, cmd_metrics) = entries
    assert minutely == ["*"] * 5
    assert shlex.split(cmd_metrics)[1:] == ["-q", "metrics", "--textfile", TEXTFILE]
    assert every5 == ["*/5", "*", "*", "*", "*"]
    assert shlex.split(cmd5)[1:] == ["-q", "flush", "--if-due"]
    assert daily[2:] == ["*", "*", "*"] and daily[0].isdigit() and daily[1].isdigit()
    assert shlex.split(cmd_daily)[1:] == ["-q", "flush"]
    for cmd in (cmd5, cmd_daily):
        program = shlex.split(cmd)[0]
        assert program.startswith(("/", "$HOME/")) and program.endswith("/hamustro"), program


# -- metrics: the textfile for node_exporter, and the alert rules --------------------------------

# cli.md's agreed names (`hamustro metrics`), and what node_exporter says of the textfile itself
AGREED_METRICS = {
    "hamustro_events_pending",
    "hamustro_events_sending",
    "hamustro_events_rejected",
    "hamustro_events_tracked_total",
    "hamustro_events_sent_total",
    "hamustro_events_dropped_total",
    "hamustro_flush_failures_total",
    "hamustro_last_sync_timestamp_seconds",
    "hamustro_oldest_pending_timestamp_seconds",
    "hamustro_sending_halted",
    "hamustro_spool_bytes",
    "hamustro_info",
}
NODE_EXPORTER_METRICS = {"node_textfile_mtime_seconds"}
PROMQL_WORDS = {"and", "or", "unless", "time", "increase", "rate", "by", "without", "on", "ignoring"}


def test_metrics_units():
    service = parse_unit(METRICS_SERVICE)
    assert service.sections() == ["Unit", "Service"]
    argv = exec_argv(service)
    assert argv[0] == "%h/.local/bin/hamustro"
    assert argv[1:] == ["-q", "metrics", "--textfile", TEXTFILE]
    assert service["Service"]["Type"] == "oneshot"
    # node_exporter runs as another user: the file must be readable by it
    assert service["Service"]["UMask"] == "0022"
    assert service["Service"]["RestrictAddressFamilies"] == "AF_UNIX"  # no network needed
    timer = parse_unit(METRICS_TIMER)
    assert timer.sections() == ["Unit", "Timer", "Install"]
    assert timer["Timer"]["OnCalendar"] == "minutely"
    assert timer["Timer"]["Unit"] == METRICS_SERVICE.name
    assert timer["Install"]["WantedBy"] == "timers.target"


def rules() -> list[dict[str, Any]]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (the `test` extra)")
    data = yaml.safe_load(RULES.read_text())
    [group] = data["groups"]
    assert group["name"] == "hamustro"
    return group["rules"]


def test_alert_rules_are_well_formed():
    found = rules()
    assert len({r["alert"] for r in found}) == len(found)
    for rule in found:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert re.fullmatch(r"Hamustro[A-Za-z]+", rule["alert"])
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        if "for" in rule:
            assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]


def test_alert_rules_use_the_agreed_metric_names():
    used: set[str] = set()
    for rule in rules():
        names_only = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", rule["expr"])  # no selectors, no ranges
        used |= {w for w in re.findall(r"[a-z_][a-z0-9_]*", names_only) if w not in PROMQL_WORDS}
    assert used <= AGREED_METRICS | NODE_EXPORTER_METRICS, used
    # a stuck queue: too old, halted, dropping, failing
    for name in (
        "hamustro_oldest_pending_timestamp_seconds",
        "hamustro_sending_halted",
        "hamustro_events_dropped_total",
        "hamustro_flush_failures_total",
    ):
        assert name in used, name


PROMTOOL = shutil.which("promtool") or ""


@pytest.mark.skipif(not PROMTOOL, reason="promtool (Prometheus) is not installed")
def test_promtool_checks_the_rules():
    proc = subprocess.run(
        [PROMTOOL, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


# Series as the textfile would expose them, one sample a minute: a host whose collector went
# away for good at 0 (failures every 4 minutes, then events dropped), and one that is fine.
PROMTOOL_TEST = """
rule_files: [RULES]
evaluation_interval: 1m
tests:
  - interval: 1m
    input_series:
      - series: 'hamustro_events_pending{instance="stuck"}'
        values: '500x1800'
      - series: 'hamustro_oldest_pending_timestamp_seconds{instance="stuck"}'
        values: '0x1800'
      - series: 'hamustro_sending_halted{instance="stuck"}'
        values: '0x10 1x30'
      - series: 'hamustro_flush_failures_total{instance="stuck"}'
        values: '0+1x1800'
      - series: 'hamustro_events_dropped_total{instance="stuck", reason="drop_oldest"}'
        values: '0x1700 0+5x100'
      - series: 'hamustro_events_rejected{instance="stuck"}'
        values: '0x1800'
      - series: 'hamustro_events_pending{instance="fine"}'
        values: '3x1800'
      - series: 'hamustro_oldest_pending_timestamp_seconds{instance="fine"}'
        values: '0+60x1800'
      - series: 'hamustro_sending_halted{instance="fine"}'
        values: '0x1800'
      - series: 'hamustro_flush_failures_total{instance="fine"}'
        values: '2x1800'
      - series: 'hamustro_events_dropped_total{instance="fine", reason="drop_oldest"}'
        values: '0x1800'
      - series: 'hamustro_events_rejected{instance="fine"}'
        values: '0x1800'
    alert_rule_test:
      - eval_time: 20m
        alertname: HamustroSendingHalted
        exp_alerts:
          - exp_labels: {severity: critical, instance: stuck}
      - eval_time: 5m
        alertname: HamustroSendingHalted
        exp_alerts: []
      - eval_time: 20h
        alertname: HamustroQueueStuck
        exp_alerts: []
      - eval_time: 1700m
        alertname: HamustroQueueStuck
        exp_alerts:
          - exp_labels: {severity: warning, instance: stuck}
      - eval_time: 1h
        alertname: HamustroFlushesFailing
        exp_alerts: []
      - eval_time: 5h
        alertname: HamustroFlushesFailing
        exp_alerts:
          - exp_labels: {severity: warning, instance: stuck}
      - eval_time: 1690m
        alertname: HamustroEventsDropped
        exp_alerts: []
      - eval_time: 1720m
        alertname: HamustroEventsDropped
        exp_alerts:
          - exp_labels: {severity: warning, instance: stuck, reason: drop_oldest}
      - eval_time: 1720m
        alertname: HamustroEventsRejected
        exp_alerts: []
"""


@pytest.mark.skipif(not PROMTOOL, reason="promtool (Prometheus) is not installed")
def test_promtool_fires_the_alerts_on_a_stuck_queue_only(tmp_path):
    """What fires when (the expressions); the annotations' texts are left out of the copy the
    test reads, as promtool would compare them word for word."""
    import yaml

    bare = [{k: v for k, v in rule.items() if k != "annotations"} for rule in rules()]
    rules_file = tmp_path / "hamustro.rules.yml"
    rules_file.write_text(yaml.safe_dump({"groups": [{"name": "hamustro", "rules": bare}]}))
    test_file = tmp_path / "hamustro.test.yml"
    test_file.write_text(PROMTOOL_TEST.replace("RULES", json.dumps(str(rules_file))))
    proc = subprocess.run(
        [PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
