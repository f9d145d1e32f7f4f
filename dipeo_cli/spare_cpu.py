"""Whether waiting awake pays, for the python pool's runner and workers (dipeo_cli.pypool,
dipeo_cli.pyserve): a CPU to spare (the CPUs this process may use, the tasks runnable on the
machine now) and a backoff for waits that do not pay.
"""

from __future__ import annotations

import os


def usable_cpus() -> int:
    """The CPUs this process may run on (where the system cannot say: the machine's)."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux only
    return len(affinity(0)) if affinity is not None else os.cpu_count() or 1


def open_loadavg() -> int:
    """A descriptor of /proc/loadavg for `runnable_tasks`, or -1 where there is none."""
    try:
        return os.open("/proc/loadavg", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return -1


def runnable_tasks(load: int) -> int:
    """How many tasks are running or waiting for a CPU now (of the whole machine), read from
    the /proc/loadavg descriptor `load`; a huge number when it cannot be read."""
    # "0.54 0.75 1.06 3/150 12345": the 4th field is runnable/all tasks
    try:
        return int(os.pread(load, 64, 0).split()[3].split(b"/")[0])
    except (OSError, IndexError, ValueError):
        return 1 << 30


class Backoff:
    """For a wait that pays only sometimes (waiting awake for a job, polling for a reply):
    after one that did not pay, skip the next 2, 4, ... 64; one that paid resets it."""

    __slots__ = ("_misses", "_skips")

    def __init__(self) -> None:
        self._misses = 0  # attempts in a row that did not pay
        self._skips = 0  # attempts left to skip

    def skip(self) -> bool:
        """Whether to skip this attempt (counting it)."""
        if self._skips:
            self._skips -= 1
            return True
        return False

    def paid(self, paid: bool) -> None:
        if paid:
            self._misses = 0
        else:
            self._misses = min(self._misses + 1, 6)
            self._skips = 1 << self._misses
