"""Small, pure helpers for the values that travel along arrows.

The executor uses `to_text` and `decode_json_text` for an arrow's `content_type`; the handlers
use them (and the dot-path helpers) to read their inputs. Standard library only: the python
worker (`dipeo_cli.pyworker`) imports this module too, and it must start fast.
"""

from __future__ import annotations

import json
from typing import Any

_JSON_OPENERS = ("{", "[")


def decode_json_text(value: Any) -> Any:
    """A str holding a JSON object or array -> the parsed value; anything else unchanged.

    >>> decode_json_text('{"a": 1}')
    {'a': 1}
    >>> decode_json_text("[not json")
    '[not json'
    """
    if isinstance(value, str):
        head = value.lstrip()[:1]
        if head in _JSON_OPENERS:
            try:
                return json.loads(value)
            except ValueError:
                return value
    return value


def to_text(value: Any) -> str:
    """The text form of a value: str unchanged, None -> "", dict/list -> JSON, else str()."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value)


def to_json_safe(value: Any) -> tuple[Any, bool]:
    """`value` made JSON-serialisable, and whether anything had to be converted.

    Tuples and sets become lists, dict keys become str, and any other leaf that JSON cannot
    hold becomes `str(leaf)`. Iterative, so deep values do not hit the recursion limit.
    """
    if _is_plain(value):
        return value, False
    converted = False
    root: list[Any] = [None]
    # Work items: (container to fill, key or index, value to convert); a parent of None marks
    # the end of a container's children, so `on_path` holds exactly the containers being
    # converted and only a real cycle (not a shared reference) is cut.
    stack: list[tuple[Any, Any, Any]] = [(root, 0, value)]
    on_path: set[int] = set()
    while stack:
        parent, key, item = stack.pop()
        if parent is None:
            on_path.discard(key)
            continue
        if isinstance(item, (dict, list, tuple, set, frozenset)):
            if id(item) in on_path:
                converted = True
                parent[key] = "<circular reference>"
                continue
            on_path.add(id(item))
            stack.append((None, id(item), None))
        if isinstance(item, dict):
            out_dict: dict[str, Any] = {}
            parent[key] = out_dict
            for k, v in item.items():
                if not isinstance(k, str):
                    if not isinstance(k, (int, float, bool)) and k is not None:
                        converted = True
                    k = _key_text(k)
                out_dict[k] = None
                stack.append((out_dict, k, v))
        elif isinstance(item, (list, tuple, set, frozenset)):
            if not isinstance(item, list):
                converted = True
                if isinstance(item, (set, frozenset)):
                    item = sorted(item, key=repr)
            out_list: list[Any] = [None] * len(item)
            parent[key] = out_list
            for index, v in enumerate(item):
                stack.append((out_list, index, v))
        elif item is None or isinstance(item, (str, int, float, bool)):
            parent[key] = item
        else:
            converted = True
            parent[key] = str(item)
    return root[0], converted


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _key_text(key: Any) -> str:
    # json.dumps turns True into "true" and None into "null"; do the same.
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    return str(key)


def split_path(path: str) -> list[str]:
    """'a.b.0' -> ['a', 'b', '0']; a blank path -> []."""
    path = path.strip()
    return [part for part in path.split(".") if part != ""] if path else []


def get_path(data: Any, path: str) -> Any:
    """The value at a dot path (`a.b.0`): dict keys, and list indexes for numeric parts.

    Raises KeyError naming the first part that is missing.
    """
    current = data
    walked: list[str] = []
    for part in split_path(path):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif (
            isinstance(current, list)
            and _is_index(part)
            and -len(current) <= int(part) < len(current)
        ):
            current = current[int(part)]
        else:
            where = ".".join(walked) or "the top level"
            raise KeyError(f"'{part}' not found at {where}")
        walked.append(part)
    return current


def set_path(data: Any, path: str, value: Any) -> Any:
    """Set the value at a dot path, creating dicts on the way; returns the (new) root."""
    parts = split_path(path)
    if not parts:
        return value
    root = data if isinstance(data, (dict, list)) else {}
    current: Any = root
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if isinstance(current, list) and _is_index(part):
            position = int(part)
            if not -len(current) <= position <= len(current):
                raise KeyError(f"index {position} is out of range at '{'.'.join(parts[:index])}'")
            if position == len(current):
                current.append({})
            if last:
                current[position] = value
            else:
                if not isinstance(current[position], (dict, list)):
                    current[position] = {}
                current = current[position]
        elif isinstance(current, dict):
            if last:
                current[part] = value
            else:
                if not isinstance(current.get(part), (dict, list)):
                    current[part] = {}
                current = current[part]
        else:
            raise KeyError(f"cannot set '{part}': '{'.'.join(parts[:index])}' is not an object")
    return root


def _is_index(part: str) -> bool:
    return part.lstrip("-").isdigit()
