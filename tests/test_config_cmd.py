"""`hamustro config path|show|init|set`: the config file by hand, the secret never shown."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
from conftest import HIDDEN, SECRET, SETTINGS, invoke, run, run_on_terminal, write_config

from hamustro_cli.config import KEYS, REQUIRED, load_config, parse_config_bytes
from hamustro_cli.configfile import example, render

ROOT = Path(__file__).resolve().parent.parent
URL = "http://127.0.0.1:9"
INIT_OPTIONS = [
    "--collector-url",
    URL,
    "--device-id",
    "device-42",
    "--client-id",
    "client-a",
    "--system-version",
    "Linux 6.1",
    "--product-version",
    "1.0.0",
]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def no_secret(*outputs: str) -> None:
    for out in outputs:
        assert SECRET not in out


def commented(path: Path, **values: object) -> Path:
    """A hand-kept config: comments, blank lines, an inline comment, odd spacing."""
    text = (
        "# my hamustro settings\n"
        "\n"
        f'collector_url = "{URL}"   # the test box\n'
        f'shared_secret_key = "{SECRET}"\n'
        "# identity\n"
        'device_id="device-42"\n'
        'client_id = "client-a"\n'
        'system_version = "Linux 6.1"\n'
        'product_version = "1.0.0"\n'
        "\n"
        "timeout   =   5.0  # slow network\n"
        "# queue_size = 20\n"
        "# the end\n"
    )
    path.write_text(text)
    path.chmod(0o600)
    return path


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    a, b = before.split("\n"), after.split("\n")
    assert len(a) == len(b), (before, after)
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


# -- path -----------------------------------------------------------------------------------------


def test_path_follows_flag_then_environment_then_default(isolated, monkeypatch):
    assert invoke("config", "path").output == f"{isolated / 'config.toml'}\n"
    given = isolated / "given.toml"
    assert invoke("--config", str(given), "config", "path").output == f"{given}\n"
    monkeypatch.delenv("HAMUSTRO_CONFIG")
    default = isolated / "home" / ".config" / "hamustro" / "config.toml"
    assert invoke("config", "path").output == f"{default}\n"
    assert not default.exists()


# -- show -----------------------------------------------------------------------------------------


def test_show_names_every_origin_and_copes_with_missing_required_keys(isolated, monkeypatch):
    path = write_config(isolated / "config.toml", collector_url=URL, queue_size=5)
    monkeypatch.setenv("HAMUSTRO_CLIENT_ID", "from-env")
    spool = isolated / "flag-spool"
    data = json.loads(invoke("--spool-dir", str(spool), "config", "show", "--json").output)
    keys = data["keys"]
    assert set(keys) == set(KEYS)
    assert data["path"] == str(path) and data["found"] is True
    assert keys["collector_url"] == {"value": URL, "source": "file", "from": str(path), "required": True}
    assert keys["queue_size"]["value"] == 5 and keys["queue_size"]["source"] == "file"
    assert keys["client_id"]["from"] == "environment variable HAMUSTRO_CLIENT_ID"
    assert keys["spool_dir"]["value"] == str(spool) and keys["spool_dir"]["from"] == "--spool-dir"
    assert keys["timeout"] == {"value": 10.0, "source": "default", "from": "default", "required": False}
    assert keys["shared_secret_key"]["value"] == "unset" and keys["device_id"]["value"] is None
    assert data["missing"] == ["shared_secret_key", "device_id", "system_version", "product_version"]

    lines = invoke("--spool-dir", str(spool), "config", "show").output.splitlines()
    assert lines[0] == f"config file: {path}"
    rows = {line.split()[0]: line.split(None, 1)[1] for line in lines[1:]}
    assert set(rows) == set(KEYS)
    assert rows["collector_url"].split() == [f'"{URL}"', "file", str(path)]
    assert rows["client_id"].split() == ['"from-env"', "environment", "variable", "HAMUSTRO_CLIENT_ID"]
    assert rows["spool_dir"].split() == [f'"{spool}"', "flag", "--spool-dir"]
    assert rows["device_id"].split() == ["unset", "(required)", "-"]
    assert rows["shared_secret_key"].split() == ["unset", "(required)", "-"]
    assert rows["queue_retention"].split() == ["1440", "default"]


def test_show_without_a_file_at_the_default_path(isolated, monkeypatch):
    monkeypatch.delenv("HAMUSTRO_CONFIG")
    first = invoke("config", "show").output.splitlines()[0]
    assert first.endswith("config.toml (not found)")


@pytest.mark.parametrize("where", ["file", "environment"])
def test_show_gives_the_secret_only_as_set(isolated, monkeypatch, where):
    if where == "file":
        write_config(isolated / "config.toml", shared_secret_key=SECRET)
        origin = f"file {isolated / 'config.toml'}"
    else:
        monkeypatch.delenv("HAMUSTRO_CONFIG")  # no file at all
        monkeypatch.setenv("HAMUSTRO_SHARED_SECRET_KEY", SECRET)
        origin = "environment variable HAMUSTRO_SHARED_SECRET_KEY"
    text = invoke("config", "show").output
    assert re.search(rf"^shared_secret_key +set +{re.escape(origin)}$", text, re.M), text
    data = invoke("config", "show", "--json").output
    assert json.loads(data)["keys"]["shared_secret_key"]["value"] == "set"
    no_secret(text, data)
    # not even its length (outside the paths shown: pytest's tmp dir may hold the same digits)
    assert not re.search(rf"\b{len(SECRET)}\b", text.replace(str(isolated), "")), text


@pytest.mark.parametrize(
    "content,named",
    [
        ('queue_size = "many"\n', "queue_size"),
        ("colour = 1\n", "colour"),
        (f'shared_secret_key = "{SECRET}"\nflush = "sometimes"\n', "flush"),
        ("queue_size = \n", "not valid TOML"),
    ],
)
def test_show_reports_errors_in_the_file(isolated, content, named):
    path = isolated / "config.toml"
    path.write_text(content)
    result = run("config", "show")
    assert result.returncode == 2
    assert (
        result.stderr.startswith("hamustro: error: ")
        and named in result.stderr
        and str(path) in result.stderr
    )
    assert result.stdout == ""
    no_secret(result.stderr)


# -- init -----------------------------------------------------------------------------------------


def test_init_without_a_terminal_from_options_and_stdin(isolated):
    path = isolated / "new" / "dir" / "config.toml"
    result = run(
        "--config", str(path), "config", "init", "--secret-stdin", *INIT_OPTIONS, input=SECRET + "\n"
    )
    assert result.returncode == 0, result.stderr
    no_secret(result.stdout, result.stderr)
    assert mode(path) == 0o600
    assert mode(isolated / "new") == 0o700 and mode(isolated / "new" / "dir") == 0o700
    cfg = load_config(path, env={}).require()
    assert cfg.values["shared_secret_key"] == SECRET and cfg.values["collector_url"] == URL
    assert cfg.values["system_version"] == "Linux 6.1"
    assert all(cfg.sources[k] == str(path) for k in REQUIRED)
    assert all(cfg.sources[k] == "default" for k in KEYS if k not in REQUIRED)
    assert path.read_text() == render({k: cfg.values[k] for k in REQUIRED})
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp file left


def test_init_leaves_existing_directories_alone(isolated):
    (isolated / "shared").mkdir(mode=0o755)
    (isolated / "shared").chmod(0o755)
    path = isolated / "shared" / "config.toml"
    invoke("--config", str(path), "config", "init", "--secret-stdin", *INIT_OPTIONS, input=SECRET)
    assert mode(isolated / "shared") == 0o755 and mode(path) == 0o600


def test_init_takes_values_from_the_environment(isolated):
    env = {f"HAMUSTRO_{k.upper()}": str(v) for k, v in SETTINGS.items()}
    env["HAMUSTRO_COLLECTOR_URL"] = URL
    result = run("config", "init", env=env)
    assert result.returncode == 0, result.stderr
    assert "shared_secret_key: from environment variable HAMUSTRO_SHARED_SECRET_KEY" in result.stderr
    no_secret(result.stdout, result.stderr)
    cfg = load_config(isolated / "config.toml", env={})
    assert cfg.values["shared_secret_key"] == SECRET and cfg.values["device_id"] == "device-42"


def test_init_without_a_terminal_refuses_what_it_cannot_ask(isolated):
    result = run("config", "init", "--collector-url", URL, input="")
    assert result.returncode == 2
    assert result.stderr.startswith("hamustro: error: no terminal to ask for shared_secret_key, device_id")
    assert "--secret-stdin" in result.stderr and "--device-id" in result.stderr
    assert not (isolated / "config.toml").exists()


@pytest.mark.parametrize(
    "option,value,named",
    [("--collector-url", "ftp://x", "collector_url"), ("--device-id", "", "device_id")],
)
def test_init_checks_values_as_loading_does(isolated, option, value, named):
    args = list(INIT_OPTIONS)
    args[args.index(option) + 1] = value
    result = run("config", "init", "--secret-stdin", *args, input=SECRET)
    assert result.returncode == 2 and named in result.stderr and option in result.stderr
    assert not (isolated / "config.toml").exists()


def test_init_with_an_empty_secret_is_refused(isolated):
    result = run("config", "init", "--secret-stdin", *INIT_OPTIONS, input="\n")
    assert result.returncode == 2 and "shared_secret_key" in result.stderr
    assert not (isolated / "config.toml").exists()


def test_init_never_overwrites_without_force(isolated):
    path = commented(isolated / "config.toml")
    before = path.read_bytes()
    result = run("config", "init", "--secret-stdin", *INIT_OPTIONS, input="other-secret")
    assert result.returncode == 2 and "already exists" in result.stderr and "--force" in result.stderr
    assert path.read_bytes() == before
    result = run("config", "init", "--force", "--secret-stdin", *INIT_OPTIONS, input="other-secret")
    assert result.returncode == 0, result.stderr
    assert load_config(path, env={}).values["shared_secret_key"] == "other-secret"
    assert "# Retries of a transient failure" in path.read_text() and mode(path) == 0o600


def test_a_config_from_init_and_set_delivers_events(isolated, collector):
    invoke("config", "init", "--secret-stdin", *INIT_OPTIONS, input=SECRET + "\n")
    invoke("config", "set", "collector_url", collector.url)
    invoke("config", "set", "flush", "off")
    invoke("track", "configured")
    assert "sent 1 event" in invoke("flush").output
    assert [e["event"] for e in collector.received()] == ["configured"]


def test_init_on_a_terminal_asks_and_hides_the_secret(isolated):
    """Questions a person would write, each with an example; an empty answer to a required
    value is asked again saying why; the secret is typed without echo, twice."""
    empty = "client_id is required and has no default: type a value"
    answers = [
        ("Collector URL (http or https), e.g. http://127.0.0.1:8080: ", URL),
        ("Shared secret, as the collector has it (not shown as you type): ", SECRET, HIDDEN),
        ("Repeat for confirmation: ", SECRET, HIDDEN),
        ("Name of this machine (sent only as its sha256 hash), e.g. my-laptop [", ""),  # the host name
        ("Name of what sends the events, e.g. my-scripts: ", ""),
        (empty, "client-on-tty"),
        ("Operating system and its version, e.g. Debian 12 [", "Plan 9"),
        ("Version of the product that sends the events, e.g. 1.0.0: ", "2.0"),
    ]
    code, shown = run_on_terminal(["config", "init"], answers)
    assert code == 0, shown
    assert "client-on-tty" in shown  # what is typed is echoed, so the check below means something
    assert SECRET not in shown
    assert "(base URL" not in shown and "client_id (client identifier)" not in shown
    cfg = load_config(isolated / "config.toml", env={})
    assert cfg.values["shared_secret_key"] == SECRET and cfg.values["client_id"] == "client-on-tty"
    assert cfg.values["system_version"] == "Plan 9" and cfg.values["device_id"]
    assert mode(isolated / "config.toml") == 0o600


def test_the_written_files_comments_are_true(isolated):
    """A commented-out line shows a key's default, or says it is an example of a key unset by
    default; the file names no Python function."""
    invoke("config", "init", "--secret-stdin", *INIT_OPTIONS, input=SECRET + "\n")
    text = (isolated / "config.toml").read_text()
    assert "get_app_dir" not in text and "$XDG_CONFIG_HOME/hamustro/config.toml" in text
    cfg = load_config(isolated / "config.toml", env={})
    blocks = text.split("\n\n")
    for key in KEYS.values():
        (block,) = [b for b in blocks if f"\n# {key.name} = " in f"\n{b}" or f"\n{key.name} = " in f"\n{b}"]
        commented = block.splitlines()[-1]
        if not commented.startswith("# "):
            continue
        said = " ".join(line.removeprefix("# ") for line in block.splitlines()[:-1])
        shown = parse_config_bytes("the line", commented[2:].encode())[key.name]
        if key.default is not None:
            assert shown == key.default, (key.name, commented)
        elif key.name == "spool_dir":
            assert "Default: $XDG_STATE_HOME/hamustro, else ~/.local/state/hamustro" in said
        else:
            assert "Unset by default; the line shows an example." in said, block
            assert cfg.values[key.name] is None


def test_set_on_a_terminal_asks_for_the_secret_without_echo(isolated):
    path = commented(isolated / "config.toml")
    answers = [
        ("Shared secret, as the collector has it (not shown as you type): ", "new-" + SECRET, HIDDEN),
        ("Repeat for confirmation: ", "new-" + SECRET, HIDDEN),
    ]
    code, shown = run_on_terminal(["config", "set", "shared_secret_key"], answers)
    assert code == 0, shown
    assert SECRET not in shown
    assert load_config(path, env={}).values["shared_secret_key"] == "new-" + SECRET


# -- set ------------------------------------------------------------------------------------------


def test_set_changes_one_line_and_keeps_everything_else(isolated):
    path = commented(isolated / "config.toml")
    before = path.read_text()
    invoke("config", "set", "device_id", "device-43")
    after = path.read_text()
    assert changed_lines(before, after) == [('device_id="device-42"', 'device_id="device-43"')]
    invoke("config", "set", "timeout", "2.5")
    assert changed_lines(after, path.read_text()) == [
        ("timeout   =   5.0  # slow network", "timeout   =   2.5  # slow network")
    ]
    invoke("config", "set", "collector_url", "http://127.0.0.1:10")
    assert 'collector_url = "http://127.0.0.1:10"   # the test box\n' in path.read_text()
    cfg = load_config(path, env={})
    assert (cfg.values["device_id"], cfg.values["timeout"]) == ("device-43", 2.5)
    assert mode(path) == 0o600


def test_set_uncomments_the_templates_line_or_appends(isolated):
    path = commented(isolated / "config.toml")
    before = path.read_text()
    invoke("config", "set", "queue_size", "50")
    after = path.read_text()
    assert changed_lines(before, after) == [("# queue_size = 20", "queue_size = 50")]
    invoke("config", "set", "retries", "0")
    assert path.read_text() == after + "retries = 0\n"
    no_newline = isolated / "bare.toml"
    no_newline.write_text('client_id = "a"')
    invoke("--config", str(no_newline), "config", "set", "flush", "inline")
    assert no_newline.read_text() == 'client_id = "a"\nflush = "inline"\n'


def test_set_keeps_crlf_line_endings(isolated):
    path = isolated / "config.toml"
    path.write_bytes(b'# windows\r\nqueue_size = 3\r\nflush = "off"\r\n')
    invoke("config", "set", "queue_size", "4")
    assert path.read_bytes() == b'# windows\r\nqueue_size = 4\r\nflush = "off"\r\n'


def test_set_replaces_a_value_that_spans_lines(isolated):
    path = isolated / "config.toml"
    path.write_text('# top\nsystem = """one\nqueue_size = 1\n"""  # note\nflush = "off"\n')
    invoke("config", "set", "queue_size", "7")  # the line inside the string is not the key
    assert (
        path.read_text()
        == '# top\nsystem = """one\nqueue_size = 1\n"""  # note\nflush = "off"\nqueue_size = 7\n'
    )
    invoke("config", "set", "system", "two")
    assert path.read_text() == '# top\nsystem = "two"  # note\nflush = "off"\nqueue_size = 7\n'


@pytest.mark.parametrize(
    "value",
    [
        'quote " and \\ backslash',
        "tab\tnew\nline\rcr\x1fus\x7fdel\x08bs\x0cff",
        "unicode é ü 日本 🐹 \u2028 \u0085",
        "# not a comment = no",
        '\'single\' """ triple',
        "trailing backslash \\",
        " spaces ",
    ],
)
def test_set_escapes_strings_so_they_read_back(isolated, value):
    path = commented(isolated / "config.toml")
    invoke("config", "set", "system", value)
    assert load_config(path, env={}).values["system"] == value
    invoke("config", "set", "product_git_hash", "-", input=value + "\n")
    assert load_config(path, env={}).values["product_git_hash"] == value


def test_set_refuses_a_nul_byte_and_writes_nothing(isolated):
    path = commented(isolated / "config.toml")
    before = path.read_bytes()
    result = invoke("config", "set", "system", "a\x00b", expect=2)
    assert "system" in result.output and "NUL" in result.output.upper()
    assert path.read_bytes() == before


def test_set_reads_types_as_the_environment_does(isolated):
    path = isolated / "config.toml"
    invoke("config", "set", "tls_verify", "no")
    invoke("config", "set", "retry_delay", "1")
    invoke("config", "set", "queue_size", " 12 ")
    invoke("config", "set", "spool_dir", "relative/spool")
    spool = Path.cwd() / "relative" / "spool"
    assert path.read_text() == (
        f'tls_verify = false\nretry_delay = 1.0\nqueue_size = 12\nspool_dir = "{spool}"\n'
    )


@pytest.mark.parametrize(
    "key,value,named",
    [
        ("queue_size", "abc", "queue_size"),
        ("queue_size", "0", "queue_size"),
        ("timeout", "nan", "timeout"),
        ("flush", "sometimes", "flush"),
        ("collector_url", "ftp://host", "collector_url"),
        ("tls_verify", "maybe", "tls_verify"),
        ("ip", "999.1.1.1", "ip"),
        ("device_id", "", "device_id"),
        ("colour", "red", "colour"),
        ("system", "\udcff", "system"),
    ],
)
def test_set_refuses_bad_values_and_writes_nothing(isolated, key, value, named):
    path = commented(isolated / "config.toml")
    before, inode = path.read_bytes(), path.stat().st_ino
    result = invoke("config", "set", key, value, expect=2)
    assert result.output.startswith("hamustro: error: ") and named in result.output
    assert path.read_bytes() == before and path.stat().st_ino == inode
    assert sorted(p.name for p in isolated.iterdir() if p.is_file()) == ["config.toml"]


def test_set_refuses_a_file_that_is_not_toml(isolated):
    path = isolated / "config.toml"
    path.write_text("queue_size = = 3\n")
    result = run("config", "set", "queue_size", "4")
    assert result.returncode == 2 and "not valid TOML" in result.stderr and str(path) in result.stderr
    assert path.read_text() == "queue_size = = 3\n"


def test_set_creates_a_missing_file_privately(isolated):
    path = isolated / "deep" / "config.toml"
    invoke("--config", str(path), "config", "set", "client_id", "c")
    assert path.read_text() == 'client_id = "c"\n'
    assert mode(path) == 0o600 and mode(isolated / "deep") == 0o700


def test_set_replaces_the_file_atomically_and_tightens_it(isolated):
    path = commented(isolated / "config.toml")
    path.chmod(0o644)
    inode = path.stat().st_ino
    invoke("config", "set", "queue_size", "9")
    # a new file renamed over the old one: a crash leaves one or the other, never half
    assert path.stat().st_ino != inode and mode(path) == 0o600
    assert sorted(p.name for p in isolated.iterdir() if p.is_file()) == ["config.toml"]


def test_set_through_a_symlink_keeps_the_link(isolated):
    real = commented(isolated / "dotfiles.toml")
    link = isolated / "config.toml"
    link.symlink_to(real)
    invoke("config", "set", "queue_size", "9")
    assert link.is_symlink() and load_config(real, env={}).values["queue_size"] == 9


def test_set_secret_from_stdin_is_never_shown(isolated):
    path = commented(isolated / "config.toml")
    result = run("config", "set", "shared_secret_key", "-", input="new-" + SECRET + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""
    assert load_config(path, env={}).values["shared_secret_key"] == "new-" + SECRET


def test_set_secret_as_an_argument_warns_without_showing_it(isolated):
    commented(isolated / "config.toml")
    result = run("config", "set", "shared_secret_key", "argv-" + SECRET)
    assert result.returncode == 0
    assert "process list" in result.stderr and "config set shared_secret_key -" in result.stderr
    no_secret(result.stdout, result.stderr)
    bad = run("config", "set", "shared_secret_key", "-", input="")
    assert bad.returncode == 2 and "shared_secret_key" in bad.stderr


def test_set_without_value_and_without_a_terminal_refuses(isolated):
    path = commented(isolated / "config.toml")
    before = path.read_bytes()
    result = run("config", "set", "client_id", input="")
    assert result.returncode == 2 and "missing VALUE for client_id" in result.stderr
    assert path.read_bytes() == before


def test_set_says_when_the_environment_overrides_the_file(isolated, monkeypatch):
    commented(isolated / "config.toml")
    monkeypatch.setenv("HAMUSTRO_QUEUE_SIZE", "3")
    result = invoke("config", "set", "queue_size", "9")
    assert "HAMUSTRO_QUEUE_SIZE" in result.output and "precedence" in result.output


# -- the template ---------------------------------------------------------------------------------


def test_the_template_documents_every_key():
    text = render({})
    lines = text.splitlines()
    for key in KEYS.values():
        index = next(i for i, line in enumerate(lines) if re.match(rf"(# )?{key.name} = ", line))
        assert lines[index - 1].startswith("# ") and lines[index - 1] != "#", key.name
        block: list[str] = []
        for line in reversed(lines[:index]):
            if not line.startswith("# "):
                break
            block.insert(0, line[2:])
        assert " ".join(block).lower().startswith(key.doc.lower()), key.name


def test_config_example_is_the_rendered_template():
    assert (ROOT / "config.example.toml").read_text() == example(), (
        "config.example.toml is stale: run python tools/gen_config_example.py"
    )
