"""The config file as people keep it: the commented file `config init` writes, the edit of one
key that `config set` makes (every other byte kept), and every value with its origin for
`config show`.

Key docs have one home: `config.KEYS` (one line each) plus the notes below; the template is
rendered from them, so it ships with the code and `config.example.toml` is its rendering
(tests/test_config_cmd.py checks). Never imported by `track`.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import textwrap
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from hamustro_cli.config import (
    KEYS,
    REQUIRED,
    SECRET_KEY,
    Config,
    Key,
    _coerce,
    config_file_problem,
    env_name,
    flag_name,
    parse_config_bytes,
    parse_toml,
    read_config_bytes,
    secret_state,
    toml_reader,
)
from hamustro_cli.errors import ConfigError
from hamustro_cli.events import is_utf8
from hamustro_cli.spooldir import make_private_dirs, sync_directory, write_whole

TOMLDecodeError = toml_reader().TOMLDecodeError  # configfile parses whatever it edits

# What the template says about a key beyond its one-line doc in config.KEYS.
NOTES: dict[str, str] = {
    "collector_url": "Events go to {collector_url}/api/v1/track. No query string, fragment or "
    'user:password@; an IPv6 address goes in brackets: "http://[::1]:8080".',
    SECRET_KEY: "Never printed by hamustro: keep this file private (mode 0600).",
    "client_id": "With device_id, system_version and product_version it makes the session.",
    "queue_retention": "A new spool counts its creation as the last sync.",
    "spool_dir": "Default: $XDG_STATE_HOME/hamustro, else ~/.local/state/hamustro.",
    "flush": '"background" starts a detached flush, "inline" flushes before returning, '
    '"off" leaves it to `hamustro flush` (cron, a systemd timer).',
    "ip": '"auto" is the local IPv4 address of the route to the collector, found without sending; '
    "over an IPv6-only route no address is sent.",
    "send_ipv6": "The collector masks the last octet of an IPv4 address but stores an IPv6 one whole.",
    "retries": "Transient: 5xx, 408, 429, refused or reset connections; "
    "after a timeout or a 504, with half as many events.",
    "retry_delay": "With jitter, capped at 30 s, and at least what Retry-After asks.",
    "tls_verify": "Turning it off prints a warning on every command.",
    "ca_bundle": "A PEM file, used instead of the system's CA list (for a private CA).",
    "client_cert": "For a collector (or a TLS terminator before it) that asks for a client "
    "certificate. A pair that does not load is a config error (exit 2), not a failure to retry.",
    "client_key": "Unencrypted (nobody types a passphrase for cron), readable by this user only "
    "(doctor warns otherwise); only with client_cert.",
    "disk_reserve": "A file (space.reserve) allocated while the disk has room for it and as much "
    "again; a flush on a full disk frees it, so it can record what the collector answers and drain "
    "the spool. Off: a flush still sends only with 8 MiB free.",
    "spool_max_events": "Rejected events count too. At the cap, track does what when_full says.",
    "spool_max_mb": "The pages the events take in the database (the WAL, at most 4 MiB, comes on top).",
    "spool_keep_free_mb": "Like journald's SystemKeepFree: track never takes the file system below "
    "this, counting space.reserve (disk_reserve) as free, since a flush gets it back. The default, "
    "8 MiB, is what a flush needs to record the collector's answers. A flush is never held by it.",
    "when_full": '"refuse": track exits 3, nothing queued; "drop_oldest": the oldest events make room; '
    '"drop_newest": the new events are dropped (a warning, exit 0). Every drop is counted '
    "(hamustro status, hamustro metrics).",
}
# Shown (commented out, or as the example's values) for keys without a default.
EXAMPLES: dict[str, Any] = {
    "collector_url": "http://127.0.0.1:8080",
    SECRET_KEY: "change-me",
    "device_id": "my-laptop",
    "client_id": "my-scripts",
    "system_version": "Debian 12",
    "product_version": "1.0.0",
    "system": "linux",
    "product_git_hash": "0123abc",
    "spool_dir": "~/.local/state/hamustro",
    "ca_bundle": "/etc/ssl/certs/my-ca.pem",
    "client_cert": "/etc/hamustro/client.pem",
    "client_key": "/etc/hamustro/client.key",
}

# What `config init` asks a person for each required key (then ", e.g. EXAMPLE" but for the secret).
QUESTIONS = {
    "collector_url": "Collector URL (http or https)",
    SECRET_KEY: "Shared secret, as the collector has it (not shown as you type)",
    "device_id": "Name of this machine (sent only as its sha256 hash)",
    "client_id": "Name of what sends the events",
    "system_version": "Operating system and its version",
    "product_version": "Version of the product that sends the events",
}
# What a commented-out line of a key without a default shows, said above it (spool_dir's
# NOTES say its default already).
UNSET = {"spool_dir": ""}
UNSET_EXAMPLE = "Unset by default; the line shows an example."

HEADER = """\
# hamustro configuration (TOML, top-level keys only).
# Change a key with `hamustro config set KEY VALUE` (comments are kept) or in an editor; see
# every value and where it came from with `hamustro config show`, check them with
# `hamustro doctor`. Location: --config PATH, else $HAMUSTRO_CONFIG, else
# $XDG_CONFIG_HOME/hamustro/config.toml (~/.config/hamustro/config.toml when it is unset).
# Every key can also be set in the environment as HAMUSTRO_<KEY>, e.g.
# HAMUSTRO_SHARED_SECRET_KEY. Precedence: flag, environment, this file, default.
# Proxies are not set here: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY (lower case too)
# in the environment, as for curl; credentials go in the proxy's URL and are never shown.
# This file holds the shared secret: keep it private (mode 0600).
"""
REQUIRED_RULE = "# --- required " + "-" * 80
OPTIONAL_RULE = "# --- optional: a commented-out line shows the default, or an example " + "-" * 40
WIDTH = 94


# -- TOML values ----------------------------------------------------------------------------------

_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def toml_string(text: str) -> str:
    """A TOML basic string. Raises ValueError for text TOML cannot hold (lone surrogates)."""
    if not is_utf8(text):
        raise ValueError("not valid Unicode text")
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("not a finite number")
        return repr(value)  # 10.0, 1e-05, 1e+20: all TOML floats
    if isinstance(value, str):
        return toml_string(value)
    raise TypeError(f"no TOML form for {type(value).__name__}")


def parse_value(name: str, raw: str, source: str) -> Any:
    """A value given as text (command line, standard input, a prompt), parsed and checked
    exactly as a HAMUSTRO_<KEY> variable is when the config is loaded."""
    if name not in KEYS:
        raise ConfigError(f"unknown config key {name!r} (known keys: {', '.join(KEYS)})")
    value = _coerce(KEYS[name], raw, source, from_env=True)
    try:
        toml_value(value)
    except ValueError as exc:
        raise ConfigError(f"config key {name} (from {source}): {exc}") from None
    return value


# -- the template ---------------------------------------------------------------------------------


def _comment(key: Key) -> list[str]:
    text = key.doc[:1].upper() + key.doc[1:] + "."
    if key.name in NOTES:
        text += " " + NOTES[key.name]
    if not key.required and key.default is None and UNSET.get(key.name, UNSET_EXAMPLE):
        text += " " + UNSET.get(key.name, UNSET_EXAMPLE)
    if key.minimum is not None and key.maximum is not None:
        low, high = (int(key.minimum), int(key.maximum)) if key.kind == "int" else (key.minimum, key.maximum)
        text += f" From {low:g} to {high:g}." if key.kind == "float" else f" From {low} to {high}."
    return textwrap.wrap(text, WIDTH - 2, initial_indent="# ", subsequent_indent="# ", break_on_hyphens=False)


def render(values: Mapping[str, Any]) -> str:
    """The commented config file: every key of config.KEYS with its doc; keys in `values` set,
    the others commented out showing their default (or an example)."""
    lines = HEADER.splitlines()
    for rule, required in ((REQUIRED_RULE, True), (OPTIONAL_RULE, False)):
        lines += ["", rule[:WIDTH]]
        for key in KEYS.values():
            if key.required != required:
                continue
            lines.append("")
            lines += _comment(key)
            if key.name in values:
                lines.append(f"{key.name} = {toml_value(values[key.name])}")
            else:
                shown = key.default if key.default is not None else EXAMPLES.get(key.name, "")
                lines.append(f"# {key.name} = {toml_value(shown)}")
    return "\n".join(lines) + "\n"


def example() -> str:
    """config.example.toml: the template with example values for the required keys."""
    return render({name: EXAMPLES[name] for name in REQUIRED})


def required_values(
    given: Mapping[str, str | None],
    env: Mapping[str, str],
    ask: Callable[[Key], Any] | None,
    note: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    """Every required key for `config init`: from `given` (option -> text), else the
    environment, else `ask` (a terminal). Without a terminal a missing key is an error that
    says how to give it; nothing is guessed."""
    values: dict[str, Any] = {}
    missing = []
    for name in REQUIRED:
        variable = env_name(name)
        if given.get(name) is not None:
            option = "standard input" if name == SECRET_KEY else flag_name(name)
            values[name] = parse_value(name, given[name], option)  # type: ignore[arg-type]
        elif env.get(variable):
            values[name] = parse_value(name, env[variable], f"environment variable {variable}")
            note(f"{name}: from environment variable {variable}")
        elif ask is not None:
            values[name] = ask(KEYS[name])
        else:
            missing.append(name)
    if missing:
        how = [
            f"--secret-stdin (or {env_name(name)})"
            if name == SECRET_KEY
            else f"{flag_name(name)} (or {env_name(name)})"
            for name in missing
        ]
        raise ConfigError(
            f"no terminal to ask for {', '.join(missing)}: give {', '.join(how)}; nothing was written"
        )
    return values


def exists_error(path: str) -> ConfigError:
    return ConfigError(
        f"config file {path} already exists: change a key with 'hamustro config set KEY VALUE', "
        "or replace the file with 'hamustro config init --force'"
    )


def init_file(path: str, values: Mapping[str, Any], force: bool) -> None:
    target = writable_target(path)
    with config_lock(target):
        if os.path.lexists(target) and not force:
            raise exists_error(path)
        write_private(target, render(values), replace=force, shown=path)


def writable_target(path: str) -> str:
    """The file `config set` and `config init` replace: `path`, or the file a link there points
    to. Only a regular file is ever replaced (never /dev/null, a FIFO, a socket, a directory);
    a missing one is created, but not through a dangling link (that would make the link's
    directories, which nobody asked for)."""
    if not os.path.lexists(path):
        return path
    if not os.path.isfile(path):  # follows links: a dangling one, a loop or no regular file
        raise ConfigError(f"{config_file_problem(path)}; nothing was written")
    return os.path.realpath(path)


@contextlib.contextmanager
def config_lock(target: str) -> Iterator[None]:
    """Serialise the changes of hamustro processes to the config file at `target`: an flock on
    `.NAME.lock` beside it (the file itself is replaced by a rename, so a lock on it would be on
    the old one; a directory cannot be locked over NFS). The holder removes the lock file before
    it lets go, and a waiter that then gets the lock on a removed file starts again, so the
    directory is left as it was. The lock file is never followed as a link nor used when it is
    not a regular file. Missing directories are made 0700 first, as for the file."""
    import fcntl

    directory, name = os.path.split(os.path.abspath(target))
    lock_path = os.path.join(directory, f".{name}.lock")
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)

    def refused(why: str) -> ConfigError:
        return ConfigError(f"cannot lock config file {target} ({lock_path}): {why}; nothing was written")

    try:
        make_private_dirs(directory)
    except OSError as exc:
        raise refused(exc.strerror or str(exc)) from None
    while True:
        try:
            fd = os.open(lock_path, flags, 0o600)
        except OSError as exc:
            raise refused(exc.strerror or str(exc)) from None
        try:
            held = os.fstat(fd)
            if not stat.S_ISREG(held.st_mode):
                raise refused("not a regular file")
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                now = os.lstat(lock_path)
            except FileNotFoundError:
                now = None
        except OSError as exc:
            os.close(fd)
            raise refused(exc.strerror or str(exc)) from None
        except BaseException:
            os.close(fd)
            raise
        if now is not None and (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino):
            break
        os.close(fd)  # the file was removed by the holder before us: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        os.close(fd)  # releases the lock


# -- one key, every other byte kept ----------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """Lines with their endings. Not str.splitlines: TOML allows U+2028 and friends in strings
    and comments, and only LF (or CRLF) ends a line."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


def _tail_comment(body: str, parsed: dict[str, Any]) -> str:
    """The comment after an assignment's value (with the spaces before it), or ''."""
    for match in re.finditer("#", body):
        head = body[: match.start()]
        try:
            if parse_toml(head) == parsed:
                return body[len(head.rstrip(" \t")) :]
        except TOMLDecodeError:
            continue
    return ""


def _rewrite_assignment(lines: list[str], i: int, prefix: str, name: str, literal: str) -> list[str] | None:
    """Replace the assignment starting at line i (its value may span lines) by one line."""
    for j in range(i, len(lines)):
        chunk = "".join(lines[i : j + 1])
        body = chunk.rstrip("\r\n")
        try:
            parsed = parse_toml(body)
        except TOMLDecodeError:
            continue
        if list(parsed) != [name]:
            return None
        line = prefix + literal + _tail_comment(body, parsed) + chunk[len(body) :]
        return lines[:i] + [line] + lines[j + 1 :]
    return None


def edit(text: str, name: str, value: Any, path: str) -> str:
    """`text` with the top-level key `name` set to `value` and every other line unchanged.

    The key's own assignment is rewritten in place (its trailing comment kept); without one,
    the template's commented-out `# name = ...` line becomes the assignment; without that, a
    line is appended. The result is parsed back, and anything but the old settings with this
    one key changed is refused, so an unusual file is never damaged."""
    expected = {**parse_toml(text), name: value}
    literal = toml_value(value)
    lines = _lines(text)
    eol = "\r\n" if lines and lines[0].endswith("\r\n") else "\n"
    quoted = re.escape(name)
    active = re.compile(rf"[ \t]*(?:{quoted}|\"{quoted}\"|'{quoted}')[ \t]*=[ \t]*")
    commented = re.compile(rf"#[ \t]*{quoted}[ \t]*=")
    tries: list[list[str] | None] = []
    for i, line in enumerate(lines):
        match = active.match(line)
        if match:
            tries.append(_rewrite_assignment(lines, i, match.group(0), name, literal))
    # Where the key is set, only its own assignment parses back right; the others would repeat it.
    for i, line in enumerate(lines):
        if commented.match(line):
            ending = line[len(line.rstrip("\r\n")) :]
            tries.append(lines[:i] + [f"{name} = {literal}{ending}"] + lines[i + 1 :])
    end = [eol] if lines and not lines[-1].endswith("\n") else []
    tries.append(lines + end + [f"{name} = {literal}{eol}"])
    for attempt in tries:
        if attempt is None:
            continue
        new = "".join(attempt)
        try:
            if parse_toml(new) == expected:
                return new
        except TOMLDecodeError:
            continue
    raise ConfigError(
        f"cannot change {name} in {path} without disturbing the rest of the file: "
        "edit it by hand; nothing was written"
    )


def set_key(path: str, name: str, value: Any) -> None:
    """Set one key in the config file at `path` (created 0600 when missing), atomically. Two at
    once are serialised (config_lock): neither change is lost."""
    target = writable_target(path)
    with config_lock(target):
        if not os.path.lexists(target):
            write_private(target, f"{name} = {toml_value(value)}\n", replace=False, shown=path)
            return
        try:
            data, _ = read_config_bytes(target)  # a clear error when unreadable, not a file, too big
            parse_config_bytes(path, data)  # ... or not TOML
        except ConfigError as exc:
            raise ConfigError(f"{exc}; nothing was written") from None
        write_private(target, edit(data.decode("utf-8"), name, value, path), replace=True, shown=path)


# -- writing ---------------------------------------------------------------------------------------


def write_private(path: str, text: str, replace: bool, shown: str | None = None) -> None:
    """Write `text` as a 0600 file: a temp file beside it, synced, then renamed over it, so a
    crash leaves the old file or the new one, never half of one. A symlinked config (dotfiles)
    stays a symlink: its target is replaced. Without `replace` an existing file is an error
    (checked by the link that puts the file in place, so a race cannot clobber one). Errors
    name `shown` (the path as given), else `path`."""
    target = os.path.realpath(path)
    path = shown or path
    parent = os.path.dirname(target)
    try:
        make_private_dirs(parent)
        try:
            write_whole(target, text.encode("utf-8"), 0o600, replace=replace)
        except FileExistsError:
            raise exists_error(path) from None
        sync_directory(parent)
    except OSError as exc:
        raise ConfigError(f"cannot write config file {path}: {exc.strerror or exc}") from None


# -- config show -----------------------------------------------------------------------------------


def describe(cfg: Config) -> dict[str, Any]:
    """Every key with its value and origin; the secret only as "set"/"unset"."""
    keys = {}
    for name, key in KEYS.items():
        value = cfg.values.get(name)
        source = cfg.sources.get(name, "default")
        if name == "spool_dir" and value is None:
            value = cfg.spool_dir
        if name == SECRET_KEY:
            value = secret_state(value)
        keys[name] = {
            "value": value,
            "source": cfg.origins.get(name, "default"),
            "from": source,
            "required": key.required,
        }
    return {
        "path": os.path.abspath(cfg.config_path),
        "found": cfg.config_found,
        "keys": keys,
        "missing": [n for n in REQUIRED if cfg.values.get(n) in (None, "")],
        "warnings": list(cfg.warnings),
    }


def show_lines(description: Mapping[str, Any]) -> list[str]:
    """`config show` for people: one key a line, value as TOML, then where it came from."""
    found = "" if description["found"] else " (not found)"
    rows = []
    for name, info in description["keys"].items():
        value = info["value"]
        if name in description["missing"]:  # the secret too: "unset" alone reads as optional
            shown = "unset (required)"
        elif name == SECRET_KEY or value is None:
            shown = "unset" if value is None else value
        else:
            shown = toml_value(value)
        origin = {
            "flag": f"flag {info['from']}",
            "environment": info["from"],
            "file": f"file {info['from']}",
        }.get(info["source"], "default")
        if info["required"] and name in description["missing"]:
            origin = "-"
        rows.append((name, shown, origin))
    width_name = max(len(r[0]) for r in rows)
    width_value = max(len(r[1]) for r in rows)
    lines = [f"config file: {description['path']}{found}"]
    lines += [f"{n:<{width_name}}  {v:<{width_value}}  {o}" for n, v, o in rows]
    return lines
