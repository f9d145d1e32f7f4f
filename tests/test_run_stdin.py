"""`dipeo run -` reads the diagram from standard input, in any format, through a real pipe."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
DIPEO = Path(sys.executable).with_name("dipeo")
HELLO = REPO / "diagrams" / "hello.light.yaml"


def dipeo(*args: str, stdin: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([str(DIPEO), *args], input=stdin, capture_output=True, timeout=60)


@pytest.mark.parametrize("fmt", ["light", "native", "readable"])
def test_run_dash_reads_the_diagram_from_stdin_in_any_format(fmt: str):
    text = subprocess.run(
        [str(DIPEO), "convert", str(HELLO), "-", "--to", fmt], capture_output=True, check=True
    ).stdout
    done = dipeo("run", "-", "--json", "-i", "name=Pipe", stdin=text)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["result"] == "Hello, Pipe!" and run["diagram_id"] == "<stdin>"
    if fmt != "readable":
        return
    shown = subprocess.run(
        [str(DIPEO), "show", run["id"], "--graph", "mermaid"], capture_output=True, text=True
    )
    assert "Greet<br/>template_job<br/>COMPLETED" in shown.stdout  # its source was recorded


def test_bad_stdin_is_one_clear_line_and_exit_2():
    for data, message in ((b"nodes: [\n", b"<stdin>:2: invalid YAML"), (b"\xff\xfe", b"UTF-8")):
        done = dipeo("run", "-", stdin=data)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert b"Traceback" not in done.stderr
    done = dipeo("validate", "-", stdin=HELLO.read_bytes())
    assert done.returncode == 0 and b"valid light diagram" in done.stdout
