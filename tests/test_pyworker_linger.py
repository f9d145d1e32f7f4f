"""A python worker waits awake for the next job of a chain, briefly, and only with a CPU to
spare (dipeo_cli.pyserve.serve, asked by dipeo_cli.pypool); the runner polls for a lone job's
reply, briefly, and backs off when that does not pay (dipeo_cli.pychannel, dipeo_cli.pypool)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dipeo_cli import pypool, pyserve
from dipeo_cli.pyserve import HEADER, linger_seconds
from tests.test_pyworker import job


def test_a_worker_lingers_only_after_a_job_that_came_soon_after_its_last_reply() -> None:
    assert linger_seconds(300, 0.0001) == pytest.approx(0.0003)  # in a chain
    assert linger_seconds(300, 0.001) == 0.0  # the jobs come slower than it would wait
    assert linger_seconds(0, 0.0) == 0.0  # the runner did not ask (jobs side by side)
    assert linger_seconds(None, 0.0) == 0.0  # a job from a runner that never asks
    assert linger_seconds("300", 0.0) == 0.0
    assert linger_seconds(10**9, 0.0) == pytest.approx(0.002)  # capped, whatever is asked


class _Poller:
    """A poller that counts its calls and reports a job after `ready_after` of them."""

    def __init__(self, ready_after: int | None = None) -> None:
        self.calls = 0
        self.ready_after = ready_after

    def poll(self, timeout: int) -> list[tuple[int, int]]:
        assert timeout == 0  # polls, never sleeps
        self.calls += 1
        return [(0, 1)] if self.ready_after is not None and self.calls > self.ready_after else []


def _load_file(tmp_path: Path, runnable: int) -> int:
    path = tmp_path / "loadavg"
    path.write_text(f"0.10 0.20 0.30 {runnable}/120 4242\n")
    return os.open(path, os.O_RDONLY)


def test_waiting_awake_ends_when_the_next_job_arrives(tmp_path: Path) -> None:
    load = _load_file(tmp_path, 1)
    try:
        poller = _Poller(ready_after=20)
        pyserve._wait_awake(poller, time.perf_counter() + 60, time.perf_counter, 2, load)
        assert poller.calls == 21
    finally:
        os.close(load)


def test_waiting_awake_ends_at_its_deadline(tmp_path: Path) -> None:
    load = _load_file(tmp_path, 1)
    ticks = iter(range(1000))
    try:
        poller = _Poller()
        pyserve._wait_awake(poller, 50, lambda: next(ticks), 2, load)
        assert poller.calls == 51  # the clock passed the deadline on the 51st look
    finally:
        os.close(load)


def test_a_worker_sleeps_at_once_when_no_cpu_is_spare(tmp_path: Path) -> None:
    busy = _load_file(tmp_path, 3)  # the runner, this worker and one more task on two CPUs
    try:
        poller = _Poller()
        pyserve._wait_awake(poller, time.perf_counter() + 60, time.perf_counter, 2, busy)
        assert poller.calls == 1
    finally:
        os.close(busy)
    poller = _Poller()
    pyserve._wait_awake(poller, time.perf_counter() + 60, time.perf_counter, 2, -1)
    assert poller.calls == 1  # no /proc/loadavg: never wait awake


def _ask(sock: socket.socket, message: dict[str, Any]) -> dict[str, Any]:
    payload = json.dumps(message).encode()
    sock.sendall(HEADER.pack(len(payload)) + payload)
    size = HEADER.unpack(sock.recv(HEADER.size, socket.MSG_WAITALL))[0]
    reply: dict[str, Any] = json.loads(sock.recv(size, socket.MSG_WAITALL))
    return reply


def _serve_in_thread(monkeypatch: pytest.MonkeyPatch, wait_awake: Any) -> Any:
    monkeypatch.setattr(pyserve, "_wait_awake", wait_awake)
    ours, theirs = socket.socketpair()
    thread = threading.Thread(target=pyserve.serve, args=(theirs.fileno(), theirs.fileno()))
    thread.start()
    return ours, theirs, thread


def test_the_worker_waits_awake_after_each_reply_the_runner_asked_it_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lingers: list[float] = []
    monkeypatch.setattr(pyserve, "linger_seconds", lambda asked, gap: 0.25 if asked else 0.0)

    def wait_awake(poller: Any, deadline: float, clock: Any, cpus: int, load: int) -> bool:
        lingers.append(deadline - clock())
        return True

    ours, theirs, thread = _serve_in_thread(monkeypatch, wait_awake)
    try:
        for linger in (300, 0, 300):
            assert _ask(ours, {**job("result = 1"), "linger": linger})["result"] == 1
        assert _ask(ours, job("result = 2"))["result"] == 2
    finally:
        ours.close()
        thread.join()
        theirs.close()
    # after the first and the third reply; the fourth job arrives before any wait is over
    assert len(lingers) == 2 and all(0.2 < seconds <= 0.25 for seconds in lingers)


def test_a_worker_whose_waits_miss_skips_the_next_2_4_up_to_64_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[str] = []  # in the worker's order: "r" a reply went out, "w" a wait

    def linger(asked: Any, gap: float) -> float:
        events.append("r")
        return 0.25

    monkeypatch.setattr(pyserve, "linger_seconds", linger)

    def wait_awake(*_: Any) -> bool:
        events.append("w")
        return False  # no job came

    ours, theirs, thread = _serve_in_thread(monkeypatch, wait_awake)
    try:
        for _ in range(1 + 2 + 1 + 4 + 1 + 8 + 1 + 16 + 1):
            _ask(ours, {**job("result = 1"), "linger": 300})
    finally:
        ours.close()
        thread.join()
        theirs.close()
    replies = [i for i, event in enumerate(events) if event == "r"]
    waited_after = [n + 1 for n, i in enumerate(replies) if events[i + 1 : i + 2] == ["w"]]
    assert waited_after == [1, 4, 9, 18, 35]  # 2, 4, 8, 16 skipped after each miss


def test_only_a_job_running_alone_asks_its_worker_to_linger(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[int] = []
    request = pypool._Worker.request

    async def recording(
        self: Any, job: dict[str, Any], linger: int = 0, awake: float = 0.0
    ) -> dict[str, Any]:
        asked.append(linger)
        return await request(self, job, linger, awake)

    monkeypatch.setattr(pypool._Worker, "request", recording)

    async def body() -> None:
        pool = pypool.PythonWorkerPool(size=1, limit=8)
        try:
            await pool.run(job("result = 1"))
            assert asked == [pypool.LINGER_US if pool._spare_cpu else 0]
            asked.clear()
            sleeper = job("import time\ntime.sleep(0.2)")
            await asyncio.gather(*(pool.run(sleeper) for _ in range(4)))
            assert asked.count(0) >= 3  # at most the first, sent before the others
            asked.clear()
            pool._spare_cpu = False  # one CPU: a waiting worker would take the runner's
            await pool.run(job("result = 1"))
            assert asked == [0]
        finally:
            await pool.close()

    asyncio.run(body())


def _cpu_seconds(pid: int) -> float:
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0]) / 1e9


def test_a_worker_that_lingered_sleeps_once_the_chain_is_over() -> None:
    async def body() -> None:
        pool = pypool.PythonWorkerPool(size=1)
        try:
            for i in range(50):
                assert (await pool.run(job("result = x", inputs={"x": i})))["result"] == i
            [pid] = pool.pids
            before = _cpu_seconds(pid)
            await asyncio.sleep(0.5)
            # at most one wait of LINGER_US, never a worker spinning while idle
            assert _cpu_seconds(pid) - before < 0.1
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            assert state == "S"
        finally:
            await pool.close()

    asyncio.run(body())


def test_the_runner_polls_for_a_lone_jobs_reply_and_backs_off_when_polls_miss(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pypool, "runnable_tasks", lambda load: 1)
    pool = pypool.PythonWorkerPool(size=1)
    poll = pypool.REPLY_POLL_US / 1e6
    assert pool._awake_for() == poll
    pool._awake_answered(True)
    assert pool._awake_for() == poll
    pool._awake_answered(False)  # a miss: the next 2 jobs are awaited plainly
    assert [pool._awake_for() for _ in range(3)] == [0.0, 0.0, poll]
    pool._awake_answered(False)  # a second miss in a row: 4
    assert [pool._awake_for() for _ in range(5)] == [0.0] * 4 + [poll]
    for _ in range(10):
        pool._awake_answered(False)
    assert [pool._awake_for() for _ in range(65)] == [0.0] * 64 + [poll]  # at most 64
    pool._awake_answered(True)  # a catch: poll again at once
    assert pool._awake_for() == poll
    monkeypatch.setattr(pypool, "runnable_tasks", lambda load: pool._cpus + 1)
    assert pool._awake_for() == 0.0  # every CPU taken: the worker could not answer meanwhile
    monkeypatch.setattr(pypool, "runnable_tasks", lambda load: 1)
    assert [pool._awake_for() for _ in range(3)] == [0.0, 0.0, poll]  # backed off as after a miss


def test_a_chain_of_jobs_gets_its_replies_by_polling_on_a_quiet_machine(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pypool, "runnable_tasks", lambda load: 1)
    monkeypatch.setattr(pypool, "REPLY_POLL_US", 5_000_000)  # never gives up first
    caught: list[bool] = []
    answered = pypool.PythonWorkerPool._awake_answered

    def recording(self: Any, awake: bool) -> None:
        caught.append(awake)
        answered(self, awake)

    monkeypatch.setattr(pypool.PythonWorkerPool, "_awake_answered", recording)

    async def body() -> None:
        pool = pypool.PythonWorkerPool(size=2)
        pool._spare_cpu = True
        try:
            results = [
                (await pool.run(job("result = x + 1", inputs={"x": i})))["result"] for i in range(5)
            ]
            assert results == [1, 2, 3, 4, 5]
            big = await pool.run(job("result = 'b' * 3_000_000"))  # larger than the buffer
            assert len(big["result"]) == 3_000_000
        finally:
            await pool.close()

    asyncio.run(body())
    assert caught == [True] * 6
