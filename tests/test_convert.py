"""`dipeo convert`: every example diagram survives light -> native -> readable and back without
changing what it does: the same diagram when read back (every example, the DiPeO corpus too),
and the same run (the offline ones, LLMs mocked)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app
from dipeo_cli.compiler import compile_graph
from dipeo_cli.diagram import Diagram, load_diagram, parse_diagram
from dipeo_cli.diagram.write import format_for_name, write_diagram
from dipeo_cli.errors import DiagramError
from dipeo_cli.graph import CompileOptions
from dipeo_cli.registry import load_plugins
from tests.conftest import DIPEO_EXAMPLES, HAVE_EXAMPLES

REPO = Path(__file__).resolve().parents[1]
FORMATS = ("light", "native", "readable")
SUFFIX = {"light": ".light.yaml", "native": ".native.json", "readable": ".readable.yaml"}
AWKWARD = REPO / "tests" / "fixtures" / "graph" / "awkward_labels.light.yaml"


def ours() -> list[Path]:
    return [
        *sorted((REPO / "diagrams").glob("*.light.yaml")),
        *sorted((REPO / "tests" / "conformance" / "diagrams").glob("*.light.yaml")),
        AWKWARD,
    ]


def corpus() -> list[Path]:
    if not HAVE_EXAMPLES:
        return []
    return sorted(p for p in DIPEO_EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml", ".json"))


def compiles(diagram: Diagram) -> bool:
    try:
        compile_graph(diagram, load_plugins(()), CompileOptions(llm_mode="mock"))
    except DiagramError:
        return False
    return True


def canonical(diagram: Diagram) -> dict[str, Any]:
    """What a diagram does, without what its format decides (ids of nodes and arrows; JSON
    has no dates, so a YAML date is compared as the ISO text native JSON holds)."""
    labels = {node.id: node.label for node in diagram.nodes}
    found = {
        "nodes": [(n.label, n.type, n.props, (n.position.x, n.position.y)) for n in diagram.nodes],
        "arrows": [
            (
                labels[a.source],
                a.source_handle,
                labels[a.target],
                a.target_handle,
                a.label,
                a.content_type,
            )
            for a in diagram.arrows
        ],
        "persons": {pid: p.model_dump() for pid, p in diagram.persons.items()},
        "metadata": diagram.metadata,
    }
    return json.loads(json.dumps(found, default=str))


def reread(diagram: Diagram, fmt: str, beside: Path) -> Diagram:
    """Written in `fmt` and read back as a file next to `beside` (relative paths still hold)."""
    text = write_diagram(diagram, fmt)
    file = str(beside.parent / f"converted{SUFFIX[fmt]}")
    again = parse_diagram(text, file=file)  # format detected from the content, as run does
    assert again.format == fmt
    return again


def test_format_comes_from_the_name():
    assert format_for_name("a.light.yaml") == "light"
    assert format_for_name("A.Native.JSON") == "native"
    assert format_for_name("a.readable.yml") == "readable"
    assert format_for_name("a.json") == "native"
    assert format_for_name("a.yaml") is None


@pytest.mark.parametrize("path", ours() + corpus(), ids=lambda p: p.name)
def test_every_example_reads_back_the_same_in_every_format(path: Path):
    try:
        original = load_diagram(path)
    except DiagramError:
        pytest.skip("not a diagram this runner reads")
    valid = compiles(original)
    if path in ours():
        assert valid, path
    expected = canonical(original)
    for fmt in FORMATS:
        converted = reread(original, fmt, path)
        assert canonical(converted) == expected, fmt
        assert compiles(converted) == valid, fmt
    # and round the cycle, from each format to the next, back to where it started
    start = FORMATS.index(original.format)
    diagram = original
    for step in range(1, 4):
        diagram = reread(diagram, FORMATS[(start + step) % 3], path)
        assert canonical(diagram) == expected, diagram.format


def run_json(*args: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["run", *args, "--json", "--llm", "mock"])
    assert "Traceback" not in result.output
    return json.loads(result.stdout)


def behaviour(run: dict[str, Any]) -> dict[str, Any]:
    shown = json.loads(CliRunner().invoke(app, ["show", run["id"], "--json"]).stdout)
    nodes = {
        s["label"]: (s["status"], s["iterations"], s["skip_reason"])
        for s in shown["node_states"].values()
    }
    return {"status": run["status"], "result": run["result"], "nodes": nodes}


RUNNABLE = [p for p in ours() if p.name not in ("api_call.light.yaml",)]  # needs a server


def fresh_run(path: Path, work: Path) -> dict[str, Any]:
    """Run with the files earlier runs wrote removed (db appends, counters)."""
    for folder in (work / "results", work / "files" / "results"):
        shutil.rmtree(folder, ignore_errors=True)
    return behaviour(run_json(str(path)))


@pytest.mark.parametrize("path", RUNNABLE, ids=lambda p: p.name)
def test_converted_examples_run_the_same(path: Path, isolated: Path):
    # a copy of the diagram's folder, so that files it names relative to itself are there;
    # light -> native -> readable, each run (the way back to light is compared as a diagram)
    folder = isolated / "diagrams"
    shutil.copytree(path.parent, folder, dirs_exist_ok=True)
    original = folder / path.name
    before = fresh_run(original, isolated)
    stem = path.name.removesuffix(".light.yaml")
    previous = original
    for fmt in ("native", "readable"):
        target = folder / f"{stem}.converted{SUFFIX[fmt]}"
        result = CliRunner().invoke(app, ["convert", str(previous), str(target)])
        assert result.exit_code == 0, result.output
        assert fresh_run(target, isolated) == before, target.name
        previous = target


def test_convert_to_stdout_and_from_stdin():
    hello = str(REPO / "diagrams" / "hello.light.yaml")
    native = CliRunner().invoke(app, ["convert", hello, "-", "--to", "native"])
    assert native.exit_code == 0 and json.loads(native.stdout)["nodes"][1]["type"] == "template_job"
    readable = CliRunner().invoke(app, ["convert", "-", "hello.readable.yaml"], input=native.stdout)
    assert readable.exit_code == 0, readable.output
    assert load_diagram("hello.readable.yaml").format == "readable"
    assert "wrote hello.readable.yaml: readable, 3 nodes, 2 arrows (from native)" in readable.stderr


def test_convert_refuses_what_it_cannot_do():
    hello = str(REPO / "diagrams" / "hello.light.yaml")
    cases = [
        (["convert", hello, "out.yaml"], "cannot tell the format"),
        (["convert", hello, "-"], "cannot tell the format"),
        (["convert", hello, "-", "--to", "xml"], "--to must be one of light, native, readable"),
        (["convert", "missing.light.yaml", "x.json"], "file not found"),
    ]
    Path("bad.light.yaml").write_text("nodes: [\n", encoding="utf-8")
    cases.append((["convert", "bad.light.yaml", "x.json"], "invalid YAML"))
    Path("exists.json").write_text("{}", encoding="utf-8")
    cases.append((["convert", hello, "exists.json"], "use --force"))
    for args, message in cases:
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
        assert "Traceback" not in result.output
    assert Path("exists.json").read_text() == "{}"
