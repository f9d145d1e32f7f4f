"""The `dipeo show` report: one execution, or one node of it in full."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, TextIO

from dipeo_cli.render.text import (
    NS,
    STATUS_STYLES,
    _cell,
    _clip_lines,
    _clip_strings,
    _compact,
    _glyphs,
    _local_time,
    _name,
    _name_widths,
    _node_duration,
    _one_line,
    _pretty,
    _print_fields,
    _report_console,
    _result_sections,
    _table,
    _tokens_text,
    format_duration,
)
from dipeo_cli.state import (
    ExecutionState,
    ExecutionStatus,
    NodeOutput,
    NodeState,
    no_such_node,
    nodes_named,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

SHOW_MAX_LINES = 30
SHOW_MAX_STRING = 300


def _find_nodes(state: ExecutionState, node: str) -> list[str]:
    """Node ids named by `node` (state.nodes_named; several nodes may share a label)."""
    found = nodes_named(state, node)
    if not found:
        raise KeyError(no_such_node(state, node))
    return found


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


def _status_text(state: ExecutionState) -> Text:
    from rich.text import Text

    status = state.status.value
    text = Text(status, style="bold " + STATUS_STYLES.get(status, ""))
    if state.status is ExecutionStatus.PAUSED:
        text.append(f" (no node starts until `dipeo resume {state.id}`)", style="dim")
    return text


def print_execution(
    state: ExecutionState,
    stream: TextIO,
    *,
    color: bool,
    node: str | None = None,
    events: list[dict[str, Any]] | None = None,
    width: int | None = None,
    children: list[ExecutionState] | None = None,
    iterations: list[dict[str, Any]] | None = None,
) -> None:
    """The `dipeo show` report: header, result, node table, then each node's output and error
    (long values cut, with the command that shows them whole). `children` are the executions
    this one ran as sub-diagrams.

    With `node` (a label or an id): the header, then that node only, in full, with its events
    when `events` is given and every iteration it ran when `iterations` is given (oldest
    first). Raises KeyError(message) when `node` names no node.
    """
    from rich.text import Text

    selected = _find_nodes(state, node) if node is not None else None
    console = _report_console(stream, color, width)
    glyphs = _glyphs(stream)

    fields: list[tuple[str, str | Text]] = [
        ("execution", state.id),
        ("status", _status_text(state)),
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
            mine = [it for it in iterations or () if it["node_id"] == node_id]
            if len(mine) > 1:
                _print_iterations(console, glyphs, state, mine)
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
        ended_badly = node.status in (NS.FAILED, NS.ABORTED)
        reason = node.error if ended_badly else node.skip_reason
        table.add_row(
            _cell(node.label or node_id),
            _cell(node.type),
            Text(status, style=STATUS_STYLES.get(status, "")),
            str(node.iterations) if node.iterations else "",
            format_duration(_node_duration(node)),
            f"{usage.total:,}" if usage is not None and usage.total else "",
            _cell(_one_line(reason or "", 60), "red" if ended_badly else "dim"),
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


def _print_iterations(
    console: Console,
    glyphs: dict[str, str],
    state: ExecutionState,
    iterations: list[dict[str, Any]],
) -> None:
    """Every run of a node, oldest first: status, when, what fed it, what it produced."""
    from rich.text import Text

    console.print()
    console.print(Text(f"iterations ({len(iterations)}):", style="bold"))
    for it in iterations:
        status = it["status"]
        line = Text(f"{glyphs['node']} #{it['iteration']} ")
        line.append(status, style=STATUS_STYLES.get(status, ""))
        if it.get("started_at"):
            line.append(f"  {_local_time(it['started_at'])}")
        sources = ", ".join(
            f"{label} <- {src} #{n}" for label, (src, n) in (it.get("inputs") or {}).items()
        )
        if sources:
            line.append(f"  inputs: {sources}", style="dim")
        console.print(line)
        if it.get("error"):
            _print_block(
                console, glyphs, "error:", it["error"], state, None, clip=True, style="red"
            )
        output = it.get("output")
        if output is not None:
            label = it.get("label") or it["node_id"]
            _print_block(console, glyphs, "value:", output.get("value"), state, label, clip=True)
