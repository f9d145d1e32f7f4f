"""What every view shares: status styles, glyphs, durations, bounded one-line previews of any
value, and the Rich consoles and tables the reports draw with.

Rich is imported inside the functions that build consoles, cells and tables, never at module
level, so the plain progress lines and an uncoloured summary do not load it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO

from dipeo_cli.redact import redact
from dipeo_cli.state import (
    ExecutionState,
    NodeExecutionStatus,
    NodeOutput,
    NodeState,
    TokenUsage,
    parse_iso,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

STATUS_STYLES = {
    "PENDING": "dim",
    "QUEUED": "blue",
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
REPORT_WIDTH = 100  # width of reports written to a file or pipe

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


# --------------------------------------------------------------- text helpers


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


def _tokens_text(usage: TokenUsage | None) -> str:
    """`150 (input 100, output 50, cached 10)`; empty when no token was used."""
    if usage is None or usage.is_empty:
        return ""
    parts = [f"input {usage.input:,}", f"output {usage.output:,}"]
    if usage.cached:
        parts.append(f"cached {usage.cached:,}")
    return f"{usage.total:,} ({', '.join(parts)})"


def _status_counts(nodes: Iterable[NodeState]) -> str:
    """`5 completed, 1 failed, 2 skipped, 1 interrupted`, in the order of the status enum
    (nodes an abort cancelled are "interrupted")."""
    counts: dict[NodeExecutionStatus, int] = {}
    for node in nodes:
        counts[node.status] = counts.get(node.status, 0) + 1
    return ", ".join(
        f"{counts[status]} {_count_word(status)}"
        for status in NodeExecutionStatus
        if counts.get(status)
    )


def _count_word(status: NodeExecutionStatus) -> str:
    if status is NodeExecutionStatus.ABORTED:
        return "interrupted"
    return status.value.lower().replace("_", " ")


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


def handled_failures(state: ExecutionState) -> str:
    """ ", N nodes failed into error ports" for a COMPLETED run whose failures went out of
    `error` ports (or on as outputs with --continue-on-error); "" otherwise."""
    if state.status.value != "COMPLETED":
        return ""
    failed = sum(1 for node in state.node_states.values() if node.status.value == "FAILED")
    if not failed:
        return ""
    return f", {failed} node{'s' * (failed != 1)} failed into error ports"


def _result_sections(state: ExecutionState) -> list[tuple[str, Any]]:
    """(heading, value) per endpoint result: one `Result`, or one per endpoint label."""
    result = state.result
    if result is None:
        return []
    labels = {node.label for node in state.node_states.values() if node.type == "endpoint"}
    if len(labels) > 1 and isinstance(result, dict) and result and set(result) <= labels:
        return [(f"Result ({label})", value) for label, value in result.items()]
    return [("Result", result)]


# ------------------------------------------------------------------- consoles


def _columns() -> int | None:
    """$COLUMNS when it holds a usable width: a pipe has no size, but the shell may know it."""
    text = os.environ.get("COLUMNS", "")
    return int(text) if text.isdigit() and 20 <= int(text) <= 1000 else None


def _report_console(stream: TextIO, color: bool, width: int | None) -> Console:
    """A Console for a report: no ANSI at all without colour, 100 columns off a terminal."""
    from rich.console import Console

    if width is None and not _isatty(stream):
        width = _columns() or REPORT_WIDTH
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
