"""The pool of python worker processes that runs code_job's python code.

    pool = PythonWorkerPool(size=2, limit=256)
    reply = await pool.run({"code": "result = x * 2", "inputs": {"x": 21}, ...})
    await pool.close()

A job takes an idle worker, or a new one while fewer than `limit` exist (else it waits), so jobs
that only wait (sleep, I/O) overlap instead of queueing behind a worker per CPU. New workers are
forked from a warm template process (dipeo_cli.pyzygote, started by dipeo_cli.pytemplate): a
fork costs about a millisecond where a python start costs ~25 ms of CPU, so a pool grows to a
hundred workers in a fraction of a second. Workers are reused; above `size` (default one per
CPU), a worker idle for `idle_seconds` (IDLE_SECONDS) ends, so the pool shrinks back when the
burst is over.

A chain of small jobs is mostly round trips, and on a virtual machine a round trip is mostly
the wake-ups of two sleeping processes. So when a job runs alone and a CPU is spare, its worker
waits awake for the next job for a moment after replying (LINGER_US, see pyserve.serve), and
the runner polls for the reply for a moment before it yields to its event loop (REPLY_POLL_US);
polls that keep missing back off. Jobs side by side never do either.

A job that is cancelled (the executor's timeout, an abort, Ctrl-C) kills its worker and every
process the code started (dipeo_cli.processes marks them); a worker that dies (os._exit,
segfault) fails only the job it was running. The worker protocol and what a job may do are in
dipeo_cli.pyworker. `close()` ends every worker and the template and reaps them: no zombies, no
orphans (the template dies with dipeo, even by kill -9, and the workers die with it).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from collections import deque
from typing import Any

from dipeo_cli.errors import NodeError
from dipeo_cli.processes import job_token, kill_job
from dipeo_cli.pychannel import Channel
from dipeo_cli.pyserve import HEADER
from dipeo_cli.pytemplate import Template, discard, spawn, take_early
from dipeo_cli.spare_cpu import Backoff, open_loadavg, runnable_tasks, usable_cpus

# json.dumps(job, ensure_ascii=False, default=str) without building an encoder per job
_JOB_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
_GONE = -int(signal.SIGKILL)  # the exit code of a worker whose template died before reaping it
# Microseconds a worker whose job ran alone waits awake for the next one (pyserve.serve): a
# chain's next job comes a node's bookkeeping later (~100-200 us), and an idle worker burns at
# most this once.
LINGER_US = 300
# Microseconds the runner polls for a lone job's reply before it yields to the event loop
# (which blocks other tasks that long at most): a small job's reply from an awake worker takes
# ~20 us.
REPLY_POLL_US = 60
# Seconds a worker above the pool's `size` stays idle before it ends: long enough for a loop's
# next burst (which comes microseconds after the last) to reuse it, short enough that a burst's
# workers exit while its other jobs still run. Each worker still alive when the run ends is an
# exit the run waits for (~0.3 ms each on two CPUs: 35 ms for a 100-worker burst, with 2 s);
# forking one again costs about a millisecond.
IDLE_SECONDS = 0.05


class PythonWorkerPool:
    """Runs python jobs in worker processes: `size` kept warm, at most `limit` at once (default
    `size`, which makes jobs beyond `size` queue)."""

    def __init__(
        self,
        size: int | None = None,
        *,
        limit: int | None = None,
        python: str | None = None,
        idle_seconds: float = IDLE_SECONDS,
    ) -> None:
        self.size = max(1, size if size is not None else (os.cpu_count() or 1))
        self.limit = max(self.size, limit or self.size)
        self.idle_seconds = idle_seconds
        self._python = python or sys.executable
        self._idle: list[_Worker] = []
        self._workers: set[_Worker] = set()
        self._slots = asyncio.Semaphore(self.limit)
        self._zygote: asyncio.Task[_Zygote] | None = None
        self._reaping: set[asyncio.Task[None]] = set()
        self._closed = False
        self._running = 0  # jobs sent and not answered
        # A worker waiting awake needs a CPU of its own beside the runner's.
        self._cpus = usable_cpus()
        self._spare_cpu = self._cpus > 1
        self._loadavg: int | None = None  # /proc/loadavg, opened on first use
        self._polls = Backoff()  # polls for a reply that missed (see _awake_for)

    @property
    def pids(self) -> list[int]:
        """Process ids of the live workers (for tests and diagnostics)."""
        return sorted(w.pid for w in self._workers)

    async def run(self, job: dict[str, Any]) -> dict[str, Any]:
        """Run one job and return the worker's reply; raises NodeError if the worker dies."""
        if self._closed:
            raise NodeError("the python worker pool is closed")
        async with self._slots:
            worker = self._take_idle() or await self._spawn()
            self._running += 1
            # Alone, the job's worker may wait awake for the next one (see pyserve.serve):
            # a chain's next job is usually on its way. Never when jobs run side by side, where
            # awake workers would take the CPUs the others need.
            linger = LINGER_US if self._running == 1 and self._spare_cpu else 0
            awake = self._awake_for() if linger else 0.0
            try:
                reply = await worker.request(job, linger, awake)
            except BaseException:
                # Cancelled (timeout, abort) or dead: its state is unknown, never reuse it.
                self._discard(worker)
                raise
            finally:
                self._running -= 1
            if awake:
                self._awake_answered(worker.answered_awake)
            if self._closed:
                self._discard(worker)
            else:
                self._release(worker)
            return reply

    def _awake_for(self) -> float:
        """Seconds to poll for a lone job's reply before yielding to the event loop (see
        pychannel.Channel.ask): the job and its worker are quick, when the last polls caught
        their replies; after a poll that missed (a slower job) or a busy machine, the next 2,
        4, ... 64 jobs are awaited plainly, so a poll that does not pay costs little."""
        if self._polls.skip():
            return 0.0
        if self._loadavg is None:
            self._loadavg = open_loadavg()
        if runnable_tasks(self._loadavg) > self._cpus:
            # A busy machine (its worker would wait for a CPU), and such load comes and goes
            # in bursts: back off as after a miss.
            self._awake_answered(False)
            return 0.0
        return REPLY_POLL_US / 1e6

    def _awake_answered(self, caught: bool) -> None:
        self._polls.paid(caught)

    def _take_idle(self) -> _Worker | None:
        if not self._idle:
            return None
        worker = self._idle.pop()  # the most recently used: the others may retire
        if worker.retire is not None:
            worker.retire.cancel()
            worker.retire = None
        return worker

    def _release(self, worker: _Worker) -> None:
        self._idle.append(worker)
        if len(self._workers) > self.size:
            loop = asyncio.get_running_loop()
            worker.retire = loop.call_later(self.idle_seconds, self._retire, worker)

    def _retire(self, worker: _Worker) -> None:
        worker.retire = None
        if worker in self._idle and len(self._workers) > self.size:
            self._idle.remove(worker)
            self._workers.discard(worker)
            self._track(worker.stop(1.0))

    async def _template(self) -> _Zygote:
        if self._zygote is not None and self._zygote.done():
            if self._zygote.exception() is None and self._zygote.result().alive:
                return self._zygote.result()
            self._zygote = None
        if self._zygote is None:
            self._zygote = asyncio.ensure_future(_Zygote.start(self._python))
        return await asyncio.shield(self._zygote)

    async def _spawn(self) -> _Worker:
        zygote = await self._template()
        worker = await zygote.fork()
        self._workers.add(worker)
        return worker

    def _discard(self, worker: _Worker) -> None:
        self._workers.discard(worker)
        worker.kill_now()
        self._track(worker.reap())

    def _track(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._reaping.add(task)
        task.add_done_callback(self._reaping.discard)

    async def close(self, grace: float = 1.0) -> None:
        """End every worker (EOF, then SIGKILL after `grace` seconds), then the template, and
        reap them all."""
        self._closed = True
        if self._loadavg is not None and self._loadavg >= 0:
            os.close(self._loadavg)
        self._loadavg = -1
        workers = list(self._workers)
        self._workers.clear()
        self._idle.clear()
        await asyncio.gather(
            *(w.stop(grace) for w in workers), *list(self._reaping), return_exceptions=True
        )
        if self._zygote is not None:
            zygote, self._zygote = self._zygote, None
            try:
                await (await zygote).stop(grace)
            except (NodeError, OSError):
                pass


class _Zygote:
    """The parent's end of the template process (dipeo_cli.pytemplate): asks it to fork,
    learns each fork's pid and, once reaped, its exit code."""

    def __init__(self, template: Template, reports: asyncio.StreamReader) -> None:
        self.process = template.process
        self.control = template.control
        self.alive = True
        self._forks: dict[str, asyncio.Future[int]] = {}
        self._exits: dict[int, asyncio.Future[int]] = {}
        self._reports = asyncio.ensure_future(self._read_reports(reports))

    @classmethod
    async def start(cls, python: str) -> _Zygote:
        # Started here, on the event loop's thread, which outlives the pool (see spawn), unless
        # `dipeo run` started one at launch.
        template = take_early(python) or spawn(python)
        reports = asyncio.StreamReader()
        try:
            await asyncio.get_running_loop().connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reports), template.process.stdout
            )
        except BaseException:
            discard(template)
            raise
        return cls(template, reports)

    async def _read_reports(self, reports: asyncio.StreamReader) -> None:
        while line := await reports.readline():
            kind, first, second = line.decode().split()
            if kind == "S":
                future = self._forks.pop(first, None)
                if future is not None and not future.done():
                    future.set_result(int(second))
            else:
                self._exit_of(int(first)).set_result(int(second))
        # The template is gone, and its workers with it (PR_SET_PDEATHSIG).
        self.alive = False
        for future in self._forks.values():
            if not future.done():
                future.set_exception(NodeError("the python worker template process died"))
        for future in self._exits.values():
            if not future.done():
                future.set_result(_GONE)

    def _exit_of(self, pid: int) -> asyncio.Future[int]:
        future = self._exits.get(pid)
        if future is None:
            future = self._exits[pid] = asyncio.get_running_loop().create_future()
            if not self.alive:
                future.set_result(_GONE)
        return future

    async def fork(self) -> _Worker:
        token = job_token()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        err_read, err_write = os.pipe()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._forks[token] = future
        try:
            try:
                socket.send_fds(self.control, [token.encode()], [theirs.fileno(), err_write])
            except OSError as exc:
                raise NodeError(f"the python worker template process died ({exc})") from None
            finally:
                theirs.close()
                os.close(err_write)
            pid = await future
        except BaseException:
            self._forks.pop(token, None)
            ours.close()
            os.close(err_read)
            raise  # a fork made after all gets EOF on its socket and exits
        worker = _Worker(pid, token, self._exit_of(pid))
        await worker.connect(ours, err_read)
        return worker

    async def stop(self, grace: float) -> None:
        self.control.close()  # EOF: the template exits, and any worker left dies with it
        try:  # its reports end when it does
            await asyncio.wait_for(asyncio.shield(self._reports), grace)
        except TimeoutError:
            self.process.kill()
            await self._reports
        while self.process.poll() is None:  # reaped: it has closed its reports, and exits
            await asyncio.sleep(0.001)


class _Worker:
    __slots__ = ("pid", "token", "exited", "retire", "stderr_tail", "_channel", "_drain")

    def __init__(self, pid: int, token: str, exited: asyncio.Future[int]) -> None:
        self.pid = pid
        self.token = token
        self.exited = exited
        self.retire: asyncio.TimerHandle | None = None
        self.stderr_tail: deque[str] = deque(maxlen=20)

    async def connect(self, sock: socket.socket, err_read: int) -> None:
        loop = asyncio.get_running_loop()
        _, self._channel = await loop.create_connection(lambda: Channel(sock), sock=sock)
        stderr = asyncio.StreamReader()
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(stderr), os.fdopen(err_read, "rb", buffering=0)
        )
        self._drain = loop.create_task(self._drain_stderr(stderr))

    async def _drain_stderr(self, stderr: asyncio.StreamReader) -> None:
        while line := await stderr.readline():
            text = line.decode("utf-8", "replace").rstrip()
            if text:
                self.stderr_tail.append(text[:500])

    @property
    def answered_awake(self) -> bool:
        return self._channel.answered_awake

    async def request(
        self, job: dict[str, Any], linger: int = 0, awake: float = 0.0
    ) -> dict[str, Any]:
        if linger:
            job = {**job, "linger": linger}
        payload = _JOB_ENCODER.encode(job).encode("utf-8")
        self.stderr_tail.clear()  # a death message quotes only what this job wrote
        try:
            body = await self._channel.ask(HEADER.pack(len(payload)) + payload, awake)
        except ConnectionError:
            raise await self._death() from None
        reply: dict[str, Any] = json.loads(body)
        return reply

    async def _death(self) -> Exception:
        try:
            code = await asyncio.wait_for(asyncio.shield(self.exited), 2.0)
        except TimeoutError:  # the socket broke but the process lives on: end it
            self.kill_now()
            code = await self.exited
        await self._finish_drain(0.5)
        message = f"python worker died (exit code {code}"
        if code < 0:
            try:
                message += f", {signal.Signals(-code).name}"
            except ValueError:
                pass
        message += ")"
        last = next((line for line in reversed(self.stderr_tail) if line.strip()), "")
        if last:
            message += f": {last}"
        return NodeError(message)

    def kill_now(self) -> None:
        """SIGKILL the worker and every process the user's code started (also those that left
        its process group), synchronously (safe inside a cancellation)."""
        alive = not self.exited.done()  # not yet reaped, so the pid is still this worker's
        if alive:
            try:
                os.kill(self.pid, signal.SIGKILL)  # also before its setsid() has run
            except OSError:
                pass
        kill_job(self.token, self.pid if alive else None)

    async def reap(self) -> None:
        self._channel.close()
        await self.exited
        await self._finish_drain(1.0)

    async def stop(self, grace: float) -> None:
        self._channel.close()  # EOF: the worker's loop ends and it exits
        try:
            await asyncio.wait_for(asyncio.shield(self.exited), grace)
        except TimeoutError:
            self.kill_now()
            await self.exited
        await self._finish_drain(1.0)

    async def _finish_drain(self, timeout: float) -> None:
        # A grandchild the user's code left running may hold stderr open: do not wait forever.
        try:
            await asyncio.wait_for(asyncio.shield(self._drain), timeout)
        except TimeoutError:
            self._drain.cancel()
            try:
                await self._drain
            except asyncio.CancelledError:
                pass
