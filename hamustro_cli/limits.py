"""What the host ran short of: file descriptors, memory, threads or processes (`ulimit -n`,
`-v`, `-u`). Told from the exception's type and errno, a probe for a free descriptor and the
process's own limits, never from the text of a message. Loaded when something failed, and
before the network stack loads (require_network_room)."""

from __future__ import annotations

import errno
import os
import resource
from collections.abc import Iterator

_NO_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)
_NO_MEMORY = (errno.ENOMEM,)
FEW_DESCRIPTORS = 64  # a limit below this (the default is 1024) is why a file could not be opened
# Address space that loading what sends takes (sending, transport: requests, urllib3, ssl,
# http.client, concurrent.futures), measured from /proc/self/statm: 12 MiB on CPython 3.10,
# 17-19 MiB on 3.11-3.13. The smallest, so nothing that could load is refused.
NETWORK_MIB = 12


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _limit(which: int) -> int | None:
    try:
        soft = resource.getrlimit(which)[0]
    except (OSError, ValueError):
        return None
    return None if soft == resource.RLIM_INFINITY else soft


def _descriptors_left() -> bool:
    try:
        os.close(os.dup(2))
    except OSError as exc:
        return exc.errno not in _NO_DESCRIPTORS
    return True


def _descriptors() -> str:
    limit = _limit(resource.RLIMIT_NOFILE)
    at_most = f": this process may have {limit} open (ulimit -n)" if limit is not None else ""
    return f"too many open files{at_most}; raise the limit and run again. Nothing was lost"


def _memory() -> str:
    limit = _limit(resource.RLIMIT_AS)
    at_most = (
        f" (its address space is limited to {limit // 2**20} MiB: ulimit -v)" if limit is not None else ""
    )
    return f"out of memory{at_most}; raise the limit or free memory and run again. Nothing was lost"


def _threads() -> str:
    limit = _limit(resource.RLIMIT_NPROC)
    at_most = f" (this user may run {limit} processes and threads: ulimit -u)" if limit is not None else ""
    return f"cannot start a thread or process{at_most}; raise the limit and run again. Nothing was lost"


def few_descriptors() -> str | None:
    """Why a file could not be opened when all we know is that it could not (SQLite's "unable
    to open"): no descriptor left now, or a limit so low it is the likely cause; else None."""
    if not _descriptors_left() or (_limit(resource.RLIMIT_NOFILE) or FEW_DESCRIPTORS) < FEW_DESCRIPTORS:
        return _descriptors()
    return None


def short_of(exc: BaseException) -> str | None:
    """Why the command failed, in words for its one `hamustro: error:` line, when `exc` came from the host
    running short of something; None for anything else (a bug keeps its traceback)."""
    for link in _chain(exc):
        if isinstance(link, MemoryError):
            return _memory()
        if isinstance(link, OSError) and link.errno in _NO_DESCRIPTORS:
            return _descriptors()
        if isinstance(link, OSError) and link.errno in _NO_MEMORY:
            return _memory()
    if not _descriptors_left():
        return _descriptors()
    # What a C library or the interpreter raises when a descriptor, a mapping, a thread or a
    # process cannot be had carries no errno (ImportError: "cannot open shared object file",
    # "failed to map segment"; RuntimeError: "can't start new thread"; SystemError: NULL
    # without an exception): under a limit that low, it is the limit. (A failed import's
    # descriptor is closed again by the time it is caught: the probe above cannot see it.)
    without_errno = isinstance(exc, (ImportError, RuntimeError, SystemError))
    if without_errno and (_limit(resource.RLIMIT_NOFILE) or FEW_DESCRIPTORS) < FEW_DESCRIPTORS:
        return _descriptors()
    if without_errno and _limit(resource.RLIMIT_AS) is not None:
        return _memory()  # a thread's stack is address space too
    if _limit(resource.RLIMIT_NPROC) is not None and (
        isinstance(exc, RuntimeError) or (isinstance(exc, OSError) and exc.errno == errno.EAGAIN)
    ):
        return _threads()
    return None


def _address_space_used() -> int | None:
    """Bytes of address space this process has mapped (Linux's /proc/self/statm), or None."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[0])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux, or no descriptor left: not known
        return None


def require_room(mib: int, what: str) -> None:
    """Raise MemoryError before `what` when the address space limit (ulimit -v) leaves less than
    `mib` MiB: stopping before a load that cannot finish, not halfway through it, leaves no
    half-initialised module behind in a program that goes on (the Python API's), and keeps the
    interpreter out of its allocation-failure paths (CPython 3.13.0 corrupts its heap in one
    of them while loading urllib3: SIGABRT "malloc(): unaligned tcache chunk detected", or
    SIGSEGV). Without a limit, or where the use cannot be read, nothing is checked."""
    limit = _limit(resource.RLIMIT_AS)
    used = _address_space_used() if limit is not None else None
    if limit is None or used is None:
        return
    left = max(limit - used, 0)
    if left < mib * 2**20:
        raise MemoryError(
            f"{what} takes about {mib} MiB of address space; {left // 2**20} MiB is left "
            f"of the {limit // 2**20} MiB this process may have (ulimit -v)"
        )


def require_network_room() -> None:
    """require_room for loading what sends (NETWORK_MIB): before a flush and doctor load it."""
    require_room(NETWORK_MIB, "loading the HTTP client")
