"""The `dipeo` entry point: answers `dipeo --help`, `dipeo -h` and `dipeo --version` without
importing Typer (half of a cold `dipeo --help` was importing it), and hands everything else to
the Typer app in dipeo_cli.cli.

The top-level help is a text rendered by Typer once and stored in dipeo_cli/launch_help.py;
tests/test_launch.py compares it with what Typer renders now, so it cannot drift. The fast
answer is given only where Typer's would be that very text: a terminal at least 80 columns
wide (Typer wraps help at min(width, 80) - 2), a usage line that fits on one line, and no
shell-completion request in the environment. Anything else goes through Typer.
"""

from __future__ import annotations

import os
import sys

from dipeo_cli import __version__
from dipeo_cli.launch_help import HELP, PROG

HELP_FLAGS = ("--help", "-h")
HELP_WIDTH = 80  # Typer's max_content_width: wider terminals get the same text
USAGE_WIDTH = HELP_WIDTH - 2


def program_name() -> str:
    """The name Typer (click) shows in the usage line: `dipeo` for the installed command,
    `python -m dipeo_cli` for the module, the file name for a script."""
    main = sys.modules.get("__main__")
    path = sys.argv[0] if sys.argv and sys.argv[0] else ""
    package = getattr(main, "__package__", None)
    if package in (None, ""):
        return os.path.basename(path)
    name = os.path.splitext(os.path.basename(path))[0]
    module = package if name == "__main__" else f"{package}.{name}"
    return f"python -m {module.lstrip('.')}"


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns without importing shutil: $COLUMNS, else the size
    of the terminal on stdout, else 80 (the same order and fallback)."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return columns or HELP_WIDTH


def fast_help(prog: str) -> str | None:
    """The top-level help for `prog` exactly as Typer would print it, or None when Typer's
    output could differ from the stored text (narrow terminal, long program name)."""
    if terminal_columns() < HELP_WIDTH:
        return None
    first, sep, rest = HELP.partition("\n")
    usage = first.replace(f"Usage: {PROG} ", f"Usage: {prog} ", 1)
    if not usage.startswith(f"Usage: {prog} ") or len(usage) > USAGE_WIDTH:
        return None
    return usage + sep + rest


def completion_requested() -> bool:
    """Whether the shell asks for completions (click's `_<PROG>_COMPLETE` variable is set)."""
    return any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ)


def fast_answer(argv: list[str]) -> str | None:
    """What `dipeo <argv>` prints without Typer, or None to let Typer answer."""
    if len(argv) != 1 or argv[0] not in (*HELP_FLAGS, "--version"):
        return None
    if completion_requested():
        return None  # a shell-completion request: Typer's job
    if argv[0] == "--version":
        return f"dipeo {__version__}\n"
    return fast_help(program_name())


def main() -> None:
    answer = fast_answer(sys.argv[1:])
    if answer is None:
        if sys.argv[1:2] == ["run"]:
            from dipeo_cli import pytemplate
            from dipeo_cli.heap import pause_until_run

            pause_until_run()  # no collections while loading; the run's start resumes them
            if pytemplate.wanted_by(sys.argv[2:]):
                pytemplate.start_early()  # python's start overlaps ours (see there)
        from dipeo_cli.cli import main as typer_main

        typer_main()
        return
    try:
        sys.stdout.write(answer)
        sys.stdout.flush()
    except BrokenPipeError:
        # as click does when stdout is closed early (`dipeo --help | head -1`): exit 1, and
        # no second error when the interpreter flushes stdout on the way out
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(1)
