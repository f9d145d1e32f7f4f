"""The python worker pool, driven directly with real worker processes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dipeo_cli.errors import NodeError
from dipeo_cli.pypool import PythonWorkerPool


def job(code: str, **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "inputs": extra.pop("inputs", {}),
        "variables": extra.pop("variables", {}),
        "function_name": extra.pop("function_name", "main"),
        "cwd": extra.pop("cwd", os.getcwd()),
        "filename": "<code_job Test>",
        **extra,
    }


def with_pool(body: Callable[[PythonWorkerPool], Awaitable[Any]], size: int = 1) -> Any:
    async def go() -> Any:
        pool = PythonWorkerPool(size=size)
        try:
            return await body(pool)
        finally:
            await pool.close()

    return asyncio.run(go())


def gone(pid: int) -> bool:
    """True when the process no longer exists at all (killed and reaped: not even a zombie)."""
    return not Path(f"/proc/{pid}").exists()


def dead(pid: int) -> bool:
    """True when the process is gone or a zombie (an orphan waits for init to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except FileNotFoundError:
        return True


def test_runs_code_with_inputs_and_returns_result() -> None:
    reply = with_pool(lambda pool: pool.run(job("result = x * 2", inputs={"x": 21})))
    assert reply["ok"] and reply["result"] == 42


def test_captures_python_output_and_keeps_c_level_writes_off_the_protocol() -> None:
    code = (
        "import os, sys, subprocess\n"
        "print('to stdout')\n"
        "print('to stderr', file=sys.stderr)\n"
        "os.write(1, b'raw fd 1 write\\n')\n"
        "subprocess.run(['echo', 'from a child'])\n"
        "result = 'done'\n"
    )
    reply = with_pool(lambda pool: pool.run(job(code)))
    assert reply["ok"] and reply["result"] == "done"
    assert reply["stdout"] == "to stdout\n"
    assert reply["stderr"] == "to stderr\n"


def test_output_capture_is_truncated() -> None:
    reply = with_pool(lambda pool: pool.run(job("print('x' * 200_000)\nresult = 1")))
    assert len(reply["stdout"]) < 70_000
    assert "more characters not kept" in reply["stdout"]


def test_defined_function_is_called_with_inputs() -> None:
    code = "def main(inputs):\n    return inputs['a'] + variables['b']\n"
    reply = with_pool(lambda pool: pool.run(job(code, inputs={"a": 1}, variables={"b": 2})))
    assert reply["result"] == 3


def test_function_name_selects_the_function_and_async_functions_are_awaited() -> None:
    code = "import asyncio\nasync def go(inputs):\n    await asyncio.sleep(0)\n    return 'async'\n"
    reply = with_pool(lambda pool: pool.run(job(code, function_name="go")))
    assert reply["result"] == "async"


def test_top_level_await_works() -> None:
    reply = with_pool(
        lambda pool: pool.run(job("import asyncio\nawait asyncio.sleep(0)\nresult = 5"))
    )
    assert reply["result"] == 5


def test_top_level_return_runs_the_code_as_a_function_body_like_dipeo() -> None:
    code = "a += 1\nif a > 1:\n    return {'a': a}\nresult = 'unreached'\n"
    reply = with_pool(lambda pool: pool.run(job(code, inputs={"a": 1})))
    assert reply["result"] == {"a": 2}
    reply = with_pool(lambda pool: pool.run(job("if False:\n    return 1\nresult = 'fallback'")))
    assert reply["result"] == "fallback"


def test_user_exception_names_the_type_message_and_line_in_the_users_code() -> None:
    code = "x = 1\ndef f():\n    return 1 / 0\nresult = f()\n"
    reply = with_pool(lambda pool: pool.run(job(code)))
    assert not reply["ok"]
    assert reply["error"] == "ZeroDivisionError: division by zero (line 3: return 1 / 0)"
    assert "pyworker" not in reply["error"]


def test_syntax_error_is_reported_with_its_line() -> None:
    reply = with_pool(lambda pool: pool.run(job("x = 1\ny = (\n")))
    assert not reply["ok"] and reply["error"].startswith("SyntaxError:")
    assert "line 2" in reply["error"]


def test_non_json_result_is_converted_with_str() -> None:
    code = "class Thing:\n    def __str__(self):\n        return 'thing'\nresult = {'t': Thing(), 's': {1}}"
    reply = with_pool(lambda pool: pool.run(job(code)))
    assert reply["result"] == {"t": "thing", "s": [1]}
    assert reply["converted"] is True


def test_each_job_gets_a_fresh_namespace_in_a_reused_worker() -> None:
    async def body(pool: PythonWorkerPool) -> None:
        first = await pool.run(job("leftover = 1\nresult = 1"))
        pids = pool.pids
        second = await pool.run(job("result = 'leftover' in globals()"))
        assert first["result"] == 1 and second["result"] is False
        assert pool.pids == pids

    with_pool(body)


def test_file_path_module_function_is_called(tmp_path: Path) -> None:
    script = tmp_path / "tool.py"
    script.write_text("def shout(inputs):\n    return inputs['text'].upper()\n")
    reply = with_pool(
        lambda pool: pool.run(
            {
                "file_path": str(script),
                "function_name": "shout",
                "inputs": {"text": "hi"},
                "cwd": str(tmp_path),
            }
        )
    )
    assert reply["result"] == "HI"
    missing = with_pool(lambda pool: pool.run({"file_path": str(script), "function_name": "nope"}))
    assert missing["error"] == f"function 'nope' not found in {script} (functions defined: shout)"


def test_timeout_kills_the_worker_and_a_new_one_replaces_it() -> None:
    async def body(pool: PythonWorkerPool) -> None:
        await pool.run(job("result = 1"))
        [old_pid] = pool.pids
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(pool.run(job("import time\ntime.sleep(30)")), 0.3)
        assert pool.pids == []
        reply = await pool.run(job("result = 'fresh'"))
        assert reply["result"] == "fresh"
        [new_pid] = pool.pids
        assert new_pid != old_pid
        await asyncio.sleep(0.05)
        assert gone(old_pid)

    with_pool(body)


def test_cancellation_also_kills_processes_the_code_started(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    code = (
        "import subprocess, time\n"
        "child = subprocess.Popen(['sleep', '30'])\n"
        f"open({str(marker)!r}, 'w').write(str(child.pid))\n"
        "time.sleep(30)\n"
    )

    async def body(pool: PythonWorkerPool) -> int:
        task = asyncio.ensure_future(pool.run(job(code)))
        for _ in range(200):
            if marker.exists() and marker.read_text():
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return int(marker.read_text())

    child = with_pool(body)
    deadline = time.monotonic() + 2
    while not dead(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert dead(child)


def test_a_crashing_worker_fails_only_its_job() -> None:
    async def body(pool: PythonWorkerPool) -> None:
        with pytest.raises(NodeError, match=r"^python worker died \(exit code 3\)$"):
            await pool.run(job("import os\nos._exit(3)"))
        with pytest.raises(NodeError, match=r"python worker died \(exit code -11, SIGSEGV\)"):
            await pool.run(job("import ctypes\nctypes.string_at(0)"))
        assert (await pool.run(job("result = 'still fine'")))["result"] == "still fine"

    with_pool(body)


def test_many_concurrent_jobs_queue_on_a_small_pool() -> None:
    code = "import os, time\ntime.sleep(0.15)\nresult = os.getpid()"

    async def body(pool: PythonWorkerPool) -> tuple[list[Any], float]:
        started = time.perf_counter()
        replies = await asyncio.gather(*(pool.run(job(code, inputs={"i": i})) for i in range(8)))
        return replies, time.perf_counter() - started

    replies, elapsed = with_pool(body, size=2)
    assert all(r["ok"] for r in replies)
    assert len({r["result"] for r in replies}) == 2  # two workers served all eight jobs
    assert 0.6 <= elapsed < 3  # four rounds of 0.15 s, not one


def test_close_ends_and_reaps_every_worker() -> None:
    async def body() -> list[int]:
        pool = PythonWorkerPool(size=2)
        await asyncio.gather(
            pool.run(job("import time\ntime.sleep(0.1)")), pool.run(job("result = 1"))
        )
        pids = pool.pids
        assert len(pids) == 2
        await pool.close()
        with pytest.raises(NodeError, match="closed"):
            await pool.run(job("result = 1"))
        return pids

    for pid in asyncio.run(body()):
        assert gone(pid)


def test_close_kills_a_worker_that_does_not_exit() -> None:
    async def body() -> int:
        pool = PythonWorkerPool(size=1)
        task = asyncio.ensure_future(pool.run(job("import time\ntime.sleep(30)")))
        for _ in range(250):
            await asyncio.sleep(0.02)
            if pool.pids:
                break
        await asyncio.sleep(0.1)
        [pid] = pool.pids
        await pool.close(grace=0.1)
        with pytest.raises(NodeError, match="python worker died"):
            await task
        return pid

    assert gone(asyncio.run(body()))


def test_waiting_jobs_overlap_on_workers_forked_on_demand_and_the_pool_shrinks_back() -> None:
    code = "import os, time\ntime.sleep(0.4)\nresult = os.getpid()"

    async def body() -> None:
        pool = PythonWorkerPool(size=1, limit=12, idle_seconds=0.2)
        try:
            await pool.run(job("result = 1"))  # the template is warm
            started = time.perf_counter()
            replies = await asyncio.gather(*(pool.run(job(code)) for _ in range(12)))
            elapsed = time.perf_counter() - started
            assert len({r["result"] for r in replies}) == 12  # twelve workers at once
            assert elapsed < 12 * 0.4 / 2  # overlapped, not one after another
            grown = pool.pids
            for _ in range(100):
                await asyncio.sleep(0.05)
                if len(pool.pids) == 1:
                    break
            assert len(pool.pids) == 1 and pool.pids[0] in grown
            await asyncio.sleep(0.1)
            assert all(gone(pid) for pid in grown if pid not in pool.pids)
        finally:
            await pool.close()

    asyncio.run(body())


def test_a_job_reads_an_empty_stdin_and_holds_no_descriptor_of_the_pool() -> None:
    # A forked worker keeps the template's /dev/null as stdin: never the template's request
    # socket, nor any other descriptor of the pool but its own protocol socket and stderr.
    code = (
        "import os, sys\n"
        "others = []\n"
        "for fd in sorted(int(fd) for fd in os.listdir('/proc/self/fd') if int(fd) > 2):\n"
        "    try:\n"
        "        others.append(os.readlink(f'/proc/self/fd/{fd}').split(':')[0])\n"
        "    except FileNotFoundError:\n"
        "        pass  # the listing's own descriptor, closed since\n"
        "result = [sys.stdin.read(), os.readlink('/proc/self/fd/0'), others]"
    )

    async def body(pool: PythonWorkerPool) -> Any:
        await pool.run(job("result = 1"))  # a job forks its worker from the template
        pool._idle.clear()  # the next job forks a new worker
        return (await pool.run(job(code)))["result"]

    text, stdin, others = with_pool(body)
    assert text == "" and stdin == "/dev/null"
    assert sorted(others) == ["/proc/loadavg", "socket"], others  # and its socket to the runner


def test_by_default_workers_beyond_the_warm_ones_end_soon_after_a_burst() -> None:
    # A burst's extra workers must not wait for the run's end to exit (the run waits for
    # every exit then), nor end before a loop's next burst, a moment later, can reuse them.
    async def body() -> None:
        pool = PythonWorkerPool(size=1, limit=4)
        try:
            # Every job of a burst ends at the same moment, however long its fork took.
            burst = "import os, time\ntime.sleep(max(0.0, end - time.time()))\nresult = os.getpid()"

            def ending_at(end: float) -> list[Any]:
                return [pool.run(job(burst, inputs={"end": end})) for _ in range(4)]

            first = await asyncio.gather(*ending_at(time.time() + 0.5))
            again = await asyncio.gather(*ending_at(time.time() + 0.2))
            assert {r["result"] for r in again} == {r["result"] for r in first}  # reused
            for _ in range(50):
                await asyncio.sleep(0.02)
                if len(pool.pids) == 1:
                    break
            assert len(pool.pids) == 1  # well under a second after the burst
        finally:
            await pool.close()

    asyncio.run(body())


def test_a_timeout_in_a_grown_pool_kills_only_that_job() -> None:
    async def body() -> None:
        pool = PythonWorkerPool(size=1, limit=4)
        try:
            slow = asyncio.ensure_future(pool.run(job("import time\ntime.sleep(30)")))
            others = [
                asyncio.ensure_future(pool.run(job("import time\ntime.sleep(0.5)\nresult = 7")))
                for _ in range(3)
            ]
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(slow, 0.3)
            assert [(await o)["result"] for o in others] == [7, 7, 7]
            with pytest.raises(NodeError, match=r"exit code 5"):
                await pool.run(job("import os\nos._exit(5)"))
            assert (await pool.run(job("result = 'ok'")))["result"] == "ok"
        finally:
            await pool.close()

    asyncio.run(body())


def test_compiled_code_is_cached_per_source_and_a_changed_source_compiles_anew() -> None:
    from dipeo_cli import pyworker

    pyworker._code_cache.clear()
    first = pyworker._compiled("result = 1", "<code_job A>")
    assert pyworker._compiled("result = 1", "<code_job A>") is first  # reused, not recompiled
    changed = pyworker._compiled("result = 2", "<code_job A>")
    assert changed is not first
    namespace: dict[str, Any] = {}
    exec(changed, namespace)
    assert namespace["result"] == 2
    # a top-level return is remembered as "run as a function body", and still runs so twice
    assert pyworker._compiled("return 5", "<code_job B>") is None
    assert pyworker._compiled("return 5", "<code_job B>") is None
    with pytest.raises(SyntaxError):
        pyworker._compiled("def (", "<code_job C>")
    assert ("def (", "<code_job C>") not in pyworker._code_cache


def test_a_reused_worker_runs_the_new_source_of_a_node_whose_code_changed() -> None:
    async def body(pool: PythonWorkerPool) -> list[Any]:
        results = []
        for code in ("result = 'old'", "result = 'new'", "return 'body'", "return 'body'"):
            results.append((await pool.run(job(code)))["result"])
        return results

    assert with_pool(body) == ["old", "new", "body", "body"]


def test_a_hundred_waiting_jobs_run_at_the_same_time() -> None:
    # Each job writes when it started and ended; all must have started before any ended. The
    # sleep is long enough for a hundred forks on a loaded machine, and no wall time is asserted.
    code = "import os, time\nstarted = time.time()\ntime.sleep(2)\nresult = [started, time.time(), os.getpid()]"

    async def body() -> None:
        pool = PythonWorkerPool(size=1, limit=100)
        try:
            replies = await asyncio.gather(*(pool.run(job(code)) for _ in range(100)))
        finally:
            await pool.close()
        spans = [r["result"] for r in replies]
        assert len({pid for _, _, pid in spans}) == 100
        assert max(start for start, _, _ in spans) < min(end for _, end, _ in spans)

    asyncio.run(body())
