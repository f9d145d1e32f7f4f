"""The Jinja2 sandbox template_job renders in, with a budget, off the event loop.

`render_template(source, names)` is the only way dipeo renders Jinja2. It promises:

- Python internals are out of reach (`jinja2.sandbox.SandboxedEnvironment`): attributes that
  start with `_`, function internals and unsafe callables raise `jinja2.sandbox.SecurityError`.
- The output, and what `*`, `**`, `+`, `%`, `~`, calls, `map`, and the filters and string
  methods that take a width or a count (center, indent, format, replace, join, batch, ...)
  build, stay under OUTPUT_LIMIT characters (or list items): their sizes are estimated before
  they allocate; the rendered text is streamed and stopped at the limit. What else a template
  can build (`str()` of a list holding one big string many times, say) is only caught by the
  backstop: a render during which the process's peak memory grows by more than MEMORY_LIMIT
  bytes is stopped. Either raises RenderStoppedError.
- The event loop never waits on a render that can take long: one with a loop, a call or a
  macro runs in a daemon thread and is awaited, so a node
  timeout, the run's timeout or a cancellation returns at once. The render then stops at its
  next loop iteration, call or operator (RenderStoppedError "aborted", seen by no one), and a
  render still running never keeps the process from exiting. A straight-line template (none of
  those) renders at once on the event loop: its work is bounded by the size checks.

Templates have no loader: `include`, `import` and `extends` fail.
"""

from __future__ import annotations

import asyncio
import json
import queue
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache, wraps
from inspect import signature
from string import Formatter
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import FILTERS as DEFAULT_FILTERS  # what jinja2.defaults re-exports
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

from dipeo_cli import template_tree

try:
    import resource
except ImportError:  # Windows: no memory backstop
    resource = None  # type: ignore[assignment]

OUTPUT_LIMIT = 8 * 1024 * 1024  # characters of output, or of any one value; items of a list
MEMORY_LIMIT = 512 * 1024 * 1024  # growth of the process's peak memory during one render
_CHECK_EVERY = 64  # ticks (loop iterations, calls, operators) between memory checks
_LARGE = 1024 * 1024  # a value this long checks the memory at once


class RenderStoppedError(Exception):
    """A render went over its budget (its message says which) or was aborted."""


def _too_large() -> RenderStoppedError:
    return RenderStoppedError(f"output larger than {OUTPUT_LIMIT // (1024 * 1024)} MB")


# -- the budget ---------------------------------------------------------------------------------


def _peak_memory() -> int:
    if resource is None:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak) if sys.platform == "darwin" else int(peak) * 1024  # bytes on macOS, KiB


class Budget:
    """What one render may still do. `cancelled` is set from the event loop's thread; the
    render's thread sees it at its next tick."""

    __slots__ = ("cancelled", "ticks", "_memory_at_start")

    def __init__(self) -> None:
        self.cancelled = False
        self.ticks = 0
        self._memory_at_start = _peak_memory()

    def tick(self, count: int = 1) -> None:
        if self.cancelled:
            raise RenderStoppedError("aborted")
        before = self.ticks
        self.ticks += count
        if before // _CHECK_EVERY != self.ticks // _CHECK_EVERY:
            self.check_memory()

    def check_memory(self) -> None:
        if _peak_memory() - self._memory_at_start > MEMORY_LIMIT:
            raise RenderStoppedError(
                f"it used more than {MEMORY_LIMIT // (1024 * 1024)} MB of memory"
            )


_local = threading.local()


def _budget() -> Budget:
    budget: Budget | None = getattr(_local, "budget", None)
    if budget is None:  # a render outside render_template (tests, tools): unlimited in time
        budget = _local.budget = Budget()
    return budget


# -- size estimates, made before allocating -----------------------------------------------------


def _need(size: Any) -> None:
    if isinstance(size, int) and size > OUTPUT_LIMIT:
        raise _too_large()


def _weight(value: Any) -> int:
    """Characters of a string; items of a sequence, a string item counting its characters."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, (list, tuple)):
        return len(value) + sum(len(item) for item in value if isinstance(item, str))
    return 0


def _checked(value: Any) -> Any:
    if isinstance(value, (str, list, tuple)) and len(value) >= _LARGE:
        if len(value) > OUTPUT_LIMIT:
            raise _too_large()
        _budget().check_memory()
    return value


def _bounded_list(items: Iterable[Any]) -> list[Any]:
    """`list(items)`, stopped once the items' weight passes OUTPUT_LIMIT."""
    result = []
    size = 0
    for item in items:
        size += len(item) if isinstance(item, str) else 1
        if size > OUTPUT_LIMIT:
            raise _too_large()
        result.append(item)
    return result


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_format(fmt: str, args: Iterable[Any], percent: bool) -> None:
    """`fmt % args` or `fmt.format(*args)`: the widths and precisions it asks for, summed."""
    total = len(fmt)
    from_args = False
    if percent:
        for match in _PERCENT_SPEC.finditer(fmt):
            for number in match.groups():
                if number == "*":
                    from_args = True
                elif number:
                    total += int(number)
    else:
        try:
            fields = list(Formatter().parse(fmt))
        except ValueError:
            return  # str.format will raise the same error
        for _, _, spec, _ in fields:
            if spec:
                from_args = from_args or "{" in spec
                total += sum(int(n) for n in re.findall(r"\d+", spec))
    _need(total)
    if from_args:
        for arg in args:
            if isinstance(arg, int) and abs(arg) > OUTPUT_LIMIT:
                raise _too_large()


def _format_args(value: Any) -> list[Any]:
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, dict):
        return list(value.values())
    return [value]


def _check_binop(operator: str, left: Any, right: Any) -> None:
    if operator == "*":
        if isinstance(right, int) and isinstance(left, (str, list, tuple)):
            _need(_weight(left) * right)
        elif isinstance(left, int) and isinstance(right, (str, list, tuple)):
            _need(_weight(right) * left)
        elif isinstance(left, int) and isinstance(right, int):
            _need((left.bit_length() + right.bit_length()) // 8)
    elif operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            _need(left.bit_length() * right // 8)
    elif operator == "+":
        if isinstance(left, (str, list, tuple)) and isinstance(right, (str, list, tuple)):
            _need(_weight(left) + _weight(right))
    elif operator == "%" and isinstance(left, str):
        _check_format(left, _format_args(right), percent=True)


def _check_str_method(text: str, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if name in ("center", "ljust", "rjust", "zfill") and args:
        _need(args[0])
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tabsize, int):
            _need(len(text) + text.count("\t") * tabsize)
    elif name == "replace" and len(args) >= 2:
        _check_replace(text, args[0], args[1], args[2] if len(args) > 2 else -1)
    elif name == "join" and args:
        _check_join(text, args[0])  # a generator was made a list by TemplateEnvironment.call


def _check_replace(text: Any, old: Any, new: Any, count: Any) -> None:
    text, old, new = str(text), str(old), str(new)
    times = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    _need(len(text) + times * max(0, len(new) - len(old)))


def _check_join(separator: Any, items: Any) -> None:
    if isinstance(items, (list, tuple)):
        sizes = [len(item) if isinstance(item, str) else 32 for item in items]
        _need(sum(sizes) + len(str(separator)) * max(0, len(sizes) - 1))


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


# Names a template may load without anything filling them: Jinja's own globals and `loop`.
_BUILTIN_NAMES = frozenset({"loop", "range", "dict", "lipsum", "cycler", "joiner", "namespace"})


@dataclass(frozen=True, slots=True)
class CompiledTemplate:
    """One source, parsed and compiled once, with what the parse tells about it."""

    parts: tuple[template_tree.Part, ...] | None  # a simple template, rendered from its tree
    template: jinja2.Template | None  # any other, compiled by Jinja2
    straight: bool  # no loop, call or macro: its work is bounded by the size checks alone
    names: frozenset[str]  # the names it reads and does not set itself (builtins left out)

    def generate(self, names: dict[str, Any]) -> Iterator[str]:
        if self.parts is not None:
            return template_tree.generate(self.parts, names, ENVIRONMENT)
        assert self.template is not None
        return self.template.generate(names)


# Keyed by source, so validation's compile of a template is its run's, every template_job with
# that source shares it, and a changed template (a retry of an edited diagram, a template file
# edited between runs) is a new key, never a stale hit. Large enough for every template of a
# big diagram to stay from validation to its run.
@lru_cache(maxsize=4096)
def compiled(source: str) -> CompiledTemplate:
    """Parse and compile `source` once per process; raises jinja2.TemplateSyntaxError."""
    tree = ENVIRONMENT.parse(source)
    straight = True
    loaded: set[str] = set()
    stored: set[str] = set()
    # One walk of the tree; never jinja2.meta, whose code generator folds constants, so that
    # `{{ 'x' * 10**10 }}` would be built outside the budget.
    for node in tree.find_all((nodes.Name, nodes.For, nodes.Macro, nodes.CallBlock, nodes.Call)):
        if isinstance(node, nodes.Name):
            (loaded if node.ctx == "load" else stored).add(node.name)
        else:
            straight = False
    names = frozenset(loaded - stored - _BUILTIN_NAMES)
    parts = template_tree.plan(tree, ENVIRONMENT)
    if parts is not None:  # compiling it to Python would cost ten times its render
        return CompiledTemplate(parts, None, straight, names)
    return CompiledTemplate(None, ENVIRONMENT.from_string(tree), straight, names)


def compile_template(source: str) -> CompiledTemplate:
    """Compile (and cache) a template; raises jinja2.TemplateSyntaxError."""
    return compiled(source)


def render_sync(source: str, names: dict[str, Any], budget: Budget) -> str:
    """Render in this thread under `budget`, streaming, stopped at OUTPUT_LIMIT characters."""
    _local.budget = budget
    try:
        chunks = []
        size = 0
        for chunk in compiled(source).generate(names):
            size += len(chunk)
            if size > OUTPUT_LIMIT:
                raise _too_large()
            chunks.append(chunk)
        return "".join(chunks)
    finally:
        _local.budget = None


# -- the render threads -------------------------------------------------------------------------


class _RenderThreads:
    """Daemon threads that take jobs from one queue: as many as renders run at once, of which
    up to KEEP wait for the next job when idle (no thread start per render)."""

    KEEP = 4

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._idle = 0

    def submit(self, job: Callable[[], None]) -> None:
        with self._lock:
            start = self._idle == 0
            if not start:
                self._idle -= 1  # that waiting thread will take this job
        if start:
            threading.Thread(
                target=self._work, args=(job,), name="dipeo-template", daemon=True
            ).start()
        else:
            self._jobs.put(job)

    def _work(self, job: Callable[[], None]) -> None:
        while True:
            job()
            with self._lock:
                if self._idle >= self.KEEP:
                    return
                self._idle += 1
            job = self._jobs.get()


_THREADS = _RenderThreads()


async def render_template(source: str, names: dict[str, Any]) -> str:
    """Render `source` with `names` in a render thread (module docstring). Raises what the
    render raises: jinja2 errors, SecurityError, RenderStoppedError, errors of filters."""
    budget = Budget()
    if compiled(source).straight:
        # A straight-line template costs less than the hand-off to a thread (~35 us) would.
        return render_sync(source, names, budget)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[str] = loop.create_future()

    def deliver(result: str | None, error: BaseException | None) -> None:
        if future.done():  # cancelled meanwhile
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def job() -> None:
        result: str | None = None
        error: BaseException | None = None
        try:
            result = render_sync(source, names, budget)
        except Exception as exc:
            error = exc
        try:
            loop.call_soon_threadsafe(deliver, result, error)
        except RuntimeError:  # the loop is closed: nobody waits for this render any more
            pass

    _THREADS.submit(job)
    try:
        return await future
    finally:
        budget.cancelled = True  # a no-op when done; stops a render whose awaiter went away
