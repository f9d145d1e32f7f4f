"""Controls from anywhere: `dipeo pause/resume/abort/skip` and `dipeo show --follow` against a
real `dipeo run` in another process on the same history, plus the store rules that keep a
control request from waiting for (or being applied to) a run that has ended."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dipeo_cli import events as ev
from dipeo_cli.errors import ControlError, ExecutionNotFoundError
from dipeo_cli.paths import default_db_path
from dipeo_cli.state import ExecutionState, ExecutionStatus, NodeExecutionStatus, new_state
from dipeo_cli.store import open_store
from tests.test_e2e import DIPEO, dipeo, run_in_terminal, terminal_env, write

# A waits until the test opens its gate (creates the file `gate`), so every step happens while
# the run is where the test wants it, however slowly processes start on a busy machine.
SLOW = """\
nodes:
  - {label: Start, type: start}
  - {label: A, type: code_job, language: bash, code: "while [ ! -e GATE ]; do sleep 0.02; done; echo a"}
  - {label: B, type: code_job, language: python, code: "result = 'b'"}
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: A}
  - {from: A, to: B}
  - {from: B, to: End}
"""

SLEEPER = SLOW.replace("while [ ! -e GATE ]; do sleep 0.02; done; echo a", "sleep 30")
FAILING = SLOW.replace("echo a", "exit 3")


def gated(text: str) -> str:
    """The diagram text with its gate at an absolute path in this test's folder."""
    return text.replace("GATE", str(Path("gate").resolve()))


def open_gate() -> None:
    Path("gate").touch()


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def no_process_left() -> Iterator[None]:
    """A failing test leaves no run waiting at its gate, nor its follower."""
    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def start_run(diagram: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [str(DIPEO), "run", diagram],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    STARTED.append(proc)
    return proc


def follow_latest() -> subprocess.Popen:
    """`dipeo show latest --follow`, its progress into the file `follow.err`; returns once it
    is following (it printed its first line)."""
    with Path("follow.err").open("w") as err:
        proc = subprocess.Popen(
            [str(DIPEO), "show", "latest", "--follow"],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    STARTED.append(proc)
    deadline = time.monotonic() + 20
    while "started" not in Path("follow.err").read_text():
        assert time.monotonic() < deadline and proc.poll() is None, "the follower never started"
        time.sleep(0.05)
    return proc


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    """The follower's exit: its stdout, and its progress lines."""
    out, _ = proc.communicate(timeout=20)
    return out, Path("follow.err").read_text()


def read(execution: str = "latest") -> ExecutionState | None:
    async def main() -> ExecutionState | None:
        async with await open_store(default_db_path()) as store:
            try:
                return await store.find_execution(execution)
            except ExecutionNotFoundError:
                return None

    return asyncio.run(main())


def node(state: ExecutionState, label: str) -> Any:
    return next(n for n in state.node_states.values() if n.label == label)


def wait_until_running(label: str, timeout: float = 20) -> ExecutionState:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = read()
        if state is not None and node(state, label).status is NodeExecutionStatus.RUNNING:
            return state
        time.sleep(0.05)
    raise AssertionError(f"node {label} never ran")


@pytest.mark.e2e
def test_pause_starts_no_node_until_resume_and_a_follower_says_so() -> None:
    write("slow.light.yaml", gated(SLOW))
    run = start_run("slow.light.yaml")
    state = wait_until_running("A")
    follower = follow_latest()
    out = dipeo("pause", state.id[:8])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"paused execution {state.id}"
    assert dipeo("pause", "latest").stdout.strip() == f"execution {state.id} was already paused"
    open_gate()  # the running node finishes; then nothing may start
    deadline = time.monotonic() + 10
    while node(read(), "A").status is not NodeExecutionStatus.COMPLETED:  # type: ignore[arg-type]
        assert time.monotonic() < deadline
        time.sleep(0.05)
    held = read()
    assert held is not None and held.status is ExecutionStatus.PAUSED
    for _ in range(10):  # a second more: still nothing starts
        assert node(read(), "B").status is NodeExecutionStatus.PENDING  # type: ignore[arg-type]
        time.sleep(0.1)
    shown = dipeo("show", "latest")
    assert "PAUSED" in shown.stdout and f"dipeo resume {state.id}" in shown.stdout
    resumed_at = time.time()
    out = dipeo("resume", "latest")
    assert out.returncode == 0 and out.stdout.strip() == f"resumed execution {state.id}"
    _, err = run.communicate(timeout=20)
    assert run.returncode == 0, err
    done = read()
    assert done is not None and done.status is ExecutionStatus.COMPLETED
    b_started = node(done, "B").started_at
    assert b_started is not None and _epoch(b_started) >= resumed_at - 0.5
    # the follower printed the run as `dipeo run` does, pause and resume included
    f_out, f_err = finish(follower)
    assert follower.returncode == 0, f_err
    lines = f_err.splitlines()
    assert any(line.endswith(f"execution {state.id} PAUSED") for line in lines), f_err
    assert any(line.endswith(f"execution {state.id} RESUMED") for line in lines), f_err
    assert "COMPLETED B (code_job)" in f_err and "\x1b" not in f_err
    assert "COMPLETED" in f_out and state.id in f_out


@pytest.mark.e2e
def test_abort_with_a_reason_stops_the_run_with_130_and_the_follower_too() -> None:
    write("sleeper.light.yaml", SLEEPER)
    run = start_run("sleeper.light.yaml")
    state = wait_until_running("A")
    follower = follow_latest()
    out = dipeo("abort", "latest", "--reason", "x")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"aborted execution {state.id}"
    run.communicate(timeout=20)
    assert run.returncode == 130
    aborted = read()
    assert aborted is not None and aborted.status is ExecutionStatus.ABORTED
    assert aborted.error == "x"
    f_out, f_err = finish(follower)
    assert follower.returncode == 130, f_err
    assert "ABORTED" in f_out and "x" in f_out


@pytest.mark.e2e
def test_skip_a_node_by_label_and_the_refusals() -> None:
    write("slow.light.yaml", gated(SLOW))
    run = start_run("slow.light.yaml")
    state = wait_until_running("A")
    refused = dipeo("skip", "latest", "A")
    assert refused.returncode == 2 and "'A' is running" in refused.stderr
    refused = dipeo("skip", "latest", "Start")
    assert refused.returncode == 2 and "'Start' already ran (COMPLETED)" in refused.stderr
    refused = dipeo("skip", "latest", "Nope")
    assert refused.returncode == 2 and "no node 'Nope'" in refused.stderr
    assert "Start, A, B, End" in refused.stderr
    out = dipeo("skip", "latest", "B")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"skipped node 'B' of execution {state.id}"
    open_gate()
    run.communicate(timeout=20)
    done = read()
    assert done is not None and not done.is_active
    assert node(done, "B").status is NodeExecutionStatus.SKIPPED
    assert node(done, "B").skip_reason == "skipped on request"
    for args in (("resume", state.id[:6]), ("skip", state.id, "End")):
        out = dipeo(*args)
        assert out.returncode == 2, args
        assert "has already finished" in out.stderr and "Traceback" not in out.stderr
    out = dipeo("pause", "ffffffffff")
    assert out.returncode == 2 and "no execution matches" in out.stderr


def test_nobody_running_the_execution_exits_2_and_the_request_is_withdrawn() -> None:
    """A RUNNING execution whose process (this test) is alive but runs no executor for it:
    nobody takes the request; it is withdrawn, so nothing applies it later."""
    eid = "0b0dead0" * 4

    async def create() -> None:
        async with await open_store(default_db_path()) as store:
            state = new_state(
                ev.ExecutionStarted(eid, "x.yaml", {}, (ev.NodeInfo("n1", "N", "start"),), 1.0)
            )
            await store.create_execution(state)

    asyncio.run(create())
    started = time.monotonic()
    out = dipeo("pause", eid[:10], "--wait", "0.5", "--db", str(default_db_path()))
    assert out.returncode == 2
    assert f"execution {eid} is not running anywhere" in out.stderr
    assert "withdrawn" in out.stderr
    assert time.monotonic() - started < 10

    async def pending() -> list[Any]:
        async with await open_store(default_db_path()) as store:
            rows = await store.fetch("SELECT outcome FROM controls WHERE execution_id = ?", (eid,))
            return [rows, await store.take_controls([eid])]

    rows, taken = asyncio.run(pending())
    assert taken == []  # a later executor for this id would find nothing to apply
    assert rows[0][0].startswith("withdrawn: no process took it within 0.5 s")


def test_requests_wait_only_for_active_executions(tmp_path: Path) -> None:
    """request_control refuses an unknown or finished execution; a request still pending when
    the execution ends is settled with it; a taken request cannot be withdrawn, a withdrawn one
    cannot be taken."""

    async def main() -> None:
        async with await open_store(tmp_path / "h.db") as store:
            with pytest.raises(ExecutionNotFoundError):
                await store.request_control("nope", "pause")
            started = ev.ExecutionStarted("e1", None, {}, (ev.NodeInfo("n1", "N", "start"),), 1.0)
            state = new_state(started)
            store.record(state, started)
            first = await store.request_control("e1", "pause")
            second = await store.request_control("e1", "resume")
            assert [c.id for c in await store.take_controls(["e1"])] == [first, second]
            assert not await store.withdraw_control(first)
            third = await store.request_control("e1", "abort")
            assert await store.withdraw_control(third)
            assert await store.take_controls(["e1"]) == []
            assert (await store.control_outcome(third))[0] is None
            fourth = await store.request_control("e1", "skip_node", node_id="n1")
            finished = ev.ExecutionFinished(ExecutionStatus.COMPLETED, None, 2.0)
            from dipeo_cli.state import apply_event

            apply_event(state, finished)
            store.record(state, finished)
            await store.flush()
            taken_at, outcome = await store.control_outcome(fourth)
            assert taken_at is None and outcome is not None
            assert outcome.startswith("error: the execution finished before")
            assert await store.take_controls(["e1"]) == []
            with pytest.raises(ControlError, match="already finished"):
                await store.request_control("e1", "pause")

    asyncio.run(main())


@pytest.mark.e2e
def test_follow_exits_with_the_run_exit_code_when_it_fails() -> None:
    write("failing.light.yaml", gated(FAILING))
    run = start_run("failing.light.yaml")
    wait_until_running("A")
    follower = follow_latest()
    open_gate()
    run.communicate(timeout=20)
    assert run.returncode == 1
    f_out, f_err = finish(follower)
    assert follower.returncode == 1, f_err
    assert "FAILED    A (code_job)" in f_err
    assert "FAILED" in f_out
    again = dipeo("show", "latest", "--follow")  # finished: the summary at once
    assert again.returncode == 1 and again.stdout == f_out


@pytest.mark.e2e
def test_follow_ends_as_failed_interrupted_when_the_run_process_dies() -> None:
    write("sleeper.light.yaml", SLEEPER)
    run = start_run("sleeper.light.yaml")
    wait_until_running("A")
    follower = follow_latest()
    run.kill()
    run.communicate(timeout=10)
    f_out, f_err = finish(follower)
    assert follower.returncode == 1, f_err
    assert "FAILED" in f_out and "interrupted" in f_out


@pytest.mark.e2e
def test_follow_in_a_terminal_shows_the_live_table() -> None:
    write("slow.light.yaml", gated(SLOW))
    run = start_run("slow.light.yaml")
    state = wait_until_running("A")

    def let_it_run(screen: bytes) -> None:
        if b"RUNNING" in screen:  # the table is drawn: let the run go on
            open_gate()

    code, screen = run_in_terminal(
        ["show", "latest", "--follow"], terminal_env(), watch=let_it_run, poll=0.1
    )
    run.communicate(timeout=20)
    assert code == 0, screen
    assert "\x1b[" in screen  # redrawn, as `dipeo run` draws it on a terminal
    for text in ("code_job", "RUNNING", "COMPLETED", "4/4 nodes done", state.id):
        assert text in screen, text
    assert "execution id:" in screen  # then the summary


def _epoch(text: str) -> float:
    from dipeo_cli.state import parse_iso

    return parse_iso(text)


def test_show_json_follow_prints_the_final_state(tmp_path: Path) -> None:
    """A finished execution: `--follow --json` prints the state at once, exit code included."""
    open_gate()
    out = dipeo("run", write("slow.light.yaml", gated(SLOW)), "--quiet")
    assert out.returncode == 0, out.stderr
    shown = dipeo("show", "latest", "--follow", "--json")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["status"] == "COMPLETED"
    assert dipeo("show", "latest", "--follow", "--node", "A").returncode == 2


def test_the_live_header_and_plain_lines_say_paused() -> None:
    import io

    from dipeo_cli import render
    from dipeo_cli.state import apply_event
    from tests.test_render import FAILED_RUN, NODES, T, build, live_console, render_live

    state = build(NODES, FAILED_RUN[:5])
    paused = ev.ExecutionPaused(T + 1, "lunch")
    apply_event(state, paused)
    progress = render.LiveProgress(live_console(io.StringIO(), width=120), clock=lambda: T + 2)
    progress._state = state
    header = render_live(progress).splitlines()[0]
    assert "PAUSED" in header and "no node starts until resumed" in header
    out = io.StringIO()
    plain = render.PlainProgress(out)
    plain.update(state, paused)
    resumed = ev.ExecutionResumed(T + 3)
    apply_event(state, resumed)
    plain.update(state, resumed)
    lines = [line.split(" ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == [f"execution {state.id} PAUSED: lunch", f"execution {state.id} RESUMED"]
