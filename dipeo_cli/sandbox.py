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

The budget and its size checks are template_budget.py, the environment and its guarded filters
template_environment.py; this module compiles templates and runs the renders.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import nodes

from dipeo_cli import template_tree
from dipeo_cli.template_budget import OUTPUT_LIMIT, Budget, _local, _too_large
from dipeo_cli.template_environment import ENVIRONMENT

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
