"""Starting a job's process off the event loop, and following it on the loop.

    popen = await start_process(argv, cwd=..., env=..., stdin_pipe=False, pass_fds=())
    process = Followed(popen, stdin=None)      # reads stdout/stderr, sees the exit
    await process.exited; await process.output_closed; process.close()

asyncio's own subprocess support forks on the event loop's thread and (Python 3.11) starts one
thread per child only to wait for it, so a hundred parallel bash jobs start one after another
while the loop can do nothing else, not even notice the first ones ending. Here the fork+exec runs
in a small pool of threads (CPython releases the GIL around it, so starts overlap on several
CPUs), the exit is seen through a pidfd the loop watches (no thread per child), and the output
is read with non-blocking reads on the loop. Killing and the job markers stay with
dipeo_cli.processes, which builds run_process on this.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_starters: ThreadPoolExecutor | None = None
_READ_SIZE = 256 * 1024


def _pool() -> ThreadPoolExecutor:
    global _starters
    if _starters is None:
        # One per CPU: a start is CPU-bound (copying page tables, exec), more would only queue.
        _starters = ThreadPoolExecutor(
            max_workers=max(2, min(8, os.cpu_count() or 1)), thread_name_prefix="dipeo-start"
        )
    return _starters


def start_process(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    stdin_pipe: bool,
    pass_fds: tuple[int, ...],
) -> asyncio.Future[subprocess.Popen[bytes]]:
    """The process being started in the starter threads, in its own session, stdout and stderr
    piped. Launch errors (FileNotFoundError, PermissionError) are the future's exception.
    Cancelling the future does not stop the start: shield it and kill what started."""

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin_pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=cwd,
            env=env,
            start_new_session=True,
            pass_fds=pass_fds,
        )

    future: asyncio.Future[subprocess.Popen[bytes]] = asyncio.get_running_loop().run_in_executor(
        _pool(), start
    )
    return future


class Followed:
    """A started process watched from the event loop: its output (`out`, `err`), `exited`
    (resolved once reaped: `returncode` is known) and `output_closed` (both pipes at EOF)."""

    def __init__(self, popen: subprocess.Popen[bytes], stdin: bytes | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self.popen = popen
        self.out = bytearray()
        self.err = bytearray()
        # Private: a caller cancelled while awaiting it would cancel it (see `exited`).
        self._exited: asyncio.Future[None] = self._loop.create_future()
        self.output_closed: asyncio.Future[None] = self._loop.create_future()
        self._readers: dict[int, tuple[Any, bytearray]] = {}
        for stream, buffer in ((popen.stdout, self.out), (popen.stderr, self.err)):
            assert stream is not None
            fd = stream.fileno()
            os.set_blocking(fd, False)
            self._readers[fd] = (stream, buffer)
            self._loop.add_reader(fd, self._read, fd)
        self._pidfd = -1
        try:
            self._pidfd = os.pidfd_open(popen.pid)
        except (AttributeError, OSError):  # not Linux 5.3+: a thread waits instead
            waiting = self._loop.run_in_executor(None, popen.wait)
            waiting.add_done_callback(lambda _: self._reaped())
        else:
            self._loop.add_reader(self._pidfd, self._poll)
        self._pending = memoryview(stdin or b"")
        if popen.stdin is not None:
            os.set_blocking(popen.stdin.fileno(), False)
            self._write()

    @property
    def exited(self) -> asyncio.Future[None]:
        """Resolved once the process is reaped (`returncode` is known); cancelling the wait
        leaves the watch on."""
        return asyncio.shield(self._exited)

    @property
    def returncode(self) -> int | None:
        return self.popen.returncode

    def _read(self, fd: int) -> None:
        stream, buffer = self._readers[fd]
        try:
            data = os.read(fd, _READ_SIZE)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            buffer.extend(data)
            return
        self._loop.remove_reader(fd)
        del self._readers[fd]
        stream.close()
        if not self._readers and not self.output_closed.done():
            self.output_closed.set_result(None)

    def _write(self) -> None:
        stdin = self.popen.stdin
        assert stdin is not None
        try:
            while self._pending:
                self._pending = self._pending[os.write(stdin.fileno(), self._pending) :]
        except BlockingIOError:
            self._loop.add_writer(stdin.fileno(), self._write_more)
            return
        except OSError:  # EPIPE: a job that does not read its input
            pass
        self._close_stdin()

    def _write_more(self) -> None:
        stdin = self.popen.stdin
        assert stdin is not None
        self._loop.remove_writer(stdin.fileno())
        self._write()

    def _close_stdin(self) -> None:
        stdin = self.popen.stdin
        if stdin is not None and not stdin.closed:
            self._loop.remove_writer(stdin.fileno())
            stdin.close()

    def _poll(self) -> None:
        if self.popen.poll() is not None:
            self._reaped()

    def _reaped(self) -> None:
        if self._pidfd >= 0:
            self._loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = -1
        if not self._exited.done():
            self._exited.set_result(None)

    async def reaped(self, timeout: float = 1.0) -> None:
        """Wait (at most `timeout`, even if cancelled again) until the killed process is reaped,
        so that no zombie or "still running" warning is left behind."""
        try:
            await asyncio.wait_for(self.exited, timeout)
        except (TimeoutError, asyncio.CancelledError):
            # Not reaped yet (a busy machine, a second cancellation): a thread waits for it, as
            # asyncio's child watcher would have, so no zombie and no "still running" warning
            # when the Popen is collected.
            if not self._exited.done():
                threading.Thread(target=self.popen.wait, daemon=True).start()

    def close(self) -> None:
        """Stop reading (what is left unread is dropped) and release the descriptors; the exit
        is still watched until the process is reaped."""
        self._pending = memoryview(b"")
        self._close_stdin()
        for fd, (stream, _) in list(self._readers.items()):
            self._loop.remove_reader(fd)
            stream.close()
        self._readers.clear()
        if not self.output_closed.done():
            self.output_closed.set_result(None)
