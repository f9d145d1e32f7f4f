"""A python worker: the process that runs code_job's python code, one job at a time.

The parent side, a pool of these processes, is dipeo_cli.pypool; the pool forks its workers
from a template process (dipeo_cli.pyzygote), which then calls dipeo_cli.pyserve.serve in the
fork: the loop that reads jobs and writes replies (the protocol is described there). This module
runs one job (`run_job`).

Worker side (`python -m dipeo_cli.pyworker PARENT_PID`): dies with its parent (even by kill
-9, through PR_SET_PDEATHSIG), reads jobs from its stdin and answers on its stdout. At start it
moves the protocol to private file descriptors and points fd 0 at /dev/null and fd 1 at fd 2,
so that nothing the user's code prints (even from C or a child process) can corrupt the
protocol. Python-level stdout/stderr of each job are captured and returned with the reply.

A job runs `code` in a fresh namespace (each input by label, `inputs`, `variables`), then
returns `function_name(inputs)` if the code defined that function, else the variable `result`.
With `file_path` the file is imported as a module and `function_name(inputs)` is called.
"""

from __future__ import annotations

import os
import signal
import sys
from collections import OrderedDict
from typing import Any

from dipeo_cli.processes import CAPTURE_LIMIT, die_with_parent


class _Capture:
    """A text stream that keeps the first CAPTURE_LIMIT characters and counts the rest."""

    encoding = "utf-8"
    errors = "strict"

    def __init__(self, limit: int = CAPTURE_LIMIT) -> None:
        self._parts: list[str] = []
        self._room = limit
        self._dropped = 0

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self._room > 0:
            kept = text[: self._room]
            self._parts.append(kept)
            self._room -= len(kept)
            self._dropped += len(text) - len(kept)
        else:
            self._dropped += len(text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        raise OSError("captured stream has no file descriptor")

    def text(self) -> str:
        text = "".join(self._parts)
        if self._dropped:
            text += f"\n[... {self._dropped} more characters not kept]"
        return text


class _UserError(Exception):
    """A problem with the job itself (missing function, unreadable file): no traceback."""


_module_cache: dict[str, tuple[int, int, Any]] = {}
# Compiled inline code by (source, filename): a worker runs the same node's code again and again
# (a loop, a chain, the next execution), and compiling is most of a small job's own cost. The
# key is the source itself, so a changed source compiles anew. None: the code needs running as
# a function body (a top-level `return`).
_code_cache: OrderedDict[tuple[str, str], Any] = OrderedDict()
_CODE_CACHE_SIZE = 256
_TOP_LEVEL_AWAIT = 0x2000  # ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, without importing ast per job
_CO_COROUTINE = 0x80  # inspect.CO_COROUTINE


def _compiled(code: str, filename: str) -> Any:
    """The code object of `code`, or None when only a function body can hold it (a top-level
    `return`); other SyntaxErrors are raised, and not cached."""
    key = (code, filename)
    try:
        _code_cache.move_to_end(key)
        return _code_cache[key]
    except KeyError:
        pass
    try:
        compiled = compile(code, filename, "exec", flags=_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError as exc:
        if "outside function" not in (exc.msg or ""):
            raise
        compiled = None
    _code_cache[key] = compiled
    if len(_code_cache) > _CODE_CACHE_SIZE:
        _code_cache.popitem(last=False)
    return compiled


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job; its reply (see dipeo_cli.pyserve)."""
    out, err = _Capture(), _Capture()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    filename = job.get("file_path") or job.get("filename") or "<code_job>"
    reply: dict[str, Any]
    try:
        reply = {"ok": True, "result": _execute(job, filename), "converted": False}
    except BaseException as exc:  # noqa: BLE001 - the user's code may raise anything, even SystemExit
        reply = {"ok": False, "error": _describe(exc, filename)}
    finally:
        sys.stdout, sys.stderr = saved
    reply["stdout"] = out.text()
    reply["stderr"] = err.text()
    return reply


def _execute(job: dict[str, Any], filename: str) -> Any:
    cwd = job.get("cwd")
    if cwd:
        os.chdir(cwd)
        if cwd not in sys.path:
            sys.path.insert(0, cwd)
    inputs = job.get("inputs") or {}
    variables = job.get("variables") or {}
    function_name = job.get("function_name") or "main"

    if job.get("file_path"):
        module = _load_module(job["file_path"])
        function = getattr(module, function_name, None)
        if not callable(function):
            raise _UserError(
                f"function '{function_name}' not found in {job.get('shown') or job['file_path']}"
                f" ({_functions_of(module)})"
            )
        return _call(function, inputs)

    import builtins
    import linecache

    code = job.get("code") or ""
    lines = code.splitlines(True)
    linecache.cache[filename] = (len(code), None, lines, filename)
    namespace: dict[str, Any] = {"__name__": "__dipeo_code_job__", "__builtins__": builtins}
    namespace.update(inputs)
    namespace["inputs"] = inputs
    namespace["variables"] = variables
    compiled = _compiled(code, filename)
    if compiled is None:
        # DiPeO ran the code as a function body, so a top-level `return` gives the result.
        return _run_as_function(code, filename, namespace, inputs, variables)
    if compiled.co_flags & _CO_COROUTINE:  # top-level await
        _await(eval(compiled, namespace))
    else:
        exec(compiled, namespace)
    function = namespace.get(function_name)
    if callable(function):  # inputs are JSON values, so this is a function the code defined
        return _call(function, inputs)
    return namespace.get("result")


def _run_as_function(
    code: str,
    filename: str,
    namespace: dict[str, Any],
    inputs: dict[str, Any],
    variables: dict[str, Any],
) -> Any:
    """Run `code` as the body of a function whose parameters are the inputs (so `a += 1` on an
    input works, as in DiPeO); the result is what it returns, else its local `result`."""
    import ast
    import keyword

    tree = ast.parse(code, filename)
    names = [
        label
        for label in inputs
        if label.isidentifier()
        and not keyword.iskeyword(label)
        and label not in ("inputs", "variables")
    ]
    is_async = any(isinstance(node, ast.Await) for node in ast.walk(tree))
    header = f"{'async ' if is_async else ''}def __dipeo_code__({', '.join([*names, 'inputs', 'variables'])}):\n    pass\n"
    wrapper = ast.parse(header)
    function = wrapper.body[0]
    tail = ast.parse("return locals().get('result')").body
    last_line = max((getattr(node, "end_lineno", 1) or 1 for node in tree.body), default=1)
    for node in tail:
        ast.increment_lineno(node, last_line)
    function.body = [*tree.body, *tail]  # type: ignore[attr-defined]
    ast.fix_missing_locations(wrapper)
    exec(compile(wrapper, filename, "exec", dont_inherit=True), namespace)
    arguments = {name: inputs[name] for name in names}
    result = namespace["__dipeo_code__"](**arguments, inputs=inputs, variables=variables)
    return _await(result) if is_async else result


def _functions_of(module: Any) -> str:
    import inspect

    names = sorted(
        name
        for name, value in vars(module).items()
        if inspect.isfunction(value)
        and value.__module__ == module.__name__
        and not name.startswith("_")
    )
    return f"functions defined: {', '.join(names)}" if names else "it defines no function"


def _call(function: Any, inputs: dict[str, Any]) -> Any:
    import inspect

    try:
        takes_nothing = not inspect.signature(function).parameters
    except (TypeError, ValueError):
        takes_nothing = False
    result = function() if takes_nothing else function(inputs)
    if inspect.isawaitable(result):
        result = _await(result)
    return result


def _await(awaitable: Any) -> Any:
    import asyncio as aio

    async def wait() -> Any:
        return await awaitable

    return aio.run(wait())


def _load_module(path: str) -> Any:
    import importlib.util
    from pathlib import Path

    stat = os.stat(path)
    cached = _module_cache.get(path)
    if cached is not None and cached[:2] == (stat.st_mtime_ns, stat.st_size):
        return cached[2]
    name = f"dipeo_code_{Path(path).stem}_{abs(hash(path)):x}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise _UserError(f"cannot load {path} as a python module")
    module = importlib.util.module_from_spec(spec)
    folder = str(Path(path).parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    finally:
        try:
            sys.path.remove(folder)
        except ValueError:
            pass
    _module_cache[path] = (stat.st_mtime_ns, stat.st_size, module)
    return module


def _describe(exc: BaseException, filename: str) -> str:
    """'ExcType: message (line N: source)', pointing into the user's code, never into ours."""
    import traceback

    if isinstance(exc, _UserError):
        return str(exc)
    text = str(exc)
    message = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if isinstance(exc, SyntaxError) and exc.filename == filename:
        message = f"SyntaxError: {exc.msg}"
        source = (exc.text or "").strip()
        return (
            f"{message} (line {exc.lineno}: {source})"
            if source
            else f"{message} (line {exc.lineno})"
        )
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == filename]
    if frames:
        last = frames[-1]
        source = (last.line or "").strip()
        return (
            f"{message} (line {last.lineno}: {source})"
            if source
            else f"{message} (line {last.lineno})"
        )
    return message


def main() -> None:
    """The worker's loop: one job at a time until the runner closes our stdin."""
    if len(sys.argv) > 1:
        # A `kill -9` of the runner must not leave us running the user's code to its end.
        die_with_parent(int(sys.argv[1]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when a job ends
    proto_in = os.dup(0)  # dup'ed descriptors are not inherited by the user's child processes
    proto_out = os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    from dipeo_cli.pyserve import serve  # (which imports this module)

    serve(proto_in, proto_out)


if __name__ == "__main__":
    main()
