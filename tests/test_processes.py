"""dipeo_cli.processes and dipeo_cli.reaper with real processes: job markers, the kill that
reaches children outside the process group, the start-up window, the watchdog's stale-file
cleanup and the python worker's death with its parent. (The whole-run behaviour is in
test_e2e_processes.py.)"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dipeo_cli import processes, reaper
from tests.proc_kit import processes_with

pytestmark = pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc")
REPO = Path(__file__).resolve().parents[1]


def gone_within(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.01)
    return check()


@pytest.fixture
def mark() -> Iterator[str]:
    value = f"30.{random.randrange(10**8):08d}"
    yield value
    for pid in processes_with(value):
        os.kill(pid, signal.SIGKILL)


def sleeper(duration: str, marker: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["sleep", duration], env={**os.environ, reaper.VARIABLE: marker}, start_new_session=True
    )


def test_a_job_token_matches_exactly_and_a_session_prefix_matches_all_its_jobs(mark):
    session = f"test-{random.randrange(10**9)}"
    one = sleeper(mark, f"{session}/1")
    ten = sleeper(mark, f"{session}/10")
    nested = sleeper(mark, f"outer/3 {session}/2")
    try:
        assert gone_within(lambda: len(processes_with(mark)) == 3, 2)
        reaper.kill_all_marked(f"{session}/1")
        assert one.wait(timeout=2) == -signal.SIGKILL
        assert ten.poll() is None and nested.poll() is None
        reaper.kill_all_marked(f"{session}/")
        assert ten.wait(timeout=2) == -signal.SIGKILL
        assert nested.wait(timeout=2) == -signal.SIGKILL
    finally:
        for proc in (one, ten, nested):
            proc.kill()
            proc.wait()


def test_run_process_kills_what_still_holds_the_output_when_the_job_ends(mark):
    started = time.monotonic()
    code, out, _ = asyncio.run(
        processes.run_process(
            ["bash", "-c", f"setsid sleep {mark} & sleep {mark} & echo hi"], cwd="/"
        )
    )
    assert (code, out) == (0, b"hi\n")
    assert time.monotonic() - started < 2
    assert gone_within(lambda: not processes_with(mark), 1)


def test_run_process_keeps_a_detached_background_process_until_the_run_ends(mark):
    async def go() -> list[int]:
        code, out, _ = await processes.run_process(
            ["bash", "-c", f"setsid sleep {mark} >/dev/null 2>&1 & echo hi"], cwd="/"
        )
        assert (code, out) == (0, b"hi\n")
        return processes_with(mark)

    assert len(asyncio.run(go())) == 1  # the watchdog ends it when this process exits


@pytest.mark.parametrize("delay", [0, 0.0005, 0.002, 0.005, 0.02])
def test_a_cancellation_while_the_job_starts_kills_its_children(mark, delay):
    script = f"setsid sleep {mark} & sleep {mark} & sleep {mark}; wait"

    async def go() -> None:
        task = asyncio.ensure_future(processes.run_process(["bash", "-c", script], cwd="/"))
        await asyncio.sleep(delay)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, 2)

    started = time.monotonic()
    asyncio.run(go())
    assert time.monotonic() - started < 2
    assert gone_within(lambda: not processes_with(mark), 1)


def test_inline_script_lives_in_memory_not_in_the_temp_folder():
    fd = processes.anonymous_file("echo hi\n")
    try:
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:")
        done = subprocess.run(
            ["bash", f"/dev/fd/{fd}"], pass_fds=(fd,), capture_output=True, check=True
        )
        assert done.stdout == b"hi\n"
    finally:
        os.close(fd)


def test_the_watchdog_removes_only_this_users_leftovers_a_day_old(tmp_path: Path):
    old = time.time() - 2 * 24 * 3600
    dead = subprocess.Popen(["true"])
    dead.wait()
    entries = {
        "dipeo-code-job-old.sh": True,
        "dipeo-code-job-new.sh": False,
        "dipeo-js-old/": True,
        f"dipeo-run-{dead.pid}-abc/": True,
        f"dipeo-run-{os.getpid()}-abc/": False,  # its process still runs
        "other-old.sh": False,
    }
    for name in entries:
        path = tmp_path / name.rstrip("/")
        if name.endswith("/"):
            path.mkdir()
            (path / "runner.mjs").write_text("x")
        else:
            path.write_text("x")
        if "new" not in name:
            os.utime(path, (old, old))
    reaper.remove_stale(str(tmp_path))
    for name, removed in entries.items():
        assert (tmp_path / name.rstrip("/")).exists() is not removed, name


def test_a_python_worker_dies_with_its_parent_even_by_kill_9():
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import json, os, struct, subprocess, sys, time\n"
            "w = subprocess.Popen([sys.executable, '-m', 'dipeo_cli.pyworker', str(os.getpid())],"
            " stdin=subprocess.PIPE)\n"
            "job = json.dumps({'code': 'import time; time.sleep(30)'}).encode()\n"
            "w.stdin.write(struct.pack('>I', len(job)) + job); w.stdin.flush()\n"
            "print(w.pid, flush=True)\n"
            "time.sleep(30)\n",
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        assert parent.stdout is not None
        worker = int(parent.stdout.readline())
        time.sleep(0.3)  # the worker runs the job (its stdin stays open: the parent's copy)
        parent.kill()
        parent.wait()

        def worker_gone() -> bool:
            try:
                stat = Path(f"/proc/{worker}/stat").read_text()
            except OSError:
                return True
            return stat.rsplit(")", 1)[1].split()[0] == "Z"

        assert gone_within(worker_gone, 1)
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
