"""The spool directory: its files, their permissions (directory 0700, files 0600: events hold
user ids and addresses), and the flush lock that lets one flush run at a time."""

from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING

from hamustro_cli.errors import SpoolError

if TYPE_CHECKING:
    from hamustro_cli.spool.trouble import SpoolProblem

DB_NAME = "spool.sqlite3"
# The database's format: how many of migrations.MIGRATIONS it has run (its user_version). Here,
# not counted there, so that opening an up-to-date spool (every `track`) need not load the
# migrations (tests/test_layout.py checks that it counts them).
SCHEMA_VERSION = 3
BUSY_TIMEOUT = 60  # seconds a statement waits for another connection's lock (spool.TrackSpool)
LOCK_NAME = "flush.lock"
LOG_NAME = "flush.log"
RESERVE_NAME = "space.reserve"
CACHE_NAME = "config.cache"  # the config file's parsed TOML (configcache)
# Every file hamustro keeps in the directory (doctor checks their modes).
FILES = (
    DB_NAME,
    DB_NAME + "-wal",
    DB_NAME + "-shm",
    LOCK_NAME,
    LOG_NAME,
    LOG_NAME + ".1",
    RESERVE_NAME,
    CACHE_NAME,
)
# What a flush may write besides the database's own pages: the -shm index (32 KiB), and a WAL
# that grows to the auto-checkpoint's 1,000 pages (4 MiB) plus the transaction that passes it
# (the ack of 2,000 events of 300 bytes is 0.8 MiB of WAL). A flush sends only with this much
# room on the spool's file system, so that it can always record what the collector answered.
FLUSH_ROOM = 8 * 1024 * 1024


def problem_kinds() -> type[SpoolProblem]:
    """The error kinds, loaded only when something is wrong (not on track's path)."""
    from hamustro_cli.spool.trouble import SpoolProblem

    return SpoolProblem


def _user(uid: int) -> str:
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)


def _unsafe(message: str, fix: str) -> SpoolError:
    return SpoolError(f"{message}; fix: {fix}", problem_kinds().UNSAFE, fix)


def make_private_dirs(directory: str) -> None:
    """Create `directory` and every missing parent 0700, whatever the umask (the spool's, the
    config file's); existing ones are left as they are."""
    parent = os.path.dirname(directory)
    if parent and parent != directory and not os.path.lexists(parent):
        make_private_dirs(parent)
    try:
        os.mkdir(directory, 0o700)
    except FileExistsError:
        return
    os.chmod(directory, 0o700)  # the umask may have taken bits from 0700


def write_whole(target: str, data: bytes, mode: int, replace: bool = True) -> None:
    """Put `data` at `target` whole or not at all: a temp file beside it (.NAME.*.tmp, which no
    reader of NAME or of *.prom takes) written, given `mode`, synced, then renamed over `target`;
    without `replace`, linked in place instead, so an existing file is never clobbered, not even
    by a race (FileExistsError). OSError when it fails; the temp file never stays. The rename is
    made durable by sync_directory, which the caller decides how to fail."""
    import tempfile

    directory, name = os.path.split(target)
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), mode)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if replace:
            os.replace(temp, target)
            return
        try:
            os.link(temp, target)
        except FileExistsError:
            raise
        except OSError:  # a file system without hard links
            if os.path.lexists(target):
                raise FileExistsError(target) from None
            os.replace(temp, target)
    finally:
        try:
            os.unlink(temp)
        except OSError:  # renamed: nothing left to remove
            pass


def sync_directory(directory: str) -> None:
    """fsync a directory, so that a rename in it survives a crash (OSError when it cannot)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_dir(directory: str, st: os.stat_result) -> None:
    """Refuse a spool directory another user owns or can write to (as ssh refuses its files):
    whoever can write there can plant links at the spool's file names or swap its database."""
    me = os.geteuid()
    if st.st_uid != me:
        raise _unsafe(
            f"spool directory {directory} is owned by {_user(st.st_uid)}, not by {_user(me)}, "
            "the user running hamustro",
            f"chown {_user(me)} {directory} (or set spool_dir to a directory of your own)",
        )
    if st.st_mode & 0o022:
        raise _unsafe(
            f"spool directory {directory} is writable by other users (mode {stat.S_IMODE(st.st_mode):04o})",
            f"chmod 700 {directory}",
        )


def prepare_dir(directory: str) -> None:
    """Create the spool directory (and its missing parents) 0700, refuse one that is not safely
    ours (check_dir), and tighten one we own that others can read."""
    try:
        make_private_dirs(directory)
    except PermissionError:
        raise SpoolError(
            f"cannot create spool directory {directory}: permission denied", problem_kinds().NOT_WRITABLE
        ) from None
    except NotADirectoryError:
        raise SpoolError(
            f"cannot create spool directory {directory}: a parent is not a directory",
            problem_kinds().NOT_A_DIRECTORY,
        ) from None
    except OSError as exc:
        raise SpoolError(
            f"cannot create spool directory {directory}: {exc.strerror}", problem_kinds().NOT_WRITABLE
        ) from None
    try:
        link = os.lstat(directory)
        st = os.stat(directory)
    except OSError as exc:
        raise SpoolError(
            f"cannot use spool directory {directory}: {exc.strerror}", problem_kinds().NOT_WRITABLE
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise SpoolError(
            f"spool path {directory} exists and is not a directory", problem_kinds().NOT_A_DIRECTORY
        )
    if stat.S_ISLNK(link.st_mode) and link.st_uid not in (0, os.geteuid()):
        # a link to the spool is followed only if we (or root) made it
        raise _unsafe(
            f"spool directory {directory} is a symbolic link owned by {_user(link.st_uid)}",
            f"remove the link {directory} (or set spool_dir to a directory of your own)",
        )
    check_dir(directory, st)
    if not os.access(directory, os.W_OK | os.X_OK):  # before the chmod: a read-only mount refuses it
        raise SpoolError(
            f"spool directory {directory} is not writable by this user", problem_kinds().NOT_WRITABLE
        )
    if st.st_mode & 0o077:
        os.chmod(directory, 0o700)


def read_only_reason(directory: str) -> str | None:
    """Why a spool directory that prepare_dir found not writable can still be read, in words
    for a message, or None when it cannot be read either (no database there to read)."""
    db_path = os.path.join(directory, DB_NAME)
    if not (os.path.isdir(directory) and os.path.isfile(db_path) and os.access(db_path, os.R_OK)):
        return None
    if on_read_only_mount(directory):
        return f"{directory} is on a read-only file system"
    return f"{directory} is not writable by this user"


def on_read_only_mount(path: str) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISLNK, "a symbolic link"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def file_kind(mode: int) -> str:
    """What a file that is not a regular one is, in words ("a FIFO (named pipe)")."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def not_a_file(path: str, mode: int) -> SpoolError:
    """A spool file name taken by something that is not a regular file: never followed or opened."""
    kind = file_kind(mode)
    return SpoolError(
        f"spool file {path} is {kind}, not a regular file; hamustro never follows or opens it. "
        f"Move it away (if it is not yours, find out who put it there)",
        problem_kinds().UNSAFE if stat.S_ISLNK(mode) else problem_kinds().NOT_A_FILE,
        f"move {path} away",
    )


def check_file(path: str) -> os.stat_result | None:
    """lstat a spool file name: None when absent; refuses anything but a regular file we own
    (a link planted there is never followed)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise SpoolError(
            f"cannot use spool file {path}: {exc.strerror}", problem_kinds().CANNOT_OPEN
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise not_a_file(path, st.st_mode)
    if st.st_uid != os.geteuid():
        me = _user(os.geteuid())
        raise _unsafe(f"spool file {path} is owned by {_user(st.st_uid)}, not by {me}", f"chown {me} {path}")
    return st


def open_private(path: str, flags: int) -> int:
    """Open (creating 0600) a spool file, never following a link and never blocking on a FIFO;
    refuses anything but a regular file this user owns, and makes it owner-only."""
    try:
        fd = os.open(
            path, flags | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0), 0o600
        )
    except OSError as exc:
        try:
            st = os.lstat(path)
        except OSError:
            st = None
        if st is not None and not stat.S_ISREG(st.st_mode):
            raise not_a_file(path, st.st_mode) from None
        raise SpoolError(
            f"cannot open spool file {path}: {exc.strerror}", problem_kinds().NOT_WRITABLE
        ) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise not_a_file(path, st.st_mode)
        if st.st_uid != os.geteuid():
            me = _user(os.geteuid())
            raise _unsafe(
                f"spool file {path} is owned by {_user(st.st_uid)}, not by {me}", f"chown {me} {path}"
            )
        if st.st_mode & 0o077:
            os.fchmod(fd, stat.S_IMODE(st.st_mode) & 0o700)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_file(path: str) -> None:
    """Create path 0600 if missing (SQLite gives its -wal and -shm files the same mode)."""
    os.close(open_private(path, os.O_WRONLY | os.O_APPEND))


def check_database_files(db_path: str, tighten: bool = True) -> None:
    """Before SQLite opens the database: the database, its -wal and its -shm must each be absent
    or a regular file we own (SQLite itself would follow a link planted there). With `tighten`,
    an existing one others can read (an older version, a copy) becomes owner-only, without
    gaining permissions."""
    for suffix in ("", "-wal", "-shm"):
        path = db_path + suffix
        st = check_file(path)
        if tighten and st is not None and st.st_mode & 0o077:
            os.close(open_private(path, os.O_RDONLY))


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
            fd = open_private(self.path, os.O_RDWR)
        except SpoolError as exc:
            raise SpoolError(f"cannot use the flush lock: {exc}", exc.kind, exc.fix) from None
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
    if not os.path.lexists(lock.path):
        return False
    try:
        if lock.acquire(wait=False):
            lock.release()
            return False
    except SpoolError:
        return False
    return True


# -- room on the disk: a flush must be able to record the collector's answer -------------------
#
# A ballast file (CockroachDB keeps one for the same reason) of FLUSH_ROOM bytes, allocated in
# the spool directory while the file system has room for it and for as much again. A flush that
# finds less than FLUSH_ROOM free deletes it first (before it opens the database, whose -shm
# alone takes 32 KiB), so a spool that filled the disk can still be drained; once the flush has
# given the delivered events' pages back, it allocates the ballast again if there is room.


def _existing(directory: str) -> str:
    """The directory, or its nearest existing parent (the spool may not be created yet)."""
    while not os.path.isdir(directory):
        parent = os.path.dirname(directory)
        if parent == directory:
            break
        directory = parent
    return directory


def free_bytes(directory: str) -> int:
    """Bytes this user may still write on the directory's file system (root may use the blocks
    kept for root)."""
    st = os.statvfs(_existing(directory))
    return (st.f_bfree if os.geteuid() == 0 else st.f_bavail) * st.f_frsize


def mount_point(directory: str) -> str:
    """Where the file system holding `directory` is mounted (the top directory on its device)."""
    path = os.path.realpath(_existing(directory))
    dev = os.stat(path).st_dev
    while path != "/":
        parent = os.path.dirname(path)
        if os.stat(parent).st_dev != dev:
            break
        path = parent
    return path


def file_size_limit() -> int | None:
    """The process's file-size limit (ulimit -f) in bytes, or None when there is none."""
    import resource

    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else soft


def size_text(n: int) -> str:
    """Bytes for people: 8.0 MiB, 12 KiB, 300 bytes."""
    if n >= 1024 * 1024:
        return f"{n / (1024 * 1024):.1f} MiB"
    return f"{n / 1024:.0f} KiB" if n >= 1024 else f"{n} bytes"


def reserve_bytes(directory: str) -> int:
    """Bytes held by the ballast (0 when there is none)."""
    try:
        st = os.lstat(os.path.join(directory, RESERVE_NAME))
    except OSError:
        return 0
    return st.st_blocks * 512 if stat.S_ISREG(st.st_mode) else 0


def room_bytes(directory: str) -> int:
    """What a flush can write on the spool's file system: what is free, and the ballast."""
    try:
        return free_bytes(directory) + reserve_bytes(directory)
    except OSError:
        return 0


def room_problem(directory: str, need: int = FLUSH_ROOM) -> str | None:
    """Why the spool's file system cannot take `need` bytes more (counting the ballast, which a
    flush may delete), with what to do; None when it can."""
    try:
        free = free_bytes(directory) + reserve_bytes(directory)
        limit = file_size_limit()
    except OSError:
        return None  # the spool's own errors will say what is wrong with the directory
    if (limit is None or limit >= need) and free >= need:
        return None
    return space_advice(directory, need)


def space_advice(directory: str, need: int = FLUSH_ROOM) -> str:
    """Which file system the spool is on, what it has free, and what to do to get `need`."""
    try:
        free, held = free_bytes(directory), reserve_bytes(directory)
        where = mount_point(directory)
        limit = file_size_limit()
    except OSError as exc:
        return f"cannot tell how much room {directory} has ({exc.strerror})"
    if limit is not None and limit < need:
        return (
            f"the file-size limit (ulimit -f) is {size_text(limit)}, below the {size_text(need)} the spool "
            f"may need for one file: raise it (ulimit -f {need // 1024} or more)"
        )
    text = f"the file system mounted at {where} (holding {directory}) has {size_text(free)} free"
    if held:
        text += f" (and {size_text(held)} in {RESERVE_NAME}, which hamustro keeps for a flush to use)"
    if free >= need:
        return text
    return (
        f"{text}; the spool needs {size_text(need)} free there to queue events and to record what "
        f"the collector answers: free at least {size_text(need - free)} on {where}"
    )


def use_reserve(directory: str) -> int:
    """Delete the ballast so that its room can be written; returns the bytes it held."""
    held = reserve_bytes(directory)
    path = os.path.join(directory, RESERVE_NAME)
    try:
        if held or os.path.lexists(path):
            check_file(path)  # never follow or remove anything but our own regular file
            os.unlink(path)
    except (OSError, SpoolError):
        return 0
    return held


def room_for_flush(directory: str) -> str | None:
    """Before a flush opens the spool: when the file system has less than FLUSH_ROOM free, give
    it the ballast's room (the flush is about to need it). Returns why sending must wait (see
    room_problem), or None."""
    try:
        if free_bytes(directory) < FLUSH_ROOM:
            use_reserve(directory)
    except OSError:
        pass
    return room_problem(directory)


def keep_reserve(directory: str) -> bool:
    """After a flush: allocate the ballast if it is missing and the file system has room for it
    and for as much again (it must never be what fills the disk). True when it is in place."""
    path = os.path.join(directory, RESERVE_NAME)
    try:
        if reserve_bytes(directory) >= FLUSH_ROOM:
            return True
        if free_bytes(directory) < 2 * FLUSH_ROOM:
            return False
        fd = open_private(path, os.O_WRONLY)
    except (OSError, SpoolError):
        return False
    try:
        os.posix_fallocate(fd, 0, FLUSH_ROOM)  # real blocks: a sparse file would hold no room
        return True
    except OSError:  # the disk filled meanwhile, a file-size limit
        try:
            os.ftruncate(fd, 0)
            os.unlink(path)
        except OSError:
            pass
        return False
    finally:
        os.close(fd)


def lock_holders(db_path: str) -> list[str]:
    """Who holds POSIX locks on the database, its WAL or its shared-memory file, as "process
    PID (COMMAND)", read from /proc/locks (Linux; elsewhere, or unreadable, none found). This
    process is named "this process"."""
    inodes = set()
    for suffix in ("", "-wal", "-shm"):
        try:
            inodes.add(os.stat(db_path + suffix).st_ino)
        except OSError:
            pass
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    pids: list[int] = []
    for line in lines:
        fields = line.split()
        if "->" in fields or len(fields) < 6:  # a process waiting for a lock holds none
            continue
        pid, file_id = fields[4], fields[5]
        try:
            found = int(pid), int(file_id.rsplit(":", 1)[1])
        except (ValueError, IndexError):
            continue
        if found[1] in inodes and found[0] > 0 and found[0] not in pids:
            pids.append(found[0])
    return [_process(pid) for pid in sorted(pids)]


def _process(pid: int) -> str:
    if pid == os.getpid():
        return "this process"
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f"process {pid} ({f.read().strip()})"
    except OSError:
        return f"process {pid}"
