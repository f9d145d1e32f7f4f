"""The handler registry: `@node_handler`, and loading plugins that register more handlers.

A handler is an async function `(node, ctx) -> NodeOutput` registered for one node type:

    @node_handler("shout", props=ShoutProps)
    async def shout(node: ExecutableNode[ShoutProps], ctx: NodeContext) -> NodeOutput:
        return create_node_output(str(ctx.inputs.get("default", "")).upper())

`props` (optional) is a pydantic model; `dipeo validate` checks every node of that type against
it before anything runs, and the handler finds the validated instance in `node.config`.
Built-in handlers live in `dipeo_cli.handlers` and register the same way. Plugins come from
`--plugin module_or_file.py` and from the entry-point group `dipeo.handlers`; the CLI loads them
when it starts, never at import time.

`load_plugins` returns a registry of its own (the built-ins plus what the plugins registered
while it loaded them), so plugins loaded for one run never leak into another in the same process.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, overload

from dipeo_cli.errors import PluginError

if TYPE_CHECKING:
    from pydantic import BaseModel

    from dipeo_cli.context import NodeContext
    from dipeo_cli.diagram.model import Diagram
    from dipeo_cli.graph import CompileOptions, ExecutableNode

PropsT = TypeVar("PropsT", bound="BaseModel")

PropsModel = type["BaseModel"]  # a pydantic model class (HandlerSpec's `type` field hides `type`)

# A handler returns a NodeOutput, or any other value, which the executor wraps as
# {"default": value} (plugins may return plain values). The registry holds handlers of every
# props model, so the node's model is erased to Any here; `node_handler` checks it per handler.
Handler = Callable[["ExecutableNode[Any]", "NodeContext"], Awaitable[object]]
TypedHandler = Callable[["ExecutableNode[PropsT]", "NodeContext"], Awaitable[object]]
# Extra compile-time checks beyond the props model: (config, diagram, registry, options) -> problems
Check = Callable[[Any, "Diagram", "HandlerRegistry", "CompileOptions"], list[str]]
TypedCheck = Callable[[PropsT, "Diagram", "HandlerRegistry", "CompileOptions"], list[str]]

ENTRY_POINT_GROUP = "dipeo.handlers"


@dataclass(frozen=True)
class HandlerSpec:
    type: str
    fn: Handler
    props: PropsModel | None = None  # a pydantic model class validating the node's properties
    inputs: tuple[str, ...] = ("default", "first")  # input handles arrows may target
    outputs: tuple[str, ...] = ("default",)  # output ports; "error" is always allowed too
    origin: str = "builtin"
    check: Check | None = None  # see Check; plugins written before options take three arguments


# The built-in node types; each is handled by the module of the same name in dipeo_cli.handlers,
# imported only when a diagram uses that type (so a run pays only for the handlers it needs).
BUILTIN_TYPES = (
    "api_job",
    "code_job",
    "condition",
    "db",
    "diff_patch",
    "endpoint",
    "hook",
    "json_schema_validator",
    "person_batch_job",
    "person_job",
    "start",
    "sub_diagram",
    "template_job",
    "user_response",
)


class HandlerRegistry:
    """Node type -> HandlerSpec. Registering a type again replaces it (a plugin may override
    a built-in handler); `origin` records who registered it. `lazy` types are built-ins whose
    module is imported on first `get`."""

    def __init__(self, lazy: tuple[str, ...] = ()) -> None:
        self._specs: dict[str, HandlerSpec] = {}
        self._lazy: set[str] = set(lazy)

    def register(self, spec: HandlerSpec) -> None:
        self._specs[spec.type] = spec
        self._lazy.discard(spec.type)

    def get(self, node_type: str) -> HandlerSpec | None:
        spec = self._specs.get(node_type)
        if spec is None and node_type in self._lazy:
            self._lazy.discard(node_type)
            _import_builtin(node_type)
            spec = REGISTRY._specs.get(node_type)
            if spec is not None:
                self._specs[node_type] = spec
        return spec

    def types(self) -> list[str]:
        return sorted({*self._specs, *self._lazy})

    def copy(self) -> HandlerRegistry:
        clone = HandlerRegistry()
        clone._specs = dict(self._specs)
        clone._lazy = set(self._lazy)
        return clone


REGISTRY = HandlerRegistry(BUILTIN_TYPES)  # built-ins, and what registers outside load_plugins
_target = REGISTRY  # where @node_handler registers right now
_current_origin = "builtin"


def _import_builtin(node_type: str) -> None:
    """Import a built-in handler module; it registers in REGISTRY as a built-in, even while
    plugins are being loaded into another registry."""
    global _target, _current_origin
    previous = _target, _current_origin
    _target, _current_origin = REGISTRY, "builtin"
    try:
        importlib.import_module(f"dipeo_cli.handlers.{node_type}")
    finally:
        _target, _current_origin = previous


@overload
def node_handler(
    node_type: str,
    *,
    props: type[PropsT],
    inputs: tuple[str, ...] = ...,
    outputs: tuple[str, ...] = ...,
    check: TypedCheck[PropsT] | None = ...,
) -> Callable[[TypedHandler[PropsT]], TypedHandler[PropsT]]: ...


@overload
def node_handler(
    node_type: str,
    *,
    props: None = None,
    inputs: tuple[str, ...] = ...,
    outputs: tuple[str, ...] = ...,
    check: Check | None = ...,
) -> Callable[[Handler], Handler]: ...


def node_handler(
    node_type: str,
    *,
    props: type[BaseModel] | None = None,
    inputs: tuple[str, ...] = ("default", "first"),
    outputs: tuple[str, ...] = ("default",),
    check: Check | None = None,
) -> Callable[[Handler], Handler]:
    """Register the decorated async function as the handler of `node_type`. With `props`, the
    handler's node is an `ExecutableNode[props]` (its `config` is a validated `props`)."""

    def register(fn: Handler) -> Handler:
        _target.register(
            HandlerSpec(
                type=node_type.lower(),
                fn=fn,
                props=props,
                inputs=inputs,
                outputs=outputs,
                origin=_current_origin,
                check=check,
            )
        )
        return fn

    return register


def load_builtin_handlers() -> HandlerRegistry:
    """The registry of built-in handlers (their modules load when a diagram uses them)."""
    return REGISTRY


def load_plugin(target: str) -> None:
    """Import a plugin given as a path to a .py file or as an importable module name."""
    global _current_origin
    previous, _current_origin = _current_origin, target
    try:
        path = Path(target)
        if target.endswith(".py") or path.is_file():
            if not path.is_file():
                raise PluginError(f"plugin file not found: {target}")
            # A fresh module each time: the file registers into the registry being built now.
            name = f"dipeo_plugin_{abs(hash(str(path.resolve())))}"
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise PluginError(f"cannot load plugin file {target}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        elif target in sys.modules:
            importlib.reload(sys.modules[target])
        else:
            importlib.import_module(target)
    except PluginError:
        raise
    except Exception as exc:  # any error in third-party code: say where, keep the cause
        raise PluginError(f"plugin {target} failed to load: {type(exc).__name__}: {exc}") from exc
    finally:
        _current_origin = previous


def load_entry_point_plugins() -> None:
    """Load every plugin registered under the `dipeo.handlers` entry-point group."""
    global _current_origin
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        previous, _current_origin = _current_origin, f"entry point {entry.name}"
        try:
            if entry.module in sys.modules:  # registered into another registry before
                importlib.reload(sys.modules[entry.module])
            loaded = entry.load()
            if callable(loaded) and not isinstance(loaded, type):
                # An entry point may name a `register()` function instead of a module.
                if getattr(loaded, "__name__", "") == "register":
                    loaded()
        except Exception as exc:
            raise PluginError(
                f"plugin entry point {entry.name} ({entry.value}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            _current_origin = previous


def load_plugins(targets: list[str] | tuple[str, ...] = ()) -> HandlerRegistry:
    """A registry with the built-ins, then entry-point plugins, then `--plugin` targets (later
    registrations win)."""
    global _target
    registry = load_builtin_handlers().copy()
    previous, _target = _target, registry
    try:
        load_entry_point_plugins()
        for target in targets:
            load_plugin(target)
    finally:
        _target = previous
    return registry
