"""Write a `Diagram` in any of the three formats, so that reading it back gives the same diagram.

    text = write_diagram(diagram, "native")
    format_for_name("flow.readable.yaml")   # -> "readable"

What is kept: node order, types, labels, properties, positions, arrows (ends, handles, labels,
content types), persons and metadata. What is not: the layout of the original file, comments,
node and arrow ids in light and readable (those formats have none: nodes are `node_{index}`,
which is what they were read as), and the loader's tolerance (old handle spellings are written
in today's form). Every writer names connection ends in the form its reader resolves first
(exact labels; native handles by id; readable statements as mappings), so no label can be
misread, whatever characters it holds.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from dipeo_cli.diagram.model import Diagram, DiagramArrow, DiagramNode, Person
from dipeo_cli.errors import UsageError

# longest suffix first: "x.native.json" is native before it is JSON
_SUFFIXES = (
    (".light.yaml", "light"),
    (".light.yml", "light"),
    (".native.json", "native"),
    (".readable.yaml", "readable"),
    (".readable.yml", "readable"),
    (".json", "native"),
)


def format_for_name(name: str) -> str | None:
    """The format a file name asks for (`*.light.yaml`, `*.native.json`, `*.readable.yaml`,
    `*.json`), or None when the name does not say."""
    lower = name.lower()
    for suffix, fmt in _SUFFIXES:
        if lower.endswith(suffix):
            return fmt
    return None


def write_diagram(diagram: Diagram, format: str) -> str:
    """The diagram as text in `format` (light | native | readable)."""
    writer = _WRITERS.get(format)
    if writer is None:
        raise UsageError(f"unknown diagram format '{format}' (use one of: light, native, readable)")
    return writer(diagram)


# -- light ---------------------------------------------------------------------------------


def _light(diagram: Diagram) -> str:
    labels = {node.id: node.label for node in diagram.nodes}
    doc = _labelled_document(diagram, "light")
    nodes = []
    for node in diagram.nodes:
        entry: dict[str, Any] = {"label": node.label, "type": node.type}
        if (node.position.x, node.position.y) != (0, 0):
            entry["position"] = {"x": _number(node.position.x), "y": _number(node.position.y)}
        if node.props:
            entry["props"] = node.props  # under props: no property can clash with label/type
        nodes.append(entry)
    doc["nodes"] = nodes
    connections = []
    for arrow in diagram.arrows:
        entry = {
            "from": _end(labels[arrow.source], arrow.source_handle),
            "to": _end(labels[arrow.target], arrow.target_handle),
        }
        _arrow_extras(entry, arrow, "label", "content_type")
        connections.append(entry)
    doc["connections"] = connections
    return _yaml(doc)


def _end(label: str, handle: str) -> str:
    # `Label[handle]`: the light reader tries the whole text as a label first, then the last
    # bracket as the handle, so a label that itself ends in brackets still resolves.
    return label if handle == "default" else f"{label}[{handle}]"


# -- native --------------------------------------------------------------------------------


def _native(diagram: Diagram) -> str:
    handles: dict[str, dict[str, str]] = {}

    def handle(node_id: str, name: str, direction: str) -> str:
        # DiPeO's handle id form; listed in `handles`, which the reader resolves first, so node
        # ids and handle names with underscores or colons stay unambiguous
        handle_id = f"{node_id}_{name}_{direction}"
        handles[handle_id] = {
            "id": handle_id,
            "node_id": node_id,
            "label": name,
            "direction": direction,
        }
        return handle_id

    arrows = []
    for arrow in diagram.arrows:
        entry: dict[str, Any] = {
            "id": arrow.id,
            "source": handle(arrow.source, arrow.source_handle, "output"),
            "target": handle(arrow.target, arrow.target_handle, "input"),
        }
        _arrow_extras(entry, arrow, "label", "content_type")
        arrows.append(entry)
    doc: dict[str, Any] = {
        "nodes": [_native_node(node) for node in diagram.nodes],
        "arrows": arrows,
        "handles": list(handles.values()),
        "persons": {
            pid: {"label": person.label, **_person_fields(person)}
            for pid, person in diagram.persons.items()
        },
        "metadata": diagram.metadata,
    }
    # YAML dates and times have no JSON form: written as their ISO text
    return json.dumps(doc, indent=2, ensure_ascii=False, default=_iso) + "\n"


def _iso(value: Any) -> str:
    isoformat = getattr(value, "isoformat", None)
    if isoformat is None:
        raise TypeError(f"cannot write {type(value).__name__} as JSON")
    return str(isoformat())


def _native_node(node: DiagramNode) -> dict[str, Any]:
    return {
        "id": node.id,
        "type": node.type,
        "position": {"x": _number(node.position.x), "y": _number(node.position.y)},
        # under data.props: the reader spreads it, and no property can clash with `label`
        "data": {"label": node.label, "props": node.props},
    }


# -- readable ------------------------------------------------------------------------------


def _readable(diagram: Diagram) -> str:
    labels = {node.id: node.label for node in diagram.nodes}
    doc = _labelled_document(diagram, "readable")
    nodes = []
    for node in diagram.nodes:
        x, y = _number(node.position.x), _number(node.position.y)
        # the type in the key: the reader then cannot take a label ending in [word] for a type
        where = f" @({x},{y})" if (x, y) != (0, 0) else ""
        nodes.append({f"{node.label} [{node.type}]{where}": dict(node.props)})
    doc["nodes"] = nodes
    flow: list[dict[str, Any]] = []
    for arrow in diagram.arrows:
        statement: dict[str, Any] = {"to": labels[arrow.target]}
        if arrow.source_handle != "default":
            statement["from"] = arrow.source_handle
        if arrow.target_handle != "default":
            statement["in"] = arrow.target_handle
        _arrow_extras(statement, arrow, "naming", "as")
        source = labels[arrow.source]
        if flow and source in flow[-1]:  # consecutive arrows of one node: one entry, in order
            flow[-1][source].append(statement)
        else:
            flow.append({source: [statement]})
    doc["flow"] = flow
    return _yaml(doc)


# -- shared --------------------------------------------------------------------------------


def _arrow_extras(entry: dict[str, Any], arrow: DiagramArrow, label: str, content: str) -> None:
    if arrow.label is not None:
        entry[label] = arrow.label
    if arrow.content_type is not None:
        entry[content] = arrow.content_type


def _labelled_document(diagram: Diagram, version: str) -> dict[str, Any]:
    """The start of a light or readable document: its version, metadata and persons."""
    doc: dict[str, Any] = {"version": version}
    if diagram.metadata:
        doc["metadata"] = diagram.metadata
    if diagram.persons:
        doc["persons"] = _persons_by_label(diagram.persons)
    return doc


def _person_fields(person: Person) -> dict[str, Any]:
    fields: dict[str, Any] = dict(person.extra)
    fields.update(service=person.service, model=person.model)
    for key in ("api_key_id", "system_prompt", "base_url"):
        value = getattr(person, key)
        if value is not None:
            fields[key] = value
    return fields


def _persons_by_label(persons: dict[str, Person]) -> dict[str, Any]:
    """Light and readable key persons by label; `id` is written when it differs, so nodes that
    name their person by id still find it."""
    found: dict[str, Any] = {}
    for pid, person in persons.items():
        fields = _person_fields(person)
        if pid != person.label:
            fields = {"id": pid, **fields}
        found[person.label] = fields
    return found


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value


class _Dumper(yaml.SafeDumper):
    """Block style, multi-line text as `|` blocks (code and prompts stay readable)."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    if "\n" in value and all(ch.isprintable() or ch == "\n" for ch in value):
        if not any(line != line.rstrip() for line in value.split("\n")):
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value)


_Dumper.add_representer(str, _text)


def _yaml(doc: dict[str, Any]) -> str:
    return yaml.dump(
        doc,
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        default_flow_style=False,
        width=100,
    )


_WRITERS = {"light": _light, "native": _native, "readable": _readable}
