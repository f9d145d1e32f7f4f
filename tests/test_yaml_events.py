"""YAML built from libyaml's events is exactly yaml.safe_load's result, with the same shapes
(lines, texts as written), and the files it leaves to yaml's composer fail as before."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from dipeo_cli.diagram import parse_diagram
from dipeo_cli.diagram.detect import _Loader, _shape, parse_text
from dipeo_cli.diagram.yaml_events import build
from dipeo_cli.errors import DiagramError

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path("/work/shared/diagrams")


def composed(text: str) -> tuple[Any, Any]:
    """What yaml's own composer and SafeConstructor make of `text`: (data, shape)."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        return loader.construct_document(root), _shape(root, {})
    finally:
        loader.dispose()


def built(text: str) -> tuple[Any, Any] | None:
    """The builder's (data, shape), or None when it leaves the text to yaml's composer."""
    loader = _Loader(text)
    try:
        return build(loader)
    finally:
        loader.dispose()


def yaml_files(*folders: Path) -> list[Path]:
    return sorted(
        p for folder in folders for pattern in ("*.yaml", "*.yml") for p in folder.rglob(pattern)
    )


def assert_builds_as_yaml_reads(text: str, name: str) -> None:
    """Built as yaml composes it; or left to yaml (invalid YAML, merge keys...), whose reading
    parse_text then returns. The reference is safe loading with libyaml's parser (CSafeLoader),
    as dipeo always parsed: yaml.safe_load's pure-Python parser refuses some flow text libyaml
    reads (`{to: Done?}`)."""
    try:
        expected = composed(text)
    except yaml.YAMLError:
        assert built(text) is None, name
        return
    result = built(text)
    if result is not None:
        assert result == expected, name
    else:
        assert parse_text(text, name).data == expected[0], name
    assert parse_text(text, name).data == yaml.load(text, Loader=_Loader), name


@pytest.mark.parametrize(
    "path", yaml_files(ROOT / "tests", ROOT / "diagrams"), ids=lambda p: p.name
)
def test_every_diagram_in_the_repository_builds_as_safe_load_reads_it(path: Path) -> None:
    assert_builds_as_yaml_reads(path.read_text(encoding="utf-8-sig"), str(path))


@pytest.mark.skipif(not SHARED.is_dir(), reason="no shared diagram corpus on this machine")
def test_every_shared_diagram_builds_as_safe_load_reads_it() -> None:
    files = yaml_files(SHARED)
    assert files
    for path in files:
        assert_builds_as_yaml_reads(path.read_text(encoding="utf-8-sig"), str(path))


SAME_AS_SAFE_LOAD = {
    "implicit scalars": (
        "a: [1, 2.5, .inf, -.Inf, 0x1f, 0o17, 1_000, 190:20:30, +12, 1.10, 1e3]\n"
        "b: {x: yes, y: No, z: ~, w: null, v: '', u: off, t: TRUE}\n"
        "c: 2001-12-14t21:59:43.10-05:00\nd: 2002-12-14\n"
    ),
    "explicit standard tags": (
        "f: !!binary aGVsbG8=\ng: !!str 12\nh: !!int '7'\ni: !!float '1'\nj: ! 12\n"
        "k: !!map {b: 1}\nl: !!seq [1]\nm: !!null ''\nn: !!bool 'yes'\n"
    ),
    "anchors and aliases": "x: &a {k: [1, 2]}\ny: *a\nz: &s hello\nw: *s\n*s : v\nl: [*a, *s]\n",
    "keys that are not text": "1: a\n2.5: b\ntrue: c\n~: d\n'<<': quoted is text\n",
    "duplicate keys, the last wins in the first's place": "a: 1\nb: 2\na: 3\n",
    "block scalars and complex keys": "a: |\n  block\n  text\nb: >\n  folded\n? complex\n: v\n",
    "nesting": "- - - deep\n  - x\n- {a: [{b: c}]}\n",
}


@pytest.mark.parametrize("text", SAME_AS_SAFE_LOAD.values(), ids=SAME_AS_SAFE_LOAD.keys())
def test_yaml_features_build_exactly_as_safe_load(text: str) -> None:  # both parsers agree here
    result = built(text)
    assert result is not None and result == composed(text)
    assert result[0] == yaml.safe_load(text)


def test_an_alias_is_the_same_object_as_its_anchor() -> None:
    result = built("x: &a {k: 1}\ny: *a\nn: &n .nan\nm: *n\n")
    assert result is not None
    data = result[0]
    assert data["x"] is data["y"]
    assert math.isnan(data["n"]) and data["m"] is data["n"]


LEFT_TO_YAML = {
    "merge keys": "base: &b {a: 1, b: 2}\nd: {<<: *b, b: 3}\nl: {<<: [*b, {c: 1}]}\n",
    "value key": "= : 1\n",
    "set and omap": "- !!set {a, b}\n- !!omap [{a: 1}]\n- !!pairs [{a: 1}]\n",
}


def test_a_recursive_alias_is_left_to_yaml() -> None:
    assert built("a: &x [1, *x]\n") is None


@pytest.mark.parametrize("text", LEFT_TO_YAML.values(), ids=LEFT_TO_YAML.keys())
def test_documents_the_builder_leaves_to_yaml_still_load_as_safe_load_reads_them(
    text: str,
) -> None:
    assert built(text) is None
    data = parse_text(text, "f.yaml").data
    assert data == yaml.safe_load(text)


BAD = {  # the messages and lines yaml's own composer gave before the builder existed
    "a: b: c\n": ("invalid YAML: mapping values are not allowed in this context", 1),
    "nodes:\n  - a\n key: 'unterminated\n": ("invalid YAML: did not find expected key", 3),
    "a: *nope\n": ("invalid YAML: found undefined alias", 1),
    "a: &x 1\nb: &x 2\n": ("invalid YAML: second occurrence (found duplicate anchor", 2),
    "a: 1\n---\nb: 2\n": ("invalid YAML: expected a single document in the stream", 2),
    "a: !custom 1\n": ("invalid YAML: could not determine a constructor for the tag", 1),
    "x: 1\n[1, 2]: x\n": ("invalid YAML: found unhashable key", 2),
}


@pytest.mark.parametrize("text", BAD, ids=[t.strip()[:20] for t in BAD])
def test_bad_yaml_still_names_the_file_and_the_line(text: str) -> None:
    message, line = BAD[text]
    with pytest.raises(DiagramError) as caught:
        parse_diagram(text, "broken.light.yaml")
    problem = caught.value.problems[0]
    assert caught.value.file == "broken.light.yaml"
    assert problem.message.startswith(message), problem.message
    assert problem.line == line


def test_a_diagram_loads_the_same_through_events_and_through_yaml() -> None:
    text = (ROOT / "tests" / "fixtures" / "diagrams" / "loop.light.yaml").read_text()
    fast = parse_diagram(text, "loop.light.yaml")
    # a merge key sends the same diagram through yaml's composer
    slow = parse_diagram(text + "x-defaults: &d {a: 1}\nx-use: {<<: *d}\n", "loop.light.yaml")
    assert fast.nodes == slow.nodes and fast.arrows == slow.arrows


def test_documents_nested_deeper_than_diagrams_go_are_left_to_yaml() -> None:
    deep = "a: " + "[" * 150 + "]" * 150 + "\n"
    assert built(deep) is None
    assert parse_text(deep, "f.yaml").data == yaml.load(deep, Loader=_Loader)
