"""The subprocesses handlers start (bash/sh code jobs, JS/TS runtimes, shell hooks, python
workers), and the helpers around them.

Every process a run starts dies with it. A job runs in its own session (process group), marked
with a token in its environment (see dipeo_cli.reaper). Killing a job (a timeout, Ctrl-C,
SIGTERM, an abort) kills its group and every process carrying its token, repeated until none is
left, so children that left the group with `setsid` die too and the run never waits for them.
The first job of a dipeo process also starts the watchdog (dipeo_cli.reaper) that kills every
marked process and removes this process's temporary folder when dipeo exits, even by `kill -9`;
at a normal exit dipeo does that sweep itself, so nothing a run started outlives `dipeo run`.

Output is clipped before it goes into the history.
"""

from __future__ import annotations

import json
import os
import signal
from typing import Any

from dipeo_cli.reaper import VARIABLE, kill_all_marked

CAPTURE_LIMIT = 64 * 1024  # characters of stdout/stderr kept per job


def clip(text: str) -> str:
    """At most CAPTURE_LIMIT characters, saying how many were dropped (secrets are masked before
    the cut: half a secret would no longer be recognised when the output is stored)."""
    if len(text) <= CAPTURE_LIMIT:
        return text
    from dipeo_cli.redact import redact

    kept = redact(text)[:CAPTURE_LIMIT]
    return kept + f"\n[... {len(text) - CAPTURE_LIMIT} more characters not kept]"


def env_text(value: Any) -> str:
    """A value as an environment variable: text as it is, anything else as JSON."""
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("\0", "")


def exit_message(code: int | None, stderr: str, ended: str | None = None) -> str:
    """Why a process failed: the signal that killed it, or `ended` (default "exit code N"),
    then the last lines of its stderr."""
    if code is not None and code < 0:
        try:
            head = f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            head = f"killed by signal {-code}"
    else:
        head = ended or f"exit code {code}"
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return f"{head}: {' | '.join(lines[-3:])}" if lines else head


# -- the session: this process's job marker, watchdog and temporary folder ---------------------

_REAPER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "reaper.py")
_LINGER = 0.05  # seconds a job's output may stay open after its main process exited


class _Session:
    """Made with the first job of a process (and again in a forked child): the marker prefix,
    the watchdog that outlives a `kill -9` of this process, and the folder for temporary files
    that the watchdog removes."""

    def __init__(self) -> None:
        import atexit
        import itertools
        import subprocess
        import sys
        import tempfile

        self.pid = os.getpid()
        self.name = f"{self.pid}-{os.urandom(4).hex()}"
        self._jobs = itertools.count(1)
        self.folder = tempfile.mkdtemp(prefix=f"dipeo-run-{self.pid}-")
        self.reaper: subprocess.Popen[bytes] | None = None
        # Both ends are close-on-exec: no job inherits the write end, so the watchdog sees EOF
        # exactly when this process has exited.
        read, self._write = os.pipe()
        try:
            self.reaper = subprocess.Popen(
                [sys.executable, "-S", "-I", _REAPER, str(read), self.name, self.folder],
                pass_fds=(read,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # never hold the caller's pipes open
                stderr=subprocess.DEVNULL,
                cwd="/",
                start_new_session=True,  # the terminal's Ctrl-C and hang-up are not for it
            )
        except OSError:
            pass  # only a kill -9 of this process then leaves jobs running
        finally:
            os.close(read)
        atexit.register(self.close)

    def token(self) -> str:
        return f"{self.name}/{next(self._jobs)}"

    def close(self) -> None:
        """At exit: kill what the jobs left running (the daemons of jobs that ended; a few
        milliseconds), remove the folder, and close the pipe. Doing it here rather than waiting
        for the watchdog (which may still be starting) keeps a short run short and still
        leaves nothing behind when this process has exited; the watchdog then finds nothing to
        do and exits too."""
        if os.getpid() != self.pid or self._write < 0:
            return
        import shutil

        kill_all_marked(self.name + "/")
        shutil.rmtree(self.folder, ignore_errors=True)
        os.close(self._write)
        self._write = -1


_session: _Session | None = None


def _current() -> _Session:
    global _session
    if _session is None or _session.pid != os.getpid():
        _session = _Session()
    return _session


def temp_dir() -> str:
    """This process's folder for job files; removed when the process exits, even by kill -9."""
    return _current().folder


def job_token() -> str:
    """A new job token of this process's session (see mark_job)."""
    return _current().token()


def mark_job(env: dict[str, str] | None = None) -> tuple[dict[str, str], str]:
    """A copy of `env` (default os.environ) carrying a new job token, and the token. A token
    already there (dipeo running inside a dipeo job) is kept, so the outer run still finds
    this run's jobs."""
    token = _current().token()
    marked = dict(os.environ if env is None else env)
    outer = marked.get(VARIABLE)
    marked[VARIABLE] = f"{outer} {token}" if outer else token
    return marked, token


def kill_job(token: str, group: int | None = None) -> None:
    """SIGKILL a job, synchronously (safe inside a cancellation): its process group `group`
    (the main process's pid) and every process marked with `token`, until none is left."""
    if group is not None:
        try:
            os.killpg(group, signal.SIGKILL)
        except OSError:
            pass
    kill_all_marked(token)


_PRCTL: Any = None


def die_with_parent(parent: int) -> None:
    """In a child: have Linux SIGKILL this process when `parent` dies (kill -9 included), and
    exit at once if that happened before the request. Elsewhere, nothing."""
    global _PRCTL
    try:
        if _PRCTL is None:
            # Resolved once, with its signature: a forked worker reuses its template's
            # function, and its first call then costs ~70 us instead of ~200 us.
            import ctypes

            _PRCTL = ctypes.CDLL(None, use_errno=True).prctl
            _PRCTL.argtypes = [ctypes.c_int, *[ctypes.c_ulong] * 4]
            _PRCTL.restype = ctypes.c_int
        _PRCTL(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:
        os._exit(1)


def anonymous_file(text: str) -> int:
    """A descriptor of a file holding `text` that has no name in the temp folder (a memfd;
    elsewhere a file in this process's folder, unlinked at once), at offset 0. Pass it to a
    child (pass_fds) as /dev/fd/N; close it afterwards."""
    data = text.encode("utf-8")
    try:
        fd = os.memfd_create("dipeo-code-job.sh")
    except (AttributeError, OSError):
        import tempfile

        fd, path = tempfile.mkstemp(prefix="dipeo-code-job-", suffix=".sh", dir=temp_dir())
        os.unlink(path)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


# -- running a job -----------------------------------------------------------------------------


async def run_process(
    argv: list[str],
    *,
    cwd: str,
    env: dict[str, str] | None = None,
    stdin: bytes | None = None,
    pass_fds: tuple[int, ...] = (),
) -> tuple[int | None, bytes, bytes]:
    """Run one job to its end and return (exit code, stdout, stderr); a negative code is the
    signal that killed it. `stdin` is written and closed (None: /dev/null).

    The job runs in its own session, marked (mark_job), started off the event loop
    (dipeo_cli.spawn). Once its main process has exited, what still holds its stdout/stderr
    after a moment (a `cmd &` the script did not wait for) is killed, and the job ends without
    waiting for it. Cancelling the call kills the whole job, also when it lands while the job is
    still starting. Launch errors (FileNotFoundError, PermissionError) are raised as they are."""
    import asyncio

    from dipeo_cli.spawn import Followed, start_process

    env, token = mark_job(env)
    start = start_process(argv, cwd=cwd, env=env, stdin_pipe=stdin is not None, pass_fds=pass_fds)
    try:
        popen = await asyncio.shield(start)
    except asyncio.CancelledError:
        # The start runs on in its thread: let it finish, then kill the whole job.
        while not start.done():
            try:
                await asyncio.wait([start])
            except asyncio.CancelledError:
                pass
        if start.cancelled() or start.exception() is not None:
            kill_job(token)
        else:
            started = start.result()
            kill_job(token, started.pid)
            followed = Followed(started)
            followed.close()
            await followed.reaped()
        raise
    process = Followed(popen, stdin)
    try:
        await process.exited
        try:
            await asyncio.wait_for(asyncio.shield(process.output_closed), _LINGER)
        except TimeoutError:
            kill_job(token, popen.pid)
            try:
                await asyncio.wait_for(asyncio.shield(process.output_closed), 1.0)
            except TimeoutError:
                pass  # held by a process without our marker: stop reading
    except BaseException:
        kill_job(token, popen.pid)
        process.close()
        await process.reaped()
        raise
    finally:
        process.close()
    return process.returncode, bytes(process.out), bytes(process.err)
