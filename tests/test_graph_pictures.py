"""`show --graph` / `validate --graph`: diagrams and runs as Mermaid flowcharts and DOT graphs.

Mermaid output is checked three ways: a golden file (byte-stable), a parser of the subset we
emit run over every example diagram (so no label escapes its string), and, where the tools are
installed, the real renderers: `mmdc` (@mermaid-js/mermaid-cli, with Debian's chromium; point
DIPEO_MMDC at it when it is not on PATH) and Graphviz's `dot`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app
from dipeo_cli.compiler import compile_graph
from dipeo_cli.diagram import load_diagram
from dipeo_cli.errors import DiagramError
from dipeo_cli.graph import CompileOptions
from dipeo_cli.registry import load_plugins
from dipeo_cli.render.graph import (
    dot_text,
    mermaid_text,
    picture_of_graph,
    to_dot,
    to_mermaid,
)
from tests.conftest import DIPEO_EXAMPLES, HAVE_EXAMPLES

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "graph"
AWKWARD = FIXTURES / "awkward_labels.light.yaml"
COUNTDOWN = REPO / "diagrams" / "countdown.light.yaml"


def example_files(with_corpus: bool = True) -> list[Path]:
    files = sorted((REPO / "diagrams").glob("*.light.yaml"))
    files += sorted((REPO / "tests" / "conformance" / "diagrams").glob("*.yaml"))
    files.append(AWKWARD)
    if HAVE_EXAMPLES and with_corpus:
        files += sorted(
            p for p in DIPEO_EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml", ".json")
        )
    return files


def compiled_examples(with_corpus: bool = True) -> list[tuple[str, object]]:
    """(name, graph) for every example that compiles (persons checked as mock ones)."""
    found = []
    registry = load_plugins(())
    for path in example_files(with_corpus):
        try:
            diagram = load_diagram(path)
            graph = compile_graph(diagram, registry, CompileOptions(llm_mode="mock"))
        except DiagramError:
            continue
        found.append((path.name, graph))
    return found


def cli(*args: str, code: int = 0):
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result


# -- a parser of the Mermaid subset we emit ------------------------------------------------

_QUOTED = r'"((?:[^"<>&`|#]|#[a-z]+;|#\d+;|<br/>)*)"'
_NODE = re.compile(rf"^    (n\d+)(?:\(\[{_QUOTED}\]\)|\[{_QUOTED}\]|\{{{_QUOTED}\}})$")
_EDGE = re.compile(rf"^    (n\d+) (-->|-\.->)(?:\|{_QUOTED}\|)? (n\d+)$")
_CLASSDEF = re.compile(r"^    classDef ([a-z_]+) fill:#[0-9a-f]{6},stroke:#[0-9a-f]{6},color:#111$")
_CLASS = re.compile(r"^    class (n\d+(?:,n\d+)*) ([a-z_]+)$")


def parse_mermaid(text: str) -> dict[str, object]:
    """Check `text` against the grammar subset to_mermaid emits; return what it declares.
    Raises AssertionError naming the line that does not fit."""
    lines = text.splitlines()
    assert lines[0] == "flowchart TD", lines[0]
    nodes: dict[str, str] = {}
    edges: list[tuple[str, str, str, str | None]] = []
    classes: dict[str, list[str]] = {}
    defined: set[str] = set()
    for line in lines[1:]:
        if m := _NODE.match(line):
            assert m[1] not in nodes, f"node {m[1]} declared twice"
            nodes[m[1]] = next(g for g in m.groups()[1:] if g is not None)
        elif m := _EDGE.match(line):
            assert m[1] in nodes and m[4] in nodes, f"edge to an undeclared node: {line}"
            edges.append((m[1], m[2], m[4], m[3]))
        elif m := _CLASSDEF.match(line):
            defined.add(m[1])
        elif m := _CLASS.match(line):
            assert m[2] in defined, f"class {m[2]} used before classDef"
            ids = m[1].split(",")
            assert all(i in nodes for i in ids), line
            classes[m[2]] = ids
        else:
            raise AssertionError(f"not in the emitted Mermaid subset: {line!r}")
    for label in [*nodes.values(), *(e[3] for e in edges if e[3])]:
        bare = re.sub(r"#[a-z]+;|#\d+;|<br/>", "", label)
        assert not re.search(r'["<>&`|#]', bare), label
    return {"nodes": nodes, "edges": edges, "classes": classes}


def test_the_parser_rejects_what_mermaid_rejects():
    with pytest.raises(AssertionError):
        parse_mermaid('flowchart TD\n    n0["say "hi""]\n')
    with pytest.raises(AssertionError):
        parse_mermaid('flowchart TD\n    n0["a"]\n    n0 --> n1\n')
    with pytest.raises(AssertionError):
        parse_mermaid('flowchart TD\n    n0["<script>"]\n')


def test_labels_are_escaped_for_each_grammar():
    assert mermaid_text('a "b" <c> & #d; `e` | f') == (
        "a #quot;b#quot; #lt;c#gt; #amp; #35;d; #96;e#96; #124; f"
    )
    assert mermaid_text("two\nlines") == "two<br/>lines"
    assert dot_text('a "b" \\n') == 'a \\"b\\" \\\\n'
    assert dot_text("two\nlines") == "two\\nlines"


def test_countdown_mermaid_and_dot_are_byte_stable():
    graph = compile_graph(load_diagram(COUNTDOWN), load_plugins(()))
    picture = picture_of_graph(graph)
    assert to_mermaid(picture) == (FIXTURES / "countdown.mmd").read_text(encoding="utf-8")
    assert to_dot(picture) == (FIXTURES / "countdown.dot").read_text(encoding="utf-8")


def test_every_example_diagram_fits_the_mermaid_subset():
    examples = compiled_examples()
    assert len(examples) >= 20
    for name, graph in examples:
        parsed = parse_mermaid(to_mermaid(picture_of_graph(graph)))  # type: ignore[arg-type]
        assert len(parsed["nodes"]) == len(graph.nodes), name  # type: ignore[attr-defined]
        assert len(parsed["edges"]) == len(graph.edges), name  # type: ignore[attr-defined]


def test_validate_graph_draws_branches_loops_and_awkward_labels():
    text = cli("validate", str(AWKWARD), "--graph", "mermaid").stdout
    parsed = parse_mermaid(text)
    assert "#quot;hi#quot; #lt;b#gt;bold#lt;/b#gt; #amp; co<br/>code_job" in text
    edges = parsed["edges"]
    assert ("n4", "-.->", "n1", "condfalse: n") in edges  # closes the loop: dashed
    assert ("n4", "-->", "n5", "condtrue") in edges
    dot = cli("validate", str(AWKWARD), "--graph", "dot").stdout
    assert dot.startswith('digraph "') and 'label="say \\"hi\\" <b>bold</b> & co' in dot
    assert 'n4 -> n1 [label="condfalse: n", style=dashed];' in dot


def test_show_graph_colours_nodes_by_status_with_iterations():
    run = json.loads(cli("run", str(COUNTDOWN), "--json").stdout)
    text = cli("show", run["id"], "--graph", "mermaid").stdout
    parsed = parse_mermaid(text)
    assert parsed["classes"] == {"completed": ["n0", "n1", "n2", "n3", "n4"]}
    assert '"Step<br/>code_job<br/>COMPLETED x3"' in text
    dot = cli("show", "latest", "--graph", "dot").stdout
    assert 'label="Step\\ncode_job\\nCOMPLETED x3", fillcolor="#dcfce7"' in dot


def test_show_graph_of_a_failed_run_marks_failed_and_skipped_nodes():
    Path("fails.light.yaml").write_text(
        "nodes:\n"
        "  - {label: Start, type: start}\n"
        "  - {label: Boom, type: code_job, code: 'raise ValueError(1)'}\n"
        "  - {label: End, type: endpoint}\n"
        "connections:\n  - {from: Start, to: Boom}\n  - {from: Boom, to: End}\n",
        encoding="utf-8",
    )
    cli("run", "fails.light.yaml", code=1)
    parsed = parse_mermaid(cli("show", "latest", "--graph", "mermaid").stdout)
    assert parsed["classes"] == {"completed": ["n0"], "failed": ["n1"], "skipped": ["n2"]}


def test_show_graph_without_a_recorded_source_draws_the_nodes_only():
    run = json.loads(cli("run", str(COUNTDOWN), "--json").stdout)
    with sqlite3.connect(Path(os.environ["DIPEO_HOME"]) / "history.db") as db:
        db.execute("UPDATE executions SET diagram_source = NULL WHERE id = ?", (run["id"],))
    parsed = parse_mermaid(cli("show", run["id"], "--graph", "mermaid").stdout)
    assert len(parsed["nodes"]) == 5 and parsed["edges"] == []  # type: ignore[arg-type]


def test_graph_option_is_checked():
    assert (
        "--graph must be one of mermaid, dot"
        in cli("validate", str(COUNTDOWN), "--graph", "png", code=2).stderr
    )
    assert "not both" in cli("validate", str(COUNTDOWN), "--graph", "dot", "--json", code=2).stderr


# -- the real renderers, where installed ----------------------------------------------------


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz `dot` is not installed")
def test_dot_renders_every_example_with_graphviz(tmp_path: Path):
    for name, graph in compiled_examples():
        source = tmp_path / f"{name}.dot"
        source.write_text(to_dot(picture_of_graph(graph)), encoding="utf-8")  # type: ignore[arg-type]
        done = subprocess.run(
            ["dot", "-Tsvg", "-o", os.devnull, str(source)], capture_output=True, text=True
        )
        assert done.returncode == 0 and not done.stderr, (name, done.stderr)


MMDC = os.environ.get("DIPEO_MMDC") or shutil.which("mmdc")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _mermaid_node_path(mmdc: str) -> str:
    """NODE_PATH that finds mermaid-cli's own dependencies (mermaid, puppeteer-core), whether
    it was installed locally (hoisted) or globally (nested)."""
    cli_js = Path(mmdc).resolve()
    folders = []
    for parent in cli_js.parents:
        if (parent / "node_modules").is_dir() and parent.name == "mermaid-cli":
            folders.append(str(parent / "node_modules"))
        if parent.name == "node_modules":
            folders.append(str(parent))
            break
    return os.pathsep.join(folders)


needs_mermaid = pytest.mark.skipif(
    MMDC is None or CHROMIUM is None,
    reason="needs @mermaid-js/mermaid-cli (mmdc on PATH or DIPEO_MMDC) and chromium",
)


@pytest.mark.timeout(120)
@needs_mermaid
def test_mermaid_renders_every_example_in_chromium(tmp_path: Path):
    """The mermaid package (mermaid-cli's own copy) parses and renders every chart in one
    Chromium page: every example diagram, the DiPeO corpus and a run's coloured picture."""
    run = json.loads(cli("run", str(COUNTDOWN), "--json").stdout)
    charts = [to_mermaid(picture_of_graph(graph)) for _, graph in compiled_examples()]  # type: ignore[arg-type]
    charts.append(cli("show", run["id"], "--graph", "mermaid").stdout)
    charts.append('flowchart TD\n    n0["A "x" ]\n')  # the check itself must catch this
    listing = tmp_path / "charts.json"
    listing.write_text(json.dumps(charts), encoding="utf-8")
    done = subprocess.run(
        ["node", str(FIXTURES / "render_mermaid.cjs"), CHROMIUM, str(listing)],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        timeout=110,
        env={**os.environ, "NODE_PATH": _mermaid_node_path(MMDC)},  # type: ignore[arg-type]
    )
    assert done.returncode == 0, done.stderr[-2000:]
    errors = json.loads(done.stdout)
    assert errors[-1] is not None  # the broken chart was refused
    failed = {i: e for i, e in enumerate(errors[:-1]) if e is not None}
    assert not failed, {i: (charts[i], e) for i, e in failed.items()}


@pytest.mark.timeout(120)
@needs_mermaid
def test_mermaid_cli_renders_the_awkward_labels_and_a_run(tmp_path: Path):
    # mmdc, as a user would run it (it opens one page per chart: ~2 s each, so two charts)
    run = json.loads(cli("run", str(COUNTDOWN), "--json").stdout)
    charts = [
        cli("validate", str(AWKWARD), "--graph", "mermaid").stdout,
        cli("show", run["id"], "--graph", "mermaid").stdout,
    ]
    markdown = tmp_path / "charts.md"
    markdown.write_text("".join(f"```mermaid\n{c}```\n\n" for c in charts), encoding="utf-8")
    config = tmp_path / "puppeteer.json"
    config.write_text(
        json.dumps({"executablePath": CHROMIUM, "args": ["--no-sandbox", "--disable-gpu"]})
    )
    done = subprocess.run(
        [MMDC, "-p", str(config), "-i", str(markdown), "-o", str(tmp_path / "out.md")],  # type: ignore[list-item]
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert len(list(tmp_path.glob("out-*.svg"))) == len(charts)
