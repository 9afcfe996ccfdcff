"""The parent end of the background flush: `track` starts a detached
`python -m hamustro_cli.background` (the child end, background.py) and returns at once.

Two modules, not one: the child runs a ClientTracker, and the tracker starts the child, so
one module holding both ends would be an import cycle."""

from __future__ import annotations

import os
import sys

from hamustro_cli.config import ENV_PREFIX, Config, env_name
from hamustro_cli.spooldir import LOG_NAME, open_private

CHILD_MODULE = "hamustro_cli.background"
LOG_LIMIT = 1024 * 1024  # flush.log is rotated to flush.log.1 past this size


def child_environment(config: Config, environ: dict[str, str] | os._Environ[str]) -> dict[str, str]:
    """The resolved settings in HAMUSTRO_* variables (never in argv, where other users could
    read the secret), so that the child flushes with exactly this configuration; HAMUSTRO_*
    variables the caller's config ignored (the Python API reads none) are dropped."""
    env = {k: v for k, v in environ.items() if not k.startswith(ENV_PREFIX)}
    for key, value in config.values.items():
        if config.sources.get(key) == "default" or value is None:
            continue
        env[env_name(key)] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    env[env_name("spool_dir")] = config.spool_dir  # absolute (load_config), as the child runs in /
    # everything it needs is in the environment: the child reads no config file
    return env


def spawn_background_flush(config: Config) -> None:
    """Start a detached `flush --if-due` that holds none of the caller's terminal or pipes;
    its output goes to flush.log in the spool directory."""
    import subprocess

    env = child_environment(config, os.environ)
    log_path = os.path.join(config.spool_dir, LOG_NAME)
    try:
        if os.lstat(log_path).st_size > LOG_LIMIT:  # a link is renamed, never followed
            os.replace(log_path, log_path + ".1")
    except OSError:
        pass
    fd = open_private(log_path, os.O_WRONLY | os.O_APPEND)  # never through a planted link
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", CHILD_MODULE],
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            env=env,
            close_fds=True,
            start_new_session=True,
            cwd="/",
        )
    finally:
        os.close(fd)
    # Reaped the moment it ends, by a thread that waits for it (a long-running program would
    # otherwise keep a zombie until its next spawn). The thread holds the only reference: a
    # program that exits first leaves it running, without a "still running" ResourceWarning.
    import threading

    threading.Thread(target=child.wait, name="hamustro-reap", daemon=True).start()
