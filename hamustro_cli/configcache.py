"""The config file's parsed TOML, cached in the spool directory (spooldir.CACHE_NAME), so that
`track` does not load the TOML reader on every call (most of what reading the config costs).

An entry holds the file's path, the SHA-256 of its exact bytes and what they parse to; it is
used only when the bytes just read from the file are the same, so it can never be stale (parsing is a pure
function of the bytes and the reader, whose version is in the entry too). Everything else
(environment, flags, the rules of every key, warnings) is worked out on every call as before.
The cache is trusted as the spool is: a regular file this user owns, 0600, in a directory
check_dir accepts; anything else, or anything unreadable, is ignored and never an error.

The shared secret is not in it (nothing in the spool directory holds it): the entry keeps where
in the file's bytes the secret's text is, and takes it from the bytes just read, which are the
very bytes the entry was made from. A secret that is not written as is in the file (a TOML
escape in it) is not cached at all."""

from __future__ import annotations

import marshal
import os
import stat
import sys
from typing import Any

from hamustro_cli.digests import sha256
from hamustro_cli.spooldir import CACHE_NAME, check_dir, open_private

FORMAT = 1
MAX_CACHE_BYTES = 4 * 1024 * 1024  # twice the largest config (config.MAX_CONFIG_BYTES) and more
_STAMP = (FORMAT, sys.version)  # marshal's format and the TOML reader go with the interpreter
_SIMPLE = (str, int, float, bool)


def lookup(directory: str, path: str, data: bytes, secret: str) -> dict[str, Any] | None:
    """What `data`, the bytes of the config file at `path`, parse to, if `directory` holds them;
    `secret` names the key that is not stored."""
    try:
        check_dir(directory, os.stat(directory))
        fd = os.open(
            os.path.join(directory, CACHE_NAME),
            os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0),
        )
    except Exception:  # noqa: BLE001 - no cache, or a directory that is not safely ours
        return None
    try:
        st = os.fstat(fd)
        if (
            not stat.S_ISREG(st.st_mode)
            or st.st_uid != os.geteuid()
            or st.st_mode & 0o077
            or st.st_size > MAX_CACHE_BYTES
        ):
            return None
        entry = marshal.loads(os.read(fd, MAX_CACHE_BYTES + 1))
    except Exception:  # noqa: BLE001 - unreadable or damaged: parse the file instead
        return None
    finally:
        os.close(fd)
    if not (isinstance(entry, tuple) and len(entry) == 5 and entry[:3] == (_STAMP, path, _digest(data))):
        return None
    values, span = entry[3:]
    if not (isinstance(values, dict) and all(_simple(k, v) for k, v in values.items() if k != secret)):
        return None
    if secret in values:
        if not (isinstance(span, tuple) and len(span) == 2 and all(type(i) is int for i in span)):
            return None
        try:
            values[secret] = data[span[0] : span[1]].decode("utf-8")
        except UnicodeDecodeError:
            return None
    return values


def store(directory: str, path: str, data: bytes, values: dict[str, Any], secret: str) -> None:
    """Keep what `data` parsed to in `directory` (an existing spool directory), replacing any
    entry, the value of the key `secret` as where it is in `data`. Only flat tables of strings,
    numbers and booleans are kept (what a valid config is); a failure changes nothing."""
    if not all(_simple(k, v) for k, v in values.items()):
        return
    span: tuple[int, int] | None = None
    if secret in values:
        text = values[secret].encode("utf-8", "surrogatepass")
        start = data.find(text) if isinstance(values[secret], str) else -1
        if start < 0:
            return  # escaped in the file: not cached, rather than stored
        span = (start, start + len(text))
        values = {k: (None if k == secret else v) for k, v in values.items()}
    temporary = os.path.join(directory, f"{CACHE_NAME}.{os.getpid()}")
    try:
        check_dir(directory, os.stat(directory))
        fd = open_private(temporary, os.O_WRONLY | os.O_TRUNC)
        try:
            os.write(fd, marshal.dumps((_STAMP, path, _digest(data), values, span)))
        finally:
            os.close(fd)
        os.replace(temporary, os.path.join(directory, CACHE_NAME))
    except Exception:  # noqa: BLE001 - read-only, full or not ours: the next call parses again
        try:
            os.unlink(temporary)
        except OSError:
            pass


def _digest(data: bytes) -> bytes:
    digest: bytes = sha256(data).digest()
    return digest


def _simple(key: Any, value: Any) -> bool:
    return isinstance(key, str) and type(value) in _SIMPLE
