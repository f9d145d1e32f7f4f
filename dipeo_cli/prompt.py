"""DiPeO's prompt template language (person_job prompts, llm_decision `judge_by`).

    {{name}}  {{a.b}}  {{list[0]}}  {{list.0}}  {{list[idx_var]}}    a value
    {{#if x}} ... {{else}} ... {{/if}}                                when x is truthy
    {{#unless x}} ... {{else}} ... {{/unless}}                        when x is falsy
    {{#each xs}} {{this}} {{@index}} {{@first}} {{@last}} {{/each}}   per item ({{@key}} on dicts;
                                                                      a dict item's keys too;
                                                                      {{else}} when empty)

Blocks nest. Values render as text: strings as they are, None as "", dicts and lists as indented
JSON, anything else with str(). Truthiness is DiPeO's: missing, None, False, 0, empty
containers and the strings "", "false", "0", "no", "none" (any case) are false.

An unknown name is left in the text as written (`{{name}}`, as DiPeO does) and reported in the
warnings `render_prompt` returns. A `{{...}}` that is not one of the forms above (a Jinja filter,
JSON in braces) is left as written too, with a warning. Unbalanced blocks are a syntax error
(`PromptSyntaxError`), reported at validation by `check_prompt`.

Pure and standard-library only; parsed templates are cached.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_TAG = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_PATH = re.compile(r"^(?:@?\w+)(?:\.\w+|\[[^\[\]]+\])*$")
_SEGMENT = re.compile(r"\.(\w+)|\[([^\[\]]+)\]")
_BLOCKS = ("if", "unless", "each")
_FALSE_WORDS = frozenset({"", "false", "0", "no", "none"})
_MISSING = object()


class PromptSyntaxError(ValueError):
    """A template whose blocks do not balance; the message names the tag and its line."""


@dataclass(frozen=True, slots=True)
class _Text:
    text: str


@dataclass(frozen=True, slots=True)
class _Var:
    path: str
    raw: str  # the tag as written, put back when the name is unknown


@dataclass(frozen=True, slots=True)
class _Unsupported:
    raw: str  # a {{...}} that is not a template form: kept as written, with a warning


@dataclass(slots=True)
class _Block:
    kind: str  # if | unless | each
    path: str
    line: int
    body: list[Any]
    otherwise: list[Any] | None = None


def render_prompt(source: str, values: dict[str, Any]) -> tuple[str, list[str]]:
    """Render `source` with `values`; return the text and the warnings (unknown names, forms
    left as written). Raises PromptSyntaxError for unbalanced blocks."""
    warnings: list[str] = []
    out: list[str] = []
    _render(_parse(source), [values], out, warnings)
    return "".join(out), list(dict.fromkeys(warnings))


def check_prompt(source: str) -> str | None:
    """The syntax problem of a template, or None when it parses."""
    try:
        _parse(source)
    except PromptSyntaxError as exc:
        return str(exc)
    return None


def template_names(source: str) -> set[str]:
    """The top-level names a template refers to (`{{a.b}}` -> "a"), loop variables excluded."""
    try:
        tree = _parse(source)
    except PromptSyntaxError:
        return set()
    names: set[str] = set()
    stack: list[Any] = list(tree)
    while stack:
        item = stack.pop()
        if isinstance(item, _Var):
            names.add(_head(item.path))
        elif isinstance(item, _Block):
            names.add(_head(item.path))
            stack.extend(item.body)
            stack.extend(item.otherwise or ())
    return {n for n in names if n != "this" and not n.startswith("@")}


def format_value(value: Any) -> str:
    """How a value appears in a prompt."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return str(value)


def is_truthy(value: Any) -> bool:
    """DiPeO's truthiness for `#if` / `#unless`."""
    if value is _MISSING or value is None:
        return False
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    if isinstance(value, (list, tuple, dict, set)):
        return len(value) > 0
    return bool(value)


# -- parsing --------------------------------------------------------------------------------


@lru_cache(maxsize=512)
def _parse(source: str) -> list[Any]:
    root: list[Any] = []
    stack: list[_Block] = []
    current = root
    pos = 0
    for match in _TAG.finditer(source):
        if match.start() > pos:
            current.append(_Text(source[pos : match.start()]))
        pos = match.end()
        inner = match.group(1)
        line = source.count("\n", 0, match.start()) + 1
        raw = match.group(0)
        if inner.startswith("#"):
            kind, _, path = inner[1:].partition(" ")
            path = path.strip()
            if kind in _BLOCKS and _PATH.match(path):
                block = _Block(kind, path, line, [])
                current.append(block)
                stack.append(block)
                current = block.body
                continue
            if kind in _BLOCKS:
                raise PromptSyntaxError(f"line {line}: {raw} needs a name, e.g. {{{{#{kind} x}}}}")
        elif inner.startswith("/"):
            kind = inner[1:].strip()
            if kind in _BLOCKS:
                if not stack:
                    raise PromptSyntaxError(
                        f"line {line}: {raw} has no matching {{{{#{kind} ...}}}}"
                    )
                block = stack.pop()
                if block.kind != kind:
                    raise PromptSyntaxError(
                        f"line {line}: {raw} closes {{{{#{block.kind} {block.path}}}}} "
                        f"(opened on line {block.line}); expected {{{{/{block.kind}}}}}"
                    )
                current = stack[-1].body if stack else root
                if stack and stack[-1].otherwise is not None:
                    current = stack[-1].otherwise
                continue
        elif inner == "else":
            if not stack:
                raise PromptSyntaxError(
                    f"line {line}: {{{{else}}}} outside an if/unless/each block"
                )
            block = stack[-1]
            if block.otherwise is not None:
                raise PromptSyntaxError(f"line {line}: a second {{{{else}}}} in one block")
            block.otherwise = []
            current = block.otherwise
            continue
        elif _PATH.match(inner):
            current.append(_Var(inner, raw))
            continue
        current.append(_Unsupported(raw))
    if pos < len(source):
        current.append(_Text(source[pos:]))
    if stack:
        block = stack[-1]
        raise PromptSyntaxError(
            f"line {block.line}: {{{{#{block.kind} {block.path}}}}} is never closed "
            f"(add {{{{/{block.kind}}}}})"
        )
    return root


# -- rendering ------------------------------------------------------------------------------


def _render(
    nodes: list[Any], scopes: list[dict[str, Any]], out: list[str], warnings: list[str]
) -> None:
    for item in nodes:
        if isinstance(item, _Text):
            out.append(item.text)
        elif isinstance(item, _Var):
            value = _lookup(item.path, scopes)
            if value is _MISSING:
                out.append(item.raw)
                warnings.append(f"unknown variable '{item.path}' left as written")
            else:
                out.append(format_value(value))
        elif isinstance(item, _Unsupported):
            out.append(item.raw)
            warnings.append(f"{item.raw} is not a template form; left as written")
        elif item.kind == "each":
            _render_each(item, scopes, out, warnings)
        else:
            value = _lookup(item.path, scopes)
            chosen = is_truthy(value) if item.kind == "if" else not is_truthy(value)
            branch = item.body if chosen else item.otherwise
            if branch:
                _render(branch, scopes, out, warnings)


def _render_each(
    block: _Block, scopes: list[dict[str, Any]], out: list[str], warnings: list[str]
) -> None:
    value = _lookup(block.path, scopes)
    if isinstance(value, dict):
        entries = list(value.items())
    elif isinstance(value, (list, tuple)):
        entries = [(None, item) for item in value]
    else:
        if value is not _MISSING and value is not None:
            warnings.append(f"#each {block.path}: not a list (got {type(value).__name__})")
        elif value is _MISSING:
            warnings.append(f"unknown variable '{block.path}' in #each")
        entries = []
    if not entries:
        if block.otherwise:
            _render(block.otherwise, scopes, out, warnings)
        return
    last = len(entries) - 1
    for index, (key, item) in enumerate(entries):
        frame: dict[str, Any] = dict(item) if isinstance(item, dict) else {}
        frame.update({"this": item, "@index": index, "@first": index == 0, "@last": index == last})
        if key is not None:
            frame["@key"] = key
        scopes.append(frame)
        try:
            _render(block.body, scopes, out, warnings)
        finally:
            scopes.pop()


def _head(path: str) -> str:
    match = re.match(r"@?\w+", path)
    return match.group(0) if match else path


def _lookup(path: str, scopes: list[dict[str, Any]]) -> Any:
    head = _head(path)
    for scope in reversed(scopes):
        if head in scope:
            value = scope[head]
            break
    else:
        return _MISSING
    for match in _SEGMENT.finditer(path, len(head)):
        key, index = match.group(1), match.group(2)
        if key is not None:
            value = _step(value, key)
        else:
            index = index.strip()
            if index.lstrip("-").isdigit():
                value = _step(value, int(index))
            elif (index[:1] == index[-1:]) and index[:1] in ("'", '"') and len(index) >= 2:
                value = _step(value, index[1:-1])
            else:
                resolved = _lookup(index, scopes)
                if resolved is _MISSING or isinstance(resolved, (dict, list, bool)):
                    return _MISSING
                value = _step(value, resolved)
        if value is _MISSING:
            return _MISSING
    return value


def _step(value: Any, key: Any) -> Any:
    if isinstance(value, dict):
        if key in value:
            return value[key]
        if not isinstance(key, str) and str(key) in value:
            return value[str(key)]
        return _MISSING
    if isinstance(value, (list, tuple)):
        try:
            position = int(key)
        except (TypeError, ValueError):
            return _MISSING
        if -len(value) <= position < len(value):
            return value[position]
    return _MISSING
