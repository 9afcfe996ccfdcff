"""Writing to the standard streams without loading Click: `echo` (what click.echo writes, for
the text `track` prints), the JSON encoder commands print with, and `silence` for a standard
stream that broke (EPIPE, `| head`). cli.output builds on it; the fast `track` (entry) uses it
alone."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any


def echo(text: str, err: bool = False) -> None:
    """click.echo(text, err=err). Text of printable ASCII is written as click writes it (the
    line, then a flush) without loading Click; anything else goes through click.echo itself,
    which strips ANSI codes when the stream is not a terminal and mends a misconfigured
    encoding, so both ways print the same bytes."""
    if not _plain(text):
        import click

        click.echo(text, err=err)
        return
    stream = sys.stderr if err else sys.stdout
    if stream is None:
        return
    stream.write(text + "\n")
    stream.flush()


def _plain(text: str) -> bool:
    """Text click.echo writes as it is: printable ASCII (no ANSI codes to strip)."""
    return text.isascii() and "\x1b" not in text


def json_text() -> Callable[[Any], str]:
    """json.dumps for what commands print. A value stored as a BLOB where text belongs (a
    tampered or damaged spool) is written as its text, bad bytes escaped (\\xff), where
    json.dumps would end the command in a traceback."""
    import json

    return json.JSONEncoder(default=_blob_text).encode


def _blob_text(value: Any) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", "backslashreplace")
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def emit_json(data: Any) -> None:
    text = flat_json(data)
    echo(json_text()(data) if text is None else text)


def flat_json(data: Any) -> str | None:
    """json.dumps(data) without loading json (2 ms of every `track --json`), for a flat object
    whose keys and text are plain (printable ASCII, no quote or backslash) and whose other values
    are whole numbers, booleans or null: `track --json`'s result. None for anything else, which
    json_text writes. tests/test_fast_track.py holds it to json.dumps."""
    if type(data) is not dict:
        return None
    parts = []
    for key, value in data.items():
        if not _plain_word(key):
            return None
        if value is None or value is True or value is False:
            shown = "null" if value is None else ("true" if value else "false")
        elif type(value) is int:
            shown = str(value)
        elif _plain_word(value):
            shown = f'"{value}"'
        else:
            return None
        parts.append(f'"{key}": {shown}')
    return "{" + ", ".join(parts) + "}"


def _plain_word(value: Any) -> bool:
    return (
        type(value) is str
        and value.isascii()
        and value.isprintable()
        and '"' not in value
        and "\\" not in value
    )


def silence(stream: Any) -> None:
    """Point a broken standard stream at /dev/null, so that the flush at interpreter exit does not
    fail on it again (Python would then exit 120)."""
    try:
        if stream is not None and stream.fileno() in (1, 2):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, stream.fileno())
            finally:
                os.close(null)
    except Exception:  # noqa: BLE001 - under CliRunner or already closed: nothing to protect
        pass
