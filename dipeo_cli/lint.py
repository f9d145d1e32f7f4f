"""Warnings about diagrams that are legal but almost certainly a mistake.

Each warning names the node and the fix; none stops `validate` (unless `--strict`) or a run:

    unknown_properties     a property no handler reads (`timout: 1` -> did you mean `timeout`?)
    shared_default_inputs  two unlabelled arrows into one node in the same round: both deliver
                           `default`, so one value is silently lost
    unfilled_placeholders  a prompt or template `{{name}}` that no input, variable or start
                           node's custom_data can fill (it would be sent as written)

Pure functions of the diagram (and, before a run, of the run's variables).
"""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any

from dipeo_cli.errors import Problem, warning

if TYPE_CHECKING:
    from dipeo_cli.diagram.model import DiagramNode
    from dipeo_cli.graph import ExecutableGraph
    from dipeo_cli.registry import HandlerSpec

# Properties every node may carry, read by the loaders, the executor or DiPeO's editor.
COMMON_PROPERTIES = frozenset(
    {
        "label",
        "type",
        "position",
        "max_iteration",
        "timeout",
        "flipped",
        "description",
        "id",
        "display_name",
        "displayName",
        "notes",
        "comment",
        # DiPeO's, dropped by its own loader or read by its editor only
        "memory_config",
        "memory_settings",
        "output_variable",
        "passInputData",
    }
)

# Names every person prompt can use besides inputs and variables (llm/inputs.py, person_job).
PROMPT_BUILTINS = frozenset({"global_conversation", "global_message_count", "this"})


def known_properties(spec: HandlerSpec) -> set[str] | None:
    """The property names the handler's props model reads (fields and aliases), or None when
    the handler declares no model (a plugin: we cannot know)."""
    model = spec.props
    fields = getattr(model, "model_fields", None)
    if fields is None:
        return None
    names: set[str] = set()
    for name, info in fields.items():
        names.add(name)
        if info.alias:
            names.add(info.alias)
        alias = info.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif alias is not None:
            for choice in getattr(alias, "choices", ()):
                if isinstance(choice, str):
                    names.add(choice)
    return names


def unknown_properties(dnode: DiagramNode, spec: HandlerSpec) -> list[Problem]:
    known = known_properties(spec)
    if known is None:
        return []
    found: list[Problem] = []
    for key in dnode.props:
        if key in known or key in COMMON_PROPERTIES or key.startswith("_"):
            continue
        close = difflib.get_close_matches(key, sorted(known | COMMON_PROPERTIES), n=1)
        fix = f"did you mean '{close[0]}'?" if close else "remove it, or check its spelling"
        found.append(
            Problem(
                f"unknown property '{key}' for a {dnode.type} node ({fix})",
                dnode.where,
                dnode.line,
                severity="warning",
            )
        )
    return found


def shared_default_inputs(graph: ExecutableGraph) -> list[Problem]:
    """Unlabelled arrows that deliver to the same node in the same round. An arrow that closes
    a loop delivers on later rounds only, and the branches of one condition exclude each other,
    so neither counts as a second value."""
    found: list[Problem] = []
    for node_id, edges in graph.incoming.items():
        rivals = [e for e in edges if e.variable == "default" and not e.closes_loop]
        sources = list(dict.fromkeys((e.source, e.source_port) for e in rivals))
        branches = {e.source for e in rivals if e.source_port in ("condtrue", "condfalse")}
        if len(sources) < 2 or (len(branches) == 1 and len(sources) == 2 and len(rivals) == 2):
            continue
        node = graph.nodes[node_id]
        names = ", ".join(f"'{graph.nodes[s].label}'" for s in dict.fromkeys(s for s, _ in sources))
        found.append(
            warning(
                f"{len(rivals)} unlabelled arrows come in (from {names}); each delivers "
                "'default', so only one value arrives: give each arrow a label "
                "(the name the node reads it by)",
                f"node '{node.label}'",
            )
        )
    return found


def unfilled_placeholders(
    graph: ExecutableGraph, variables: dict[str, Any] | None = None
) -> list[Problem]:
    """`{{name}}` in a person_job prompt or a template_job template that nothing can fill.

    Fillable: an input's label; `default` itself; the variables of the run (before a run; at
    validation any variable could still be given, so only names that no start node's
    custom_data holds are reported, with the `-i` fix); the keys of a start node's custom_data
    when the node's unlabelled input comes from a start node. When an unlabelled input comes
    from any other node its keys are spread into the names and cannot be known: no warning."""
    custom: set[str] = set()
    for start_id in graph.start_nodes:
        data = graph.nodes[start_id].props.get("custom_data")
        if isinstance(data, dict):
            custom.update(str(k) for k in data)
    found: list[Problem] = []
    for node_id, node in graph.nodes.items():
        names = _placeholders(node)
        if not names:
            continue
        edges = graph.incoming.get(node_id, ())
        if any(
            e.variable in ("default", "first") and graph.nodes[e.source].type != "start"
            for e in edges
        ):
            continue  # a dict from a code job, a db read, ...: its keys are names too
        fillable = {e.variable for e in edges} | {"default", "first"} | PROMPT_BUILTINS
        fillable |= custom | set(variables or {})
        for edge in edges:  # a conversation input `x` also gives x_messages, x_last_message
            fillable |= {f"{edge.variable}_messages", f"{edge.variable}_last_message"}
        missing = sorted(names - fillable)
        for name in missing:
            found.append(
                warning(
                    f"'{{{{{name}}}}}' is filled by nothing (no input is labelled '{name}', "
                    f"no start node's custom_data has it): label an arrow '{name}', add it to "
                    f"custom_data, or pass it with -i {name}=...",
                    f"node '{node.label}'",
                )
            )
    return found


def for_run(graph: ExecutableGraph, variables: dict[str, Any]) -> list[Problem]:
    """The graph's warnings as they stand for a run with these variables (a placeholder the
    run's variables fill is no longer a warning)."""
    filled = tuple(f"'{{{{{name}}}}}' is filled by nothing" for name in variables)
    return [w for w in graph.warnings if not (filled and w.message.startswith(filled))]


def _placeholders(node: Any) -> set[str]:
    if node.type == "person_job":
        from dipeo_cli.prompt import template_names

        names: set[str] = set()
        for key in ("first_only_prompt", "default_prompt"):
            text = getattr(node.config, key, "") if node.config is not None else ""
            if isinstance(text, str) and text:
                names |= template_names(text)
        return names
    if node.type == "template_job":
        config = node.config
        text = getattr(config, "template_content", None) or ""
        if not isinstance(text, str) or not text:
            return set()
        from dipeo_cli.sandbox import compiled

        try:
            names = set(compiled(text).names)  # validation compiled it: no second parse
        except Exception:  # a syntax error is the handler's check's to report
            return set()
        own = getattr(config, "variables", None) or {}
        return names - {"generated_at"} - set(own)
    return set()
