"""`dipeo convert IN OUT`: the same diagram in another format (light, native, readable)."""

from __future__ import annotations

import sys

import typer

from dipeo_cli.cli import _fail, _fail_invalid, _format_flag, root


@root.command()
def convert(
    source: str = typer.Argument(..., metavar="IN", help="Diagram file to read; - for stdin."),
    target: str = typer.Argument(
        ...,
        metavar="OUT",
        help="File to write (*.light.yaml, *.native.json, *.readable.yaml, *.json); - for stdout.",
    ),
    to: str | None = typer.Option(
        None,
        "--to",
        metavar="light|native|readable",
        help="Format to write (default: from OUT's name).",
    ),
    light: bool = typer.Option(False, "--light", help="Read IN as light YAML."),
    native: bool = typer.Option(False, "--native", help="Read IN as native JSON."),
    readable: bool = typer.Option(False, "--readable", help="Read IN as readable YAML."),
    force: bool = typer.Option(False, "--force", "-f", help="Overwrite OUT if it exists."),
) -> None:
    """Write a diagram in another format: light YAML, native JSON or readable YAML. Nodes,
    properties, arrows, persons and metadata are kept; comments and layout are not."""
    from pathlib import Path

    from dipeo_cli.diagram import FORMATS, load_diagram
    from dipeo_cli.diagram.write import format_for_name, write_diagram
    from dipeo_cli.errors import DiagramError, DipeoError

    fmt = _format_flag(light, native, readable)
    wanted = to.lower() if to else (format_for_name(target) if target != "-" else None)
    if wanted is None:
        _fail(
            f"cannot tell the format to write from {target!r}: name it *.light.yaml, "
            "*.native.json or *.readable.yaml, or give --to light|native|readable"
        )
    if wanted not in FORMATS:
        _fail(f"--to must be one of {', '.join(FORMATS)}, got {to!r}")
    out = Path(target)
    if target != "-":
        if out.exists() and not force:
            _fail(f"{target} exists; use --force to overwrite it")
        if source != "-" and out.exists() and out.resolve() == Path(source).resolve():
            _fail("IN and OUT are the same file")
    try:
        diagram = load_diagram(source, format=fmt)
        text = write_diagram(diagram, wanted)
    except DiagramError as exc:
        _fail_invalid(source, exc)
    except DipeoError as exc:
        _fail(str(exc))
    if target == "-":
        sys.stdout.write(text)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(f"cannot write {target}: {exc.strerror or exc}")
    print(
        f"wrote {target}: {wanted}, {len(diagram.nodes)} nodes, {len(diagram.arrows)} arrows "
        f"(from {diagram.format})",
        file=sys.stderr,
    )
