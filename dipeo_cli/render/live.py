"""The live table `dipeo run` draws on a terminal, redrawn by Rich's own thread."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from dipeo_cli import events as ev
from dipeo_cli.render.text import (
    NS,
    STATUS_STYLES,
    _cell,
    _name_widths,
    _node_duration,
    _one_line,
    _output_preview,
    _status_counts,
    _table,
    format_duration,
)
from dipeo_cli.state import (
    ExecutionState,
    ExecutionStatus,
    NodeOutput,
    NodeState,
    parse_iso,
)

if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.text import Text

PREVIEW_CHARS = 40  # least room for the output preview in the live table
FIXED_COLUMNS = 44  # status, iter, time and the gaps between columns, roughly
LIVE_MAX_ROWS = 40


def _node_detail(node: NodeState, output: NodeOutput | None, limit: int) -> tuple[str, str]:
    """The one-line detail of a node row and its style: error, skip reason or output preview."""
    if node.status is NS.FAILED:
        return _one_line(node.error or "failed", limit), "red"
    if node.status is NS.ABORTED:
        return _one_line(node.error or "interrupted", limit), "red"
    if node.status is NS.SKIPPED:
        return _one_line(node.skip_reason or "", limit), "dim"
    if node.status in (NS.COMPLETED, NS.MAXITER_REACHED):
        return _output_preview(output, limit), ""
    return "", ""


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
            if node.status in (NS.RUNNING, NS.FAILED, NS.ABORTED):
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
        # the preview takes the room the terminal has beyond the other columns
        used = FIXED_COLUMNS + label_width + type_width + (10 if with_tokens else 0)
        preview = max(PREVIEW_CHARS, self.console.width - used)
        table.add_column("output", max_width=preview, no_wrap=True, overflow="ellipsis")
        outputs = state.node_outputs
        for node_id, node in shown:
            status = node.status.value
            detail, detail_style = _node_detail(node, outputs.get(node_id), preview)
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
        # nodes an abort cancelled did not get done: counted apart, as interrupted
        done = sum(1 for node in nodes if node.status not in (NS.PENDING, NS.RUNNING, NS.ABORTED))
        interrupted = sum(1 for node in nodes if node.status is NS.ABORTED)
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
        if interrupted:
            header.append(f", {interrupted} interrupted", style=STATUS_STYLES["ABORTED"])
        if not state.token_usage.is_empty:
            header.append(f"  {state.token_usage.total:,} tokens")
        if state.status is ExecutionStatus.PAUSED:
            header.append("  no node starts until resumed", style=STATUS_STYLES["PAUSED"])
        return header
