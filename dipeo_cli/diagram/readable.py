"""Readable YAML: nodes keyed by "Label [type] @(x,y)", arrows written as sentences in `flow`.

```yaml
version: readable
nodes:
  - Start @(0,0): {type: start}
  - Check [condition]: {expression: n > 1}
flow:
  - Start: to "Check"
  - Check:
    - from "condfalse" to "Start" as "raw_text" naming "n"
    - to "End" in "first"
  - Start: Check (raw_text)           # old style: Target_handle (content_type)(label)
  - "Start -> Check"                  # plain form
  - Check: {from: condtrue, to: End}  # mapping form
```

A node without a type gets the one mid-2025 DiPeO inferred from its fields (`person` ->
person_job, `condition_type` -> condition, `operation`/`sub_type` -> db, `file_format`/
`save_to_file` -> endpoint, `code`/`language` -> code_job, ...), else from its name (Start,
If.../Condition..., End.../Finish...); the first node with neither is a start node, any other is
an error naming it (HEAD DiPeO turned it into "job", which cannot run). The mid-2025 form
(`workflow:` + `flow: ["A -> B"]`) is read too.
"""

from __future__ import annotations

import re
from itertools import pairwise
from typing import Any

from dipeo_cli.diagram.detect import Document
from dipeo_cli.diagram.light import (
    LabelIndex,
    clean_props,
    mapping,
    normalise_handle,
    parse_position,
    person_from_fields,
    persons_from_mapping,
)
from dipeo_cli.diagram.model import Diagram, DiagramArrow, DiagramNode, Person
from dipeo_cli.errors import Problem

_KEY = re.compile(
    r"^(?P<label>.*?)\s*(?:\[(?P<type>[A-Za-z_][\w]*)\])?"
    r"\s*(?:@\(\s*(?P<x>[-+\d.eE]+)\s*,\s*(?P<y>[-+\d.eE]+)\s*\))?\s*$"
)
_WORD = re.compile(r"""(?:^|\s)(from|to|in|as|naming)\s+(?:"([^"]*)"|'([^']*)')""")
_PAREN = re.compile(r"\(([^)]*)\)")
_CONTENT_TYPES = ("raw_text", "conversation_state", "variable", "json", "object")
_STATEMENT_KEYS = {
    "to": "to",
    "from": "from",
    "in": "in",
    "as": "as",
    "naming": "naming",
    "label": "naming",
    "content_type": "as",
}


def parse_readable(doc: Document, file: str | None = None) -> Diagram:
    data: dict[str, Any] = doc.data
    problems: list[Problem] = []
    section = "nodes" if "nodes" in data or "workflow" not in data else "workflow"
    nodes = _nodes(doc, section, problems)
    labels = LabelIndex(nodes)
    problems.extend(labels.problems)
    arrows = _Flow(doc, labels, problems).arrows()
    persons = _persons(doc, problems)
    metadata = mapping(data.get("metadata"))
    return Diagram(
        nodes=nodes,
        arrows=arrows,
        persons=persons,
        metadata=metadata,
        format="readable",
        problems=problems,
    )


def _nodes(doc: Document, section: str, problems: list[Problem]) -> list[DiagramNode]:
    raw = doc.data.get(section)
    if raw is None:
        return []
    if not isinstance(raw, list):
        problems.append(
            Problem(
                f"'{section}' must be a list of `- Label: {{...}}` entries", line=doc.line(section)
            )
        )
        return []
    nodes: list[DiagramNode] = []
    for index, item in enumerate(raw):
        if item is None:
            continue
        line = doc.line(section, index)
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(
                Problem(
                    f"each node must be written `- Label: {{type: ..., ...}}`, got {item!r}",
                    f"node #{index + 1}",
                    line,
                )
            )
            continue
        ((key, cfg),) = item.items()
        if not isinstance(key, str):  # `- Yes:` / `- 1.10:`: keep the label as written
            key = (doc.key_texts(section, index) or [str(key)])[0]
        match = _KEY.match(str(key))
        assert match is not None  # every group is optional
        label = match.group("label") or f"node_{index}"
        where = f"node '{label}'"
        if cfg is None:
            cfg = {}
        if not isinstance(cfg, dict):
            problems.append(Problem(f"must be a mapping of properties, got {cfg!r}", where, line))
            continue
        node_type = cfg.get("type") or match.group("type")
        if not node_type:
            node_type = _guess_type(label, cfg, index, section == "workflow")
        if not node_type:
            problems.append(
                Problem(
                    f"node has no type (add `type: ...`, or write the key as '{label} [type]')",
                    where,
                    line,
                )
            )
            node_type = ""
        elif not isinstance(node_type, str):
            problems.append(Problem(f"type must be a text, got {node_type!r}", where, line))
            node_type = ""
        if match.group("x") is not None:
            raw_position: Any = {"x": match.group("x"), "y": match.group("y")}
        else:
            raw_position = cfg.get("position")
        props = clean_props({k: v for k, v in cfg.items() if k not in ("type", "position")})
        nodes.append(
            DiagramNode(
                id=f"node_{index}",
                type=node_type.strip().lower(),
                label=label,
                props=props,
                position=parse_position(raw_position, where, line, problems),
                line=line,
            )
        )
    return nodes


# Untyped nodes, as DiPeO's readable files of mid-2025 wrote them: the type follows from the
# fields (first match wins; a condition may name a person, so conditions come first).
_INFERRED_BY_FIELD: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("condition", ("condition_type", "condition", "expression")),
    ("person_job", ("person", "prompt", "default_prompt", "first_only_prompt", "llm")),
    ("db", ("operation", "sub_type")),
    ("endpoint", ("file_format", "save_to_file")),
    ("code_job", ("code", "code_type", "language")),
    ("template_job", ("template_content", "template_path")),
    ("sub_diagram", ("diagram_name", "diagram_data")),
    ("api_job", ("url",)),
    ("start", ("custom_data", "trigger_mode")),
)
_INFERRED_BY_NAME: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("start", ("start",)),
    ("condition", ("if", "condition")),
    ("endpoint", ("end", "finish")),
)


def _guess_type(label: str, cfg: dict[str, Any], index: int, mid_2025: bool) -> str | None:
    """The type of an untyped node from its fields, then its name; the first node with neither
    is a start node; None when nothing tells (an error naming the node)."""
    for node_type, fields in _INFERRED_BY_FIELD:
        if any(name in cfg for name in fields):
            return node_type
    name = label.strip().lower()
    for node_type, prefixes in _INFERRED_BY_NAME:
        if name.startswith(prefixes):
            return node_type
    if index == 0:
        return "start"
    return None


def _persons(doc: Document, problems: list[Problem]) -> dict[str, Person]:
    raw = doc.data.get("persons")
    if not isinstance(raw, list):
        return persons_from_mapping(raw, problems, lambda key: doc.line("persons", key))
    persons: dict[str, Person] = {}
    for index, item in enumerate(raw):
        if item is None:
            continue
        if not isinstance(item, dict) or len(item) != 1:
            problems.append(
                Problem(
                    "each person must be written `- Name: {service: ..., model: ...}`, "
                    f"got {item!r}",
                    f"person #{index + 1}",
                    doc.line("persons", index),
                )
            )
            continue
        ((name, fields),) = item.items()
        if fields is None:
            fields = {}
        if not isinstance(fields, dict):
            problems.append(
                Problem(
                    f"must be a mapping of settings, got {fields!r}",
                    f"person '{name}'",
                    doc.line("persons", index),
                )
            )
            continue
        person_id = str(fields.get("id") or "person_" + str(name).replace(" ", "_"))
        persons[person_id] = person_from_fields(person_id, str(name), fields)
    return persons


class _Flow:
    """Turns the `flow` list into arrows, collecting a problem for every entry it cannot read."""

    def __init__(self, doc: Document, labels: LabelIndex, problems: list[Problem]) -> None:
        self.doc = doc
        self.labels = labels
        self.problems = problems
        self.result: list[DiagramArrow] = []

    def arrows(self) -> list[DiagramArrow]:
        raw = self.doc.data.get("flow")
        if raw is None:
            return []
        if not isinstance(raw, list):
            self.problems.append(Problem("'flow' must be a list", line=self.doc.line("flow")))
            return []
        for index, item in enumerate(raw):
            line = self.doc.line("flow", index)
            if item is None:
                continue
            if isinstance(item, str):
                self._chain(item, line)
            elif isinstance(item, dict):
                written = self.doc.key_texts("flow", index) or []
                for position, (source, targets) in enumerate(item.items()):
                    if not isinstance(source, str) and position < len(written):
                        source = written[position]  # `- Yes: ...` names the node "Yes"
                    for statement in targets if isinstance(targets, list) else [targets]:
                        self._statement(str(source), statement, line)
            else:
                self.problems.append(
                    Problem(f"cannot read flow entry {item!r}", f"flow entry #{index + 1}", line)
                )
        return self.result

    def _chain(self, text: str, line: int | None) -> None:
        """`"A -> B"` (or `"A -> B -> C"`)."""
        ends = [part.strip() for part in text.split("->")]
        if len(ends) < 2 or not all(ends):
            self.problems.append(
                Problem(
                    'cannot read this flow entry; write it as "A -> B"',
                    f"connection '{text}'",
                    line,
                )
            )
            return
        for start, end in pairwise(ends):
            written_as = f"'{start}' -> '{end}'"
            where = f"connection {written_as}"
            source = self.labels.resolve(start, where, line, self.problems)
            target = self.labels.resolve(end, where, line, self.problems)
            if source and target:
                self._add(source[0], source[1], target[0], target[1], None, None, written_as)

    def _statement(self, source_text: str, statement: Any, line: int | None) -> None:
        if isinstance(statement, dict):
            parts, written = self._mapping_statement(statement, source_text, line)
        elif isinstance(statement, str):
            parts, written = self._text_statement(statement.strip(), source_text, line)
        else:
            self.problems.append(
                Problem(
                    f"cannot read flow target {statement!r}",
                    f"connection from '{source_text}'",
                    line,
                )
            )
            return
        if parts is None:
            return
        written_as = f"'{source_text}': {written}"
        where = f"connection {written_as}"
        source = self.labels.resolve(source_text, where, line, self.problems)
        target = self.labels.resolve(parts["to"], where, line, self.problems)
        if not source or not target:
            return
        source_handle = normalise_handle(parts["from"]) if parts.get("from") else source[1]
        target_handle = normalise_handle(parts["in"]) if parts.get("in") else target[1]
        self._add(
            source[0],
            source_handle,
            target[0],
            target_handle,
            parts.get("naming"),
            parts.get("as"),
            written_as,
        )

    def _text_statement(
        self, text: str, source_text: str, line: int | None
    ) -> tuple[dict[str, str] | None, str]:
        where = f"connection '{source_text}': {text}"
        if _WORD.search(text):
            parts: dict[str, str] = {}
            for match in _WORD.finditer(text):
                parts[match.group(1)] = (
                    match.group(2) if match.group(2) is not None else match.group(3)
                )
            leftover = _WORD.sub(" ", text).strip()
            if leftover:
                self.problems.append(
                    Problem(f"cannot read '{leftover}' in this flow entry", where, line)
                )
                return None, text
            if not parts.get("to"):
                self.problems.append(Problem('no target: add to "Label"', where, line))
                return None, text
            return parts, text
        # Old style: `Target`, `Target_handle`, `Target (raw_text)`, `Target(label)`.
        parts = {}
        for inner in _PAREN.findall(text):
            inner = inner.strip()
            if inner in _CONTENT_TYPES and "as" not in parts:
                parts["as"] = inner
            elif "naming" not in parts and inner:
                parts["naming"] = inner
            else:
                self.problems.append(
                    Problem(f"cannot read '({inner})' in this flow entry", where, line)
                )
                return None, text
        target = _PAREN.sub("", text).strip()
        if not target:
            self.problems.append(Problem("no target node", where, line))
            return None, text
        parts["to"] = target
        return parts, text

    def _mapping_statement(
        self, statement: dict[Any, Any], source_text: str, line: int | None
    ) -> tuple[dict[str, str] | None, str]:
        parts: dict[str, str] = {}
        unknown = []
        for key, value in statement.items():
            name = _STATEMENT_KEYS.get(str(key))
            if name is None:
                unknown.append(str(key))
            elif value is not None:
                parts[name] = str(value)
        written = " ".join(f'{k} "{v}"' for k, v in parts.items())
        where = f"connection '{source_text}': {written}"
        if unknown:
            self.problems.append(
                Problem(
                    f"unknown key(s) {', '.join(unknown)}; use to, from, in, as, naming",
                    where,
                    line,
                )
            )
            return None, written
        if not parts.get("to"):
            self.problems.append(Problem("no target: add `to: Label`", where, line))
            return None, written
        return parts, written

    def _add(
        self,
        source: str,
        source_handle: str | None,
        target: str,
        target_handle: str | None,
        label: str | None,
        content_type: str | None,
        written_as: str,
    ) -> None:
        self.result.append(
            DiagramArrow(
                id=f"arrow_{len(self.result)}",
                source=source,
                target=target,
                source_handle=source_handle or "default",
                target_handle=target_handle or "default",
                label=label or None,
                content_type=content_type or None,
                written_as=written_as,
            )
        )
