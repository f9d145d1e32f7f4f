"""Every diagram DiPeO ships either loads or is rejected with a DiagramError naming the file."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dipeo_cli.diagram import Diagram, load_diagram
from dipeo_cli.errors import DiagramError
from tests.conftest import DIPEO_EXAMPLES, EXAMPLES_MISSING, HAVE_EXAMPLES, needs_examples

_DIAGRAM_KEY = re.compile(r'^\s*"?(nodes|flow|workflow)"?\s*:', re.MULTILINE)

# Files that are broken in DiPeO itself (reference §7), and the problem we report for each.
REJECTED = {
    # arrows point at nodes deleted from the file
    "examples/native_diagrams/youtube_webhook.native.json": "node 'node_2', which does not exist",
    # `api_key_id:` at the level of the persons map, not under a person
    "examples/simple_diagrams/simple_iter_shorthand.light.yaml": "person 'api_key_id': must be",
}


def _diagram_files() -> list[Path]:
    if not DIPEO_EXAMPLES.is_dir():
        return []
    files = [
        path for pattern in ("*.yaml", "*.yml", "*.json") for path in DIPEO_EXAMPLES.rglob(pattern)
    ]
    # Skip data files (API keys, inputs, configs) by content: a diagram has nodes or a flow.
    return sorted(
        p for p in files if _DIAGRAM_KEY.search(p.read_text(encoding="utf-8", errors="replace"))
    )


DIAGRAM_FILES = _diagram_files()


def _edges(diagram: Diagram) -> set[tuple[str, str, str, str]]:
    labels = {n.id: n.label for n in diagram.nodes}
    return {
        (labels[a.source], a.source_handle, labels[a.target], a.target_handle)
        for a in diagram.arrows
    }


def example(relative: str) -> Diagram:
    path = DIPEO_EXAMPLES / relative
    if not path.exists():
        pytest.skip(EXAMPLES_MISSING if not HAVE_EXAMPLES else f"{path} is not available")
    return load_diagram(path)


@needs_examples
def test_the_shared_examples_are_all_found() -> None:
    assert len(DIAGRAM_FILES) >= 40
    assert set(REJECTED) <= {p.relative_to(DIPEO_EXAMPLES).as_posix() for p in DIAGRAM_FILES}


@needs_examples
@pytest.mark.parametrize(
    "path", DIAGRAM_FILES, ids=[str(p.relative_to(DIPEO_EXAMPLES)) for p in DIAGRAM_FILES]
)
def test_example_loads_or_is_rejected_with_its_file_name(path: Path) -> None:
    relative = path.relative_to(DIPEO_EXAMPLES).as_posix()
    try:
        diagram = load_diagram(path)
    except DiagramError as error:
        assert error.__cause__ is None, f"a loader bug, not a diagram problem: {error}"
        assert error.file == str(path)
        assert all(line.startswith(str(path)) for line in str(error).splitlines())
        assert relative in REJECTED, f"unexpectedly rejected:\n{error}"
        assert REJECTED[relative] in str(error)
        return
    assert relative not in REJECTED, "expected this broken DiPeO file to be rejected"
    assert diagram.nodes
    assert diagram.file == str(path)
    assert diagram.format in ("light", "native", "readable")
    node_ids = {n.id for n in diagram.nodes}
    assert all(a.source in node_ids and a.target in node_ids for a in diagram.arrows)


def test_simple_iter_code_light() -> None:
    diagram = example("examples/simple_diagrams/simple_iter_code.light.yaml")
    assert len(diagram.nodes) == 5
    assert diagram.format == "light"
    back = next(a for a in diagram.arrows if a.written_as == "'Condition[condfalse]' -> 'Code Job'")
    assert back.source_handle == "condfalse"
    assert ("Condition", "condtrue", "Endpoint", "default") in _edges(diagram)


def test_simple_iter_code_native_has_the_same_shape() -> None:
    native = example("examples/native_diagrams/simple_iter_code.native.json")
    light = example("examples/simple_diagrams/simple_iter_code.light.yaml")
    assert native.format == "native"
    assert sorted((n.label, n.type) for n in native.nodes) == sorted(
        (n.label, n.type) for n in light.nodes
    )
    assert _edges(native) == _edges(light)


def test_debate_arrows_go_into_first() -> None:
    diagram = example("examples/light_diagrams/debate.light.yaml")
    into_first = {edge for edge in _edges(diagram) if edge[3] == "first"}
    assert into_first == {
        ("Load Topic", "default", "Optimist", "first"),
        ("Load Topic", "default", "Pessimist", "first"),
    }
    assert set(diagram.persons) == {"Judge", "Optimist", "Pessimist"}


def test_quicksave_native_with_underscores_in_node_ids() -> None:
    diagram = example("examples/native_diagrams/quicksave.native.json")
    assert [n.id for n in diagram.nodes] == ["node_Y_MY", "node_kga-", "node_bpwS"]
    assert _edges(diagram) == {
        ("Start", "default", "WebSearcher", "default"),
        ("WebSearcher", "default", "result", "default"),
    }
    assert diagram.persons["person_o-hq"].label == "Searcher"


def test_readable_example_with_types_in_its_keys_loads() -> None:
    diagram = example("examples/readable_diagrams/debatev2.readable.yaml")
    assert ("Condition", "condfalse", "Optimist panel", "default") in _edges(diagram)
    assert ("db", "default", "Pessimist panel", "first") in _edges(diagram)
