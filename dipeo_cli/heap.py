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

A frozen object is never collected, so freezing is contained to the run (`frozen_for_run`):
in a process that hosts many runs (`dipeo worker`, tests, a program embedding `execute`) the
run's end unfreezes what its start froze, and the next full collection can free whatever
became garbage meanwhile; repeated runs never accumulate frozen garbage. Only a process
dedicated to one run (`dipeo run`, marked by `pause_until_run`) keeps it frozen until it
exits: unfreezing there would only make the interpreter's last collection rescan it all.
"""

from __future__ import annotations

import contextlib
import functools
import gc
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

_paused_until_run = False
_one_run_process = False  # `dipeo run`: what a run freezes stays frozen until the process exits


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
    global _paused_until_run, _one_run_process
    _one_run_process = True
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


# While a run runs, a young collection every 10,000 allocations rather than 700: each node's
# events, outputs and history rows survive a few hundred allocations, so at 700 they were
# promoted and rescanned by ever larger middle collections (a 10,000-node chain: 200 young and
# 18 middle collections, ~55 ms; at 10,000: 12 young, no middle one, ~35 ms).
_RUN_THRESHOLD = 10_000
_runs_held = 0
_threshold_before: tuple[int, int, int] | None = None


@contextlib.contextmanager
def frozen_for_run() -> Iterator[None]:
    """Hold one run: what is alive at its start is frozen (`freeze_loaded`) and young
    collections are spaced for a batch of nodes. At its end, unless this process is
    dedicated to the run, it is unfrozen (nothing stays out of the collector's reach after
    the run), and the thresholds are restored when the last run a process holds at once
    ends (see the module docstring)."""
    global _runs_held, _threshold_before
    freeze_loaded()
    if _runs_held == 0:
        _threshold_before = gc.get_threshold()
        gc.set_threshold(_RUN_THRESHOLD, *_threshold_before[1:])
    _runs_held += 1
    try:
        yield
    finally:
        _runs_held -= 1
        if _runs_held == 0 and _threshold_before is not None:
            gc.set_threshold(*_threshold_before)
            _threshold_before = None
        if not _one_run_process:
            gc.unfreeze()
