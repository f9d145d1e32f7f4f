"""Everything a person reads on a terminal: run progress and the `run`, `history`, `show` reports.

This is the only package that imports Rich (a ruff rule bans it elsewhere). Rich is imported
inside the functions that draw with it, so importing this package, plain progress lines and an
uncoloured `run` summary never load it.

One module per view: `progress` (the protocol the CLI feeds, the choice of view, the plain and
quiet views), `live` (the live table), `summary` (after `dipeo run`), `history`
(`dipeo history`), `details` (`dipeo show`); `text` holds what they share (styles, glyphs,
durations, previews, consoles).

Contracts:

- Progress goes to the stream given to `open_progress` (stderr: stdout belongs to `--json` and
  the summary). `Progress.update` is called once per executor event on the executor's hot path;
  every implementation keeps it O(1) and never redraws there.
- `color=False` writes no ANSI escape code at all; `color=True` colours statuses and headings.
- Node labels, errors and outputs are user data: they are never parsed as Rich markup.
- `print_execution(..., node=X)` raises `KeyError(message)` when X names no node; the message
  (in `args[0]`) lists the labels.
"""

from __future__ import annotations

from dipeo_cli.render.details import print_execution
from dipeo_cli.render.history import print_history
from dipeo_cli.render.live import LiveProgress
from dipeo_cli.render.progress import (
    PlainProgress,
    Progress,
    QuietProgress,
    choose_mode,
    open_progress,
)
from dipeo_cli.render.summary import print_summary
from dipeo_cli.render.text import _output_preview as _output_preview
from dipeo_cli.render.text import format_duration

__all__ = [
    "LiveProgress",
    "PlainProgress",
    "Progress",
    "QuietProgress",
    "choose_mode",
    "format_duration",
    "open_progress",
    "print_execution",
    "print_history",
    "print_summary",
]
