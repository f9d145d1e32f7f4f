"""The sandboxed Jinja2 environment every template renders in, with its guarded filters.

`ENVIRONMENT` is a `jinja2.sandbox.SandboxedEnvironment` whose operators, calls, `{% for %}`
loops and `~` concatenations tick the render's budget and have their sizes checked
(template_budget.py), and whose filters and globals that take a width or a count (center,
indent, format, replace, join, batch, map, lipsum, ...) check the size they would build first.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import wraps
from inspect import signature
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import FILTERS as DEFAULT_FILTERS  # what jinja2.defaults re-exports
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

from dipeo_cli.template_budget import (
    _bounded_list,
    _budget,
    _check_binop,
    _check_format,
    _check_join,
    _check_replace,
    _check_str_method,
    _checked,
    _need,
    _weight,
)

# -- filters and globals that take a width or a count -------------------------------------------


def _guard_filter(name: str, check: Callable[[dict[str, Any]], None]) -> Callable[..., Any]:
    """DEFAULT_FILTERS[name], calling check with its arguments by name first."""
    original = DEFAULT_FILTERS[name]
    parameters = signature(original)

    @wraps(original)  # keeps jinja's pass_context/pass_environment marker
    def guarded(*args: Any, **kwargs: Any) -> Any:
        bound = parameters.bind(*args, **kwargs)
        bound.apply_defaults()
        check(bound.arguments)
        return _checked(original(*args, **kwargs))

    return guarded


def _check_indent(a: dict[str, Any]) -> None:
    width = len(a["width"]) if isinstance(a["width"], str) else a["width"]
    if isinstance(width, int):
        _need(len(str(a["s"])) + (str(a["s"]).count("\n") + 1) * width)


def _check_wordwrap(a: dict[str, Any]) -> None:
    wrapstring = a["wrapstring"] or "\n"
    _need(len(str(a["s"])) * (1 + len(str(wrapstring))))


_GUARDED_FILTERS = {
    "center": lambda a: _need(a["width"]),
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "format": lambda a: _check_format(
        str(a["value"]), [*a["args"], *a["kwargs"].values()], percent=True
    ),
    "replace": lambda a: _check_replace(a["s"], a["old"], a["new"], a["count"]),
    "batch": lambda a: _need(a["linecount"]),
    "slice": lambda a: _need(a["slices"]),
}


def _join_filter() -> Callable[..., Any]:
    original = DEFAULT_FILTERS["join"]

    @wraps(original)
    def join(eval_ctx: Any, value: Any, d: str = "", attribute: Any = None) -> Any:
        if not isinstance(value, (str, list, tuple)):
            value = _bounded_list(value)
        if attribute is None:
            _check_join(d, value)
        return _checked(original(eval_ctx, value, d, attribute))

    return join


def _sum_filter() -> Callable[..., Any]:
    original = DEFAULT_FILTERS["sum"]

    @wraps(original)
    def total(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
        if isinstance(start, (str, list, tuple)):  # a concatenation, not a sum of numbers
            iterable = _bounded_list(iterable)
            _need(_weight(start) + sum(_weight(item) for item in iterable))
        return _checked(original(environment, iterable, attribute, start))

    return total


def _map_filter() -> Callable[..., Any]:
    """`map`, whose items (new strings, often) each count against the budget."""
    original = DEFAULT_FILTERS["map"]

    @wraps(original)
    def mapped(*args: Any, **kwargs: Any) -> Iterator[Any]:
        budget = _budget()
        for item in original(*args, **kwargs):
            budget.tick()
            yield _checked(item)

    return mapped


def _lipsum(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
    _need(n * max * 12)  # lorem ipsum words are under 12 characters with their space
    return generate_lorem_ipsum(n, html, min, max)


# -- the environment -----------------------------------------------------------------------------


class _BudgetCodeGenerator(CodeGenerator):
    """Wraps every `{% for %}` iterable in `environment.guard_loop(...)` and every `~` in
    `environment.checked(...)`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loop_iterables: set[int] = set()

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        self._loop_iterables.add(id(node.iter))
        super().visit_For(node, frame)

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if id(node) not in self._loop_iterables:
            return super().visit(node, *args, **kwargs)
        self._loop_iterables.discard(id(node))
        self.write("environment.guard_loop(")
        super().visit(node, *args, **kwargs)
        self.write(")")
        return None

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked(")
        super().visit_Concat(node, frame)
        self.write(")")


class _GuardedIterable:
    """Iterates `inner`, ticking the budget; keeps `len` for `loop.length`."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def __len__(self) -> int:
        return len(self._inner)

    def __iter__(self) -> Iterator[Any]:
        budget = _budget()
        count = 0
        for item in self._inner:
            count += 1
            if count == 64:
                budget.tick(64)
                count = 0
            yield item


class TemplateEnvironment(SandboxedEnvironment):
    """SandboxedEnvironment whose operators, calls, loops and sizes answer to a Budget."""

    code_generator_class = _BudgetCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _budget().tick()
        _check_binop(operator, left, right)
        return _checked(super().call_binop(context, operator, left, right))

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _budget().tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            if getattr(__obj, "__name__", "") == "join" and args:
                if not isinstance(args[0], (str, list, tuple)):
                    args = (_bounded_list(args[0]), *args[1:])
            _check_str_method(owner, getattr(__obj, "__name__", ""), args, kwargs)
        wrapped = getattr(__obj, "__wrapped__", None)  # str.format, as the sandbox wraps it
        template = getattr(wrapped, "__self__", None)
        if isinstance(template, str):
            _check_format(template, [*args, *kwargs.values()], percent=False)
        return _checked(super().call(__context, __obj, *args, **kwargs))

    def guard_loop(self, iterable: Any) -> _GuardedIterable:
        return _GuardedIterable(iterable)

    def checked(self, value: Any) -> Any:
        _budget().tick()
        return _checked(value)


def _to_json(value: Any, indent: int | None = None) -> str:
    """`{{ data | to_json }}`: JSON without escaping non-ASCII (Jinja's `tojson` escapes HTML)."""
    return json.dumps(value, indent=indent, ensure_ascii=False, default=str)


ENVIRONMENT = TemplateEnvironment(
    undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False
)
ENVIRONMENT.filters["to_json"] = _to_json
ENVIRONMENT.filters.update({name: _guard_filter(name, c) for name, c in _GUARDED_FILTERS.items()})
ENVIRONMENT.filters["join"] = _join_filter()
ENVIRONMENT.filters["sum"] = _sum_filter()
ENVIRONMENT.filters["map"] = _map_filter()
ENVIRONMENT.globals["lipsum"] = _lipsum
