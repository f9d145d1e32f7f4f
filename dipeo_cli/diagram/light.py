"""Light YAML (DiPeO's mature format): `nodes` as a list, `connections` between labels.

```yaml
nodes:
  - {label: Start, type: start, custom_data: {n: 1}}
  - {label: Check, type: condition, props: {expression: n > 1}}
connections:
  - {from: Start, to: Check}
  - {from: "Check[condfalse]", to: Start, label: n}
persons:
  writer: {service: openai, model: gpt-4.1-nano}
```

Node ids are `node_{index}`; every key of a node other than type/label/position/props is a
property (`props:` wins on a clash); connection ends are `Label`, `Label[handle]`,
`Label:handle` or the legacy `Label_handle`. Unlike DiPeO, a connection to an unknown label is
an error, not a silently dropped arrow. The helpers at the bottom are shared with readable.py.
"""

from __future__ import annotations

import difflib
import re
import sys
from collections.abc import Iterable
from typing import Any

from dipeo_cli.diagram.detect import Document
from dipeo_cli.diagram.model import Diagram, DiagramArrow, DiagramNode, Person, Position
from dipeo_cli.errors import Problem
from dipeo_cli.prebuilt import prebuilt

HANDLE_NAMES = ("default", "first", "condtrue", "condfalse", "success", "error", "results")
# Mid-2025 handle names and exporter spellings, mapped to today's.
HANDLE_ALIASES = {"true": "condtrue", "false": "condfalse", "output": "default", "input": "default"}
_NODE_KEYS = ("type", "label", "position", "props")
_CONNECTION_KEYS = ("from", "to", "label", "content_type", "type", "data")
_BRACKET = re.compile(r"^(.+?)\[([^\]]+)\]$")


def parse_light(doc: Document, file: str | None = None) -> Diagram:
    data: dict[str, Any] = doc.data
    problems: list[Problem] = []
    nodes = _nodes(doc, problems)
    labels = LabelIndex(nodes)
    problems.extend(labels.problems)
    by_id = {node.id: node for node in nodes}
    arrows = _connections(doc, labels, by_id, problems)
    persons = persons_from_mapping(
        data.get("persons"), problems, lambda key: doc.line("persons", key)
    )
    metadata = mapping(data.get("metadata"))
    for key in ("name", "description"):
        if key in data and key not in metadata:
            metadata[key] = data[key]
    return prebuilt(
        Diagram,
        {
            "nodes": nodes,
            "arrows": arrows,
            "persons": persons,
            "metadata": metadata,
            "format": "light",
            "file": None,
            "source": None,
            "problems": problems,
        },
    )


def _nodes(doc: Document, problems: list[Problem]) -> list[DiagramNode]:
    raw = doc.data.get("nodes")
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(Problem("'nodes' must be a list of nodes", line=doc.line("nodes")))
        return []
    nodes: list[DiagramNode] = []
    for index, item in enumerate(raw):
        if item is None:  # a stray "-" line: DiPeO ignores it, so do we
            continue
        node_id = f"node_{index}"
        line = doc.line("nodes", index)
        if not isinstance(item, dict):
            problems.append(
                Problem(
                    f"must be a mapping with label and type, got {item!r}",
                    f"node #{index + 1}",
                    line,
                )
            )
            continue
        label = item.get("label")
        if label is not None and not isinstance(label, str):
            label = doc.text("nodes", index, "label") or str(label)
        label = node_id if label is None or label == "" else label
        where = f"node '{label}'"
        node_type = item.get("type")
        if node_type is None or node_type == "":
            problems.append(Problem("node has no type (add `type: ...`)", where, line))
            node_type = ""
        elif not isinstance(node_type, str):
            problems.append(Problem(f"type must be a text, got {node_type!r}", where, line))
            node_type = ""
        shorthand = {k: v for k, v in item.items() if k not in _NODE_KEYS}
        props = clean_props(shorthand)
        explicit = item.get("props")
        if isinstance(explicit, dict):
            props = merge_props(props, clean_props(explicit))
        elif explicit is not None:
            problems.append(Problem(f"props must be a mapping, got {explicit!r}", where, line))
        position = parse_position(item.get("position"), where, line, problems)
        nodes.append(
            prebuilt(
                DiagramNode,
                {
                    "id": node_id,
                    "type": sys.intern(node_type.strip().lower()),  # one string per type
                    "label": label,
                    "props": props,
                    "position": position,
                    "line": line,
                },
            )
        )
    return nodes


def _connections(
    doc: Document,
    labels: LabelIndex,
    by_id: dict[str, DiagramNode],
    problems: list[Problem],
) -> list[DiagramArrow]:
    raw = doc.data.get("connections")
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(
            Problem("'connections' must be a list of {from, to}", line=doc.line("connections"))
        )
        return []
    arrows: list[DiagramArrow] = []
    for index, item in enumerate(raw):
        if item is None:
            continue
        line = doc.line("connections", index)
        if not isinstance(item, dict):
            problems.append(
                Problem(
                    f"must be a mapping with from and to, got {item!r}",
                    f"connection #{index + 1}",
                    line,
                )
            )
            continue
        start, end = item.get("from"), item.get("to")
        if start is None or end is None:
            missing = " and ".join(k for k in ("from", "to") if item.get(k) is None)
            problems.append(
                Problem(f"connection has no '{missing}'", f"connection #{index + 1}", line)
            )
            continue
        start = start if isinstance(start, str) else doc.text("connections", index, "from")
        end = end if isinstance(end, str) else doc.text("connections", index, "to")
        start, end = str(start or item["from"]), str(end or item["to"])
        written_as = f"'{start}' -> '{end}'"
        where = f"connection {written_as}"
        source = labels.resolve(start, where, line, problems)
        target = labels.resolve(end, where, line, problems)
        if source is None or target is None:
            continue
        data = mapping(item.get("data"))
        data.update(mapping({k: v for k, v in item.items() if k not in _CONNECTION_KEYS}))
        source_handle = source[1]
        if source_handle is None:
            source_handle = branch_handle(data.get("branch"), by_id[source[0]]) or "default"
        label = item.get("label", data.get("label"))
        content_type = item.get("content_type") or item.get("type")
        content_type = content_type or data.get("content_type") or data.get("contentType")
        arrows.append(
            prebuilt(
                DiagramArrow,
                {
                    "id": str(data.get("id") or f"arrow_{index}"),
                    "source": source[0],
                    "target": target[0],
                    "source_handle": source_handle,
                    "target_handle": target[1] or "default",
                    "label": None if label is None or label == "" else str(label),
                    "content_type": None if content_type is None else str(content_type),
                    "data": data,
                    "written_as": written_as,
                },
            )
        )
    return arrows


# --- helpers shared with readable.py (and persons with native.py) ---------------------------


class LabelIndex:
    """Node labels -> ids, with the duplicate-label problems found while building it."""

    def __init__(self, nodes: list[DiagramNode]) -> None:
        self.ids: dict[str, str] = {}
        self.problems: list[Problem] = []
        for node in nodes:
            first = self.ids.setdefault(node.label, node.id)
            if first != node.id:
                self.problems.append(
                    Problem(
                        f"duplicate label '{node.label}' (nodes {first} and {node.id}); "
                        "labels must be unique",
                        node.where,
                        node.line,
                    )
                )

    def resolve(
        self, text: str, where: str, line: int | None, problems: list[Problem]
    ) -> tuple[str, str | None] | None:
        """`Label`, `Label[handle]`, `Label:handle` or `Label_handle` -> (node id, handle or
        None). Appends a problem (with the closest label) and returns None when no node fits."""
        found = self.find(text)
        if found is not None:
            return found
        match = _BRACKET.match(text)
        base = match.group(1).strip() if match else text.strip()
        message = f"no node labelled '{base}'"
        close = closest(base, self.ids)
        if close is not None:
            message += f"; did you mean '{close}'?"
        problems.append(Problem(message, where, line))
        return None

    def find(self, text: str) -> tuple[str, str | None] | None:
        if text in self.ids:
            return self.ids[text], None
        stripped = text.strip()
        if stripped in self.ids:
            return self.ids[stripped], None
        match = _BRACKET.match(stripped)
        if match:
            base = match.group(1).strip()
            if base in self.ids:
                return self.ids[base], normalise_handle(match.group(2))
            return None
        if ":" in stripped:
            base, _, handle = stripped.rpartition(":")
            if base.strip() in self.ids and handle.strip():
                return self.ids[base.strip()], normalise_handle(handle)
        parts = stripped.split("_")
        for cut in range(len(parts) - 1, 0, -1):
            handle = normalise_handle("_".join(parts[cut:]))
            if handle not in HANDLE_NAMES:
                continue
            for base in ("_".join(parts[:cut]), " ".join(parts[:cut])):
                base = base.rstrip("_ ")
                if base in self.ids:
                    return self.ids[base], handle
        return None


def mapping(value: Any) -> dict[str, Any]:
    """A copy of `value` with text keys, or {} when it is not a mapping."""
    return {str(k): v for k, v in value.items()} if isinstance(value, dict) else {}


def closest(name: str, candidates: Iterable[str]) -> str | None:
    """The candidate most like `name` (ignoring case), if any is close enough."""
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    match = difflib.get_close_matches(name.lower(), list(by_lower), n=1)
    return by_lower[match[0]] if match else None


def normalise_handle(name: str) -> str:
    """`_condfalse` -> condfalse, `True` -> condtrue, `output` -> default."""
    handle = str(name).strip().lstrip("_").lower()
    return HANDLE_ALIASES.get(handle, handle)


def branch_handle(branch: Any, source: DiagramNode) -> str | None:
    """condtrue/condfalse for a `branch: true/false` on an arrow leaving a condition."""
    if source.type != "condition" or branch is None:
        return None
    value = str(branch).strip().lower()
    if value == "true":
        return "condtrue"
    if value == "false":
        return "condfalse"
    return None


def clean_props(raw: dict[str, Any]) -> dict[str, Any]:
    """Drop `__*` keys and `$schema`; turn dotted keys (`a.b: 1`) into nested dicts."""
    props: dict[str, Any] = {}
    for key, value in raw.items():
        key = str(key)
        if key.startswith("__") or key == "$schema":
            continue
        if "." in key and not key.startswith(".") and not key.endswith("."):
            *parents, leaf = key.split(".")
            target = props
            for part in parents:
                child = target.get(part)
                if not isinstance(child, dict):
                    child = target[part] = {}
                target = child
            target[leaf] = value
        elif isinstance(value, dict) and isinstance(props.get(key), dict):
            props[key] = merge_props(props[key], value)
        else:
            props[key] = value
    return props


def merge_props(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` wins; nested dicts are merged key by key."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_props(merged[key], value)
        else:
            merged[key] = value
    return merged


# shared by the nodes without a position: nothing changes a position
_ORIGIN = prebuilt(Position, {"x": 0, "y": 0})


def parse_position(raw: Any, where: str, line: int | None, problems: list[Problem]) -> Position:
    if raw is None:
        return _ORIGIN
    try:
        if isinstance(raw, dict):
            x, y = float(raw.get("x") or 0), float(raw.get("y") or 0)
            return prebuilt(Position, {"x": x, "y": y})
        if isinstance(raw, (list, tuple)) and len(raw) == 2:
            return prebuilt(Position, {"x": float(raw[0]), "y": float(raw[1])})
    except (TypeError, ValueError):
        pass
    problems.append(Problem(f"position must be {{x: number, y: number}}, got {raw!r}", where, line))
    return Position()


_PERSON_FIELDS = {
    "service": "service",
    "model": "model",
    "api_key_id": "api_key_id",
    "apiKeyId": "api_key_id",
    "system_prompt": "system_prompt",
    "systemPrompt": "system_prompt",
    "base_url": "base_url",
    "baseUrl": "base_url",
}


def person_from_fields(person_id: str, label: str, fields: dict[str, Any]) -> Person:
    """A Person from a light/readable entry or a native record; `llm_config` is flattened and
    mid-2025 camelCase names are accepted. Empty values mean "not set"."""
    flat = {k: v for k, v in fields.items() if k not in ("id", "label", "llm_config", "type")}
    if isinstance(fields.get("llm_config"), dict):
        flat.update(fields["llm_config"])
    known: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in flat.items():
        if str(key).startswith("__") or key in ("maskedApiKey", "masked_api_key"):
            continue
        name = _PERSON_FIELDS.get(key)
        if name is None:
            extra[str(key)] = value
        elif value is not None and value != "":
            known[name] = str(value)
    return Person(id=person_id, label=label, extra=extra, **known)


def persons_from_mapping(raw: Any, problems: list[Problem], line_of: Any) -> dict[str, Person]:
    """`persons:` keyed by label (light); the id is the label unless `id:` says otherwise."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        problems.append(Problem("'persons' must be a mapping keyed by person label"))
        return {}
    persons: dict[str, Person] = {}
    for key, fields in raw.items():
        label = str(key)
        where = f"person '{label}'"
        if fields is None:
            fields = {}
        if not isinstance(fields, dict):
            problems.append(
                Problem(
                    f"must be a mapping of settings (service, model, api_key_id, ...), got "
                    f"{fields!r}; is it indented under a person?",
                    where,
                    line_of(key),
                )
            )
            continue
        person = person_from_fields(str(fields.get("id") or label), label, fields)
        persons[person.id] = person
    return persons
