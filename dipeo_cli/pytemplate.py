"""Starting the python worker pool's template process (dipeo_cli.pyzygote), early when a run
will need it.

    template = spawn(sys.executable)      # what the pool does on its first python job
    if wanted_by(["flow.light.yaml"]):    # `dipeo run` at launch: ready when the first job is
        start_early()

A python start is ~30 ms of CPU (interpreter, site, the template's imports), and the first
python job of a run waited for all of it (measured: 229 ms for a one-node python run, 204 ms
with the template started early). `dipeo run` spends its first ~100 ms importing its own
modules on one CPU, so the entry point starts the template then, when a diagram file it was
given mentions `code_job`, and the pool takes that template (`take_early`) instead of starting
one. A template started for nothing (a bash job, a diagram
that fails validation) ends with dipeo like any other: it reads EOF from its socket when dipeo
exits, and dies with it (PR_SET_PDEATHSIG) even on kill -9.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:  # imported when a template starts: the entry point imports this module
    import socket
    import subprocess

_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
# Diagram files larger than this are not read at launch (loading reads them anyway; a huge one
# is not worth a second read for a head start of ~30 ms).
_PEEK_LIMIT = 4 * 1024 * 1024


class Template(NamedTuple):
    process: subprocess.Popen[bytes]  # its stdout: one report line per fork and per exit
    control: socket.socket  # the requests: a job token and a worker's descriptors each


def spawn(python: str) -> Template:
    """Start a template process. Call it from a thread that lives as long as the process
    (Linux ties PR_SET_PDEATHSIG to the thread that started the child): the main thread. Hence
    not dipeo_cli.spawn's starter threads, which jobs' processes are started from."""
    import socket
    import subprocess

    from dipeo_cli.processes import mark_job

    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env, _ = mark_job()  # its forks carry the template's mark, see dipeo_cli.processes
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + path if path else "")
    try:
        process = subprocess.Popen(
            # It dies with this process (the pid it is given).
            [python, "-m", "dipeo_cli.pyzygote", str(os.getpid())],
            stdin=theirs.fileno(),  # the socket end it reads requests from
            stdout=subprocess.PIPE,
            env=env,
            # Its own session: the terminal's Ctrl-C reaches only the runner, which then
            # cancels the jobs.
            start_new_session=True,
        )
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    return Template(process, ours)


_early: Template | None = None


def wanted_by(args: list[str]) -> bool:
    """Whether one of `args` (a `dipeo run` command line) is a diagram file that mentions
    `code_job` (a false alarm costs one idle process for the run)."""
    return any(_mentions_code_job(arg) for arg in args)


def start_early() -> None:
    """Start a template for this process's pool to take (see the module docstring)."""
    global _early
    if _early is not None:
        return
    try:
        _early = spawn(sys.executable)
    except OSError:
        pass  # the pool starts one when it needs it, and reports what fails then


def take_early(python: str) -> Template | None:
    """The template `start_early` started, if it runs `python` and is alive; once."""
    global _early
    early, _early = _early, None
    if early is None:
        return None
    if python == sys.executable and early.process.poll() is None:
        return early
    discard(early)
    return None


def discard(template: Template) -> None:
    """End a template no pool uses (it may still be starting: it is not waited for)."""
    template.control.close()
    template.process.kill()
    template.process.wait()
    if template.process.stdout is not None:
        template.process.stdout.close()


def _mentions_code_job(arg: str) -> bool:
    if arg.startswith("-") or not arg.endswith((".yaml", ".yml", ".json")):
        return False
    try:
        if os.stat(arg).st_size > _PEEK_LIMIT:
            return False
        with open(arg, "rb") as file:
            return b"code_job" in file.read()
    except (OSError, ValueError):
        return False
