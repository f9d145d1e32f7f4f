"""The garbage collector's policy: paused while a diagram loads, what a run starts with frozen."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

from dipeo_cli.compiler import compile_graph
from dipeo_cli.diagram import parse_diagram
from dipeo_cli.diagram.detect import parse_text
from dipeo_cli.registry import load_builtin_handlers


def big_chain(n: int) -> str:
    nodes = ["- {label: Start, type: start}"] + [
        f"- {{label: N{i}, type: endpoint}}" for i in range(n)
    ]
    arrows = [f"- {{from: Start, to: N{i}}}" for i in range(n)]
    return "version: light\nnodes:\n" + "\n".join(nodes) + "\nconnections:\n" + "\n".join(arrows)


def test_no_collection_runs_while_a_diagram_loads_and_compiles_and_the_collector_is_restored() -> (
    None
):
    collections: list[str] = []

    def count(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collections.append(phase)

    gc.callbacks.append(count)
    try:
        graph = compile_graph(
            parse_diagram(big_chain(2000), "big.light.yaml"), load_builtin_handlers()
        )
    finally:
        gc.callbacks.remove(count)
    assert len(graph.nodes) == 2001
    assert collections == []
    assert gc.isenabled()


def test_line_numbers_and_labels_as_written_survive_the_compact_shape() -> None:
    doc = parse_text("a: 1\nlist:\n  - Yes: x\n  - &n {k: 1.10}\n  - *n\n", "f.yaml")
    assert doc.line("list", 0) == 3 and doc.line("list", 1) == 4
    assert doc.line("list", 2) == 4  # an alias is its anchor (shared, not copied)
    assert doc.key_texts("list", 0) == ["Yes"]
    assert doc.text("list", 1, "k") == "1.10"
    assert doc.line("missing") is None and doc.text("a", "b") is None


def test_dipeo_run_collects_nothing_before_its_run_starts_and_collects_during_it() -> None:
    """The entry point pauses the collector for `dipeo run` while it imports and loads; the
    run's start (freeze_loaded) resumes it, so a long run still collects its cycles."""
    diagram = Path(__file__).resolve().parents[1] / "benchmarks" / "twenty_nodes.light.yaml"
    code = (
        "import gc, sys\n"
        "collections = []\n"
        "gc.callbacks.append(lambda phase, info: phase == 'start' and collections.append(1))\n"
        f"sys.argv = ['dipeo', 'run', {str(diagram)!r}, '--quiet']\n"
        "from dipeo_cli import heap, launch\n"
        "seen = {}\n"
        "original = heap.freeze_loaded\n"
        "def freeze_loaded():\n"
        "    seen['before'] = len(collections)\n"
        "    original()\n"
        "    seen['enabled'] = gc.isenabled()\n"
        "heap.freeze_loaded = freeze_loaded\n"
        "try:\n"
        "    launch.main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "print(f\"gc: {seen['before']} {seen['enabled']} {gc.isenabled()}\")\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "gc: 0 True True"


def test_other_commands_keep_the_collector_running() -> None:
    code = (
        "import gc, sys\n"
        "sys.argv = ['dipeo', 'history', '--json']\n"
        "from dipeo_cli import launch\n"
        "try:\n"
        "    launch.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "print(f'gc: {gc.isenabled()}')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "gc: True"


def test_a_process_hosting_many_runs_keeps_no_frozen_garbage_after_each() -> None:
    """A worker runs execute() again and again: what one run froze is unfrozen at its end, so
    a cycle that became garbage during the run is collected, not kept frozen forever."""
    import asyncio
    import weakref

    from dipeo_cli.executor import RunOptions
    from dipeo_cli.runner import execute
    from dipeo_cli.store import open_store

    class Cycle:
        def __init__(self) -> None:
            self.me = self

    cycle = Cycle()
    gone = weakref.ref(cycle)
    graph = compile_graph(parse_diagram(big_chain(3), "small.light.yaml"), load_builtin_handlers())

    async def twice() -> None:
        store = await open_store(None)
        try:
            for _ in range(2):
                outcome = await execute(
                    graph,
                    store=store,
                    progress=None,
                    variables={},
                    options=RunOptions(),
                )
                assert outcome.exit_code == 0
        finally:
            await store.close()

    was_enabled = gc.isenabled()
    gc.enable()
    try:
        asyncio.run(twice())
        assert gc.get_freeze_count() == 0  # nothing left frozen by the runs
        del cycle  # garbage now, but it was alive (and frozen) while the runs ran
        gc.collect()
        assert gone() is None
    finally:
        if not was_enabled:
            gc.disable()


def test_runs_held_at_once_restore_the_collector_thresholds_when_the_last_one_ends() -> None:
    from dipeo_cli.heap import frozen_for_run

    before = gc.get_threshold()
    with frozen_for_run():
        raised = gc.get_threshold()
        with frozen_for_run():  # a second run in the same process (a worker, a test)
            assert gc.get_threshold() == raised
        assert gc.get_threshold() == raised  # the first run is still running
    assert raised[0] > before[0] and raised[1:] == before[1:]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def _alive(kind: type) -> int:
    return sum(1 for o in gc.get_objects() if type(o) is kind)


def test_a_compiled_graph_does_not_keep_the_node_and_arrow_models_and_gives_them_back() -> None:
    """What a run holds: the graph keeps the diagram's outline (persons, file, source), not
    its node and arrow models; asking for them parses them again from the source."""
    from dipeo_cli.diagram import DiagramArrow, DiagramNode

    text = big_chain(300) + "\npersons:\n  writer: {service: openai, model: m}\n"
    before = _alive(DiagramNode), _alive(DiagramArrow)
    graph = compile_graph(parse_diagram(text, "big.light.yaml"), load_builtin_handlers())
    gc.collect()
    assert (_alive(DiagramNode), _alive(DiagramArrow)) == before
    outline = graph.diagram
    assert outline.file == "big.light.yaml" and outline.source == text
    assert list(outline.persons) == ["writer"]
    assert _alive(DiagramNode) == before[0]  # the outline's own fields cost no reload
    again = parse_diagram(text, "big.light.yaml")
    assert outline.nodes == again.nodes and outline.arrows == again.arrows
    assert outline == again and outline.model_dump() == again.model_dump()
    assert graph.nodes["node_1"].props is not again.nodes[1].props  # the graph's own


def test_a_diagram_built_in_code_is_kept_whole() -> None:
    """Without a source there is nothing to parse again: the graph keeps the diagram."""
    from dipeo_cli.diagram import Diagram, DiagramArrow, DiagramNode

    diagram = Diagram(
        nodes=[
            DiagramNode(id="s", type="start", label="S"),
            DiagramNode(id="e", type="endpoint", label="E"),
        ],
        arrows=[DiagramArrow(id="a", source="s", target="e")],
    )
    graph = compile_graph(diagram, load_builtin_handlers())
    assert graph.diagram is diagram


def test_per_node_edge_groups_are_shared_not_copied() -> None:
    """A chain's per-node edge groups: tuples, one shared empty tuple, and the readiness
    rules reuse them instead of holding copies."""
    from dipeo_cli.arrows import ArrowState

    graph = compile_graph(parse_diagram(big_chain(50), "c.light.yaml"), load_builtin_handlers())
    empty = graph.incoming["node_0"]
    assert empty == () and graph.outgoing["node_1"] is empty
    assert all(type(edges) is tuple for edges in graph.incoming.values())
    arrows = ArrowState(graph, dict.fromkeys(graph.order, 0), dict.fromkeys(graph.order, 0))
    assert all(arrows.required(nid) is graph.incoming[nid] for nid in graph.order)
    assert arrows._later["node_1"] is empty


def test_repeated_yaml_texts_and_node_types_are_one_string_each() -> None:
    """Keys, types and the labels arrows repeat are one string each, not one per occurrence."""
    doc = parse_text(big_chain(3), "c.light.yaml")
    first, second = doc.data["nodes"][1], doc.data["nodes"][2]
    assert next(iter(first)) is next(iter(second))  # the key `label`
    assert doc.data["connections"][0]["from"] is doc.data["connections"][1]["from"]  # Start
    diagram = parse_diagram(big_chain(3).replace("type: endpoint", "type: EndPoint"), "c.yaml")
    assert diagram.nodes[1].type == "endpoint" and diagram.nodes[1].type is diagram.nodes[2].type
