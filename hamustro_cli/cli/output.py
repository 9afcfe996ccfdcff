"""What commands print: JSON, and what to do when standard output or error breaks (the pieces
`track` needs without Click are in streams.py)."""

from __future__ import annotations

import sys
from typing import Any

from hamustro_cli.streams import emit_json, json_text, silence

__all__ = ["emit_json", "json_text", "silence", "write_lines"]


def write_lines(lines: Any) -> None:
    """Write lines to standard output as they come; a reader that went away (`| head`: EPIPE)
    has what it wanted, and is not an error."""
    write = sys.stdout.write
    try:
        for line in lines:
            write(line)
    except BrokenPipeError:
        silence(sys.stdout)
