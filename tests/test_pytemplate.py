"""The python pool's template started early (`dipeo run` at launch), with real processes."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from dipeo_cli import pytemplate
from dipeo_cli.pypool import PythonWorkerPool
from tests.test_pyworker import gone, job


def templates_of(pid: int) -> list[int]:
    """The template processes started for the process `pid` (their command line names it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[1:4] == [b"-m", b"dipeo_cli.pyzygote", str(pid).encode()]:
            found.append(int(entry.name))
    return found


def settle(check: Any, seconds: float = 5.0, poll: float = 0.02) -> bool:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(poll)
    return True


@pytest.fixture(autouse=True)
def no_early_template_left() -> Any:
    yield
    left = pytemplate.take_early("no python")  # ends one a test did not use
    assert left is None


def test_a_diagram_file_that_mentions_code_job_wants_a_template(tmp_path: Path) -> None:
    python = tmp_path / "flow.light.yaml"
    python.write_text("nodes:\n  - {label: J, type: code_job, code: 'result = 1'}\n")
    plain = tmp_path / "plain.light.yaml"
    plain.write_text("nodes:\n  - {label: Start, type: start}\n")
    native = tmp_path / "flow.json"
    native.write_text('{"nodes": [{"type": "code_job"}]}')
    notes = tmp_path / "notes.txt"
    notes.write_text("code_job")

    assert pytemplate.wanted_by(["--quiet", str(python)])
    assert pytemplate.wanted_by(["-i", "x=1", str(native)])
    assert not pytemplate.wanted_by([str(plain), "--quiet"])
    assert not pytemplate.wanted_by([str(notes), str(tmp_path / "missing.yaml"), "-"])
    assert not pytemplate.wanted_by([str(tmp_path)])  # a folder named like nothing above


def test_the_pool_takes_the_template_started_early() -> None:
    pytemplate.start_early()
    assert settle(lambda: len(templates_of(os.getpid())) == 1)
    (early,) = templates_of(os.getpid())

    async def go() -> Any:
        pool = PythonWorkerPool(size=1)
        try:
            return await pool.run(job("import os\nresult = os.getppid()"))
        finally:
            await pool.close()

    reply = asyncio.run(go())
    assert reply["ok"] and reply["result"] == early  # its worker was forked from it
    assert gone(early)  # and the pool's close ended it
    assert templates_of(os.getpid()) == []


def test_a_pool_of_another_python_ends_the_early_template(tmp_path: Path) -> None:
    other = tmp_path / "python3"
    other.symlink_to(sys.executable)
    pytemplate.start_early()
    assert settle(lambda: len(templates_of(os.getpid())) == 1)
    (early,) = templates_of(os.getpid())

    async def go() -> Any:
        pool = PythonWorkerPool(size=1, python=str(other))
        try:
            return await pool.run(job("import os\nresult = os.getppid()"))
        finally:
            await pool.close()

    reply = asyncio.run(go())
    assert reply["ok"] and reply["result"] != early
    assert gone(early)


@pytest.mark.parametrize(
    ("code_job", "exit_code"),
    [
        ("{label: J, type: code_job, language: bash, code: 'echo hi'}", 0),  # no python job
        ("{label: J, type: code_job, code: 'result = (', language: python}", 2),  # invalid
    ],
)
def test_a_template_started_for_nothing_ends_with_dipeo(
    tmp_path: Path, code_job: str, exit_code: int
) -> None:
    diagram = tmp_path / "flow.light.yaml"
    diagram.write_text(
        "version: light\nnodes:\n  - {label: Start, type: start}\n"
        f"  - {code_job}\nconnections:\n  - {{from: Start, to: J}}\n"
    )
    env = {**os.environ, "DIPEO_HOME": str(tmp_path / "home"), "NO_COLOR": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "dipeo_cli", "run", str(diagram), "--quiet"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # started at launch (before the diagram is read), and seen while dipeo imports the rest
    assert settle(lambda: templates_of(process.pid) != [], poll=0.005)
    _, err = process.communicate(timeout=60)
    assert process.returncode == exit_code, err.decode()
    assert settle(lambda: templates_of(process.pid) == [])
