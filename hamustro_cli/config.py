"""Where every setting comes from: flag, then environment, then TOML file, then default.

Each value keeps the name of its source, so that errors (and `doctor`) can say which file
or variable to fix. The shared secret is never echoed back, not even in an error.
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

from hamustro_cli import configcache
from hamustro_cli.errors import ConfigError
from hamustro_cli.events import is_utf8
from hamustro_cli.spooldir import FLUSH_ROOM


def toml_reader() -> Any:
    """The one TOML reader (tomli before Python 3.11), loaded when a file is parsed: `track`
    mostly finds the parse in configcache, and the reader is the larger part of reading a config."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    import tomli  # pragma: no cover - exercised only on old Pythons

    return tomli  # pragma: no cover


def parse_toml(text: str) -> dict[str, Any]:
    parsed: dict[str, Any] = toml_reader().loads(text)
    return parsed


ENV_PREFIX = "HAMUSTRO_"
SECRET_KEY = "shared_secret_key"
FLUSH_MODES = ("background", "inline", "off")
WHEN_FULL = ("refuse", "drop_oldest", "drop_newest")  # what track does at a bound of the spool (caps.py)


TRUE_WORDS = ("1", "true", "yes", "on")  # an environment variable's booleans, any case
FALSE_WORDS = ("0", "false", "no", "off")


def env_bool(text: str) -> bool | None:
    """An environment variable's boolean (any case, spaces around ignored); None: not a word."""
    lowered = text.strip().lower()
    if lowered in TRUE_WORDS:
        return True
    if lowered in FALSE_WORDS:
        return False
    return None


def env_name(key: str) -> str:
    """The environment variable that sets `key` (shared_secret_key: HAMUSTRO_SHARED_SECRET_KEY)."""
    return ENV_PREFIX + key.upper()


def flag_name(key: str) -> str:
    """The command-line flag named for `key` (collector_url: --collector-url)."""
    return "--" + key.replace("_", "-")


def secret_state(value: Any) -> str:
    """What is ever shown of the secret: whether it is set."""
    return "set" if value else "unset"


MASK = "***"  # shown in place of a secret: the shared secret, a proxy's user and password


def without_secret(text: str, values: Mapping[str, Any]) -> str:
    """`text` with the secret in `values` (a config's) masked, for messages that quote others'."""
    secret = values.get(SECRET_KEY)
    return text.replace(str(secret), MASK) if secret else text


class Key(NamedTuple):
    name: str
    kind: str  # "str", "int", "float", "bool", "path"
    default: Any = None
    required: bool = False
    minimum: float | None = None
    doc: str = ""
    # Upper bounds, checked when the config loads so that no value can break anything after
    # an event is queued: numbers beyond what SQLite, C and the clock hold, or a request that
    # no collector would take; strings (in characters) beyond any sane attribute or path.
    maximum: float | None = None
    max_chars: int = 1024


MAX_PATH_CHARS = 4096  # PATH_MAX on Linux
MAX_URL_CHARS = 2048


KEYS: dict[str, Key] = {
    k.name: k
    for k in (
        Key(
            "collector_url",
            "str",
            required=True,
            doc="base URL of the collector (http or https)",
            max_chars=MAX_URL_CHARS,
        ),
        Key(SECRET_KEY, "str", required=True, doc="secret shared with the collector; signs requests"),
        Key("device_id", "str", required=True, doc="raw device id; sent as its sha256 hex"),
        Key("client_id", "str", required=True, doc="client identifier"),
        Key("system_version", "str", required=True, doc="version of the operating system"),
        Key("product_version", "str", required=True, doc="version of the product"),
        Key("system", "str", doc="name of the operating system"),
        Key("product_git_hash", "str", doc="git hash of the product"),
        Key(
            "queue_size",
            "int",
            20,
            minimum=1,
            maximum=2**31 - 1,
            doc="flush when this many events are pending",
        ),
        Key(
            "queue_retention",
            "int",
            1440,
            minimum=1,
            maximum=525_600,  # a year
            doc="flush when the last sync is older (minutes)",
        ),
        Key("spool_dir", "path", doc="directory of the spool database", max_chars=MAX_PATH_CHARS),
        Key("flush", "str", "background", doc="what track does when a trigger fires"),
        Key("timeout", "float", 10.0, minimum=0.001, maximum=86_400, doc="seconds for one request"),
        Key("ip", "str", "auto", doc='"auto", "off" or a literal address'),
        Key(
            "send_ipv6",
            "bool",
            False,
            doc="send an IPv6 address given as ip or --ip (the collector stores it unmasked)",
        ),
        Key("max_batch_events", "int", 2000, minimum=1, maximum=100_000, doc="payloads in one request"),
        Key(
            "retries", "int", 3, minimum=0, maximum=100, doc="retries of a transient failure within one flush"
        ),
        Key(
            "retry_delay",
            "float",
            0.5,
            minimum=0.0,
            maximum=3600,
            doc="first retry delay (seconds), doubled each time",
        ),
        Key("tls_verify", "bool", True, doc="verify the collector's TLS certificate"),
        Key("ca_bundle", "path", doc="CA bundle file used to verify the collector", max_chars=MAX_PATH_CHARS),
        Key(
            "client_cert",
            "path",
            doc="PEM file of this client's TLS certificate (and its key, unless client_key is set)",
            max_chars=MAX_PATH_CHARS,
        ),
        Key("client_key", "path", doc="PEM file of client_cert's private key", max_chars=MAX_PATH_CHARS),
        Key("disk_reserve", "bool", True, doc="keep 8 MiB in the spool directory for a flush on a full disk"),
        Key(
            "spool_max_events",
            "int",
            0,
            minimum=0,
            maximum=2**53,
            doc="events kept in the spool, 0 = no cap",
        ),
        Key(
            "spool_max_mb", "int", 0, minimum=0, maximum=2**30, doc="MiB the spool's events take, 0 = no cap"
        ),
        Key(
            "spool_keep_free_mb",
            "int",
            FLUSH_ROOM // (1024 * 1024),
            minimum=0,
            maximum=2**30,
            doc="MiB track leaves free on the spool's file system, 0 = none",
        ),
        Key("when_full", "str", "refuse", doc='"refuse", "drop_oldest" or "drop_newest"'),
    )
}
REQUIRED = tuple(k.name for k in KEYS.values() if k.required)
CLIENT_CERT_KEYS = ("client_cert", "client_key")
MAX_PEM_BYTES = 1024 * 1024  # a certificate chain or a key is a few KiB; past this it is not one
MAX_CA_BUNDLE_BYTES = 16 * 1024 * 1024  # the whole Mozilla set is about 300 KiB
SESSION_KEYS = ("device_id", "client_id", "system_version", "product_version")


# Paths are plain strings (os.path), not pathlib: see ARCHITECTURE.md, Keeping `track` light.


def expand_user(path: str, env: Mapping[str, str]) -> str:
    """os.path.expanduser with `~` read from `env`'s HOME, so that an injected environment is
    honoured whole (without HOME there, the password database says, as for expanduser)."""
    if not (path == "~" or path.startswith("~/")):
        return os.path.expanduser(path)  # no ~, or ~user (the password database)
    home = env.get("HOME")
    if not home:
        import pwd

        try:
            home = pwd.getpwuid(os.getuid()).pw_dir
        except KeyError:  # a uid without an entry: as expanduser, leave the path alone
            return path
    return (home.rstrip("/") + path[1:]) or "/"


def default_config_path(env: Mapping[str, str]) -> str:
    """config.toml in click.get_app_dir("hamustro"), worked out as click does on POSIX but from
    `env` ($XDG_CONFIG_HOME, else ~/.config; ~/Library/Application Support on macOS).
    Elsewhere click's own answer, from os.environ."""
    if sys.platform == "darwin":
        app_dir = os.path.join(expand_user("~/Library/Application Support", env), "hamustro")
    elif os.name == "posix":
        app_dir = os.path.join(env.get("XDG_CONFIG_HOME", expand_user("~/.config", env)), "hamustro")
    else:  # pragma: no cover - Windows: not a platform this client is tested on
        import click

        app_dir = click.get_app_dir("hamustro")
    return os.path.join(app_dir, "config.toml")


def config_file_path(flag: str | os.PathLike[str] | None, env: Mapping[str, str]) -> str:
    """The config file in use: --config, $HAMUSTRO_CONFIG (when not empty), else the app dir's
    config.toml, `~` read from `env`."""
    if flag is not None:
        return expand_user(os.fspath(flag), env)
    if env.get(env_name("config")):
        return expand_user(env[env_name("config")], env)
    return default_config_path(env)


def default_spool_dir(env: Mapping[str, str]) -> str:
    """$XDG_STATE_HOME/hamustro, else ~/.local/state/hamustro, both read from `env`. A relative
    XDG_STATE_HOME is ignored, as the XDG Base Directory spec says."""
    state = env.get("XDG_STATE_HOME") or ""
    if not os.path.isabs(state):
        state = os.path.join(expand_user("~", env), ".local", "state")
    return os.path.join(state, "hamustro")


class Config:
    """Resolved settings. `sources[key]` says where each value came from.

    A plain class, not a frozen dataclass (ARCHITECTURE.md, Keeping `track` light)."""

    __slots__ = ("values", "sources", "origins", "config_path", "config_found", "spool_dir", "warnings")

    def __init__(
        self,
        values: Mapping[str, Any],
        sources: Mapping[str, str],
        config_path: str,
        config_found: bool,
        spool_dir: str,
        warnings: tuple[str, ...] = (),
        origins: Mapping[str, str] | None = None,
    ):
        self.values = values
        self.sources = sources
        # per key, the kind of its source: "flag", "environment", "file" or "default"
        self.origins = origins or {}
        self.config_path = config_path
        self.config_found = config_found
        self.spool_dir = spool_dir
        self.warnings = warnings

    def require(self, keys: tuple[str, ...] = REQUIRED) -> Config:
        missing = [k for k in keys if self.values.get(k) in (None, "")]
        if missing:
            names = ", ".join(missing)
            envs = ", ".join(env_name(k) for k in missing)
            how = (
                f"set it in {self.config_path} ('hamustro config set {missing[0]} VALUE') or in {envs}"
                if self.config_found
                else f"set it in a config file ({self.config_path} does not exist: "
                f"'hamustro config init' writes one) or in {envs}"
            )
            raise ConfigError(f"missing required config key {names}: {how}")
        return self


def _where(source: str) -> str:
    return f"(from {source})"


def _coerce(key: Key, raw: Any, source: str, from_env: bool, env: Mapping[str, str] | None = None) -> Any:
    """Check (and for environment strings, parse) one value; errors name key and source. A path's
    `~` is read from `env` (os.environ when None)."""
    secret = key.name == SECRET_KEY
    shown = "" if secret else f" {_clip(raw)}"
    kind = key.kind

    def bad(expected: str) -> ConfigError:
        return ConfigError(
            f"config key {key.name} {_where(source)}: expected {expected}, "
            f"got{shown or ' a value of another type'}"
        )

    if kind in ("str", "path"):
        if not isinstance(raw, str):
            raise bad("a string")
        problem = _text_problem(raw, key.max_chars)
        if problem:
            raise ConfigError(f"config key {key.name} {_where(source)}: {problem}")
        value: Any = raw
        if kind == "path":
            if not raw:
                raise ConfigError(f"config key {key.name} {_where(source)}: must not be empty")
            # absolute: the background flush runs elsewhere (cwd "/") and must find the same files
            value = os.path.abspath(expand_user(raw, os.environ if env is None else env))
    elif kind == "int":
        if from_env:
            try:
                raw = int(raw.strip())
            except ValueError:
                raise bad("an integer") from None
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise bad("an integer")
        value = raw
        if key.maximum is not None and value > key.maximum:
            # said before the minimum check: a huge negative number is "too low", shown short
            raise ConfigError(
                f"config key {key.name} {_where(source)}: must be at most {int(key.maximum)}, "
                f"got {_short_number(value)}"
            )
    elif kind == "float":
        if from_env:
            try:
                raw = float(raw.strip())
            except ValueError:
                raise bad("a number") from None
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise bad("a number")
        value = float(raw)
        if value != value or value in (float("inf"), float("-inf")):
            raise bad("a finite number")
        if key.maximum is not None and value > key.maximum:
            raise ConfigError(
                f"config key {key.name} {_where(source)}: must be at most {key.maximum:g}, got {value:g}"
            )
    elif kind == "bool":
        if from_env:
            word = env_bool(raw)
            raw = raw if word is None else word
        if not isinstance(raw, bool):
            raise bad("true or false")
        value = raw
    else:  # pragma: no cover - table error
        raise AssertionError(kind)
    if key.minimum is not None and value < key.minimum:
        low = int(key.minimum) if kind == "int" else key.minimum
        raise ConfigError(
            f"config key {key.name} {_where(source)}: must be at least {low}, got {_short_number(value)}"
        )
    _check_value(key.name, value, source)
    return value


def _text_problem(text: str, max_chars: int) -> str | None:
    """What makes a string setting unusable, in words that never quote it (it may be the secret)."""
    if len(text) > max_chars:
        return f"too long ({len(text)} characters, at most {max_chars})"
    if "\x00" in text:
        return "contains a NUL byte"
    if not is_utf8(text):  # os.environ holds undecodable bytes as lone surrogates
        return "is not valid text (bytes that do not decode under the current locale?)"
    return None


def _clip(raw: Any, limit: int = 80) -> str:
    """repr of a refused value for an error message, cut short (never the secret's)."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        return _short_number(raw)
    text = repr(raw)
    return text if len(text) <= limit else text[:limit] + "…"


def _short_number(value: float) -> str:
    if isinstance(value, int) and value.bit_length() > 64:
        return f"{'-' if value < 0 else ''}2**{value.bit_length() - 1} or more"
    return repr(value)


def _check_value(name: str, value: Any, source: str) -> None:
    if name == "collector_url":
        from hamustro_cli.netaddr import url_problem

        problem = url_problem(value)
        if problem:
            shown = _clip(value) if "@" not in value else "a URL with user info (not shown)"
            raise ConfigError(f"config key collector_url {_where(source)}: {problem}, got {shown}")
    elif name == "flush" and value not in FLUSH_MODES:
        raise ConfigError(
            f"config key flush {_where(source)}: expected one of {', '.join(FLUSH_MODES)}, got {_clip(value)}"
        )
    elif name == "when_full" and value not in WHEN_FULL:
        raise ConfigError(
            f"config key when_full {_where(source)}: expected one of {', '.join(WHEN_FULL)}, "
            f"got {_clip(value)}"
        )
    elif name == "ip" and value not in ("auto", "off"):
        from hamustro_cli.netaddr import valid_ip

        if not valid_ip(value):
            raise ConfigError(
                f'config key ip {_where(source)}: expected "auto", "off" or an IPv4/IPv6 address, '
                f"got {_clip(value)}"
            )
    elif name in ("device_id", "client_id", "system_version", "product_version", SECRET_KEY) and not value:
        raise ConfigError(f"config key {name} {_where(source)}: must not be empty")


def _check_pem_file(
    name: str, path: str, source: str, cap: int = MAX_PEM_BYTES, what: str = "a PEM certificate or key"
) -> None:
    """A certificate, key or CA bundle file: a readable regular file (or a link to one) of at
    most `cap` bytes. Only stat and access: its contents are read when a flush or doctor loads
    them (transport.client_cert, requests' verify=), never on track's path."""
    problem = None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        problem = "does not exist"
    except PermissionError:
        problem = "cannot be reached (permission denied on a directory above it)"
    except OSError as exc:
        problem = f"cannot be read: {exc.strerror}"
    else:
        if not stat.S_ISREG(st.st_mode):
            from hamustro_cli.spooldir import file_kind

            problem = f"is {file_kind(st.st_mode)}, not a regular file"
        elif st.st_size > cap:
            problem = f"is larger than {cap // 1024} KiB: not {what}"
        elif not os.access(path, os.R_OK):
            problem = "is not readable (permission denied)"
    if problem:
        raise ConfigError(f"config key {name} {_where(source)}: {path} {problem}")


MAX_CONFIG_BYTES = 1024 * 1024  # a config is a few KiB; anything past this is not one


def config_file_problem(path: str, failed: OSError | None = None) -> ConfigError:
    """Why `path` cannot be a config file: missing, not a regular file (nor a link to one; a
    dangling link or a link loop named as such), or `failed`, the error opening a regular one."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            return ConfigError(
                f"config file {path} is a symbolic link to {os.readlink(path)}, which does not exist"
            )
        return ConfigError(f"config file {path} does not exist")
    except PermissionError:
        return ConfigError(f"config file {path} is not readable (permission denied)")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return ConfigError(f"config file {path} is a symbolic link loop (it never reaches a file)")
        return ConfigError(f"config file {path} cannot be read: {exc.strerror}")
    if stat.S_ISREG(st.st_mode) and failed is not None:
        if isinstance(failed, PermissionError):
            return ConfigError(f"config file {path} is not readable (permission denied)")
        return ConfigError(f"config file {path} cannot be read: {failed.strerror}")
    from hamustro_cli.spooldir import file_kind

    return ConfigError(f"config file {path} is {file_kind(st.st_mode)}, not a regular file")


def read_config_bytes(path: str) -> tuple[bytes, os.stat_result]:
    """The config file's bytes and its stat. Only a regular file (or a link to one) is opened,
    without blocking (a FIFO with no writer) and read no further than MAX_CONFIG_BYTES
    (/dev/zero, a file that grows): checked on the open descriptor, so a swap between the check
    and the open changes nothing."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise config_file_problem(path)  # never opened: opening a device can act on it
        fd = os.open(path, flags)
    except OSError as exc:
        raise config_file_problem(path, exc) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise config_file_problem(path)
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CONFIG_BYTES:
            chunk = os.read(fd, MAX_CONFIG_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {path} is larger than {MAX_CONFIG_BYTES // 1024} KiB: not a hamustro config"
        )
    return b"".join(chunks), st


def parse_config_bytes(path: str, data: bytes) -> dict[str, Any]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not valid UTF-8 TOML") from None
    try:
        return parse_toml(text)
    except toml_reader().TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None


def read_config_file(path: str) -> dict[str, Any]:
    return parse_config_bytes(path, read_config_bytes(path)[0])


def load_config(
    config_path: str | os.PathLike[str] | None = None,
    spool_dir: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    use_file: bool = True,
    given_as: str = "flag",
) -> Config:
    """Resolve every key. `overrides` (and `config_path`, `spool_dir`) are values given
    directly: command-line flags, or with `given_as="ClientTracker"` (the function's name) a
    Python caller's arguments; errors name them as the caller gave them."""
    env = os.environ if env is None else env
    overrides = dict(overrides or {})
    warnings: list[str] = []

    explicit = config_path is not None or bool(env.get(env_name("config")))
    path = config_file_path(config_path, env)

    file_values: dict[str, Any] = {}
    found = False
    cache = _cache_dir(spool_dir, env) if use_file else None
    parsed: bytes | None = None  # the file's bytes, when they were parsed here (not cached)
    if use_file and (explicit or os.path.lexists(path)):  # a dangling link there: said, not skipped
        try:
            data, file_stat = read_config_bytes(path)
            cached = configcache.lookup(cache, path, data, SECRET_KEY) if cache else None
            if cached is None:
                file_values, parsed = parse_config_bytes(path, data), data
            else:
                file_values = cached
        except ConfigError as exc:
            missing = not os.path.lexists(path)
            if config_path is not None:
                given = "--config" if given_as == "flag" else f"{given_as} argument path"
                init = _init_hint(path) if missing and given_as == "flag" else ""
                raise ConfigError(f"{exc} (given with {given}){init}") from None
            if env.get(env_name("config")):
                init = "; to write one: hamustro config init" if missing else ""
                raise ConfigError(f"{exc} (set by environment variable {env_name('config')}){init}") from None
            raise
        found = True
        for name in file_values:
            if name not in KEYS:
                raise ConfigError(f"unknown config key {name!r} in {path}")
        if file_values.get(SECRET_KEY) and file_stat.st_mode & (stat.S_IRGRP | stat.S_IROTH):
            warnings.append(
                f"{path} holds shared_secret_key and is readable by other users; run: chmod 600 {path}"
            )

    if spool_dir is not None:
        overrides["spool_dir"] = os.fspath(spool_dir)

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    origins: dict[str, str] = {}
    for key in KEYS.values():
        variable = env_name(key.name)
        if key.name in overrides and overrides[key.name] is not None:
            source = flag_name(key.name) if given_as == "flag" else f"{given_as} argument {key.name}"
            raw, from_env = overrides[key.name], False
            origins[key.name] = "flag"
            if key.kind == "path":
                raw = os.fspath(raw)
        elif variable in env:
            raw, source, from_env = env[variable], f"environment variable {variable}", True
            origins[key.name] = "environment"
        elif key.name in file_values:
            raw, source, from_env = file_values[key.name], f"{path}", False
            origins[key.name] = "file"
        else:
            values[key.name] = key.default
            sources[key.name] = origins[key.name] = "default"
            continue
        values[key.name] = _coerce(key, raw, source, from_env, env)
        sources[key.name] = source

    if values["ip"] not in ("auto", "off"):
        from hamustro_cli.errors import InputError
        from hamustro_cli.events import check_ip

        try:
            values["ip"] = check_ip(
                values["ip"], f"config key ip {_where(sources['ip'])}", values["send_ipv6"]
            )
        except InputError as exc:
            raise ConfigError(str(exc)) from None
    spool = values["spool_dir"] or default_spool_dir(env)
    if values["ca_bundle"] is not None:
        _check_pem_file(
            "ca_bundle", values["ca_bundle"], sources["ca_bundle"], MAX_CA_BUNDLE_BYTES, "a CA bundle"
        )
    for name in CLIENT_CERT_KEYS:
        if values[name] is not None:
            _check_pem_file(name, values[name], sources[name])
    if values["client_key"] is not None and values["client_cert"] is None:
        raise ConfigError(
            f"config key client_key {_where(sources['client_key'])} is set without client_cert: "
            "set client_cert to the certificate of that key"
        )
    if values["tls_verify"] is False:
        warnings.append(
            f"TLS certificate verification is off (tls_verify from {sources['tls_verify']}); "
            "anyone on the path can read and change what is sent"
        )
    config = Config(
        values=values,
        sources=sources,
        config_path=path,
        config_found=found,
        spool_dir=os.path.abspath(os.fspath(spool)),
        warnings=tuple(warnings),
        origins=origins,
    )
    if parsed is not None and config.spool_dir == cache:
        configcache.store(cache, path, parsed, file_values, SECRET_KEY)
    return config


def _init_hint(path: str) -> str:
    """How to write the config file that --config names and that does not exist."""
    import shlex

    return f"; to write one: hamustro --config {shlex.quote(path)} config init"


def _cache_dir(flag: str | os.PathLike[str] | None, env: Mapping[str, str]) -> str | None:
    """Where configcache looks before the file is read: the spool directory as --spool-dir,
    $HAMUSTRO_SPOOL_DIR or the default name it. A spool_dir set in the file itself is known
    only after parsing; load_config stores an entry only where the spool directory turned out
    to be, so a file that moves the spool elsewhere is parsed on every call."""
    raw = os.fspath(flag) if flag is not None else env.get(env_name("spool_dir"))
    try:
        return os.path.abspath(expand_user(raw, env) if raw else default_spool_dir(env))
    except Exception:  # noqa: BLE001 - a value the full rules refuse below, with their message
        return None
