"""hamustro: a command-line client for the Hamustro event collector.

`from hamustro_cli import ClientTracker` gives the Python API; it is imported lazily so that
`hamustro track` loads only what it needs.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["ClientTracker", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "ClientTracker":
        from hamustro_cli.tracker import ClientTracker

        return ClientTracker
    raise AttributeError(f"module 'hamustro_cli' has no attribute {name!r}")
