"""Native JSON (DiPeO's persisted form): nodes, arrows, handles and persons keyed by id.

Each of `nodes`, `arrows`, `handles`, `persons` may be an object keyed by id or a list of
records with an `id`. Arrow ends are handle references: `nodeId_handle_direction` (HEAD; node
ids may themselves contain underscores), `nodeId:handle` (mid-2025; no `:` means `default`), or
the id of an entry in `handles`.
"""

from __future__ import annotations

import re
from typing import Any

from dipeo_cli.diagram.detect import Document
from dipeo_cli.diagram.light import (
    LabelIndex,
    branch_handle,
    clean_props,
    mapping,
    normalise_handle,
    parse_position,
    person_from_fields,
)
from dipeo_cli.diagram.model import Diagram, DiagramArrow, DiagramNode, Person
from dipeo_cli.errors import Problem

_CAMEL = re.compile(r"(?<=[a-z0-9])([A-Z])")
# Mid-2025 node fields whose snake_case form is not simply the camelCase split.
_RENAMED = {"personId": "person"}


def parse_native(doc: Document, file: str | None = None) -> Diagram:
    data: dict[str, Any] = doc.data
    problems: list[Problem] = []
    nodes = _nodes(doc, problems)
    by_id = {node.id: node for node in nodes}
    handles = _handles(_records(data.get("handles"), "handles", problems))
    arrows = _arrows(doc, by_id, handles, problems)
    persons = _persons(_records(data.get("persons"), "persons", problems), problems)
    metadata = mapping(data.get("metadata"))
    return Diagram(
        nodes=nodes,
        arrows=arrows,
        persons=persons,
        metadata=metadata,
        format="native",
        problems=problems,
    )


def _records(
    raw: Any, key: str, problems: list[Problem]
) -> list[tuple[int | str, str | None, Any]]:
    """(position in the file, id, record) for an object keyed by id or a list of records."""
    if raw is None:
        return []
    if isinstance(raw, dict):
        return [(rid, str(rid), record) for rid, record in raw.items()]
    if isinstance(raw, list):
        return [
            (
                index,
                str(record["id"]) if isinstance(record, dict) and record.get("id") else None,
                record,
            )
            for index, record in enumerate(raw)
        ]
    problems.append(Problem(f"'{key}' must be an object keyed by id or a list, got {raw!r}"))
    return []


def _nodes(doc: Document, problems: list[Problem]) -> list[DiagramNode]:
    nodes: list[DiagramNode] = []
    for index, (pos, node_id, record) in enumerate(
        _records(doc.data.get("nodes"), "nodes", problems)
    ):
        line = doc.line("nodes", pos)
        node_id = node_id or f"node_{index}"
        if not isinstance(record, dict):
            problems.append(
                Problem(
                    f"must be an object with type and data, got {record!r}",
                    f"node '{node_id}'",
                    line,
                )
            )
            continue
        raw_data = record.get("data")
        fields = dict(raw_data) if isinstance(raw_data, dict) else {}
        label = fields.pop("label", None) or record.get("label") or record.get("displayName")
        label = str(label) if label else node_id
        where = f"node '{label}'"
        if raw_data is not None and not isinstance(raw_data, dict):
            problems.append(Problem(f"data must be an object, got {raw_data!r}", where, line))
        nested = fields.pop("props", None)
        props = clean_props({_RENAMED.get(k, _snake(k)): v for k, v in mapping(fields).items()})
        if isinstance(nested, dict):
            # `data.props` (what `dipeo convert` writes) holds the properties as the runner
            # read them: kept as written, camelCase too, so a conversion changes nothing
            props.update(clean_props(mapping(nested)))
        node_type = record.get("type")
        if not isinstance(node_type, str) or not node_type.strip():
            problems.append(Problem("node has no type", where, line))
            node_type = ""
        nodes.append(
            DiagramNode(
                id=node_id,
                type=_snake(node_type.strip()).lower(),
                label=label,
                props=props,
                position=parse_position(record.get("position"), where, line, problems),
                line=line,
            )
        )
    problems.extend(LabelIndex(nodes).problems)
    return nodes


def _handles(records: list[tuple[int | str, str | None, Any]]) -> dict[str, tuple[str, str]]:
    handles: dict[str, tuple[str, str]] = {}
    for _, handle_id, record in records:
        if not isinstance(record, dict) or handle_id is None:
            continue
        node_id = record.get("node_id") or record.get("nodeId")
        if node_id:
            handles[handle_id] = (str(node_id), normalise_handle(record.get("label") or "default"))
    return handles


def _arrows(
    doc: Document,
    by_id: dict[str, DiagramNode],
    handles: dict[str, tuple[str, str]],
    problems: list[Problem],
) -> list[DiagramArrow]:
    arrows: list[DiagramArrow] = []
    for index, (pos, arrow_id, record) in enumerate(
        _records(doc.data.get("arrows"), "arrows", problems)
    ):
        line = doc.line("arrows", pos)
        arrow_id = arrow_id or f"arrow_{index}"
        where = f"arrow '{arrow_id}'"
        if not isinstance(record, dict):
            problems.append(
                Problem(f"must be an object with source and target, got {record!r}", where, line)
            )
            continue
        ends = []
        for key in ("source", "target"):
            ref = record.get(key)
            end = _resolve(str(ref), by_id, handles) if ref else None
            if end is None:
                problems.append(Problem(_missing(key, ref), where, line))
            ends.append(end)
        source, target = ends
        if source is None or target is None:
            continue
        raw_data = record.get("data")
        data = {k: v for k, v in mapping(raw_data).items() if not k.startswith("__")}
        source_handle = source[1]
        if source_handle == "default":
            source_handle = branch_handle(data.get("branch"), by_id[source[0]]) or "default"
        label = record.get("label") or data.get("label")
        content_type = record.get("content_type") or record.get("contentType")
        content_type = content_type or data.get("contentType") or data.get("content_type")
        src_label, dst_label = by_id[source[0]].label, by_id[target[0]].label
        arrows.append(
            DiagramArrow(
                id=arrow_id,
                source=source[0],
                target=target[0],
                source_handle=source_handle,
                target_handle=target[1],
                label=str(label) if label else None,
                content_type=str(content_type) if content_type else None,
                data=data,
                written_as=f"{arrow_id} ('{src_label}' -> '{dst_label}')",
            )
        )
    return arrows


def _resolve(
    ref: str, by_id: dict[str, DiagramNode], handles: dict[str, tuple[str, str]]
) -> tuple[str, str] | None:
    """A handle reference -> (node id, handle name), or None when it names no node."""
    if ref in handles and handles[ref][0] in by_id:
        return handles[ref]
    if ":" in ref:
        node_id, _, handle = ref.rpartition(":")
        if node_id in by_id:
            return node_id, normalise_handle(handle or "default")
    parts = ref.split("_")
    if len(parts) >= 3 and parts[-1] in ("input", "output"):
        node_id = "_".join(parts[:-2])
        if node_id in by_id:
            return node_id, normalise_handle(parts[-2])
    if ref in by_id:
        return ref, "default"
    return None


def _missing(key: str, ref: Any) -> str:
    if not ref:
        return f"has no {key}"
    ref = str(ref)
    node_id = ref.partition(":")[0] if ":" in ref else ref
    parts = node_id.split("_")
    if len(parts) >= 3 and parts[-1] in ("input", "output"):
        node_id = "_".join(parts[:-2])
    return f"{key} '{ref}' refers to node '{node_id}', which does not exist"


def _persons(
    records: list[tuple[int | str, str | None, Any]], problems: list[Problem]
) -> dict[str, Person]:
    persons: dict[str, Person] = {}
    for pos, person_id, record in records:
        if not isinstance(record, dict):
            problems.append(
                Problem(
                    f"must be an object with label and llm_config, got {record!r}",
                    f"person '{pos}'",
                )
            )
            continue
        label = str(record.get("label") or person_id or pos)
        person = person_from_fields(person_id or label, label, record)
        persons[person.id] = person
    return persons


def _snake(name: str) -> str:
    """Mid-2025 camelCase field names (`maxIteration`) -> snake_case (`max_iteration`)."""
    if name[:1].islower() and _CAMEL.search(name):
        return _CAMEL.sub(r"_\1", name).lower()
    return name
