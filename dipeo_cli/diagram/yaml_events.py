"""YAML text -> (Python data, shape), built straight from libyaml's event stream.

`yaml.safe_load` composes the whole document into a tree of `yaml.Node`s (an object and two
marks per scalar) and only then constructs Python objects from it: for a 10,000-node diagram
that tree was 35 MiB, most of a run's peak memory, alive only while loading. Here each event
becomes its Python value and its shape (the line numbers and texts loaders use for messages,
see below) at once, and nothing else is kept.

The result is what safe loading with libyaml (`CSafeLoader`) gives, by construction: the same C
parser, the same resolver for plain scalars (`yes` is True, `1.10` is 1.1, `~` is None), the
same constructors for every standard scalar tag, the same object for an alias as for its anchor.
What this builder does not handle itself makes `build` return None, and the caller composes the
document the classic way instead (exactly yaml's behaviour and messages, for the rare file that
needs them): merge keys (`<<`), `=` keys, tags other than the standard scalar ones and
`!!map`/`!!seq`, collections as keys, recursive aliases, duplicate anchors, nesting over 100
levels, more than one document, and every error.

Shape:
    scalar:   (SCALAR, line, text)
    mapping:  (MAPPING, line, ((key text or None, key line, value shape), ...))
    sequence: (SEQUENCE, line, (item shape, ...))
"""

from __future__ import annotations

from typing import Any

import yaml

SCALAR, MAPPING, SEQUENCE = 0, 1, 2

_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
# scalar tags SafeConstructor builds without looking at other nodes
_SCALAR_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("null", "bool", "int", "float", "binary", "timestamp", "str")
)
_INCOMPLETE = object()
# Deeper documents go to yaml's recursive constructor, which decides as it always did (it
# runs out of Python stack at some depth): building them here would accept what it refused.
_DEEPEST = 100  # an anchored collection whose end has not come yet


class _Unusual(Exception):
    """The document needs yaml's own composer (or is not valid YAML)."""


def build(loader: Any) -> tuple[Any, Any] | None:
    """(data, shape) of the single document `loader` (a yaml SafeLoader or CSafeLoader over the
    text) holds; None when yaml's own composer must read it (see the module docstring)."""
    if loader.yaml_path_resolvers:
        return None
    try:
        return _build(loader)
    except Exception:  # _Unusual, YAMLError, RecursionError...: yaml's own path reports them
        return None


def _build(loader: Any) -> tuple[Any, Any]:
    get_event = loader.get_event
    resolve = loader.resolve
    constructors = loader.yaml_constructors
    scalar_node = yaml.ScalarNode
    scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
    sequence_start, mapping_start = yaml.SequenceStartEvent, yaml.MappingStartEvent

    get_event()  # StreamStart
    if not isinstance(get_event(), yaml.DocumentStartEvent):
        raise _Unusual("no document")
    anchors: dict[str, Any] = {}
    # One string per distinct scalar text: keys (`label`, `type`, `from`, `to`), types and the
    # labels arrows repeat would otherwise be a new string at every occurrence (4 MiB of a
    # 10,000-node diagram's loading peak).
    texts: dict[str, str] = {}
    shared = texts.setdefault
    # One int per line number too: a flow mapping's line, its keys' and its values' lines are
    # the same number, otherwise a new int object each (2.5 MiB of that peak).
    lines: dict[int, int] = {}
    same_line = lines.setdefault
    # one frame per open collection: [is_mapping, line, data, shapes, anchor, pending key]
    stack: list[list[Any]] = []
    done: Any  # (data, shape) of the value just finished
    while True:
        event = get_event()
        kind = type(event)
        if kind is scalar_event:
            tag = event.tag
            text = shared(event.value, event.value)
            if tag is None or tag == "!":
                tag = resolve(scalar_node, text, event.implicit)
            if tag == _STR:
                value: Any = text
            elif tag in _SCALAR_TAGS:
                node = scalar_node(tag, text, event.start_mark, event.end_mark, event.style)
                value = constructors[tag](loader, node)
            else:
                raise _Unusual(f"tag {tag}")
            line = event.start_mark.line + 1
            done = (value, (SCALAR, same_line(line, line), text))
            if event.anchor is not None:
                _anchor(anchors, event.anchor, done)
        elif kind is alias_event:
            done = anchors.get(event.anchor)
            if done is None or done is _INCOMPLETE:
                raise _Unusual("undefined or recursive alias")
        elif kind is mapping_start or kind is sequence_start:
            is_mapping = kind is mapping_start
            tag = event.tag
            if not (tag is None or tag == "!" or tag == (_MAP if is_mapping else _SEQ)):
                raise _Unusual(f"tag {tag}")
            if event.anchor is not None:
                _anchor(anchors, event.anchor, _INCOMPLETE)
            if len(stack) >= _DEEPEST:
                raise _Unusual("nested deeper than diagrams go")
            line = event.start_mark.line + 1
            line = same_line(line, line)
            stack.append([is_mapping, line, {} if is_mapping else [], [], event.anchor, None])
            continue
        else:  # MappingEnd / SequenceEnd
            is_mapping, line, data, shapes, anchor, _ = stack.pop()
            done = (data, (MAPPING if is_mapping else SEQUENCE, line, tuple(shapes)))
            if anchor is not None:
                anchors[anchor] = done
        if not stack:
            return _finish(loader, done)
        frame = stack[-1]
        if not frame[0]:
            frame[2].append(done[0])
            frame[3].append(done[1])
        elif frame[5] is None:  # a key (`<<` and `=` resolve to tags refused above)
            if done[1][0] != SCALAR:
                raise _Unusual("a collection as a key")
            frame[5] = done
        else:
            key, key_shape = frame[5]
            frame[5] = None
            frame[2][key] = done[0]
            frame[3].append((key_shape[2], key_shape[1], done[1]))


def _anchor(anchors: dict[str, Any], name: str, value: Any) -> None:
    if name in anchors:
        raise _Unusual("duplicate anchor")  # yaml's composer names both occurrences
    anchors[name] = value


def _finish(loader: Any, done: tuple[Any, Any]) -> tuple[Any, Any]:
    loader.get_event()  # DocumentEnd
    if not isinstance(loader.get_event(), yaml.StreamEndEvent):
        raise _Unusual("more than one document")
    return done
