"""Where settings come from: flag > environment > file > default."""

from __future__ import annotations

import os
from pathlib import Path

import click
import pytest
from conftest import SETTINGS, invoke, write_config

from hamustro_cli.config import KEYS, default_config_path, load_config


def full(path: Path, **extra) -> Path:
    return write_config(path, collector_url="http://127.0.0.1:9", **{**SETTINGS, **extra})


def test_defaults(isolated):
    cfg = load_config(full(isolated / "c.toml", flush="off"), env={})
    assert cfg.values["queue_size"] == 20 and cfg.sources["queue_size"] == "default"
    assert cfg.values["queue_retention"] == 1440
    assert cfg.values["ip"] == "auto" and cfg.values["tls_verify"] is True


def test_default_paths_follow_xdg(isolated, monkeypatch):
    monkeypatch.delenv("HAMUSTRO_CONFIG")
    monkeypatch.delenv("HAMUSTRO_SPOOL_DIR")
    cfg = load_config(env=dict(os.environ))
    # the isolated fixture points XDG_STATE_HOME and XDG_CONFIG_HOME into the test's home
    assert Path(cfg.spool_dir) == isolated / "home" / ".local" / "state" / "hamustro"
    assert Path(cfg.config_path) == isolated / "home" / ".config" / "hamustro" / "config.toml"
    assert not cfg.config_found


def test_precedence_flag_env_file_default(isolated):
    path = full(isolated / "c.toml", queue_size=5, spool_dir=str(isolated / "from-file"))
    env = {"HAMUSTRO_QUEUE_SIZE": "7", "HAMUSTRO_SPOOL_DIR": str(isolated / "from-env")}
    cfg = load_config(path, env=env)
    assert (
        cfg.values["queue_size"] == 7
        and cfg.sources["queue_size"] == "environment variable HAMUSTRO_QUEUE_SIZE"
    )
    assert Path(cfg.spool_dir) == isolated / "from-env"
    cfg = load_config(path, spool_dir=isolated / "from-flag", env=env)
    assert Path(cfg.spool_dir) == isolated / "from-flag" and cfg.sources["spool_dir"] == "--spool-dir"
    cfg = load_config(path, env={})
    assert cfg.values["queue_size"] == 5 and cfg.sources["queue_size"] == str(path)
    assert Path(cfg.spool_dir) == isolated / "from-file"


def test_environment_alone_is_enough(isolated, monkeypatch):
    monkeypatch.setenv("HAMUSTRO_CONFIG", str(isolated / "absent.toml"))
    monkeypatch.delenv("HAMUSTRO_CONFIG")
    env = {f"HAMUSTRO_{k.upper()}": str(v) for k, v in SETTINGS.items()}
    env["HAMUSTRO_COLLECTOR_URL"] = "http://127.0.0.1:9"
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    out = invoke("session").stdout.strip()
    assert len(out) == 32 and int(out, 16) >= 0


def test_unrelated_hamustro_variables_are_ignored(config, monkeypatch):
    monkeypatch.setenv("HAMUSTRO_HOST", "0.0.0.0")
    monkeypatch.setenv("HAMUSTRO_PORT", "9999")
    invoke("track", "x")


@pytest.mark.parametrize("raw,expected", [("true", True), ("0", False), ("off", False), ("YES", True)])
def test_boolean_from_environment(isolated, raw, expected):
    cfg = load_config(full(isolated / "c.toml"), env={"HAMUSTRO_TLS_VERIFY": raw})
    assert cfg.values["tls_verify"] is expected


def test_example_config_lists_every_key_and_loads():
    root = Path(__file__).resolve().parent.parent
    text = (root / "config.example.toml").read_text()
    for key in KEYS:
        assert f"{key} =" in text, f"config.example.toml lacks {key}"
    cfg = load_config(root / "config.example.toml", env={})
    assert cfg.values["queue_size"] == 20


def test_an_injected_env_decides_home_and_the_default_config_path(isolated, tmp_path):
    """`~` in path values and the default config path came from os.environ's HOME and
    XDG_CONFIG_HOME whatever `env` said."""
    other = tmp_path / "other-home"
    (other / ".config" / "hamustro").mkdir(parents=True)
    full(other / ".config" / "hamustro" / "config.toml", ca_bundle="~/ca.pem")
    (other / "ca.pem").write_text("not checked here\n")
    env = {"HOME": str(other), "HAMUSTRO_SPOOL_DIR": "~/spool"}
    cfg = load_config(env=env)
    assert Path(cfg.config_path) == other / ".config" / "hamustro" / "config.toml" and cfg.config_found
    assert Path(cfg.spool_dir) == other / "spool"
    assert Path(cfg.values["ca_bundle"]) == other / "ca.pem"
    named = load_config(env={**env, "HAMUSTRO_CONFIG": "~/.config/hamustro/config.toml"})
    assert Path(named.config_path) == other / ".config" / "hamustro" / "config.toml"
    assert Path(load_config("~/c.toml", env=env, use_file=False).config_path) == other / "c.toml"
    xdg = {**env, "XDG_CONFIG_HOME": str(tmp_path / "xdg")}
    assert Path(load_config(env=xdg).config_path) == tmp_path / "xdg" / "hamustro" / "config.toml"


def test_the_default_config_path_is_clicks_app_dir_under_the_real_environment(isolated):
    assert default_config_path(os.environ) == os.path.join(click.get_app_dir("hamustro"), "config.toml")
