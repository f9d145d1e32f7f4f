"""Run progress: the protocol the CLI feeds, the choice of view, and the plain and quiet views.

The live table is in live.py; `open_progress` picks one of the three.
"""

from __future__ import annotations

import os
import time
from typing import Protocol, TextIO

from dipeo_cli import events as ev
from dipeo_cli.render.live import LiveProgress
from dipeo_cli.render.text import (
    _glyphs,
    _isatty,
    _name,
    _one_line,
    _output_preview,
    _progress_console,
    format_duration,
    handled_failures,
)
from dipeo_cli.state import ExecutionState, parse_iso

PLAIN_PREVIEW_CHARS = 60


class Progress(Protocol):
    """What the CLI feeds while an execution runs: `start` once after ExecutionStarted, then
    `update` after every other event is applied to the state, then `stop` once at the end."""

    def start(self, state: ExecutionState) -> None: ...

    def update(self, state: ExecutionState, event: ev.Event) -> None: ...

    def stop(self, state: ExecutionState) -> None: ...


def choose_mode(stream: TextIO, quiet: bool) -> str:
    """`quiet` when asked; `live` on a terminal that can redraw; `plain` lines otherwise.
    NO_COLOR keeps the live table, without colour (NO_COLOR is about colour, not cursor
    movement: Rich honours it)."""
    if quiet:
        return "quiet"
    if _isatty(stream) and os.environ.get("TERM", "") != "dumb":
        return "live"
    return "plain"


def open_progress(mode: str, stream: TextIO, *, color: bool | None = None) -> Progress:
    """The progress view for `mode` ("live", "plain" or "quiet") writing to `stream`.

    `color=None` lets Rich decide for the live table (it honours NO_COLOR).
    """
    if mode == "quiet":
        return QuietProgress()
    if mode == "plain":
        return PlainProgress(stream)
    if mode == "live":
        return LiveProgress(_progress_console(stream, color))
    raise ValueError(f"unknown progress mode {mode!r}: use 'live', 'plain' or 'quiet'")


class QuietProgress:
    def start(self, state: ExecutionState) -> None:
        pass

    def update(self, state: ExecutionState, event: ev.Event) -> None:
        pass

    def stop(self, state: ExecutionState) -> None:
        pass


class PlainProgress:
    """One line per status change, no escape codes, written straight to the stream and flushed:

    12:00:01.234 execution 3f2a... started: flow.yaml (4 nodes)
    12:00:01.240 RUNNING   Check (condition) #2
    12:00:01.244 COMPLETED Check (condition) 0.004s → condtrue: {"n": 2}
    12:00:01.250 FAILED    Boom (code_job) 0.010s: RuntimeError: kaboom
    12:00:01.251 SKIPPED   End (endpoint): branch not taken
    12:00:01.251 execution 3f2a... PAUSED            (and RESUMED: `dipeo pause`/`resume`)
    12:00:01.252 execution 3f2a... FAILED in 0.018s: ...
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._glyphs = _glyphs(stream)
        self._started: dict[str, float] = {}
        self._second = -1
        self._second_text = ""
        self._finished = False

    def _emit(self, at: float, text: str) -> None:
        second, millis = divmod(round(at * 1000), 1000)
        if second != self._second:  # localtime() once a second, not once a line
            self._second = second
            self._second_text = time.strftime("%H:%M:%S", time.localtime(second))
        self._stream.write(f"{self._second_text}.{millis:03d} {text}\n")
        self._stream.flush()

    def start(self, state: ExecutionState) -> None:
        diagram = state.diagram_id or "(unnamed diagram)"
        count = len(state.node_states)
        self._emit(
            parse_iso(state.started_at),
            f"execution {state.id} started: {diagram} ({count} node{'s' * (count != 1)})",
        )

    def update(self, state: ExecutionState, event: ev.Event) -> None:
        more = self._glyphs["more"]
        if isinstance(event, ev.NodeStarted):
            self._started[event.node_id] = event.at
            text = f"RUNNING   {_name(event.node_id, state.node_states[event.node_id])}"
            if event.iteration > 1:
                text += f" #{event.iteration}"
        elif isinstance(event, ev.NodeCompleted):
            elapsed = event.at - self._started.get(event.node_id, event.at)
            name = _name(event.node_id, state.node_states[event.node_id])
            text = f"COMPLETED {name} {format_duration(elapsed)}"
            preview = _output_preview(event.output, PLAIN_PREVIEW_CHARS, more)
            if preview:
                text += f" {self._glyphs['arrow']} {preview}"
        elif isinstance(event, ev.NodeFailed):
            elapsed = event.at - self._started.get(event.node_id, event.at)
            name = _name(event.node_id, state.node_states[event.node_id])
            said = "ABORTED  " if event.aborted else "FAILED   "
            text = f"{said} {name} {format_duration(elapsed)}: {_one_line(event.error, 300, more)}"
        elif isinstance(event, ev.NodeSkipped):
            name = _name(event.node_id, state.node_states[event.node_id])
            text = f"SKIPPED   {name}: {_one_line(event.reason, 300, more)}"
        elif isinstance(event, ev.NodeCapped):
            name = _name(event.node_id, state.node_states[event.node_id])
            text = f"MAXITER_REACHED {name}: max_iteration {event.max_iteration} reached"
        elif isinstance(event, ev.ExecutionPaused):
            text = f"execution {state.id} PAUSED"
            if event.reason:
                text += f": {_one_line(event.reason, 300, more)}"
        elif isinstance(event, ev.ExecutionResumed):
            text = f"execution {state.id} RESUMED"
        elif isinstance(event, ev.ExecutionFinished):
            self._finished = True
            text = self._final_line(state)
        else:
            return
        self._emit(event.at, text)

    def _final_line(self, state: ExecutionState) -> str:
        text = f"execution {state.id} {state.status.value}{handled_failures(state)}"
        if state.duration_seconds is not None:
            text += f" in {format_duration(state.duration_seconds)}"
        if state.error:
            text += f": {_one_line(state.error, 300, self._glyphs['more'])}"
        return text

    def stop(self, state: ExecutionState) -> None:
        if not self._finished:
            self._finished = True
            self._emit(time.time(), self._final_line(state))
