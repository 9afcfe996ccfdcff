"""The spool directory: its files, their permissions (directory 0700, files 0600: events hold
user ids and addresses), and the flush lock that lets one flush run at a time."""

from __future__ import annotations

import os
import stat

from hamustro_cli.errors import SpoolError

DB_NAME = "spool.sqlite3"
LOCK_NAME = "flush.lock"
LOG_NAME = "flush.log"
# Every file hamustro keeps in the directory (doctor checks their modes).
FILES = (DB_NAME, DB_NAME + "-wal", DB_NAME + "-shm", LOCK_NAME, LOG_NAME, LOG_NAME + ".1")


def prepare_dir(directory: str) -> None:
    """Create the spool directory 0700, or tighten it if we own it."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        st = os.stat(directory)
        if not stat.S_ISDIR(st.st_mode):
            raise FileExistsError
    except OSError as exc:
        raise _dir_error(directory, exc) from None
    if st.st_mode & 0o077 and st.st_uid == os.geteuid():
        os.chmod(directory, 0o700)
    if not os.access(directory, os.W_OK | os.X_OK):
        from hamustro_cli.problems import SpoolProblem

        raise SpoolError(
            f"spool directory {directory} is not writable by this user", SpoolProblem.NOT_WRITABLE
        )


def _dir_error(directory: str, exc: OSError) -> SpoolError:
    from hamustro_cli.problems import SpoolProblem

    if isinstance(exc, FileExistsError):
        return SpoolError(
            f"spool path {directory} exists and is not a directory", SpoolProblem.NOT_A_DIRECTORY
        )
    if isinstance(exc, NotADirectoryError):
        return SpoolError(
            f"cannot create spool directory {directory}: a parent is not a directory",
            SpoolProblem.NOT_A_DIRECTORY,
        )
    why = "permission denied" if isinstance(exc, PermissionError) else exc.strerror
    return SpoolError(f"cannot create spool directory {directory}: {why}", SpoolProblem.NOT_WRITABLE)


def private_file(path: str) -> None:
    """Create path 0600 if missing (SQLite gives its -wal and -shm files the same mode)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_WRONLY | os.O_APPEND, 0o600)
    except OSError as exc:
        from hamustro_cli.problems import SpoolProblem

        if isinstance(exc, IsADirectoryError):
            raise SpoolError(f"spool file {path} is a directory", SpoolProblem.NOT_A_FILE) from None
        raise SpoolError(
            f"cannot create spool file {path}: {exc.strerror}", SpoolProblem.NOT_WRITABLE
        ) from None
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o077 and st.st_uid == os.geteuid():
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)


def tighten(path: str) -> None:
    """An existing spool file others can read (an older version, a copy) becomes owner-only.

    Never adds a permission: a read-only file stays read-only."""
    try:
        st = os.stat(path)
    except OSError:
        return
    if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077 and st.st_uid == os.geteuid():
        try:
            os.chmod(path, stat.S_IMODE(st.st_mode) & 0o700)
        except OSError:
            pass


def ignore_file_size_signal() -> None:
    """Under a file-size limit, let writes fail with EFBIG instead of killing the process."""
    try:
        # _signal, not signal: signal.py's enum set-up costs track ~0.7 ms for one call.
        import _signal

        _signal.signal(_signal.SIGXFSZ, _signal.SIG_IGN)
    except (AttributeError, ValueError):  # pragma: no cover - no SIGXFSZ, or not main thread
        pass


class FlushLock:
    """An flock on flush.lock: released by the kernel when the holder dies, so a crashed flush
    never blocks the next one (which then puts the dead one's marked batch back)."""

    def __init__(self, spool_dir: str | os.PathLike[str]):
        self.path = os.path.join(spool_dir, LOCK_NAME)
        self.fd: int | None = None

    def acquire(self, wait: bool) -> bool:
        import fcntl

        try:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        except OSError as exc:
            from hamustro_cli.problems import SpoolProblem

            raise SpoolError(
                f"cannot open the flush lock {self.path}: {exc.strerror}", SpoolProblem.NOT_WRITABLE
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return False
        self.fd = fd
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def flush_running(spool_dir: str | os.PathLike[str]) -> bool:
    lock = FlushLock(spool_dir)
    if not os.path.exists(lock.path):
        return False
    try:
        if lock.acquire(wait=False):
            lock.release()
            return False
    except SpoolError:
        return False
    return True
