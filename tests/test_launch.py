"""`dipeo --help` / `-h` / `--version` answered without importing Typer (dipeo_cli/launch.py),
with exactly the text Typer prints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dipeo_cli import launch

REPO = Path(__file__).resolve().parents[1]
STORED = REPO / "dipeo_cli" / "launch_help.py"


def typer_help(columns: int = 100, prog: str = "dipeo") -> str:
    """`prog --help` as the Typer app prints it in a terminal `columns` wide. In a real process:
    CliRunner forces a width of 80 where a terminal gets 78, so its text is not the user's."""
    code = f"import sys; sys.argv[0] = {prog!r}; from dipeo_cli.cli import main; main()"
    out = subprocess.run(
        [sys.executable, "-c", code, "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": str(columns)},
        check=True,
    )
    return out.stdout


def stored_module(text: str) -> str:
    assert '"""' not in text and "\\" not in text  # stored verbatim in a triple-quoted string
    return (
        '"""The text of `dipeo --help` as Typer renders it, answered by dipeo_cli/launch.py\n'
        "without importing Typer. Generated: `python tests/test_launch.py` rewrites it, and\n"
        'tests/test_launch.py fails when it differs from what Typer prints."""\n\n'
        f'PROG = "dipeo"\nHELP = """\\\n{text}"""\n'
    )


def test_the_stored_help_is_what_typer_prints_now():
    assert STORED.read_text(encoding="utf-8") == stored_module(typer_help()), (
        "the top-level help changed: run `python tests/test_launch.py` to store the new text"
    )


def test_the_fast_help_of_the_installed_command_and_of_the_module_is_typers(monkeypatch):
    monkeypatch.setenv("COLUMNS", "120")
    assert launch.fast_help("dipeo") == typer_help(120)
    assert launch.fast_help("python -m dipeo_cli") == typer_help(120, "python -m dipeo_cli")


def test_no_fast_help_where_typer_would_wrap_differently(monkeypatch):
    monkeypatch.setenv("COLUMNS", "60")
    assert launch.fast_help("dipeo") is None
    monkeypatch.setenv("COLUMNS", "80")
    assert launch.fast_help("dipeo") == typer_help(80)
    assert launch.fast_help("x" * 60) is None


def test_only_bare_help_and_version_are_answered_fast(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")
    assert launch.fast_answer(["--version"]) == "dipeo 0.1.0\n"
    assert launch.fast_answer(["-h"]) == launch.fast_answer(["--help"]) is not None
    for argv in ([], ["run", "--help"], ["--help", "run"], ["--versions"], ["history"]):
        assert launch.fast_answer(argv) is None
    monkeypatch.setenv("_DIPEO_COMPLETE", "bash_complete")
    assert launch.fast_answer(["--help"]) is None


def run_module(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dipeo_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        check=False,
    )


@pytest.mark.parametrize("flag", ["--help", "-h", "--version"])
def test_help_and_version_do_not_import_typer(flag):
    fast = run_module(flag, COLUMNS="100")
    assert fast.returncode == 0
    assert "typer" not in fast.stderr and "dipeo_cli.cli" not in fast.stderr
    if flag == "--version":
        assert fast.stdout == "dipeo 0.1.0\n"
    else:
        assert fast.stdout == typer_help(100, "python -m dipeo_cli")


def test_a_narrow_terminal_gets_typers_own_help():
    narrow = run_module("--help", COLUMNS="60")
    assert narrow.returncode == 0 and "typer" in narrow.stderr
    assert narrow.stdout == typer_help(60, "python -m dipeo_cli")


def test_a_closed_stdout_is_exit_1_without_a_traceback():
    proc = subprocess.Popen(
        [sys.executable, "-m", "dipeo_cli", "--help"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert proc.stdout is not None
    proc.stdout.close()  # nobody reads: the write fails with EPIPE
    _, err = proc.communicate()
    assert proc.returncode == 1 and b"Traceback" not in err


if __name__ == "__main__":
    STORED.write_text(stored_module(typer_help()), encoding="utf-8")
    print(f"wrote {STORED}")
