"""`hamustro doctor`: against the real in-process collector, never sending an event."""

from __future__ import annotations

import json
import socket

import pytest
from conftest import SECRET, SETTINGS, invoke, run, run_unprivileged, start_collector, write_config
from specschema import decode

from hamustro_cli import doctor
from hamustro_cli.config import KEYS, load_config
from hamustro_cli.session import Session

NAMES = ["config", "spool", "collector", "credentials"]


def by_name(checks):
    return {c.name: c for c in checks}


def assert_no_event_sent(collector):
    """Nothing accepted, and every request the doctor made was a Collection without payloads."""
    assert collector.received() == []
    assert collector.server.accepted == 0
    for req in collector.requests:
        assert len(decode(req["body"]).payloads) == 0


def closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


# -- the library ------------------------------------------------------------------------------


def test_all_pass(config, collector, spool_dir):
    checks = doctor.run_checks(config, None)
    assert [c.name for c in checks] == NAMES
    assert all(c.ok for c in checks), doctor.render(checks)
    assert [c.state for c in checks] == ["ok"] * 4
    got = by_name(checks)
    assert got["credentials"].details["status"] == 204
    assert got["collector"].details["status"] == 200
    assert got["spool"].details["schema_version"] >= 1
    assert got["spool"].details["mode"] == "0700"
    assert (spool_dir / "spool.sqlite3").exists()
    # Exactly one signed, empty Collection reached the track endpoint.
    assert [r["status"] for r in collector.requests] == [204]
    assert_no_event_sent(collector)


def test_render_one_line_each(config, collector):
    text = doctor.render(doctor.run_checks(config, None))
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[0].startswith(f"ok    config: {config} (")
    assert "from file" in lines[0] and "secret set" in lines[0]
    assert lines[1].startswith("ok    spool: ")
    assert lines[2].startswith("ok    collector: ")
    assert lines[3].startswith("ok    credentials: collector answered 204")


def test_config_sources(config, collector, tmp_path, monkeypatch):
    monkeypatch.setenv("HAMUSTRO_TIMEOUT", "3")
    checks = doctor.run_checks(config, tmp_path / "other-spool")
    keys = checks[0].details["keys"]
    assert set(keys) == set(KEYS)
    assert keys["timeout"]["source"] == "environment"
    assert keys["timeout"]["from"] == "environment variable HAMUSTRO_TIMEOUT"
    assert keys["spool_dir"]["source"] == "flag"
    assert keys["client_id"]["source"] == "file"
    assert keys["queue_size"]["source"] == "default"
    assert keys["shared_secret_key"] == {"value": "set", "source": "file", "from": str(config)}
    assert "1 from flag, 1 from environment" in checks[0].verdict
    assert checks[1].details["path"] == str(tmp_path / "other-spool")


def test_config_from_environment_only(collector, isolated, monkeypatch):
    """No file is fine when the environment supplies every required key."""
    monkeypatch.delenv("HAMUSTRO_CONFIG")  # the default path, which does not exist
    monkeypatch.setenv("HAMUSTRO_COLLECTOR_URL", collector.url)
    for key, value in SETTINGS.items():
        monkeypatch.setenv("HAMUSTRO_" + key.upper(), value)
    checks = doctor.run_checks(None, None)
    assert all(c.ok for c in checks), doctor.render(checks)
    assert "not found" in checks[0].verdict
    assert checks[0].details["keys"]["shared_secret_key"]["source"] == "environment"


def test_wrong_secret(isolated, tmp_path):
    other = start_collector(tmp_path, name="other", secret="another-secret")
    try:
        path = write_config(isolated / "config.toml", collector_url=other.url, **SETTINGS)
        checks = doctor.run_checks(path, None)
        got = by_name(checks)
        assert got["collector"].ok
        cred = got["credentials"]
        assert not cred.ok and cred.state == "fail"
        assert cred.details["status"] == 405
        assert "405" in cred.verdict and "shared_secret_key is wrong" in cred.verdict
        assert "shared_secret_key" in cred.hint
        line = doctor.render(checks).splitlines()[3]
        assert line.startswith("FAIL  credentials: collector answered 405") and "→ fix: " in line
        assert_no_event_sent(other)
    finally:
        other.server.stop()
        other.server.out.close()


def test_wrong_session_is_400(config, collector):
    """The configured session is always right, so provoke the 400 with a session of our own."""
    cfg = load_config(config, None)
    right = Session.from_settings(
        SETTINGS["device_id"], SETTINGS["client_id"], SETTINGS["system_version"], SETTINGS["product_version"]
    )
    wrong = right._replace(id="0" * 32)
    check = doctor.check_credentials(cfg, session=wrong)
    assert not check.ok
    assert check.details["status"] == 400
    assert "session or body refused" in check.verdict
    assert doctor.check_credentials(cfg, session=right).ok
    assert [r["status"] for r in collector.requests] == [400, 204]
    assert_no_event_sent(collector)


def test_collector_down(isolated):
    path = write_config(isolated / "config.toml", collector_url=closed_port_url(), timeout=2, **SETTINGS)
    checks = doctor.run_checks(path, None)
    got = by_name(checks)
    assert got["config"].ok and got["spool"].ok
    assert got["collector"].state == "fail"
    assert "cannot reach" in got["collector"].verdict
    assert "collector" in got["collector"].hint
    assert got["credentials"].state == "skipped"
    assert doctor.to_json(checks)["checks"][3]["verdict"].startswith("skipped: ")
    assert doctor.render(checks).splitlines()[3].startswith("skip  credentials: ")


def test_health_404_still_tries_credentials(isolated, collector):
    """An unexpected health answer is a failure, but the signed POST can still say more."""
    path = write_config(isolated / "config.toml", collector_url=collector.url + "/nowhere", **SETTINGS)
    got = by_name(doctor.run_checks(path, None))
    assert got["collector"].state == "fail" and got["collector"].details["status"] == 404
    assert got["credentials"].state == "fail" and got["credentials"].details["status"] == 404
    assert_no_event_sent(collector)


@pytest.mark.parametrize(
    "content, expected",
    [
        ("collector_url = [", "not valid TOML"),
        ('colector_url = "http://x"\n', "unknown config key 'colector_url'"),
        ('queue_size = "many"\n', "queue_size"),
    ],
)
def test_config_error_fails_and_skips_the_rest(isolated, content, expected):
    path = isolated / "config.toml"
    path.write_text(content)
    checks = doctor.run_checks(path, None)
    assert checks[0].state == "fail" and expected in checks[0].verdict
    assert [c.state for c in checks[1:]] == ["skipped"] * 3


def test_missing_config_file_given_explicitly(isolated):
    checks = doctor.run_checks(isolated / "nope.toml", None)
    assert checks[0].state == "fail" and "does not exist" in checks[0].verdict


def test_missing_required_key_still_checks_spool_and_collector(isolated, collector):
    settings = {k: v for k, v in SETTINGS.items() if k != "client_id"}
    path = write_config(isolated / "config.toml", collector_url=collector.url, **settings)
    got = by_name(doctor.run_checks(path, None))
    assert got["config"].state == "fail" and "client_id" in got["config"].verdict
    assert got["spool"].ok and got["collector"].ok
    assert got["credentials"].state == "skipped"
    assert collector.requests == []


def test_readable_config_file_is_a_warning(config, collector):
    config.chmod(0o644)
    check = doctor.run_checks(config, None)[0]
    assert check.ok and check.state == "warn"
    assert check.hint is not None and "chmod 600" in check.hint
    assert doctor.render([check]).startswith("warn  config: ")


def test_spool_counts(config, collector, spool_dir):
    invoke("track", "one")
    invoke("track", "two")
    spool = doctor.run_checks(config, None)[1]
    assert spool.ok
    assert (spool.details["pending"], spool.details["sending"], spool.details["rejected"]) == (2, 0, 0)
    assert "2 pending, 0 sending, 0 rejected" in spool.verdict
    assert_no_event_sent(collector)  # the doctor did not flush them


def test_spool_dir_too_open_is_tightened(config, collector, spool_dir):
    spool_dir.mkdir(mode=0o755)
    spool_dir.chmod(0o755)
    check = doctor.check_spool(spool_dir)
    assert check.ok, check.verdict
    assert "tightened from 0755" in check.verdict
    assert oct(spool_dir.stat().st_mode & 0o777) == oct(0o700)


def test_spool_file_readable_by_others_fails(config, collector, spool_dir):
    doctor.check_spool(spool_dir)
    (spool_dir / "flush.log").write_text("")
    (spool_dir / "flush.log").chmod(0o644)
    check = doctor.check_spool(spool_dir)
    assert check.state == "fail"
    assert check.hint == f"chmod 600 {spool_dir / 'flush.log'}"


def test_loose_database_is_tightened_when_opened(config, collector, spool_dir):
    doctor.check_spool(spool_dir)
    (spool_dir / "spool.sqlite3").chmod(0o644)
    check = doctor.check_spool(spool_dir)  # opening the spool makes it owner-only again
    assert check.state == "ok"
    assert (spool_dir / "spool.sqlite3").stat().st_mode & 0o777 == 0o600


def test_spool_path_is_a_file(isolated):
    path = isolated / "not-a-dir"
    path.write_text("")
    check = doctor.check_spool(path)
    assert check.state == "fail" and "not a directory" in check.verdict


def test_spool_not_writable(isolated, config):
    """As a real process that cannot bypass permission bits, root included (see as_plain_user)."""
    parent = isolated / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        result = run_unprivileged("--spool-dir", str(parent / "spool"), "doctor", "--json")
    finally:
        parent.chmod(0o700)
    assert result.returncode == 1
    spool = next(c for c in json.loads(result.stdout)["checks"] if c["name"] == "spool")
    assert not spool["ok"] and "permission denied" in spool["verdict"]


def test_secret_never_in_library_output(isolated, tmp_path, collector):
    other = start_collector(tmp_path, name="other", secret="another-secret")
    try:
        seen: list[str] = []
        for url in (collector.url, other.url, closed_port_url()):
            path = write_config(isolated / "config.toml", collector_url=url, timeout=2, **SETTINGS)
            checks = doctor.run_checks(path, None, log=lambda level, msg: seen.append(msg))
            seen.append(doctor.render(checks))
            seen.append(json.dumps(doctor.to_json(checks)))
        text = "\n".join(seen)
        assert SECRET not in text and "another-secret" not in text
    finally:
        other.server.stop()
        other.server.out.close()


def test_to_json_shape(config, collector):
    data = doctor.to_json(doctor.run_checks(config, None))
    assert data["ok"] is True
    assert [c["name"] for c in data["checks"]] == NAMES
    for c in data["checks"]:
        assert set(c) == {"name", "ok", "state", "verdict", "hint", "details"}
    json.dumps(data)  # serialisable as is


# -- the command (fails until `doctor` is added to cli.py) ------------------------------------


def test_cli_all_pass(config, collector):
    result = invoke("doctor")
    lines = result.output.splitlines()
    assert [line.split()[0] for line in lines] == ["ok"] * 4
    assert_no_event_sent(collector)


def test_cli_json(config, collector):
    data = json.loads(invoke("doctor", "--json").output)
    assert data["ok"] is True
    assert [c["name"] for c in data["checks"]] == NAMES
    for c in data["checks"]:
        assert {"name", "ok", "state", "verdict", "hint", "details"} <= set(c)
    assert data["checks"][3]["details"]["status"] == 204


def test_cli_wrong_secret_exits_1(isolated, tmp_path):
    other = start_collector(tmp_path, name="other", secret="another-secret")
    try:
        write_config(isolated / "config.toml", collector_url=other.url, **SETTINGS)
        result = invoke("-vv", "doctor", expect=1)
        assert "FAIL  credentials: collector answered 405" in result.output
        assert SECRET not in result.output and "another-secret" not in result.output
        data = json.loads(invoke("doctor", "--json", expect=1).output)
        assert data["ok"] is False and data["checks"][3]["state"] == "fail"
        assert_no_event_sent(other)
    finally:
        other.server.stop()
        other.server.out.close()


def test_cli_config_error_exits_1(isolated):
    (isolated / "config.toml").write_text("nonsense = [")
    result = invoke("doctor", expect=1)
    assert result.output.splitlines()[0].startswith("FAIL  config: ")


def test_cli_quiet_prints_failures_only(isolated):
    write_config(isolated / "config.toml", collector_url=closed_port_url(), timeout=2, **SETTINGS)
    result = invoke("-q", "doctor", expect=1)
    assert [line.split()[0] for line in result.output.splitlines()] == ["FAIL"]  # no skip lines


def test_cli_subprocess_never_prints_secret(config, collector):
    """A real process, -vv, secret from the environment: neither stream shows it."""
    proc = run("-vv", "doctor", env={"HAMUSTRO_SHARED_SECRET_KEY": SECRET})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert SECRET not in proc.stdout and SECRET not in proc.stderr
    keys = json.loads(run("doctor", "--json", env={"HAMUSTRO_SHARED_SECRET_KEY": SECRET}).stdout)
    secret = keys["checks"][0]["details"]["keys"]["shared_secret_key"]
    assert secret == {
        "value": "set",
        "source": "environment",
        "from": "environment variable HAMUSTRO_SHARED_SECRET_KEY",
    }
    assert_no_event_sent(collector)


def test_help_text():
    assert "send no event" in invoke("doctor", "--help").output.lower()


def test_spool_reports_halted_sending(isolated, tmp_path):
    """After a 405 the tracker stops sending; the doctor says so and how to resume."""
    other = start_collector(tmp_path, name="other", secret="another-secret")
    try:
        path = write_config(isolated / "config.toml", collector_url=other.url, **SETTINGS)
        invoke("track", "one")
        invoke("flush", expect=4)
        spool = doctor.run_checks(path, None)[1]
        assert spool.ok and spool.state == "warn"
        assert spool.hint is not None and "405" in spool.hint and "hamustro flush" in spool.hint
        assert spool.details["pending"] == 1
        assert other.received() == []
    finally:
        other.server.stop()
        other.server.out.close()
