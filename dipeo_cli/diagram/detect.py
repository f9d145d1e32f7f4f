"""Read a diagram file into a `Document` (data + line numbers) and tell which format it is in.

JSON is parsed with `json` alone. YAML is parsed once (libyaml when available) into its data
and its shape (yaml_events.py), so loaders can ask for the line of `nodes[3]` or
`persons['Judge']` without parsing the text twice. Every failure here is a DiagramError naming
the file (and the line, for syntax errors).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from dipeo_cli.diagram.yaml_events import MAPPING, SCALAR, SEQUENCE, build
from dipeo_cli.errors import DiagramError, Problem

FORMATS = ("light", "native", "readable")

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MAX_DEPTH = 5000
_BRACKETS = re.compile(r"[\[\]{}]")


# The parsed file's shape, kept for line numbers and labels as written (yaml_events.py draws
# it); yaml's own node tree (a node and two marks per scalar) was 80% of a big diagram's parse
# memory. `_shape` turns a composed tree into it, for the documents yaml_events leaves to yaml.
_SCALAR, _MAPPING, _SEQUENCE = SCALAR, MAPPING, SEQUENCE


def _shape(node: yaml.Node, seen: dict[int, Any]) -> Any:
    done = seen.get(id(node))  # an alias: shared, never copied (no alias bombs)
    if done is not None:
        return done
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        shape: Any = (
            _MAPPING,
            line,
            tuple(
                (
                    str(key.value) if isinstance(key, yaml.ScalarNode) else None,
                    key.start_mark.line + 1,
                    _shape(value, seen),
                )
                for key, value in node.value
            ),
        )
    elif isinstance(node, yaml.SequenceNode):
        shape = (_SEQUENCE, line, tuple(_shape(item, seen) for item in node.value))
    else:
        shape = (_SCALAR, line, str(node.value))
    seen[id(node)] = shape
    return shape


class Document:
    """Parsed file content. `line(*path)` is the 1-based line of the item at `path`
    (mapping keys and list indexes from the top), or None when unknown (JSON, missing item)."""

    __slots__ = ("_root", "data")

    def __init__(self, data: Any, root: Any = None) -> None:
        self.data = data
        self._root = root  # a shape (above), or None

    def line(self, *path: str | int) -> int | None:
        found = self._find(path)
        return found[0] if found is not None else None

    def text(self, *path: str | int) -> str | None:
        """The scalar at `path` exactly as written (YAML reads `label: Yes` as True and
        `label: 1.10` as 1.1; labels want the text)."""
        found = self._find(path)
        if found is not None and found[1][0] == _SCALAR:
            return str(found[1][2])
        return None

    def key_texts(self, *path: str | int) -> list[str] | None:
        """The keys of the mapping at `path` exactly as written, in order (`- Yes: ...` is a
        node labelled "Yes", not True)."""
        found = self._find(path)
        if found is None or found[1][0] != _MAPPING:
            return None
        return [key if key is not None else "" for key, _, _ in found[1][2]]

    def _find(self, path: tuple[str | int, ...]) -> tuple[int, Any] | None:
        """(line, value shape) at `path`."""
        node = self._root
        if node is None:
            return None
        line = node[1]
        for step in path:
            if node[0] == _MAPPING and isinstance(step, str):
                for key, key_line, value in node[2]:
                    if key == step:
                        line, node = key_line, value
                        break
                else:
                    return None
            elif node[0] == _SEQUENCE and isinstance(step, int):
                if not 0 <= step < len(node[2]):
                    return None
                node = node[2][step]
                line = node[1]
            else:
                return None
        return line, node


def read_text(path: str | Path) -> str:
    """The file's text; DiagramError (naming the file) when it cannot be read."""
    file = str(path)
    try:
        return Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        problem = Problem("file not found")
    except IsADirectoryError:
        problem = Problem("is a directory, not a diagram file")
    except PermissionError:
        problem = Problem("permission denied: cannot read the file")
    except UnicodeDecodeError as exc:
        problem = Problem(f"not a UTF-8 text file ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        problem = Problem(f"cannot read the file: {exc.strerror or exc}")
    except ValueError as exc:  # a NUL character in the path
        problem = Problem(f"cannot read the file: {exc}")
    raise DiagramError([problem], file)


STDIN = "-"  # the path that means standard input
STDIN_NAME = "<stdin>"  # how messages and the history name a diagram read from it


def read_stdin() -> str:
    """Standard input's text (UTF-8, a BOM dropped); DiagramError when it is not text."""
    import sys

    stream = getattr(sys.stdin, "buffer", None)
    try:
        data = stream.read() if stream is not None else sys.stdin.read().encode("utf-8")
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        problem = Problem(f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except OSError as exc:
        problem = Problem(f"cannot read standard input: {exc.strerror or exc}")
    raise DiagramError([problem], STDIN_NAME)


def parse_text(text: str, file: str | None = None) -> Document:
    """Parse JSON or YAML text. A `.json` file is JSON; other text is JSON when it starts with
    `{` or `[` and parses as JSON, YAML otherwise. A string holding a lone UTF-16 surrogate
    (`"\\ud800"`) is refused: it is not text, and no file or database can store it."""
    doc = _parse(text, file)
    if _SURROGATE.search(text):
        _refuse_lone_surrogates(doc.data, file)
    return doc


_SURROGATE = re.compile(r"[\ud800-\udfff]|\\[uU]0{0,4}[dD][89a-fA-F]")
_LONE = re.compile(r"[\ud800-\udfff]")  # a valid pair is one character once parsed


def _refuse_lone_surrogates(data: Any, file: str | None) -> None:
    todo = [data]
    while todo:
        item = todo.pop()
        if isinstance(item, dict):
            todo += item.keys()
            todo += item.values()
        elif isinstance(item, list):
            todo += item
        elif isinstance(item, str) and _LONE.search(item):
            shown = ascii(item[:60])
            raise DiagramError(
                [
                    Problem(
                        f"the text {shown} holds a lone UTF-16 surrogate, which is not a character"
                    )
                ],
                file,
            )


def _parse(text: str, file: str | None) -> Document:
    stripped = text.lstrip()
    if not stripped:
        raise DiagramError([Problem("the file is empty")], file)
    is_json_file = file is not None and file.lower().endswith(".json")
    if is_json_file or stripped[0] in "{[":
        try:
            return Document(json.loads(text))
        except json.JSONDecodeError as exc:
            json_problem = Problem(f"invalid JSON: {exc.msg} (column {exc.colno})", line=exc.lineno)
            if is_json_file:
                raise DiagramError([json_problem], file) from None
        except RecursionError:
            raise DiagramError([Problem("invalid JSON: nested too deeply")], file) from None
        except ValueError as exc:  # a number with more digits than Python converts (4300)
            reason = str(exc).split(";")[0]
            json_problem = Problem(f"invalid JSON: {reason}")
            if is_json_file:
                raise DiagramError([json_problem], file) from None
        try:
            return _parse_yaml(text, file)
        except DiagramError:
            raise DiagramError([json_problem], file) from None
    return _parse_yaml(text, file)


def _parse_yaml(text: str, file: str | None) -> Document:
    if text.count("[") + text.count("{") > _MAX_DEPTH and _flow_depth(text) > _MAX_DEPTH:
        # libyaml overflows the C stack (a segfault, not an exception) on such input.
        raise DiagramError(
            [Problem(f"invalid YAML: nested more than {_MAX_DEPTH} levels deep")], file
        )
    loader = _Loader(text)
    try:
        built = build(loader)
    finally:
        loader.dispose()
    if built is not None:
        return Document(*built)
    # merge keys, custom tags, an error...: yaml's own composer reads it, or says what is wrong
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
        shape = _shape(root, {}) if root is not None else None
        del root
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        message = exc.problem or exc.context or str(exc)
        if exc.problem and exc.context and exc.problem.startswith("but "):
            message = f"{exc.context} {exc.problem}"
        elif exc.problem and exc.context:
            message += f" ({exc.context}"
            context_line = exc.context_mark.line + 1 if exc.context_mark else None
            message += f" started on line {context_line})" if context_line != line else ")"
        raise DiagramError([Problem(f"invalid YAML: {message}", line=line)], file) from None
    except (yaml.YAMLError, RecursionError, ValueError, TypeError) as exc:
        raise DiagramError([Problem(f"invalid YAML: {exc}")], file) from None
    finally:
        loader.dispose()
    if shape is None:
        raise DiagramError([Problem("the file is empty")], file)
    return Document(data, shape)


def _flow_depth(text: str) -> int:
    depth = deepest = 0
    for match in _BRACKETS.finditer(text):
        depth += 1 if match.group() in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def detect_format(data: Any, file: str | None = None) -> str:
    """Which format the parsed content is in, from its keys; DiagramError if it is not a diagram.

    `version: light|readable` decides; otherwise `flow:`/`workflow:` mean readable,
    `arrows:`/`handles:` or `nodes` keyed by id mean native, `connections:` means light, and a
    `nodes` list is judged by its items.
    """
    if not isinstance(data, dict):
        kind = type(data).__name__ if data is not None else "null"
        raise DiagramError(
            [Problem(f"the top level must be a mapping with 'nodes', got a {kind}")], file
        )
    version = data.get("version")
    if isinstance(version, str) and version.strip().lower() in ("light", "readable", "native"):
        return version.strip().lower()
    if "flow" in data or "workflow" in data:
        return "readable"
    nodes = data.get("nodes")
    if "arrows" in data or "handles" in data or isinstance(nodes, dict):
        return "native"
    if "connections" in data:
        return "light"
    if isinstance(nodes, list):
        items = [item for item in nodes if isinstance(item, dict)]
        if any("id" in item and "data" in item for item in items):
            return "native"
        if any("label" in item or "type" in item for item in items):
            return "light"
        if items and all(len(item) == 1 for item in items):
            return "readable"
        return "light"
    raise DiagramError(
        [
            Problem(
                "not a DiPeO diagram: expected 'nodes' with 'connections' (light), "
                "'arrows' (native) or 'flow' (readable)"
            )
        ],
        file,
    )
