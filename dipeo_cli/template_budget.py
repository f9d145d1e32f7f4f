"""The budget a Jinja2 render answers to, and the size estimates made before a value is built.

A `Budget` is what one render may still do: it counts ticks (loop iterations, calls,
operators), checks the process's peak memory every so often and stops a render that was
cancelled. The `_check_*` functions estimate, from their operands, the size of what an operator,
a string method or a filter would build and raise RenderStoppedError before it is allocated.
The environment (template_environment.py) calls them; sandbox.py sets the render's budget.
"""

from __future__ import annotations

import re
import sys
import threading
from collections.abc import Iterable
from string import Formatter
from typing import Any

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
