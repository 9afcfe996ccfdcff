"""HAMUSTRO_DISABLED: tracking switched off for a whole environment (CI jobs, test runs).

One `os.environ` read before any config is read, so that `track`'s fast path can call it
too; its value read with the boolean words of every `HAMUSTRO_*` variable (config.env_bool).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from hamustro_cli.config import ENV_PREFIX, env_bool

VARIABLE = ENV_PREFIX + "DISABLED"


def tracking_disabled(env: Mapping[str, str] | None = None) -> bool:
    """HAMUSTRO_DISABLED is set to anything but nothing or a false word (0, false, no, off).
    A value that is no boolean word (`HAMUSTRO_DISABLED=y`) disables too: whoever set it meant
    to switch tracking off, and a CI job must not send because of a spelling."""
    value = (os.environ if env is None else env).get(VARIABLE, "")
    return bool(value.strip()) and env_bool(value) is not False


def disabled_note(env: Mapping[str, str] | None = None) -> str:
    """What `status`, `doctor` and `flush` say when tracking is disabled."""
    value = (os.environ if env is None else env).get(VARIABLE, "")
    odd = "" if env_bool(value) is not None else " (not a boolean word: read as true)"
    return f"disabled by {VARIABLE}={value}{odd}: track and exec queue nothing, flush sends nothing"
