"""Running a command for `hamustro exec` as a shell would: same terminal, same standard
streams (inherited descriptors), same process group, and its status as `$?` says it.

The command stays in our process group, so a terminal's Ctrl-C (or hang-up) reaches it
directly; a SIGINT, SIGTERM or SIGHUP sent to us alone (`kill PID`, systemd, a CI runner) is
passed on to it. Told apart by who sent it: the kernel (SI_KERNEL: the terminal, which signals
the whole group) or a process (passed on). While the command runs we die of none of them.
Click-free: the command (cli/execute.py) prints and queues.
"""

from __future__ import annotations

import errno
import os
import signal
import time
from collections.abc import Callable, Collection
from types import FrameType
from typing import Any, NamedTuple

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SI_KERNEL = 0x80  # Linux's si_code for a signal the kernel sent (a terminal's ^C, a hang-up)
NOT_FOUND, NOT_EXECUTABLE, SIGNALLED = 127, 126, 128  # as shells say it
WAKE = 0.2  # seconds _wait sleeps at most before it looks whether the command ended


class Ran(NamedTuple):
    """How the command ended."""

    status: int  # what a shell's $? would be: its exit code, 128+N killed by signal N, 127, 126
    duration_ms: int
    signal: str | None = None  # the name of the signal that killed it (SIGTERM)
    failed: str | None = None  # why it could not be started, as a shell says it (status 127/126)


def run(argv: list[str]) -> Ran:
    """Run argv[0] (searched in PATH) with argv, wait for it and say how it ended. Call it from
    the main thread (signal handlers are set there); everything is put back before it returns."""
    caught = [s for s in FORWARDED if signal.getsignal(s) is not signal.SIG_IGN]  # ignored: stays so
    waited = {*caught, signal.SIGCHLD}
    # From here they wait for us: one sent while CMD starts is passed on once it runs.
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, waited)
    handlers: dict[int, Any] = {}
    try:
        for number in caught:
            handlers[number] = signal.signal(number, _note)
        # an ignored SIGCHLD would reap the command for us, leaving nothing to wait for
        handlers[signal.SIGCHLD] = signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        clock = time.monotonic()
        try:
            pid = os.posix_spawnp(
                argv[0],
                argv,
                os.environ,
                setsigmask=mask,  # the command starts with the mask we were given
                setsigdef=_python_changed(),
            )
        except OSError as exc:
            return Ran(*_not_started(argv[0], exc))
        status = _wait(pid, caught, waited)
        duration_ms = int((time.monotonic() - clock) * 1000)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)  # what came meanwhile goes to _note
        for restored, handler in handlers.items():
            signal.signal(restored, handler)
    code = os.waitstatus_to_exitcode(status)
    if code >= 0:
        return Ran(code, duration_ms)
    return Ran(SIGNALLED - code, duration_ms, signal_name(-code))


def signal_name(number: int) -> str:
    """SIGTERM for 15; a signal Python has no name for, by its number (SIG40)."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"SIG{number}"


def _note(number: int, frame: FrameType | None) -> None:
    """Our handler while the command runs (so that a signal does not end us); what arrives is
    waited for and passed on by _wait."""


def _python_changed() -> list[int]:
    """The signals Python ignores for itself (SIGPIPE, SIGXFSZ): the command gets them back at
    their default, as subprocess does; the others it inherits as they were given to us."""
    return [
        s
        for s in (getattr(signal, "SIGPIPE", None), getattr(signal, "SIGXFSZ", None))
        if s is not None and signal.getsignal(s) is signal.SIG_IGN
    ]


def _wait(pid: int, caught: Collection[int], waited: Collection[int]) -> int:
    """Wait for `pid`, passing on what is sent to us alone; its wait status."""
    wait_for_signal: Callable[[Collection[int], float], Any] | None = getattr(signal, "sigtimedwait", None)
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if wait_for_signal is None:  # no siginfo (macOS): a blocking wait, passing nothing on
            signal.pthread_sigmask(signal.SIG_UNBLOCK, waited)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            return os.waitpid(pid, 0)[1]
        # At most WAKE seconds: SIGCHLD is sent to the process, and in a program with other
        # threads (which do not block it) the kernel may give it to one of them, which
        # discards it; the next waitpid sees the command's end all the same.
        info = wait_for_signal(waited, WAKE)
        if info is not None and info.si_signo in caught and info.si_code != SI_KERNEL:
            try:
                os.kill(pid, info.si_signo)
            except ProcessLookupError:  # it ended meanwhile: the next waitpid sees it
                pass


def _not_started(command: str, exc: OSError) -> tuple[int, int, None, str]:
    """127 when there is no such command, 126 when it cannot be run, with a shell's words."""
    if exc.errno == errno.ENOENT:
        why = "No such file or directory" if "/" in command else "command not found"
        return NOT_FOUND, 0, None, f"{command}: {why}"
    return NOT_EXECUTABLE, 0, None, f"{command}: {exc.strerror or exc}"
