"""Load a diagram file (light YAML, native JSON or readable YAML) into one `Diagram`.

    load_diagram("flow.light.yaml")            # format detected from the content
    load_diagram("flow.json", format="native")  # or forced
    parse_diagram(text, file="inline.yaml")

Both raise DiagramError with every problem found (file, line, node label or connection), never
another exception for bad input. Loading checks the file's shape and resolves labels and
handles; node types, properties and handle names are checked by `graph.compile_graph`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dipeo_cli.diagram.detect import (
    FORMATS,
    STDIN,
    STDIN_NAME,
    Document,
    detect_format,
    parse_text,
    read_stdin,
    read_text,
)
from dipeo_cli.diagram.light import parse_light
from dipeo_cli.diagram.model import Diagram, DiagramArrow, DiagramNode, Person, Position
from dipeo_cli.diagram.native import parse_native
from dipeo_cli.diagram.readable import parse_readable
from dipeo_cli.errors import DiagramError, Problem
from dipeo_cli.heap import collection_paused

__all__ = [
    "FORMATS",
    "Diagram",
    "DiagramArrow",
    "DiagramNode",
    "Person",
    "Position",
    "STDIN",
    "load_diagram",
    "parse_diagram",
]

_PARSERS: dict[str, Callable[[Document, str | None], Diagram]] = {
    "light": parse_light,
    "native": parse_native,
    "readable": parse_readable,
}


def load_diagram(path: str | Path, format: str | None = None, *, strict: bool = True) -> Diagram:
    """Read and parse the diagram at `path`; `Diagram.file` is `path` as given.

    With `strict=False`, problems that still leave a diagram to compile (a connection to a
    missing label, ...) are returned in `Diagram.problems` instead of raised, so that
    `compile_graph` can report them together with its own.

    `path` "-" reads standard input: messages name it "<stdin>", `Diagram.file` is None (it has
    no folder: relative paths in it are taken from the working directory)."""
    _check_format(format, str(path))
    if str(path) == STDIN:
        diagram = parse_diagram(read_stdin(), file=STDIN_NAME, format=format, strict=strict)
        diagram.file = None
        return diagram
    return parse_diagram(read_text(path), file=str(path), format=format, strict=strict)


@collection_paused
def parse_diagram(
    text: str, file: str | None = None, format: str | None = None, *, strict: bool = True
) -> Diagram:
    """Parse diagram text; `file` only names it in messages and in `Diagram.file`."""
    _check_format(format, file)
    doc = parse_text(text, file)
    if format is not None and isinstance(doc.data, dict):
        chosen = format
    else:
        chosen = detect_format(doc.data, file)  # raises when the top level is not a mapping
    try:
        diagram = _PARSERS[chosen](doc, file)
    except DiagramError:
        raise
    except Exception as exc:  # a loader bug must still name the file, never dump a traceback
        raise DiagramError(
            [Problem(f"cannot read this {chosen} diagram: {type(exc).__name__}: {exc}")], file
        ) from exc
    diagram.file = file
    diagram.format = chosen
    diagram.source = text
    if strict and diagram.problems:
        raise DiagramError(diagram.problems, file)
    return diagram


def _check_format(format: str | None, file: str | None) -> None:
    if format is not None and format not in FORMATS:
        raise DiagramError(
            [Problem(f"unknown diagram format '{format}' (use one of: {', '.join(FORMATS)})")], file
        )
