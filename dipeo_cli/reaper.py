"""Finding and killing the processes of a job, and the watchdog that does it when dipeo dies.

Every process a run starts (bash/sh jobs, JS runtimes, shell hooks, python workers) carries
`DIPEO_JOB=<session>/<n>` in its environment: `<session>` names the dipeo process
(`<pid>-<random>`), `<n>` the job. Descendants inherit it, also those that left the job's
process group with `setsid`, so /proc/PID/environ finds them all. (A process that scrubs its
environment, or overwrites it in memory, escapes the scan; the process group kill still
reaches it unless it also left the group.) The value is a space-separated list when dipeo runs
inside a dipeo job, so the outer run's marker stays on the inner run's jobs.

The watchdog: `python -S -I reaper.py FD SESSION FOLDER`, started with a dipeo process's first
job (dipeo_cli.processes). It blocks reading FD, the read end of a pipe whose write end only
dipeo holds, so it sees EOF when dipeo exits, normally or by `kill -9`. Then it kills every
process marked with SESSION, removes FOLDER (the session's temporary files) and exits. It ignores
the terminal's and a service manager's signals (SIGINT, SIGHUP, SIGTERM): it ends with dipeo,
never before. While it waits it removes what older dipeo versions left in the temp folder.

This module imports only the standard library: the watchdog runs it by path, with no site
packages (fast to start, and nothing to break).
"""

from __future__ import annotations

import os
import signal
import sys
import time

VARIABLE = "DIPEO_JOB"
_KEY = b"\0" + VARIABLE.encode() + b"="
_DAY = 24 * 3600


def _markers(pid: str) -> list[str]:
    """The DIPEO_JOB tokens in a process's environment ([] when unreadable: not ours, or gone;
    a zombie's environment reads empty)."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            data = b"\0" + handle.read()
    except OSError:
        return []
    start = data.find(_KEY)
    if start < 0:
        return []
    start += len(_KEY)
    end = data.find(b"\0", start)
    return data[start : end if end >= 0 else len(data)].decode("utf-8", "replace").split()


def _matches(tokens: list[str], wanted: str) -> bool:
    # "<session>/" is a prefix for every job of the session; anything else is one job's token.
    if wanted.endswith("/"):
        return any(token.startswith(wanted) for token in tokens)
    return wanted in tokens


def kill_marked(wanted: str) -> int:
    """SIGKILL, once, every process of this user marked with `wanted` (a job's token, or
    "<session>/" for all of a session's jobs); returns how many were signalled. Without /proc
    (not Linux) it finds nothing."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    me = os.getpid()
    killed = 0
    for entry in entries:
        if not entry.isdigit() or int(entry) == me or not _matches(_markers(entry), wanted):
            continue
        # A pid can be reused between the read and the kill: hold the process by a pidfd, read
        # its environment again (it is now the held process's), and only then signal it.
        try:
            pidfd = os.pidfd_open(int(entry))
        except (AttributeError, OSError):
            pidfd = None
        try:
            if pidfd is None:
                os.kill(int(entry), signal.SIGKILL)
                killed += 1
            elif _matches(_markers(entry), wanted):
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
                killed += 1
        except OSError:
            pass
        finally:
            if pidfd is not None:
                os.close(pidfd)
    return killed


def kill_all_marked(wanted: str, within: float = 1.0) -> int:
    """kill_marked until a scan finds nobody (a process may fork between scans, and a killed
    one reads as alive until it has exited), for at most `within` seconds."""
    deadline = time.monotonic() + within
    total = 0
    while True:
        killed = kill_marked(wanted)
        total += killed
        if not killed or time.monotonic() > deadline:
            return total
        time.sleep(0.002)


def remove_stale(folder: str, now: float | None = None) -> None:
    """Remove what dipeo processes left in the temp folder when they died: job scripts and JS
    folders of older versions, session folders of dead processes. Only this user's entries, and
    only those untouched for a day, so that nothing in use is removed."""
    import shutil
    import stat

    now = time.time() if now is None else now
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if not name.startswith(("dipeo-code-job-", "dipeo-js-", "dipeo-run-")):
            continue
        path = os.path.join(folder, name)
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if info.st_uid != os.getuid() or now - info.st_mtime < _DAY:
            continue
        if name.startswith("dipeo-run-") and _alive(name.split("-")[2]):
            continue
        if stat.S_ISDIR(info.st_mode):
            shutil.rmtree(path, ignore_errors=True)
        elif name.startswith("dipeo-code-job-") and name.endswith(".sh"):
            try:
                os.unlink(path)
            except OSError:
                pass


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    return True


def main(argv: list[str]) -> None:
    fd, session, folder = int(argv[1]), argv[2], argv[3]
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    remove_stale(os.path.dirname(folder))
    try:
        while os.read(fd, 4096):
            pass
    except OSError:
        pass
    kill_all_marked(session + "/")
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv)
