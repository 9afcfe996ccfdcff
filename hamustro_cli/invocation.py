"""What one `hamustro` call is given and how it ends, without Click: the global options
(GlobalOptions: click's `obj`, and the fast `track`'s) and the last word on an exception that
escapes a command (`guarded`). cli.options re-exports GlobalOptions for the commands."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, TypeVar

from hamustro_cli.errors import ExitStatus
from hamustro_cli.log import ERROR, WARNING, line
from hamustro_cli.streams import echo

if TYPE_CHECKING:
    from types import TracebackType

    from hamustro_cli.config import Config
    from hamustro_cli.log import Log
    from hamustro_cli.tracker import ClientTracker


class GlobalOptions:
    """What the global options say, for every command (click's `obj`)."""

    def __init__(self, config_path: str | None, spool_dir: str | None, verbose: int, quiet: bool):
        self.config_path = config_path
        self.spool_dir = spool_dir
        self.verbose = verbose
        self.quiet = quiet

    def log(self, level: int, message: str) -> None:
        """Errors always; warnings unless -q; INFO with -v, DEBUG with -vv (see log.py)."""
        if level > ERROR and (self.quiet or level > max(self.verbose, WARNING)):
            return
        echo(line(level, message), err=True)

    def config(self, required: tuple[str, ...] | None = None) -> Config:
        from hamustro_cli.config import REQUIRED, load_config

        cfg = load_config(self.config_path, self.spool_dir)
        for warning in cfg.warnings:  # the setup's security (TLS off, a secret others can read):
            echo(line(WARNING, warning), err=True)  # cron mails it, so -q does not hide it
        cfg.require(REQUIRED if required is None else required)
        return cfg

    def config_file(self) -> str:
        """The config file in use (--config, $HAMUSTRO_CONFIG, else the app dir's), found or not."""
        from hamustro_cli.config import config_file_path

        return config_file_path(self.config_path, os.environ)

    def tracker(self, required: tuple[str, ...] | None = None, log: Log | None = None) -> ClientTracker:
        """A tracker from the config, saying what it does through `log` (else self.log)."""
        from hamustro_cli.tracker import ClientTracker

        return ClientTracker(config=self.config(required), log=log or self.log)


T = TypeVar("T")


def guarded(command: Callable[[], T]) -> T:
    """Run a whole command. An exception that escapes it is either the host running short
    (memory, descriptors, threads: one `hamustro: error:` line and exit 3, see limits.short_of) or a bug,
    re-raised. The same holds for what escapes past this frame (sys.excepthook, see last_word)."""
    sys.excepthook = last_word
    try:
        return command()
    except Exception as exc:  # noqa: BLE001 - resource trouble, told apart below; the rest re-raised
        why = _short_of(exc)
        if why is None:
            raise
        _give_up(why)


def last_word(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    """sys.excepthook while a command runs: what escapes every frame, `guarded`'s too, is
    judged as `guarded` judges it. Out of memory, the interpreter itself can fail while a
    command unwinds (a SystemExit, or an exception whose traceback could not be allocated) and
    raise "SystemError: error return without exception set" from runpy or the console script,
    outside any frame of ours; by the time it gets here the frames are gone and there is memory
    again for one line."""
    why = _short_of(exc) if isinstance(exc, Exception) else None
    if why is None:
        sys.__excepthook__(kind, exc, tb)
        return
    _give_up(why)


def _short_of(exc: Exception) -> str | None:
    try:
        from hamustro_cli.limits import short_of

        return short_of(exc)
    except Exception:  # noqa: BLE001 - not even a small module loads: no descriptor or memory left
        return (
            f"out of memory or file descriptors ({type(exc).__name__}); raise the limits "
            "(ulimit -v, ulimit -n) or free memory and run again. Nothing was lost"
        )


def quiet_library_logs() -> None:
    """The command line speaks in its own lines (log.line) and nothing else. A library's log
    record that finds no handler reaches stderr through logging's last resort, and one does
    when memory is short: hashlib, which urllib3 loads, logs "code for hash md5 was not found"
    and a traceback for each hash it cannot load. So the program, the CLI, gives the root
    logger a handler that drops them, in the commands that may load the network stack:
    `flush`, `doctor`, `exec`, and a `track` that may flush in its own process (not the others:
    logging alone is a tenth of a `track`). The Python API leaves logging to its caller: its
    messages go to the "hamustro" logger."""
    import logging

    root = logging.getLogger()
    if not any(isinstance(handler, logging.NullHandler) for handler in root.handlers):
        root.addHandler(logging.NullHandler())


def _give_up(why: str) -> NoReturn:
    """One `hamustro: error:` line and exit 3 (local trouble), without the interpreter's
    shutdown: out of memory or threads, it can wait for ever on a worker that will not finish."""
    _flush_standard_streams()
    try:
        os.write(2, f"{line(ERROR, why)}\n".encode("utf-8", "replace"))
    except OSError:
        pass
    os._exit(ExitStatus.SPOOL)


def exit_now(status: int) -> NoReturn:
    """Exit with `status` once the standard streams are flushed, without the interpreter's
    teardown (freeing every module and object: about a tenth of a `track`), for a command that
    has closed what it opened: the fast `track`, whose spool connection is closed and whose
    background flush, if it started one, is a process of its own."""
    _flush_standard_streams()
    os._exit(status)


def _flush_standard_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except Exception:  # noqa: BLE001 - a stream it cannot flush now
            pass
