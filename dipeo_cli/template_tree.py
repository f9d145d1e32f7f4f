"""Render a simple Jinja2 template from its parse tree, without compiling it to Python.

Jinja2 turns a template into Python source and compiles that (about 250 us for a one-line
template), which pays for itself over many renders; a template_job renders its template about
once. So a template made only of text and `{{ }}` expressions built from names, constants,
attributes, items and filters is evaluated here, straight from the tree, doing what the code
Jinja2 would generate does (jinja2/compiler.py, 3.1) through the same hooks of the same
sandboxed environment:

    name        the render's names, then the environment's globals, else
                `environment.undefined(name=...)` (StrictUndefined: using it raises)
    a.b, a[k]   `environment.getattr` / `environment.getitem`: the sandbox's checks
    x | f(...)  `environment.filters[f]` (dipeo's guarded filters), given the environment or an
                EvalContext first when the filter asks for one
    {{ x }}     `str(x)` (no autoescape, no finalize)

Anything else (statements, operators, calls, tests, slices, filters that need the context,
unknown filters, whose error the compile reports) is left to Jinja2's compiler: `plan` returns
None.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from jinja2 import nodes
from jinja2.sandbox import SandboxedEnvironment

try:  # Jinja2 3.1's internals; a Jinja2 without them compiles every template itself
    from jinja2.utils import (
        _PassArg,  # how pass_environment/pass_eval_context mark a filter
        missing,
    )

    _INTERNALS = True
except ImportError:  # pragma: no cover - depends on the installed Jinja2
    _INTERNALS = False

Part = str | nodes.Expr


def plan(tree: nodes.Template, environment: SandboxedEnvironment) -> tuple[Part, ...] | None:
    """The template as text and expression parts, or None when it is not that simple."""
    if not _INTERNALS or environment.autoescape is not False or environment.finalize is not None:
        return None
    parts: list[Part] = []
    for statement in tree.body:
        if not isinstance(statement, nodes.Output):
            return None
        for child in statement.nodes:
            if isinstance(child, nodes.TemplateData):
                if parts and isinstance(parts[-1], str):
                    parts[-1] += child.data
                else:
                    parts.append(child.data)
            elif _simple(child, environment):
                parts.append(child)
            else:
                return None
    return tuple(parts)


def _simple(node: nodes.Node, environment: SandboxedEnvironment) -> bool:
    # (none of these node classes has subclasses in Jinja2 3.1)
    if isinstance(node, nodes.Const):
        return True
    if isinstance(node, nodes.Name):
        return node.ctx == "load"
    if isinstance(node, nodes.Getattr):
        return node.ctx == "load" and _simple(node.node, environment)
    if isinstance(node, nodes.Getitem):
        return (
            node.ctx == "load"
            and not isinstance(node.arg, nodes.Slice)  # Jinja indexes slices directly
            and _simple(node.node, environment)
            and _simple(node.arg, environment)
        )
    if isinstance(node, nodes.Filter):
        function = environment.filters.get(node.name)
        return (
            function is not None
            and _PassArg.from_obj(function) in (None, _PassArg.environment, _PassArg.eval_context)
            and node.node is not None
            and _simple(node.node, environment)
            and node.dyn_args is None
            and node.dyn_kwargs is None
            and all(_simple(arg, environment) for arg in node.args)
            and all(_simple(kw.value, environment) for kw in node.kwargs)
        )
    return False


def generate(
    parts: tuple[Part, ...], names: dict[str, Any], environment: SandboxedEnvironment
) -> Iterator[str]:
    """The rendered text, part by part."""
    scope = _Scope(names, environment)
    for part in parts:
        yield part if isinstance(part, str) else str(scope.value(part))


class _Scope:
    __slots__ = ("_names", "_environment", "_eval_context")

    def __init__(self, names: dict[str, Any], environment: SandboxedEnvironment) -> None:
        self._names = names
        self._environment = environment
        self._eval_context: nodes.EvalContext | None = None

    def value(self, node: nodes.Expr) -> Any:
        environment = self._environment
        if isinstance(node, nodes.Name):
            found = self._names.get(node.name, missing)
            if found is missing:
                found = environment.globals.get(node.name, missing)
            return environment.undefined(name=node.name) if found is missing else found
        if isinstance(node, nodes.Const):
            return node.value
        if isinstance(node, nodes.Getattr):
            return environment.getattr(self.value(node.node), node.attr)
        if isinstance(node, nodes.Getitem):
            return environment.getitem(self.value(node.node), self.value(node.arg))
        assert isinstance(node, nodes.Filter) and node.node is not None  # plan() checked
        function = environment.filters[node.name]
        args: list[Any] = []
        passed = _PassArg.from_obj(function)
        if passed is _PassArg.environment:
            args.append(environment)
        elif passed is _PassArg.eval_context:
            if self._eval_context is None:
                self._eval_context = nodes.EvalContext(environment)
            args.append(self._eval_context)
        args.append(self.value(node.node))
        args.extend(self.value(arg) for arg in node.args)
        kwargs = {str(kw.key): self.value(kw.value) for kw in node.kwargs}
        return function(*args, **kwargs)
