"""text_format as DiPeO wrote it: Python source defining Pydantic models -> a JSON schema.

    problem = check_model_source(source, "text_format")        # compile time: syntax only
    schema = await derive_schema(source, ctx, "text_format")    # run time, in the worker pool

The source is code from the diagram, so it runs where code_job's python runs: in the python
worker pool (dipeo_cli/pyworker.py), never in the runner's process. As in DiPeO, `BaseModel`,
`Field`, `Enum` and the `typing` names (`Optional`, `List`, ...) are there without imports. The
model used is the one named `Response` when there is one, else the last model the source
defines; its `model_json_schema()` is the schema. A source that fails says the Python error and
its line. Schemas are derived once per source per run.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from dipeo_cli.errors import NodeError

_PYTHON_SOURCE = re.compile(
    r"^\s*(?:class\s+\w+|from\s+\w[\w.]*\s+import|import\s+\w|def\s+\w)", re.M
)

# Runs in the worker: `source` and `shown` are its inputs. Errors are described here, with
# lines of the source itself (the wrapper's lines would mean nothing to the diagram's author).
_WRAPPER = r"""
import enum as _enum, traceback as _tb, typing as _typing
import pydantic as _pydantic

_names = {name: getattr(_typing, name) for name in _typing.__all__}
_names.update(BaseModel=_pydantic.BaseModel, Field=_pydantic.Field, Enum=_enum.Enum,
              __name__="text_format")
_lines = source.splitlines()
try:
    exec(compile(source, shown, "exec"), _names)
    _models = [v for v in _names.values() if isinstance(v, type)
               and issubclass(v, _pydantic.BaseModel) and v is not _pydantic.BaseModel
               and v.__module__ == "text_format"]
    if not _models:
        result = {"error": "defines no Pydantic model (class X(BaseModel): ...)"}
    else:
        _chosen = _names.get("Response") if _names.get("Response") in _models else _models[-1]
        result = {"schema": _chosen.model_json_schema(), "model": _chosen.__name__}
except SyntaxError as _exc:
    result = {"error": f"SyntaxError: {_exc.msg} (line {_exc.lineno}: "
                       f"{(_exc.text or '').strip()})"}
except Exception as _exc:
    _line = None
    for _frame in _tb.extract_tb(_exc.__traceback__):
        if _frame.filename == shown:
            _line = _frame.lineno
    _where = ""
    if _line is not None and 0 < _line <= len(_lines):
        _where = f" (line {_line}: {_lines[_line - 1].strip()})"
    result = {"error": f"{type(_exc).__name__}: {_exc}{_where}"}
"""


def is_model_source(text: Any) -> bool:
    """Whether a text_format value is Python source rather than a JSON/YAML schema."""
    return (
        isinstance(text, str)
        and bool(_PYTHON_SOURCE.search(text))
        and not text.lstrip().startswith("{")
    )


def check_model_source(source: str, what: str) -> str | None:
    """The syntax error of the source ("text_format: SyntaxError: ... (line N: ...)"), or None.
    Nothing is run."""
    try:
        compile(source, what, "exec")
    except SyntaxError as exc:
        return f"{what}: SyntaxError: {exc.msg} (line {exc.lineno}: {(exc.text or '').strip()})"
    except ValueError as exc:  # a NUL byte
        return f"{what}: {exc}"
    return None


async def derive_schema(source: str, ctx: Any, what: str) -> dict[str, Any]:
    """The JSON schema of the source's model, derived in the python worker pool; NodeError
    with the Python error and line when the source fails."""
    from dipeo_cli.handlers.code_job import python_pool

    key = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
    cache: dict[str, dict[str, Any]] = ctx.resources.service("text_format_schemas", dict, _keep)
    if key in cache:
        return cache[key]
    job = {
        "code": _WRAPPER,
        "inputs": {"source": source, "shown": f"<{what}>"},
        "variables": {},
        "cwd": str(ctx.base_dir),
        "filename": "<text_format wrapper>",
    }
    reply = await python_pool(ctx).run(job)
    if not reply.get("ok"):
        raise NodeError(f"{what}: {reply.get('error') or 'the model source failed'}")
    answer = reply.get("result") or {}
    if "error" in answer:
        raise NodeError(f"{what}: {answer['error']}")
    schema: dict[str, Any] = answer["schema"]
    cache[key] = schema
    return schema


def _keep(_: Any) -> None:
    return None
