"""Resource checks made before work starts: a request that cannot fit is refused with its estimate."""
from __future__ import annotations

import os

from .errors import ArgumentError

__all__ = ["available_memory", "check_memory", "usable_cores", "bounded_workers", "die_with_parent"]


def available_memory() -> int:
    """Bytes of memory this process may still use (MemAvailable, else physical memory)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def bounded_workers(workers: int, jobs: int) -> int:
    """Worker processes for ``jobs`` independent jobs: at most the usable cores and never more than the jobs
    (a larger request would only start idle processes), at least 1."""
    return max(1, min(int(workers), usable_cores(), int(jobs)))


def die_with_parent() -> None:
    """Make this (worker) process receive SIGTERM when its parent dies, whatever killed the parent (Linux's
    parent-death signal); a worker whose parent is already gone exits at once. Elsewhere: nothing."""
    import ctypes
    import signal

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def check_memory(nbytes: float, what: str) -> None:
    """Refuse up front (:class:`ArgumentError`) work whose estimated memory exceeds what is available."""
    avail = available_memory()
    if nbytes > avail:
        raise ArgumentError(f"{what} would need about {nbytes / 2**30:.3g} GiB of memory; "
                            f"{avail / 2**30:.3g} GiB is available")
