"""What commands print: JSON, and what to do when standard output or error breaks."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

import click


def emit_json(data: Any) -> None:
    click.echo(json_text()(data))


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


def write_lines(lines: Any) -> None:
    """Write lines to standard output as they come; a reader that went away (`| head`: EPIPE)
    has what it wanted, and is not an error."""
    write = sys.stdout.write
    try:
        for line in lines:
            write(line)
    except BrokenPipeError:
        silence(sys.stdout)


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
