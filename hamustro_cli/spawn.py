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


# The child's command: `python -m hamustro_cli.background` run from "/" (it must not hold the
# caller's directory, nor find modules there: sys.path[0] is then "/").
CHILD_CODE = (
    f"import os; os.chdir('/'); import runpy; runpy.run_module({CHILD_MODULE!r}, run_name='__main__')"
)


def spawn_background_flush(config: Config) -> None:
    """Start a detached `flush --if-due` that holds none of the caller's terminal, pipes or
    other descriptors; its output goes to flush.log in the spool directory."""
    env = child_environment(config, os.environ)
    log_path = os.path.join(config.spool_dir, LOG_NAME)
    try:
        if os.lstat(log_path).st_size > LOG_LIMIT:  # a link is renamed, never followed
            os.replace(log_path, log_path + ".1")
    except OSError:
        pass
    fd = open_private(log_path, os.O_WRONLY | os.O_APPEND)  # never through a planted link
    try:
        try:
            pid = _posix_spawn(env, fd)
        except (OSError, AttributeError):  # a descriptor closed meanwhile; no posix_spawn here
            pid = _popen(env, fd)
    finally:
        os.close(fd)
    # Reaped the moment it ends, by a thread that waits for it (a long-running program would
    # otherwise keep a zombie until its next spawn). A program that exits first leaves it
    # running.
    import threading

    threading.Thread(target=_reap, args=(pid,), name="hamustro-reap", daemon=True).start()


def _posix_spawn(env: dict[str, str], log: int) -> int:
    """The child through os.posix_spawn (no `subprocess` to import: about a tenth of a `track`
    that starts a flush): a new session, standard input from /dev/null, output to `log`, and
    every other descriptor the caller could pass on closed, as subprocess's close_fds does."""
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    try:
        actions: list[tuple[int, ...]] = [
            (os.POSIX_SPAWN_DUP2, null, 0),
            (os.POSIX_SPAWN_DUP2, log, 1),
            (os.POSIX_SPAWN_DUP2, log, 2),
        ]
        actions += [(os.POSIX_SPAWN_CLOSE, inherited) for inherited in _inheritable_above(2)]
        return os.posix_spawn(
            sys.executable, [sys.executable, "-c", CHILD_CODE], env, file_actions=actions, setsid=True
        )
    finally:
        os.close(null)


def _inheritable_above(lowest: int) -> list[int]:
    """This process's descriptors above `lowest` that a child would inherit."""
    found = []
    for name in os.listdir("/proc/self/fd" if os.path.isdir("/proc/self/fd") else "/dev/fd"):
        fd = int(name)
        try:
            if fd > lowest and os.get_inheritable(fd):
                found.append(fd)
        except OSError:  # the listing's own descriptor, closed since
            continue
    return found


def _popen(env: dict[str, str], log: int) -> int:
    import subprocess

    child = subprocess.Popen(
        [sys.executable, "-c", CHILD_CODE],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env=env,
        close_fds=True,
        start_new_session=True,
    )
    child.returncode = 0  # reaped by _reap, not by Popen: no "still running" warning
    return child.pid


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass
