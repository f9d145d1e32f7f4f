"""End to end: every process a run starts dies with it, whatever ends the run (--timeout, a
node's timeout, SIGINT, SIGTERM, kill -9 of dipeo itself, or the job ending while children it
started still run), and no job file is left in the temp folder.

Each test gives the processes it starts a unique `sleep` duration and looks for it in
/proc/*/cmdline, so that nothing else on the machine can be mistaken for a leftover."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.proc_kit import processes_with

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs Linux /proc"),
]

DIPEO = Path(sys.executable).with_name("dipeo")


def is_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def wait_until(check, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


# The children of these jobs sleep about 30 s: a run that ends well before that did not wait
# for them, however loaded the machine (timing the run closer than that made these tests flaky
# on a busy CI machine; how fast a kill lands is the benchmarks' business, not the tests').
NOT_WAITING = 15.0


@pytest.fixture
def mark() -> Iterator[str]:
    """A unique sleep duration (about 30 s); whatever still carries it afterwards is killed so
    that a failing test does not leave processes behind."""
    value = f"30.{random.randrange(10**8):08d}"
    yield value
    for pid in processes_with(value):
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


@pytest.fixture
def tmpdir_env(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    folder = tmp_path / "tmp"
    folder.mkdir()
    return folder, {**os.environ, "TMPDIR": str(folder)}


def write(name: str, text: str) -> str:
    Path(name).write_text(textwrap.dedent(text), encoding="utf-8")
    return name


def bash_node(label: str, code: str, **extra: object) -> str:
    props = "".join(f", {key}: {json.dumps(value)}" for key, value in extra.items())
    return (
        f"  - {{label: {label}, type: code_job, language: bash, code: {json.dumps(code)}{props}}}"
    )


def diagram(*nodes: str, name: str = "d.light.yaml") -> str:
    """Start -> each node -> End (the nodes run in parallel)."""
    labels = [line.split("label: ")[1].split(",")[0] for line in nodes]
    text = "nodes:\n  - {label: Start, type: start}\n" + "\n".join(nodes)
    text += "\n  - {label: End, type: endpoint}\nconnections:\n"
    for label in labels:
        text += f"  - {{from: Start, to: {label}}}\n  - {{from: {label}, to: End}}\n"
    Path(name).write_text(text, encoding="utf-8")
    return name


def spawning(mark: str, started: str = "") -> str:
    """A bash script that starts a child in the job's group, one that left it (setsid), then
    writes `started` (when given) and waits."""
    note = f"echo $$ > {started}; " if started else ""
    return f"setsid sleep {mark} & sleep {mark} & {note}sleep {mark}; wait"


def no_job_files(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if p.name.startswith("dipeo")]


# -- timeouts ------------------------------------------------------------------------------------


def test_run_timeout_kills_children_that_left_the_process_group(mark):
    path = diagram(bash_node("Nap", spawning(mark)))
    started = time.monotonic()
    out = subprocess.run(
        [str(DIPEO), "run", path, "--timeout", "2"], capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 124, out.stderr
    assert elapsed < NOT_WAITING, f"the run took {elapsed:.1f} s: it waited for the job's children"
    assert wait_until(lambda: not processes_with(mark), 5.0), processes_with(mark)


def test_node_timeout_kills_children_that_left_the_process_group(mark):
    path = diagram(bash_node("Nap", spawning(mark), timeout=1))
    started = time.monotonic()
    out = subprocess.run([str(DIPEO), "run", path], capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert out.returncode == 1, out.stderr
    assert "timed out" in out.stderr
    assert elapsed < NOT_WAITING, f"the run took {elapsed:.1f} s: it waited for the job's children"
    assert wait_until(lambda: not processes_with(mark), 5.0), processes_with(mark)


def test_kill_landing_while_jobs_start_reaches_their_children(mark, tmpdir_env):
    folder, env = tmpdir_env
    hook = (
        f"  - {{label: H, type: hook, hook_type: shell, command: bash,"
        f" args: ['-c', {json.dumps(spawning(mark))}], timeout: 0.02}}"
    )
    js = (
        "  - {label: J, type: code_job, language: javascript, timeout: 0.2, code: "
        + json.dumps(
            "const cp = await import('node:child_process');"
            f" cp.spawn('setsid', ['sleep', '{mark}'], {{stdio: 'inherit'}});"
            f" cp.spawn('sleep', ['{mark}'], {{stdio: 'inherit'}});"
            " await new Promise(r => setTimeout(r, 30000));"
        )
        + "}"
    )
    nodes = [
        bash_node(f"B{i}", spawning(mark), timeout=t)
        for i, t in enumerate((0.001, 0.003, 0.006, 0.01, 0.02, 0.05))
    ]
    path = diagram(*nodes, hook, js)
    started = time.monotonic()
    out = subprocess.run(
        [str(DIPEO), "run", path], capture_output=True, text=True, timeout=60, env=env
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 1, out.stderr
    assert elapsed < NOT_WAITING, f"the run took {elapsed:.1f} s: it waited for the job's children"
    assert wait_until(lambda: not processes_with(mark), 5.0), processes_with(mark)
    assert no_job_files(folder) == []


# -- signals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_kills_every_process_of_the_run(sig, mark, tmp_path):
    started = tmp_path / "started"
    path = diagram(bash_node("Nap", spawning(mark, str(started))))
    proc = subprocess.Popen(
        [str(DIPEO), "run", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert wait_until(started.exists, 20), "the bash job never started"
        assert wait_until(lambda: len(processes_with(mark)) == 3, 5)
        proc.send_signal(sig)
        began = time.monotonic()
        assert proc.wait(timeout=20) == 130
        assert time.monotonic() - began < 2
        assert wait_until(lambda: not processes_with(mark), 5.0), processes_with(mark)
    finally:
        proc.kill()
        proc.wait()


# -- kill -9 of dipeo ----------------------------------------------------------------------------


def test_kill_9_of_dipeo_ends_workers_jobs_and_their_children(mark, tmp_path, tmpdir_env):
    folder, env = tmpdir_env
    py_started = tmp_path / "py-started"
    bash_started = tmp_path / "bash-started"
    python = (
        "  - {label: Py, type: code_job, language: python, code: "
        + json.dumps(
            "import os, subprocess, time\n"
            f"subprocess.Popen(['sleep', '{mark}'])\n"
            f"subprocess.Popen(['setsid', 'sleep', '{mark}'])\n"
            f"open({str(py_started)!r}, 'w').write(str(os.getpid()))\n"
            "time.sleep(30)\n"
        )
        + "}"
    )
    path = diagram(python, bash_node("Sh", spawning(mark, str(bash_started))))
    proc = subprocess.Popen(
        [str(DIPEO), "run", path], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        assert wait_until(lambda: py_started.exists() and bash_started.exists(), 20)
        assert wait_until(lambda: len(processes_with(mark)) == 5, 5), processes_with(mark)
        worker = int(py_started.read_text())
        bash = int(bash_started.read_text())
        proc.kill()
        proc.wait()
        assert wait_until(lambda: not processes_with(mark), 5.0), processes_with(mark)
        assert wait_until(lambda: is_gone(worker) and is_gone(bash), 1.0)
        assert wait_until(lambda: no_job_files(folder) == [], 1.0), no_job_files(folder)
    finally:
        proc.kill()
        proc.wait()


# -- a job that ends while its children run ------------------------------------------------------


def test_children_left_holding_a_jobs_pipes_are_killed_when_it_ends(mark):
    path = diagram(bash_node("Quick", f"setsid sleep {mark} & sleep {mark} & echo done"))
    started = time.monotonic()
    out = subprocess.run(
        [str(DIPEO), "run", path, "--json"], capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - started
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["result"] == "done"
    assert elapsed < NOT_WAITING, f"the run took {elapsed:.1f} s: it waited for the job's children"
    assert wait_until(lambda: not processes_with(mark), 5.0), processes_with(mark)


def test_a_normal_run_leaves_no_process_and_no_file_behind(mark, tmpdir_env):
    folder, env = tmpdir_env
    python = "  - {label: Py, type: code_job, language: python, code: 'result = 1'}"
    background = bash_node("Bg", f"setsid sleep {mark} >/dev/null 2>&1 & echo ok")
    path = diagram(python, background, bash_node("Sh", "echo hi"))
    proc = subprocess.Popen(
        [str(DIPEO), "run", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    # dipeo ended the daemon the job left behind before it exited
    assert processes_with(mark) == []
    assert no_job_files(folder) == []

    def watchdog_gone() -> bool:  # its arguments name dipeo's pid
        return not set(processes_with(f"\0{proc.pid}-")) & set(processes_with("reaper.py"))

    assert wait_until(watchdog_gone, 1.0)
