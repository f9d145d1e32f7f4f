"""Everything a person reads on a terminal: run progress and the `run`, `history`, `show` reports.

This is the only module that imports Rich (a ruff rule bans it elsewhere). Rich is imported
inside the functions that draw with it, so plain progress lines and an uncoloured `run` summary
never load it.

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

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from dipeo_cli import events as ev
from dipeo_cli.redact import redact
from dipeo_cli.state import (
    ExecutionState,
    ExecutionStatus,
    NodeExecutionStatus,
    NodeOutput,
    NodeState,
    TokenUsage,
    parse_iso,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.text import Text

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

STATUS_STYLES = {
    "PENDING": "dim",
    "STARTED": "yellow",
    "RUNNING": "yellow",
    "PAUSED": "magenta",
    "COMPLETED": "green",
    "FAILED": "red",
    "ABORTED": "red",
    "SKIPPED": "dim",
    "MAXITER_REACHED": "cyan",
}

NS = NodeExecutionStatus
PREVIEW_CHARS = 40  # output preview in the live table
PLAIN_PREVIEW_CHARS = 60
LIVE_MAX_ROWS = 40
REPORT_WIDTH = 100  # width of reports written to a file or pipe
SUMMARY_MAX_LINES = 40
SUMMARY_MAX_CHARS = 4000
SHOW_MAX_LINES = 30
SHOW_MAX_STRING = 300

_UNICODE_GLYPHS = {"ok": "✔", "fail": "✘", "arrow": "→", "more": "…", "node": "▸"}
_ASCII_GLYPHS = {"ok": "OK", "fail": "X", "arrow": "->", "more": "...", "node": ">"}


def _glyphs(stream: TextIO) -> dict[str, str]:
    """Our own symbols, or ASCII stand-ins when the stream cannot encode them (cp1252 pipes)."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    try:
        "".join(_UNICODE_GLYPHS.values()).encode(encoding)
    except (LookupError, UnicodeEncodeError):
        return _ASCII_GLYPHS
    return _UNICODE_GLYPHS


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


# --------------------------------------------------------------------------- text helpers


def format_duration(seconds: float | None) -> str:
    """`0.004s`, `12.34s`, `2m03.5s`, `1h02m03s`; empty for None."""
    if seconds is None:
        return ""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds:.3f}s"
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{int(minutes)}m{rest:04.1f}s"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}h{minutes:02d}m{int(rest):02d}s"


def _one_line(text: str, limit: int, more: str = "…") -> str:
    """Whitespace (newlines included) collapsed, cut to `limit` characters. Cheap on huge text.
    Secrets are masked first: a secret cut in half would no longer be recognised."""
    flat = " ".join(redact(text[: limit * 4 + 256]).split())
    if len(flat) > limit:
        return flat[: max(limit - len(more), 0)] + more
    return flat


def _json_chunks(value: Any, limit: int) -> Iterator[str]:
    """Compact JSON of `value` in pieces, each bounded, so a preview never serialises a huge value.

    Every nesting level yields before it descends, so the consumer stops long before recursion
    gets deep.
    """
    if isinstance(value, str):
        yield json.dumps(value[: limit + 1], ensure_ascii=False)
    elif isinstance(value, dict):
        yield "{"
        for index, (key, item) in enumerate(value.items()):
            yield (", " if index else "") + json.dumps(str(key)[: limit + 1], ensure_ascii=False)
            yield ": "
            yield from _json_chunks(item, limit)
        yield "}"
    elif isinstance(value, (list, tuple)):
        yield "["
        for index, item in enumerate(value):
            if index:
                yield ", "
            yield from _json_chunks(item, limit)
        yield "]"
    elif value is None or isinstance(value, (bool, int, float)):
        yield json.dumps(value)
    else:
        yield str(value)[: limit + 1]


def _compact(value: Any, limit: int, more: str = "…") -> str:
    """A one-line preview of any value: text as is (whitespace collapsed), the rest as JSON."""
    if isinstance(value, str):
        return _one_line(value, limit, more)
    pieces: list[str] = []
    size = 0
    for piece in _json_chunks(value, limit):
        pieces.append(piece)
        size += len(piece)
        if size > limit:
            break
    return _one_line("".join(pieces), limit, more)


def _output_preview(output: NodeOutput | None, limit: int, more: str = "…") -> str:
    """The `default` port's value; for other ports, which port fired (and its value)."""
    if output is None or not output.value:
        return ""
    value = output.value
    if "default" in value:
        main = value["default"]
        return "" if main is None else _compact(main, limit, more)
    if len(value) == 1:
        port, main = next(iter(value.items()))
        if main is None:
            return str(port)
        return _compact(
            f"{port}: " + (main if isinstance(main, str) else _compact(main, limit)), limit, more
        )
    return _one_line(", ".join(map(str, value)), limit, more)


def _name(node_id: str, node: NodeState) -> str:
    label = node.label or node_id
    return f"{label} ({node.type})" if node.type else label


def _node_duration(node: NodeState, now: float | None = None) -> float | None:
    """Duration of the node's latest run; a running node's time so far when `now` is given."""
    if node.started_at is None:
        return None
    if node.status is NS.RUNNING:
        return None if now is None else now - parse_iso(node.started_at)
    if node.ended_at is None:
        return None
    return parse_iso(node.ended_at) - parse_iso(node.started_at)


def _node_detail(node: NodeState, output: NodeOutput | None, limit: int) -> tuple[str, str]:
    """The one-line detail of a node row and its style: error, skip reason or output preview."""
    if node.status is NS.FAILED:
        return _one_line(node.error or "failed", limit), "red"
    if node.status is NS.SKIPPED:
        return _one_line(node.skip_reason or "", limit), "dim"
    if node.status in (NS.COMPLETED, NS.MAXITER_REACHED):
        return _output_preview(output, limit), ""
    return "", ""


def _tokens_text(usage: TokenUsage | None) -> str:
    """`150 (input 100, output 50, cached 10)`; empty when no token was used."""
    if usage is None or usage.is_empty:
        return ""
    parts = [f"input {usage.input:,}", f"output {usage.output:,}"]
    if usage.cached:
        parts.append(f"cached {usage.cached:,}")
    return f"{usage.total:,} ({', '.join(parts)})"


def _status_counts(nodes: Iterable[NodeState]) -> str:
    """`5 completed, 1 failed, 2 skipped`, in the order of the status enum."""
    counts: dict[NodeExecutionStatus, int] = {}
    for node in nodes:
        counts[node.status] = counts.get(node.status, 0) + 1
    return ", ".join(
        f"{counts[status]} {status.value.lower().replace('_', ' ')}"
        for status in NodeExecutionStatus
        if counts.get(status)
    )


def _local_time(
    iso_text: str | None, format: str = "%Y-%m-%d %H:%M:%S", *, millis: bool = False
) -> str:
    """An ISO time as local time, to the second (or the millisecond)."""
    if not iso_text:
        return ""
    try:
        moment = datetime.fromisoformat(iso_text).astimezone()
    except ValueError:
        return iso_text
    if millis:
        return moment.strftime("%H:%M:%S.") + f"{moment.microsecond // 1000:03d}"
    return moment.strftime(format)


def _pretty(value: Any) -> str:
    """Text as is; anything else as indented JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def _clip_strings(value: Any, limit: int) -> Any:
    """A copy of `value` whose long strings are cut to `limit` characters, with a note (secrets
    masked before the cut)."""
    if isinstance(value, str):
        if len(value) > limit:
            return redact(value)[:limit] + f"… ({len(value) - limit:,} more characters)"
        return value
    if isinstance(value, dict):
        return {key: _clip_strings(item, limit) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clip_strings(item, limit) for item in value]
    return value


def _clip_lines(text: str, max_lines: int, max_chars: int) -> tuple[str, int]:
    """Text cut to at most `max_lines` lines and `max_chars` characters, and how many lines were
    left out (a cut inside a line counts that line). Secrets are masked before the cut."""
    lines = redact(text).split("\n")
    kept = lines[:max_lines]
    clipped = "\n".join(kept)
    if len(clipped) > max_chars:
        clipped = clipped[:max_chars]
        kept = clipped.split("\n")
        return clipped + "…", len(lines) - len(kept) + 1
    return clipped, len(lines) - len(kept)


# --------------------------------------------------------------------------- consoles


def _report_console(stream: TextIO, color: bool, width: int | None) -> Console:
    """A Console for a report: no ANSI at all without colour, 100 columns off a terminal."""
    from rich.console import Console

    if width is None and not _isatty(stream):
        width = REPORT_WIDTH
    return Console(
        file=stream,
        width=width,
        force_terminal=color,
        no_color=not color,
        color_system="standard" if color else None,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=False,
        legacy_windows=None if color else False,
        force_jupyter=False,
    )


def _progress_console(stream: TextIO, color: bool | None) -> Console:
    from rich.console import Console

    return Console(
        file=stream,
        force_terminal=True,
        no_color=None if color is None else not color,
        color_system=None if color is False else "auto",
        highlight=False,
        markup=False,
        emoji=False,
        force_jupyter=False,
    )


def _cell(text: str, style: str = "") -> Text:
    """A one-line cell: cut with an ellipsis when its column is narrowed, never wrapped.

    When a table is too wide Rich narrows the columns that may wrap (the default) first, so the
    long free-text column (output, error) is left wrappable and its cells are `_cell`s; the
    other columns are no_wrap and keep their width unless the terminal is very narrow.
    """
    from rich.text import Text

    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def _table() -> Any:
    from rich import box
    from rich.table import Table

    return Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,  # two spaces between columns
        header_style="bold",
    )


def _name_widths(console: Console, fixed: int) -> tuple[int, int]:
    """Widths for the label and type columns of a node table: their share of what the fixed
    columns leave, so the free-text column keeps some room on an 80-column terminal."""
    rest = max(console.width - fixed, 30)
    return min(32, max(10, rest * 2 // 5)), min(18, max(6, rest // 5))


def _print_fields(console: Console, fields: list[tuple[str, str | Text]]) -> None:
    """`key  value` lines, keys aligned, values never re-wrapped by Rich (no trailing blanks)."""
    from rich.text import Text

    width = max(len(key) for key, _ in fields)
    for key, value in fields:
        console.print(Text.assemble((f"{key:<{width}}  ", "bold"), value), soft_wrap=True)


# --------------------------------------------------------------------------- progress


class Progress(Protocol):
    """What the CLI feeds while an execution runs: `start` once after ExecutionStarted, then
    `update` after every other event is applied to the state, then `stop` once at the end."""

    def start(self, state: ExecutionState) -> None: ...

    def update(self, state: ExecutionState, event: ev.Event) -> None: ...

    def stop(self, state: ExecutionState) -> None: ...


def choose_mode(stream: TextIO, quiet: bool) -> str:
    """`quiet` when asked; `live` on a terminal that can redraw (and NO_COLOR unset); `plain`
    lines otherwise."""
    if quiet:
        return "quiet"
    # NO_COLOR asks for no escape codes at all, and the live table needs cursor movement.
    if _isatty(stream) and os.environ.get("TERM", "") != "dumb" and not os.environ.get("NO_COLOR"):
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
            text = (
                f"FAILED    {name} {format_duration(elapsed)}: {_one_line(event.error, 300, more)}"
            )
        elif isinstance(event, ev.NodeSkipped):
            name = _name(event.node_id, state.node_states[event.node_id])
            text = f"SKIPPED   {name}: {_one_line(event.reason, 300, more)}"
        elif isinstance(event, ev.NodeCapped):
            name = _name(event.node_id, state.node_states[event.node_id])
            text = f"MAXITER_REACHED {name}: max_iteration {event.max_iteration} reached"
        elif isinstance(event, ev.ExecutionFinished):
            self._finished = True
            text = self._final_line(state)
        else:
            return
        self._emit(event.at, text)

    def _final_line(self, state: ExecutionState) -> str:
        text = f"execution {state.id} {state.status.value}"
        if state.duration_seconds is not None:
            text += f" in {format_duration(state.duration_seconds)}"
        if state.error:
            text += f": {_one_line(state.error, 300, self._glyphs['more'])}"
        return text

    def stop(self, state: ExecutionState) -> None:
        if not self._finished:
            self._finished = True
            self._emit(time.time(), self._final_line(state))


class LiveProgress:
    """A Rich Live table on a terminal, redrawn by Rich's own thread at `refresh_per_second`.

    `update` only records which node changed last (to pick rows for large diagrams); the table
    is rebuilt from the state when Rich refreshes. `renderable()` is that table, for tests.
    """

    refresh_per_second = 8

    def __init__(
        self,
        console: Console,
        *,
        max_rows: int = LIVE_MAX_ROWS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.console = console
        self.max_rows = max_rows
        self._clock = clock
        self._state: ExecutionState | None = None
        # node ids by last change, oldest first: a dict is an ordered set with O(1) moves
        self._recent: dict[str, None] = {}
        self._final = False
        self._live: Any = None

    def start(self, state: ExecutionState) -> None:
        from rich.live import Live

        self._state = state
        self._live = Live(
            console=self.console,
            get_renderable=self.renderable,
            auto_refresh=True,
            refresh_per_second=self.refresh_per_second,
            transient=False,
            redirect_stdout=False,  # stdout is the summary's and --json's
            redirect_stderr=True,
        )
        self._live.start(refresh=True)

    def update(self, state: ExecutionState, event: ev.Event) -> None:
        self._state = state
        node_id = getattr(event, "node_id", None)
        if node_id is not None:
            self._recent.pop(node_id, None)
            self._recent[node_id] = None

    def stop(self, state: ExecutionState) -> None:
        self._state = state
        self._final = True
        live, self._live = self._live, None
        if live is not None:
            live.stop()  # draws the final table, which stays on screen

    @contextmanager
    def paused(self) -> Iterator[None]:
        """Stop redrawing while a node uses the terminal (a user_response question): the table
        drawn so far stays on screen, and a fresh live table starts below it afterwards."""
        live, self._live = self._live, None
        if live is None:
            yield
            return
        live.stop()
        try:
            yield
        finally:
            if not self._final and self._state is not None:
                self.start(self._state)

    def _row_limit(self) -> int:
        if self._final:  # the last draw may scroll: Rich shows it whole
            return self.max_rows
        return max(5, min(self.max_rows, self.console.height - 6))

    def _pick_rows(
        self, items: list[tuple[str, NodeState]], limit: int
    ) -> tuple[list[tuple[str, NodeState]], list[NodeState]]:
        """All rows when they fit; else running and failed nodes, then the latest changed, then
        the first in diagram order, leaving one line for "… N more"."""
        if len(items) <= limit:
            return items, []
        room = limit - 1
        keep: dict[str, None] = {}
        for node_id, node in items:
            if len(keep) >= room:
                break
            if node.status is NS.RUNNING or node.status is NS.FAILED:
                keep[node_id] = None
        for node_id in reversed(list(self._recent)):  # list() copies atomically under the GIL
            if len(keep) >= room:
                break
            keep[node_id] = None
        for node_id, _ in items:
            if len(keep) >= room:
                break
            keep[node_id] = None
        shown = [(node_id, node) for node_id, node in items if node_id in keep]
        hidden = [node for node_id, node in items if node_id not in keep]
        return shown, hidden

    def renderable(self) -> RenderableType:
        """The header, the node table and, for large diagrams, the "… N more" line."""
        from rich.console import Group
        from rich.text import Text

        state = self._state
        if state is None:
            return Text("")
        now = self._clock()
        items = list(state.node_states.items())
        shown, hidden = self._pick_rows(items, self._row_limit())

        label_width, type_width = _name_widths(self.console, 36)
        table = _table()
        table.add_column("node", no_wrap=True, max_width=label_width)
        table.add_column("type", no_wrap=True, max_width=type_width)
        table.add_column("status", no_wrap=True)
        table.add_column("iter", justify="right", no_wrap=True)
        table.add_column("time", justify="right", no_wrap=True)
        with_tokens = not state.token_usage.is_empty  # a column only once an LLM answered
        if with_tokens:
            table.add_column("tokens", justify="right", no_wrap=True)
        table.add_column("output", max_width=PREVIEW_CHARS)
        outputs = state.node_outputs
        for node_id, node in shown:
            status = node.status.value
            detail, detail_style = _node_detail(node, outputs.get(node_id), PREVIEW_CHARS)
            cells: list[RenderableType] = [
                _cell(node.label or node_id),
                _cell(node.type, "dim"),
                Text(status, style=STATUS_STYLES.get(status, "")),
                str(node.iterations) if node.iterations else "",
                format_duration(_node_duration(node, now)),
            ]
            if with_tokens:
                usage = node.token_usage
                cells.append(f"{usage.total:,}" if usage is not None and usage.total else "")
            cells.append(_cell(detail, detail_style))
            table.add_row(*cells)
        parts: list[RenderableType] = [self._header(state, now), table]
        if hidden:
            parts.append(Text(f"… {len(hidden)} more: {_status_counts(hidden)}", style="dim"))
        return Group(*parts)

    def _header(self, state: ExecutionState, now: float) -> Text:
        from rich.text import Text

        if state.duration_seconds is not None:
            elapsed = state.duration_seconds
        else:
            elapsed = now - parse_iso(state.started_at)
        nodes = state.node_states.values()
        done = sum(1 for node in nodes if node.status not in (NS.PENDING, NS.RUNNING))
        status = state.status.value
        header = Text.assemble(
            ("execution ", "bold"),
            (state.id, "bold"),
            "  ",
            (state.diagram_id or "(unnamed diagram)", "cyan"),
            "  ",
            (status, "bold " + STATUS_STYLES.get(status, "")),
            f"  {format_duration(elapsed)}  {done}/{len(state.node_states)} nodes done",
            no_wrap=True,
            overflow="ellipsis",
        )
        if not state.token_usage.is_empty:
            header.append(f"  {state.token_usage.total:,} tokens")
        return header


# --------------------------------------------------------------------------- run summary

# A line of the summary: pieces of text with a Rich style ("" for none).
_Line = list[tuple[str, str]]


def _write_lines(stream: TextIO, lines: list[_Line], color: bool, width: int | None) -> None:
    """Plain text straight to the stream without colour (Rich stays unloaded); Rich with it."""
    if not color:
        stream.write("".join("".join(text for text, _ in line) + "\n" for line in lines))
        stream.flush()
        return
    from rich.text import Text

    console = _report_console(stream, True, width)
    for line in lines:
        console.print(Text.assemble(*line), soft_wrap=True)


def _result_sections(state: ExecutionState) -> list[tuple[str, Any]]:
    """(heading, value) per endpoint result: one `Result`, or one per endpoint label."""
    result = state.result
    if result is None:
        return []
    labels = {node.label for node in state.node_states.values() if node.type == "endpoint"}
    if len(labels) > 1 and isinstance(result, dict) and result and set(result) <= labels:
        return [(f"Result ({label})", value) for label, value in result.items()]
    return [("Result", result)]


def print_summary(
    state: ExecutionState, stream: TextIO, *, color: bool, width: int | None = None
) -> None:
    """The report after `dipeo run`: status, endpoint result(s), failures, tokens, the id."""
    glyphs = _glyphs(stream)
    status = state.status.value
    ok = state.status is ExecutionStatus.COMPLETED
    style = STATUS_STYLES.get(status, "")
    head: _Line = [(f"{glyphs['ok'] if ok else glyphs['fail']} {status}", "bold " + style)]
    if state.duration_seconds is not None:
        head.append((f" in {format_duration(state.duration_seconds)}", ""))
    counts = _status_counts(list(state.node_states.values()))
    if counts:
        head.append((f" ({counts})", "dim"))
    if state.error:
        head.append((f": {_one_line(state.error, 200, glyphs['more'])}", style))
    lines: list[_Line] = [head]

    for heading, value in _result_sections(state):
        text, hidden = _clip_lines(_pretty(value), SUMMARY_MAX_LINES, SUMMARY_MAX_CHARS)
        lines += [[], [(f"{heading}:", "bold")]]
        lines += [[(line, "")] for line in (text if text else '""').split("\n")]
        if hidden:
            note = f"{glyphs['more']} truncated, {hidden} more line{'s' * (hidden != 1)}"
            lines.append([(f"{note} (full result: dipeo show {state.id} --json)", "dim")])

    failed = [
        (node_id, node) for node_id, node in state.node_states.items() if node.status is NS.FAILED
    ]
    if failed:
        lines += [[], [("Failed nodes:", "bold")]]
        for node_id, node in failed:
            error_lines, hidden = _clip_lines(node.error or "failed", 20, 2000)
            first, *rest = error_lines.split("\n")
            lines.append([(f"  {glyphs['fail']} {_name(node_id, node)}: ", "red"), (first, "")])
            lines += [[(f"      {line}", "")] for line in rest]
            if hidden:
                lines.append([(f"      {glyphs['more']} {hidden} more lines", "dim")])

    tokens = _tokens_text(state.token_usage)
    if tokens:
        lines += [[], [("Tokens: ", "bold"), (tokens, "")]]

    lines += [
        [],
        [("execution id: ", "bold"), (state.id, "")],
        [(f"details: dipeo show {state.id}", "dim")],
    ]
    _write_lines(stream, lines, color, width)


# --------------------------------------------------------------------------- history


def _short_ids(ids: list[str], minimum: int = 12) -> dict[str, str]:
    """Each id cut to `minimum` characters, or longer where that would not tell two apart."""
    ordered = sorted(set(ids))

    def shared(a: str, b: str) -> int:
        return len(os.path.commonprefix((a, b)))

    short: dict[str, str] = {}
    for index, item in enumerate(ordered):
        need = minimum
        if index > 0:
            need = max(need, shared(item, ordered[index - 1]) + 1)
        if index + 1 < len(ordered):
            need = max(need, shared(item, ordered[index + 1]) + 1)
        short[item] = item[:need]
    return short


def _left_cut(text: str, limit: int) -> str:
    """Keep the end of a path-like text, where the file name is."""
    return text if len(text) <= limit else "…" + text[len(text) - limit + 1 :]


def _completed_of(state: ExecutionState) -> str:
    if not state.node_states:
        return ""
    done = sum(1 for node in state.node_states.values() if node.status is NS.COMPLETED)
    return f"{done}/{len(state.node_states)}"


def print_history(
    states: list[ExecutionState], stream: TextIO, *, color: bool, width: int | None = None
) -> None:
    """The `dipeo history` table, newest first. Ids are cut to a prefix `dipeo show` accepts."""
    from rich.text import Text

    console = _report_console(stream, color, width)
    if not states:
        console.print("No executions recorded yet.")
        return
    states = sorted(states, key=lambda state: state.started_at, reverse=True)
    short = _short_ids([state.id for state in states])
    with_tokens = any(state.token_usage.total for state in states)
    with_errors = any(state.error for state in states)
    started_format = "%Y-%m-%d %H:%M:%S" if console.width >= 100 else "%m-%d %H:%M:%S"
    rows: list[list[str]] = []
    for state in states:
        row = [
            short[state.id],
            state.status.value,
            state.diagram_id or "",
            _local_time(state.started_at, started_format),
            format_duration(state.duration_seconds),
            _completed_of(state),
        ]
        if with_tokens:
            row.append(f"{state.token_usage.total:,}" if state.token_usage.total else "")
        rows.append(row)
    headers = ["id", "status", "diagram", "started", "duration", "nodes"]
    headers += ["tokens"] if with_tokens else []
    widths = [max(len(header), *(len(row[i]) for row in rows)) for i, header in enumerate(headers)]
    # The id column never shrinks (it must stay a usable prefix). Diagram paths are cut on the
    # left, where the file name is; the error takes what is left and is cut with an ellipsis.
    room = console.width - (sum(widths) - widths[2]) - 2 * len(headers)
    diagram_width = min(widths[2], 40, room - (12 if with_errors else 0))
    diagram_width = max(diagram_width, 7)

    table = _table()
    for header in headers:
        right = header in ("duration", "nodes", "tokens")
        table.add_column(header, no_wrap=True, justify="right" if right else "left")
    table.add_column("error", max_width=60)
    for state, row in zip(states, rows, strict=True):
        cells: list[Any] = list(row)
        cells[1] = Text(row[1], style=STATUS_STYLES.get(row[1], ""))
        cells[2] = _left_cut(row[2], diagram_width)
        cells.append(_cell(_one_line(state.error or "", 60), "red"))
        table.add_row(*cells)
    console.print(table)


# --------------------------------------------------------------------------- show


def _find_nodes(state: ExecutionState, node: str) -> list[str]:
    """Node ids named by `node`: an id, else a label (exact, then ignoring case).

    Several nodes may share a label: all of them are returned.
    """
    if node in state.node_states:
        return [node]
    for folded in (False, True):
        wanted = node.casefold() if folded else node
        found = [
            node_id
            for node_id, node_state in state.node_states.items()
            if (node_state.label.casefold() if folded else node_state.label) == wanted
        ]
        if found:
            return found
    labels = ", ".join(ns.label or node_id for node_id, ns in state.node_states.items())
    raise KeyError(f"no node {node!r} in execution {state.id} (nodes: {labels or 'none'})")


def _event_line(event: dict[str, Any]) -> str:
    """One stored event as a line. The store's dicts are shown generically: a time (`at`,
    `timestamp` or `created_at`: epoch seconds or ISO text), a kind (`type`, `kind` or `event`)
    and the other fields as compact JSON."""
    at = event.get("at", event.get("timestamp", event.get("created_at")))
    if isinstance(at, (int, float)) and not isinstance(at, bool):
        second, millis = divmod(round(at * 1000), 1000)
        moment = time.strftime("%H:%M:%S", time.localtime(second)) + f".{millis:03d}"
    else:
        moment = _local_time(at, millis=True) if isinstance(at, str) else ""
    kind = str(event.get("type") or event.get("kind") or event.get("event") or "")
    skip = {"at", "timestamp", "created_at", "type", "kind", "event", "execution_id", "node_id"}
    rest = {key: value for key, value in event.items() if key not in skip and value is not None}
    detail = _compact(rest, 300) if rest else ""
    return " ".join(part for part in (moment, f"{kind:<16}", detail) if part).rstrip()


def print_execution(
    state: ExecutionState,
    stream: TextIO,
    *,
    color: bool,
    node: str | None = None,
    events: list[dict[str, Any]] | None = None,
    width: int | None = None,
    children: list[ExecutionState] | None = None,
) -> None:
    """The `dipeo show` report: header, result, node table, then each node's output and error
    (long values cut, with the command that shows them whole). `children` are the executions
    this one ran as sub-diagrams.

    With `node` (a label or an id): the header, then that node only, in full, with its events
    when `events` is given. Raises KeyError(message) when `node` names no node.
    """
    from rich.text import Text

    selected = _find_nodes(state, node) if node is not None else None
    console = _report_console(stream, color, width)
    glyphs = _glyphs(stream)
    status = state.status.value

    fields: list[tuple[str, str | Text]] = [
        ("execution", state.id),
        ("status", Text(status, style="bold " + STATUS_STYLES.get(status, ""))),
        ("diagram", state.diagram_id or ""),
        ("started", _local_time(state.started_at)),
    ]
    if state.ended_at:
        fields.append(("ended", _local_time(state.ended_at)))
    if state.duration_seconds is not None:
        fields.append(("duration", format_duration(state.duration_seconds)))
    if state.error:
        fields.append(("error", Text(state.error, style="red")))
    if state.parent_id:
        fields.append(("parent", f"{state.parent_id} (ran this as a sub-diagram)"))
    for child in children or ():
        fields.append(("child", f"{child.id} {child.status.value} {child.diagram_id or ''}"))
    if selected is None:
        if state.variables:
            fields.append(("variables", _compact(state.variables, 200, glyphs["more"])))
        tokens = _tokens_text(state.token_usage)
        if tokens:
            fields.append(("tokens", tokens))
        if events is not None:
            fields.append(("events", f"{len(events)} recorded"))
    _print_fields(console, fields)

    if selected is not None:
        for node_id in selected:
            _print_node_full(console, glyphs, state, node_id, events)
        return

    for heading, value in _result_sections(state):
        console.print()
        _print_block(console, glyphs, f"{heading}:", value, state, None, clip=True)

    console.print()
    console.print(_node_table(console, state))
    for node_id, node_state in state.node_states.items():
        output = state.node_outputs.get(node_id)
        if output is None and not node_state.error:
            continue
        console.print()
        console.print(_node_heading(glyphs, node_id, node_state))
        hint = node_state.label or node_id
        if output is not None:
            _print_output(console, glyphs, output, state, hint, clip=True)
        if node_state.error:
            _print_block(
                console, glyphs, "error:", node_state.error, state, hint, clip=True, style="red"
            )


def _node_heading(glyphs: dict[str, str], node_id: str, node: NodeState) -> Text:
    from rich.text import Text

    status = node.status.value
    heading = Text.assemble(
        (f"{glyphs['node']} {_name(node_id, node)}", "bold"),
        "  ",
        (status, STATUS_STYLES.get(status, "")),
    )
    if node.iterations > 1:
        heading.append(f"  {node.iterations} iterations")
    return heading


def _node_table(console: Console, state: ExecutionState) -> Any:
    from rich.text import Text

    label_width, type_width = _name_widths(console, 44)
    table = _table()
    table.add_column("node", no_wrap=True, max_width=label_width)
    table.add_column("type", no_wrap=True, max_width=type_width)
    table.add_column("status", no_wrap=True)
    table.add_column("iter", justify="right", no_wrap=True)
    table.add_column("duration", justify="right", no_wrap=True)
    table.add_column("tokens", justify="right", no_wrap=True)
    table.add_column("error / skip reason", max_width=60)
    for node_id, node in state.node_states.items():
        status = node.status.value
        usage = node.token_usage
        reason = node.error if node.status is NS.FAILED else node.skip_reason
        table.add_row(
            _cell(node.label or node_id),
            _cell(node.type),
            Text(status, style=STATUS_STYLES.get(status, "")),
            str(node.iterations) if node.iterations else "",
            format_duration(_node_duration(node)),
            f"{usage.total:,}" if usage is not None and usage.total else "",
            _cell(_one_line(reason or "", 60), "red" if node.status is NS.FAILED else "dim"),
        )
    return table


def _print_block(
    console: Console,
    glyphs: dict[str, str],
    heading: str,
    value: Any,
    state: ExecutionState,
    hint: str | None,
    *,
    clip: bool,
    style: str = "",
) -> None:
    """A heading, then a value as text or indented JSON, printed without re-wrapping. Clipped:
    long strings and long texts are cut, with the command that shows them whole."""
    from rich.text import Text

    if clip:
        value = _clip_strings(value, SHOW_MAX_STRING)
    text = _pretty(value)
    hidden = 0
    if clip:
        text, hidden = _clip_lines(text, SHOW_MAX_LINES, 8000)
    console.print(Text(heading, style="bold"))
    console.print(Text(text if text else '""', style=style), soft_wrap=True)
    if hidden:
        if hint is None:
            where = f"dipeo show {state.id} --json"
        else:
            where = f"dipeo show {state.id} --node {json.dumps(hint) if ' ' in hint else hint}"
        more = f"{glyphs['more']} {hidden} more line{'s' * (hidden != 1)} ({where})"
        console.print(Text(more, style="dim"), soft_wrap=True)


def _print_output(
    console: Console,
    glyphs: dict[str, str],
    output: NodeOutput,
    state: ExecutionState,
    hint: str,
    *,
    clip: bool,
) -> None:
    _print_block(console, glyphs, "value:", output.value, state, hint, clip=clip)
    if output.metadata:
        _print_block(console, glyphs, "metadata:", output.metadata, state, hint, clip=clip)


def _print_node_full(
    console: Console,
    glyphs: dict[str, str],
    state: ExecutionState,
    node_id: str,
    events: list[dict[str, Any]] | None,
) -> None:
    from rich.text import Text

    node = state.node_states[node_id]
    status = node.status.value
    console.print()
    console.print(_node_heading(glyphs, node_id, node))
    fields: list[tuple[str, str | Text]] = [
        ("id", node_id),
        ("type", node.type),
        ("status", Text(status, style=STATUS_STYLES.get(status, ""))),
        ("iterations", str(node.iterations)),
    ]
    if node.started_at:
        fields.append(("started", _local_time(node.started_at)))
    if node.ended_at:
        fields.append(("ended", _local_time(node.ended_at)))
    duration = _node_duration(node)
    if duration is not None:
        fields.append(("duration", format_duration(duration)))
    tokens = _tokens_text(node.token_usage)
    if tokens:
        fields.append(("tokens", tokens))
    if node.skip_reason:
        fields.append(("skip reason", node.skip_reason))
    _print_fields(console, fields)
    if node.error:
        _print_block(console, glyphs, "error:", node.error, state, None, clip=False, style="red")
    output = state.node_outputs.get(node_id)
    if output is not None:
        _print_output(console, glyphs, output, state, node.label or node_id, clip=False)
    mine = [event for event in events or () if event.get("node_id") == node_id]
    if mine:
        console.print(Text("events:", style="bold"))
        for event in mine:
            console.print(Text(_event_line(event)), soft_wrap=True)
