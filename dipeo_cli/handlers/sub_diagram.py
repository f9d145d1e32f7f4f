"""sub_diagram: run another diagram as a child execution, once or once per item of a list.

The child is a diagram file (`diagram_name`, a path relative to the parent diagram's folder,
then to the base directory; DiPeO's name lookup under examples/, projects/ and files/ as a
fallback) or inline `diagram_data`. It is checked when the parent compiles, so a broken child
is reported by `dipeo validate` before anything runs.

    variables   the child's execution variables: the parent's `default` input when it is a
                dict (DiPeO's rule), the other inputs by label, then `input_mapping`
                {child variable: dot path into the inputs}
    output      the child's result (its endpoint value, or a dict by endpoint label), or with
                `output_mapping` {output key: dot path into that result, or 'Node label.path'}
    batch       with `batch: true` the child runs once per item of the list found at
                `batch_input_key` (in the inputs, or in the `default` input); each run gets the
                item as the variable `item` (its keys too, when it is a dict) and `index`.
                `batch_parallel` runs them concurrently, at most `max_concurrent` at once; the
                output is the list of results in input order.

Every child is recorded in the history with its parent's id (`dipeo show` links both ways). A
child that fails fails this node with the child's error; children nest at most MAX_DEPTH deep,
so a diagram that calls itself without an end fails instead of running forever.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from dipeo_cli.errors import DiagramError, NodeError, warning
from dipeo_cli.registry import node_handler
from dipeo_cli.state import (
    ExecutionState,
    ExecutionStatus,
    create_node_output,
)
from dipeo_cli.values import get_path

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode

MAX_DEPTH = 10
SUFFIXES = (".light.yaml", ".light.yml", ".native.json", ".readable.yaml", ".yaml", ".yml", ".json")


class SubDiagramProps(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    diagram_name: str | None = Field(
        default=None, validation_alias=AliasChoices("diagram_name", "diagramName", "diagram_path")
    )
    diagram_data: dict[str, Any] | str | None = Field(
        default=None, validation_alias=AliasChoices("diagram_data", "diagramData")
    )
    diagram_format: Literal["light", "native", "readable"] | None = None
    input_mapping: dict[str, str] = Field(default_factory=dict)
    output_mapping: dict[str, str] = Field(default_factory=dict)
    wait_for_completion: bool = True
    ignore_if_sub: bool = Field(
        default=False, validation_alias=AliasChoices("ignore_if_sub", "ignoreIfSub")
    )
    batch: bool = False
    batch_input_key: str = "items"
    batch_parallel: bool = True
    max_concurrent: int = Field(default=10, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> SubDiagramProps:
        if bool(self.diagram_name) == (self.diagram_data is not None):
            raise ValueError("give exactly one of diagram_name (a file) and diagram_data (inline)")
        if not self.wait_for_completion:
            raise ValueError("wait_for_completion: false is not supported (children always finish)")
        return self


def resolve_child(name: str, diagram_dir: Path, base_dir: Path) -> Path:
    """The child diagram file for `name`; NodeError listing where we looked when none exists."""
    names = (
        [name] if Path(name).suffix in (".yaml", ".yml", ".json") else [name + s for s in SUFFIXES]
    )
    tried: list[Path] = []
    for candidate in names:
        places = [diagram_dir / candidate, base_dir / candidate]
        if candidate.startswith("codegen/"):
            places.append(base_dir / "files" / candidate)
        elif not candidate.startswith("projects/"):
            places += [base_dir / "examples" / candidate, base_dir / "projects" / candidate]
        for place in places:
            try:
                if place.is_file():
                    return place
            except OSError as exc:  # a name longer than the file system allows, ...
                raise NodeError(
                    f"sub-diagram '{_clip(name)}' cannot be a file name: {exc.strerror or exc}"
                ) from None
            if place not in tried:
                tried.append(place)
    shown = ", ".join(str(p) for p in tried[:6])
    raise NodeError(f"sub-diagram '{_clip(name)}' not found (looked for {shown}, ...)")


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def load_child(
    config: SubDiagramProps,
    diagram_dir: Path,
    base_dir: Path,
    registry: Any,
    where: str,
    options: Any = None,
) -> Any:
    """Load and compile the child diagram with the parent's CompileOptions (raises
    DiagramError or NodeError)."""
    from dipeo_cli.compiler import compile_graph
    from dipeo_cli.diagram import load_diagram, parse_diagram

    if config.diagram_name:
        path = resolve_child(config.diagram_name, diagram_dir, base_dir)
        diagram = load_diagram(path, format=config.diagram_format, strict=False)
    else:
        data = config.diagram_data
        text = data if isinstance(data, str) else json.dumps(data)
        diagram = parse_diagram(text, file=where, format=config.diagram_format, strict=False)
    return compile_graph(diagram, registry, options)


_checking: set[str] = set()  # child files being checked right now: a diagram may call itself


def check_sub_diagram(
    config: SubDiagramProps, diagram: Any, registry: Any, options: Any = None
) -> list[Any]:
    """Compile-time check: the child exists and compiles (problems prefixed with its name)."""
    from dipeo_cli.paths import base_dir

    diagram_dir = Path(diagram.file).resolve().parent if diagram.file else Path.cwd()
    key = config.diagram_name or ""
    try:
        if config.diagram_name:
            key = str(resolve_child(config.diagram_name, diagram_dir, base_dir()).resolve())
            if key in _checking:
                return []
        _checking.add(key)
        try:
            child = load_child(
                config, diagram_dir, base_dir(), registry, f"{diagram.file}#inline", options
            )
        finally:
            _checking.discard(key)
    except NodeError as exc:
        return [str(exc)]
    except DiagramError as exc:
        name = config.diagram_name or "inline diagram_data"
        return [
            f"sub-diagram {name} is not valid: "
            + "; ".join(p.render(exc.file) for p in exc.problems)
        ]
    name = config.diagram_name or "inline diagram_data"
    # what the child's run would refuse (a missing key), so that the parent's run refuses too
    return [
        warning(f"sub-diagram {name}: {w.render(None)}", blocks_run=True)
        for w in child.warnings
        if w.blocks_run
    ]


@node_handler("sub_diagram", props=SubDiagramProps, check=check_sub_diagram)
async def run_sub_diagram(node: ExecutableNode[SubDiagramProps], ctx: NodeContext) -> Any:
    config: SubDiagramProps = node.config
    resources = ctx.resources
    if config.ignore_if_sub and resources.depth > 0:
        return create_node_output(
            {"default": None}, {"ignored": "inside a sub-diagram (ignore_if_sub)"}
        )
    if resources.depth >= MAX_DEPTH:
        raise NodeError(
            f"sub-diagrams nested more than {MAX_DEPTH} deep: does '{config.diagram_name}' call itself without an end?"
        )
    from dipeo_cli.graph import CompileOptions

    graphs = resources.service("sub_diagram_graphs", dict, lambda _: None)
    cache_key = (node.id, config.diagram_name)
    if cache_key not in graphs:
        try:
            graphs[cache_key] = load_child(
                config,
                resources.diagram_dir,
                resources.base_dir,
                ctx.graph.registry,
                f"{ctx.graph.diagram.file}#{node.label}",
                CompileOptions(llm_mode=getattr(resources, "llm_mode", None)),
            )
        except DiagramError as exc:
            raise NodeError(f"sub-diagram is not valid: {exc}") from None
    graph = graphs[cache_key]
    base = _child_variables(ctx.inputs, config.input_mapping)

    if not config.batch:
        state = await _run_child(graph, base, ctx)
        _raise_if_failed(state, config)
        return create_node_output(
            {"default": _map_output(state, config.output_mapping)},
            {"child_execution_id": state.id, "child_status": state.status.value},
        )

    items = _batch_items(ctx.inputs, config.batch_input_key)
    limit = asyncio.Semaphore(config.max_concurrent if config.batch_parallel else 1)

    async def one(index: int, item: Any) -> ExecutionState:
        variables = {
            **base,
            **(item if isinstance(item, dict) else {}),
            "item": item,
            "index": index,
        }
        variables.pop(config.batch_input_key, None)
        async with limit:
            return await _run_child(graph, variables, ctx)

    states = await asyncio.gather(*(one(i, item) for i, item in enumerate(items)))
    failed = [(i, s) for i, s in enumerate(states) if s.status is not ExecutionStatus.COMPLETED]
    metadata = {
        "child_execution_ids": [s.id for s in states],
        "items": len(states),
        "failed": len(failed),
    }
    if failed:
        details = "; ".join(f"item {i}: {s.error}" for i, s in failed[:5])
        raise NodeError(
            f"{len(failed)} of {len(states)} sub-diagram runs failed: {details}", metadata
        )
    return create_node_output(
        {"default": [_map_output(s, config.output_mapping) for s in states]}, metadata
    )


async def _run_child(graph: Any, variables: dict[str, Any], ctx: NodeContext) -> ExecutionState:
    """Run the child graph to the end, recorded in the parent's history store."""
    from dipeo_cli.executor import RunOptions
    from dipeo_cli.runner import Run

    resources = ctx.resources
    options = resources.options or RunOptions()
    child_dir = (
        Path(graph.diagram.file).resolve().parent
        if _is_file(graph.diagram.file)
        else resources.diagram_dir
    )
    run = Run(
        graph,
        store=resources.store,
        resources=resources.child(child_dir),
        variables=variables,
        # the parent's node timeout (if any) bounds the child; the run-wide one is the parent's
        options=RunOptions(
            max_iterations=options.max_iterations,
            max_parallel=options.max_parallel,
            continue_on_error=options.continue_on_error,
        ),
        parent_id=ctx.execution_id,
    )
    outcome = await run.run()
    return outcome.state


def _is_file(name: str | None) -> bool:
    if not name:
        return False
    return "#" not in name and Path(name).is_file()


def _child_variables(inputs: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    default = inputs.get("default")
    variables: dict[str, Any] = dict(default) if isinstance(default, dict) else {}
    for label, value in inputs.items():
        if label != "default":
            variables[label] = value
        elif not isinstance(value, dict):
            variables["default"] = value
    for child_name, path in mapping.items():
        try:
            variables[child_name] = get_path({**variables, **inputs}, path)
        except KeyError as exc:
            raise NodeError(
                f"input_mapping '{child_name}': {exc.args[0]} (inputs: {', '.join(inputs)})"
            ) from None
    return variables


def _batch_items(inputs: dict[str, Any], key: str) -> list[Any]:
    if key in inputs:
        found = inputs[key]
    elif isinstance(inputs.get("default"), dict) and key in inputs["default"]:
        found = inputs["default"][key]
    elif isinstance(inputs.get("default"), list):
        found = inputs["default"]
    else:
        raise NodeError(
            f"batch: no list at '{key}' in the inputs (inputs: {', '.join(inputs) or 'none'})"
        )
    return list(found) if isinstance(found, (list, tuple)) else [found]


def _map_output(state: ExecutionState, mapping: dict[str, str]) -> Any:
    if not mapping:
        return state.result
    labels = {s.label: nid for nid, s in state.node_states.items()}
    out: dict[str, Any] = {}
    for key, path in mapping.items():
        head, _, rest = path.partition(".")
        try:
            if isinstance(state.result, dict) and head in state.result:
                out[key] = get_path(state.result, path)
            elif head in labels and labels[head] in state.node_outputs:
                value = state.node_outputs[labels[head]].value.get("default")
                out[key] = get_path(value, rest) if rest else value
            else:
                out[key] = get_path(state.result, path)
        except KeyError as exc:
            raise NodeError(
                f"output_mapping '{key}': {exc.args[0]} in the sub-diagram's result"
            ) from None
    return out


def _raise_if_failed(state: ExecutionState, config: SubDiagramProps) -> None:
    if state.status is not ExecutionStatus.COMPLETED:
        name = config.diagram_name or "inline diagram"
        raise NodeError(
            f"sub-diagram '{name}' {state.status.value.lower()}: {state.error}",
            {"child_execution_id": state.id},
        )
