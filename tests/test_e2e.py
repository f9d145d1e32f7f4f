"""End to end: the installed `dipeo` command in real subprocesses, a real pseudo-terminal,
signals, kill -9, and several processes sharing one history database."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
DIPEO = Path(sys.executable).with_name("dipeo")


def dipeo(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(DIPEO), *args], capture_output=True, text=True, timeout=60, **kwargs)


def write(name: str, text: str) -> str:
    Path(name).write_text(textwrap.dedent(text), encoding="utf-8")
    return name


def terminal_env(columns: int = 120, *, color: bool = True) -> dict[str, str]:
    """The environment of a colour terminal `columns` wide (NO_COLOR set when not `color`)."""
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": str(columns), "LINES": "40"}
    env.pop("NO_COLOR", None)
    if not color:
        env["NO_COLOR"] = "1"
    return env


def run_in_terminal(
    args: list[str],
    env: dict[str, str],
    *,
    watch: Callable[[bytes], bytes | None] | None = None,
    poll: float = 0.5,
    timeout: float = 30,
) -> tuple[int, str]:
    """Run the installed dipeo with a pseudo-terminal as its stdin, stdout and stderr; its exit
    code and everything it wrote. `watch` sees the output so far before each read; what it
    returns, if anything, is typed into the terminal."""
    pid, fd = pty.fork()
    if pid == 0:  # child: the pty is its terminal
        os.execve(str(DIPEO), [str(DIPEO), *args], env)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        typed = watch(b"".join(chunks)) if watch is not None else None
        if typed:
            os.write(fd, typed)
        ready, _, _ = select.select([fd], [], [], poll)
        if ready:
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode("utf-8", "replace")


SLEEPER = """\
nodes:
  - {label: Start, type: start}
  - {label: Nap, type: code_job, language: bash, code: "sleep 30"}
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Nap}
  - {from: Nap, to: End}
"""


def wait_for_running(timeout: float = 20) -> dict:
    """Poll the history until the newest execution has a RUNNING node."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = dipeo("show", "latest", "--json")
        if out.returncode == 0:
            data = json.loads(out.stdout)
            if any(s["status"] == "RUNNING" for s in data["node_states"].values()):
                return data
        time.sleep(0.1)
    raise AssertionError("no execution reached RUNNING")


def test_the_command_is_installed():
    assert DIPEO.exists(), f"{DIPEO} missing: install the project with pip first (README)"
    out = dipeo("--version")
    assert out.returncode == 0 and out.stdout.startswith("dipeo ")


def test_piped_run_prints_plain_lines_without_ansi_codes():
    out = dipeo("run", str(REPO / "diagrams" / "hello.light.yaml"))
    assert out.returncode == 0, out.stderr
    assert "\x1b" not in out.stdout + out.stderr
    assert "COMPLETED Greet (template_job)" in out.stderr
    assert "Hello, world!" in out.stdout


def test_json_output_is_only_json_on_stdout():
    out = dipeo("run", str(REPO / "diagrams" / "branches.light.yaml"), "--json", "-i", "score=80")
    assert out.returncode == 0
    data = json.loads(out.stdout)
    assert data["result"] == {"score": 80}


def test_live_table_in_a_pseudo_terminal():
    diagram = write(
        "live.light.yaml",
        """\
        nodes:
          - {label: Start, type: start}
          - {label: Nap, type: code_job, language: bash, code: "sleep 0.6; echo rested"}
          - {label: Shout, type: template_job, template_content: "{{ default }}!"}
          - {label: End, type: endpoint}
        connections:
          - {from: Start, to: Nap}
          - {from: Nap, to: Shout}
          - {from: Shout, to: End}
        """,
    )
    code, screen = run_in_terminal(["run", diagram], terminal_env())
    assert code == 0, screen
    assert "\x1b[" in screen  # a real terminal gets colours and cursor movement
    for text in ("Nap", "code_job", "RUNNING", "COMPLETED", "rested!", "Shout"):
        assert text in screen, text
    execution_id = json.loads(dipeo("history", "--json").stdout)[0]["id"]
    assert execution_id in screen


@pytest.mark.parametrize(
    "sig, reason", [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "SIGTERM")]
)
def test_signal_aborts_the_run_records_aborted_and_exits_130(sig, reason):
    write("sleeper.light.yaml", SLEEPER)
    proc = subprocess.Popen(
        [str(DIPEO), "run", "sleeper.light.yaml"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    wait_for_running()
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    data = json.loads(dipeo("show", "latest", "--json").stdout)
    assert data["status"] == "ABORTED"
    assert reason in data["error"]
    states = {s["label"]: s for s in data["node_states"].values()}
    # the node the abort cancelled is ABORTED (not FAILED), and the report counts it as such
    assert states["Nap"]["status"] == "ABORTED"
    assert reason in states["Nap"]["error"]
    assert states["End"]["status"] == "SKIPPED"
    assert re.search(r"ABORTED +Nap", err), err
    assert "1 interrupted" in out and "Interrupted nodes: Nap" in out, out
    assert "1 failed" not in out, out


def test_killed_run_is_shown_as_failed_interrupted_never_running():
    write("sleeper.light.yaml", SLEEPER)
    proc = subprocess.Popen(
        [str(DIPEO), "run", "sleeper.light.yaml"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_running()
    proc.kill()
    proc.wait(timeout=10)
    data = json.loads(dipeo("show", "latest", "--json").stdout)
    assert data["status"] == "FAILED"
    assert "interrupted" in data["error"]
    listed = json.loads(dipeo("history", "--json").stdout)[0]
    assert listed["status"] == "FAILED"
    # the bash child of the killed run must not be left behind holding the node "RUNNING"
    assert all(s["status"] != "RUNNING" for s in data["node_states"].values())


def test_four_concurrent_runs_share_one_database():
    lines = ["nodes:", "  - {label: Start, type: start, custom_data: {n: 0}}"]
    conns = ["connections:"]
    previous = "Start"
    for i in range(60):
        lines.append(f"  - {{label: T{i}, type: template_job, template_content: 'step {i}'}}")
        conns.append(f"  - {{from: {previous}, to: T{i}}}")
        previous = f"T{i}"
    Path("chain.light.yaml").write_text("\n".join(lines + conns) + "\n")
    procs = [
        subprocess.Popen(
            [str(DIPEO), "run", "chain.light.yaml", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], [err for _, err in results]
    assert all("locked" not in err for _, err in results)
    history = json.loads(dipeo("history", "--json").stdout)
    assert len(history) == 4 and {h["status"] for h in history} == {"COMPLETED"}
    for entry in history:
        shown = json.loads(dipeo("show", entry["id"], "--json").stdout)
        assert len(shown["node_states"]) == 61
        assert all(s["status"] == "COMPLETED" for s in shown["node_states"].values())


def test_invalid_diagram_exits_2_without_a_traceback():
    write(
        "bad.light.yaml",
        "nodes:\n  - {label: Start, type: start}\n  - {label: X, type: nope}\nconnections:\n  - {from: Start, to: Y}\n",
    )
    out = dipeo("run", "bad.light.yaml")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert "bad.light.yaml" in out.stderr and "'nope'" in out.stderr and "'Y'" in out.stderr
    assert json.loads(dipeo("history", "--json").stdout) == []


def test_a_closed_progress_pipe_does_not_break_the_run():
    # `dipeo run x 2>&1 | head -2`: the reader goes away; the run must still finish and be recorded
    proc = subprocess.Popen(
        [str(DIPEO), "run", str(REPO / "diagrams" / "debate.light.yaml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    proc.stderr.readline()
    proc.stderr.close()
    proc.wait(timeout=30)
    [entry] = json.loads(dipeo("history", "--json").stdout)
    assert entry["status"] == "COMPLETED"


def test_template_escape_fails_the_run_and_runs_no_command():
    diagram = write(
        "escape.light.yaml",
        """\
        nodes:
          - {label: Start, type: start}
          - label: Escape
            type: template_job
            template_content: "{{ cycler.__init__.__globals__.os.popen('touch ran').read() }}"
        connections:
          - {from: Start, to: Escape}
        """,
    )
    out = dipeo("run", diagram)
    assert out.returncode == 1, out.stderr
    assert "template tried something unsafe" in out.stderr
    assert not Path("ran").exists()


def test_run_timeout_exits_at_once_while_a_template_spins():
    diagram = write(
        "spin.light.yaml",
        """\
        nodes:
          - {label: Start, type: start}
          - label: Spin
            type: template_job
            template_content: "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"
        connections:
          - {from: Start, to: Spin}
        """,
    )
    started = time.monotonic()
    out = dipeo("run", diagram, "--timeout", "0.5")
    assert out.returncode == 124, out.stderr
    assert time.monotonic() - started < 5  # the render thread does not keep the process alive
