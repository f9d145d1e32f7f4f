"""Jobs' processes are started off the event loop and followed on it (dipeo_cli.spawn)."""

from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest

from dipeo_cli import processes, spawn


def test_parallel_jobs_do_not_take_a_thread_each() -> None:
    # asyncio's own subprocesses (Python 3.11) wait for each child in a thread of its own.
    async def main() -> tuple[int, list[tuple[int | None, bytes, bytes]]]:
        most = 0
        jobs = [
            asyncio.ensure_future(
                processes.run_process(["bash", "-c", f"sleep 0.3; echo {i}"], cwd="/")
            )
            for i in range(20)
        ]
        while not all(job.done() for job in jobs):
            most = max(most, threading.active_count())
            await asyncio.sleep(0.02)
        return most, [job.result() for job in jobs]

    before = threading.active_count()
    most, results = asyncio.run(main())
    assert [r[1] for r in results] == [f"{i}\n".encode() for i in range(20)]
    assert most - before <= spawn._pool()._max_workers


def test_a_large_input_is_written_to_the_job_and_its_output_read_back() -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: more than a pipe holds
    code, out, err = asyncio.run(processes.run_process(["cat"], cwd="/", stdin=data))
    assert (code, out, err) == (0, data, b"")


def test_a_job_that_does_not_read_its_input_still_ends() -> None:
    data = b"x" * (1 << 20)
    code, out, _ = asyncio.run(
        asyncio.wait_for(processes.run_process(["bash", "-c", "echo done"], cwd="/", stdin=data), 5)
    )
    assert (code, out) == (0, b"done\n")


def test_a_launch_error_is_raised_as_it_is() -> None:
    with pytest.raises(FileNotFoundError):
        asyncio.run(processes.run_process(["/no/such/program"], cwd="/"))


def test_the_exit_code_and_a_killing_signal_are_reported() -> None:
    code, _, err = asyncio.run(processes.run_process(["bash", "-c", "echo e >&2; exit 3"], cwd="/"))
    assert (code, err) == (3, b"e\n")
    code, _, _ = asyncio.run(processes.run_process(["bash", "-c", "kill -9 $$"], cwd="/"))
    assert code == -9


def test_a_process_not_reaped_in_time_is_reaped_by_a_thread_after_the_loop_is_gone() -> None:
    # asyncio's child watcher used to do this; without it a late exit leaves a zombie and a
    # "subprocess is still running" warning when the Popen is collected.
    async def main() -> spawn.Followed:
        popen = await spawn.start_process(
            ["sleep", "30"], cwd="/", env=dict(os.environ), stdin_pipe=False, pass_fds=()
        )
        followed = spawn.Followed(popen)
        followed.close()
        await followed.reaped(timeout=0.0)
        return followed

    followed = asyncio.run(main())
    followed.popen.kill()
    deadline = time.monotonic() + 5
    while followed.popen.returncode is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert followed.popen.returncode == -9
