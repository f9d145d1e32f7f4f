"""How dipeo uses Python's garbage collector, a batch process's choices.

Loading and compiling a diagram allocates many containers and frees none of them in cycles, yet
each 700 allocations start a collection that rescans all of them: with 10,000 nodes that was
half of the loading time. So the collector is paused while a diagram loads and compiles
(`collection_paused`). What exists when a run starts (modules, the compiled graph, handlers)
lives as long as the run, so `freeze_loaded` moves it out of the collector's sight: later
collections scan only what the run itself allocates, and their cost stays flat as diagrams grow.

The same holds for a `dipeo run` process before its run starts: importing Typer, pydantic,
asyncio, Jinja2 and the handlers builds long-lived objects, and the collector rescanned them
about 80 times (15-20 ms of a 20-node run's start). `pause_until_run` (called by the entry
point for `dipeo run` only) pauses it from the first import; `freeze_loaded` resumes it.
"""

from __future__ import annotations

import functools
import gc
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_paused_until_run = False


def collection_paused(function: F) -> F:
    """Run `function` with the cyclic collector paused (as it was, afterwards)."""

    @functools.wraps(function)
    def paused(*args: Any, **kwargs: Any) -> Any:
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            return function(*args, **kwargs)
        finally:
            if was_enabled:
                gc.enable()

    return paused  # type: ignore[return-value]


def pause_until_run() -> None:
    """Pause the collector until `freeze_loaded` (the run's start) resumes it."""
    global _paused_until_run
    if gc.isenabled():
        gc.disable()
        _paused_until_run = True


def freeze_loaded() -> None:
    """Exclude every object alive now from later collections (they are not freed, only no
    longer rescanned), and resume the collector if `pause_until_run` paused it."""
    global _paused_until_run
    gc.freeze()
    if _paused_until_run:
        _paused_until_run = False
        gc.enable()
