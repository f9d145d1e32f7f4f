"""The template process that forks python workers, so that a pool can grow by dozens of workers
in milliseconds (a fork of a warm process) instead of a python start (~25 ms of CPU) each.

    python -m dipeo_cli.pyzygote PARENT_PID     (started by dipeo_cli.pypool)

It dies with its parent (PR_SET_PDEATHSIG) and never runs user code. Its stdin is one end of a
SOCK_SEQPACKET socket pair; each message asks for one worker:

    request:  b"<token>" with two descriptors (SCM_RIGHTS): the worker's protocol socket and
              the write end of its stderr pipe
    reports:  lines on stdout, "S <token> <pid>" once forked, "X <pid> <exit code>" once reaped
              (a negative code is the signal that ended it, as in subprocess)

A forked worker starts its own session (so a kill of its group reaches what the user's code
started), dies with the zygote (hence with dipeo), carries `<token>` in DIPEO_JOB for the
processes it starts, and then serves jobs exactly as `python -m dipeo_cli.pyworker` does. When
the request socket closes, the zygote exits; its workers die with it.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys

from dipeo_cli import pyserve
from dipeo_cli.processes import die_with_parent
from dipeo_cli.reaper import VARIABLE
from dipeo_cli.spare_cpu import open_loadavg, usable_cpus


def _preload() -> None:
    # What every job needs, imported once here rather than once in each forked worker. Not
    # asyncio (only top-level await needs it): it would add 4 MB to the template, which each of
    # a hundred forks copies the page tables of.
    import ast  # noqa: F401
    import inspect  # noqa: F401
    import linecache  # noqa: F401
    import traceback  # noqa: F401


def _become_worker(
    zygote: int,
    control: socket.socket,
    private: tuple[int, ...],
    token: str,
    fds: list[int],
    load: int,
    cpus: int,
) -> None:
    """In the forked child: never returns."""
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        control.close()
        for fd in private:  # the template's own: its reports must end when it does
            os.close(fd)
        os.setsid()
        die_with_parent(zygote)
        proto, err = fds
        outer = os.environ.get(VARIABLE)
        os.environ[VARIABLE] = f"{outer} {token}" if outer else token
        os.dup2(err, 2)  # (stdin is already the template's /dev/null)
        os.dup2(err, 1)
        os.close(err)
        pyserve.serve(proto, proto, load, cpus)
    except BaseException:  # noqa: BLE001 - a forked child must never return into the zygote
        os._exit(70)
    os._exit(0)


def main() -> None:
    die_with_parent(int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when a worker ends
    _preload()
    # Every fork would otherwise copy the pages its garbage collector touches.
    gc.freeze()
    control = socket.socket(fileno=os.dup(0))
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    reports = os.dup(1)
    os.dup2(2, 1)
    # SIGCHLD wakes the loop through a pipe, so that select() sees requests and exits alike.
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    os.set_blocking(wake_read, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    import selectors

    # Opened and counted once here, for every worker, rather than again in each.
    load = open_loadavg()
    cpus = usable_cpus()
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    # What a worker must not keep of its template (its descriptors are inherited by the fork).
    own = (wake_read, wake_write, reports, selector.fileno())
    running = True
    while running:
        for key, _ in selector.select():
            if key.fileobj is control:
                try:
                    message, fds, _flags, _addr = socket.recv_fds(control, 4096, 2)
                except OSError:
                    message, fds = b"", []
                if not message:
                    running = False
                    break
                token = message.decode()
                me = os.getpid()
                pid = os.fork()
                if pid == 0:
                    _become_worker(me, control, own, token, fds, load, cpus)
                for fd in fds:
                    os.close(fd)
                os.write(reports, f"S {token} {pid}\n".encode())
            else:
                try:
                    os.read(wake_read, 4096)
                except BlockingIOError:
                    pass
        _reap(reports)
    # Workers still running were sent EOF by the runner; wait for them, so that none is left a
    # zombie, then leave without the interpreter's teardown (nothing to flush: reports are raw
    # writes), which would only delay the runner's close.
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        try:
            os.write(reports, f"X {pid} {os.waitstatus_to_exitcode(status)}\n".encode())
        except OSError:
            pass  # the runner stopped reading
    os._exit(0)


def _reap(reports: int) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        os.write(reports, f"X {pid} {os.waitstatus_to_exitcode(status)}\n".encode())


if __name__ == "__main__":
    main()
