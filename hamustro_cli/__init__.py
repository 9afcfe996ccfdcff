"""hamustro: a command-line client for the Hamustro event collector.

`from hamustro_cli import ClientTracker` gives the Python API. Its names are loaded when first
used (`__getattr__`), so that `hamustro track` loads only what it needs; type checkers read the
imports below instead, so they know every name and its type (a typo is an error, not `Any`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = [
    "ClientTracker",
    "ConfigError",
    "FlushReport",
    "HamustroError",
    "InputError",
    "SessionStatus",
    "SpoolError",
    "Status",
    "TrackResult",
    "__version__",
]

if TYPE_CHECKING:
    from hamustro_cli.errors import ConfigError, HamustroError, InputError, SpoolError
    from hamustro_cli.reports import FlushReport
    from hamustro_cli.spool.records import SessionStatus, Status
    from hamustro_cli.tracker import ClientTracker, TrackResult
else:
    # where each name lives: imported on first use
    _HOMES = {
        "ClientTracker": "tracker",
        "TrackResult": "tracker",
        "FlushReport": "reports",
        "Status": "spool.records",
        "SessionStatus": "spool.records",
        "HamustroError": "errors",
        "ConfigError": "errors",
        "InputError": "errors",
        "SpoolError": "errors",
    }

    def __getattr__(name: str) -> object:
        if name in _HOMES:
            import importlib

            return getattr(importlib.import_module(f"hamustro_cli.{_HOMES[name]}"), name)
        raise AttributeError(f"module 'hamustro_cli' has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted({*globals(), *__all__})
