"""code_job: run python (in the warm worker pool), a bash/sh script, or javascript/typescript.

Every language takes inline `code` or a `file_path` (relative to the base directory; a missing
file fails the node when it runs, naming the path: diagrams are often validated from another
directory, so the check cannot be made at validation). Code runs in the base directory.

Python (`code` or `file_path`): each input is a variable named by its label (text holding a JSON
object or array is decoded first); `inputs` (all of them) and `variables` are there too. The
output is `function_name(inputs)` when the code defines that function (default `main`), else the
variable `result`. A file is imported as a module and its `function_name(inputs)` is called. The
code runs in a separate process (dipeo_cli.pypool), so a timeout kills it and a crash fails
only this node. stdout/stderr are captured into the metadata. Python jobs run in parallel up to
`--max-parallel` worker processes (or $DIPEO_PYTHON_WORKERS, when set, a lower cap); the pool
keeps one per CPU warm.

bash / shell / sh: the script runs in the base directory as a job of dipeo_cli.processes (a
timeout kills every process it started; background processes still holding its output when it
exits are killed then; inline code is read from /dev/fd/N, never written to the temp folder), with the inputs in the environment: `INPUT_<LABEL>` (upper-cased,
non-alphanumerics as `_`; DiPeO's `INPUT_<label>` spelling is set too), dicts/lists as JSON,
`INPUT_KEYS` (the labels, space-separated) and `DIPEO_VARIABLES` (JSON). The output is stdout,
stripped; a non-zero exit fails the node with the end of stderr.

javascript / js / typescript / ts: one process per job in a runtime found on PATH (see
dipeo_cli.jsrunner for the lookup and the rules, which mirror python's); a language with no
runtime is a validation error that says what to install.
"""

from __future__ import annotations

import ast
import functools
import os
import re
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from dipeo_cli import jsrunner, paths
from dipeo_cli.errors import NodeError
from dipeo_cli.files import display_path, resolve_path
from dipeo_cli.processes import anonymous_file, clip, env_text, exit_message, run_process
from dipeo_cli.pypool import PythonWorkerPool
from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, create_node_output
from dipeo_cli.values import decode_json_text

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode

_LANGUAGES = {
    "python": "python",
    "python3": "python",
    "py": "python",
    "bash": "bash",
    "shell": "bash",
    "sh": "sh",
    **jsrunner.LANGUAGES,
}
_ENV_UNSAFE = re.compile(r"[^A-Za-z0-9]")
WORKERS_VARIABLE = "DIPEO_PYTHON_WORKERS"  # most python workers at once (default --max-parallel)
DEFAULT_MAX_PARALLEL = 256


class CodeJobError(NodeError):
    """The code failed. `metadata` holds what it printed before failing."""


class CodeJobProps(BaseModel):
    # Checks that involve two properties sit on the later one (`validate_default` so that they
    # run when it is absent), so that each problem names the property to fix.
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    language: str = "python"
    file_path: str | None = Field(
        default=None, validation_alias=AliasChoices("file_path", "filePath")
    )
    code: str | None = Field(default=None, validate_default=True)
    function_name: str = Field(
        default="main", validation_alias=AliasChoices("function_name", "functionName")
    )
    timeout: float | None = None

    @field_validator("language", mode="before")
    @classmethod
    def _language(cls, value: Any) -> Any:
        if value is None or value == "":
            return "python"
        name = str(value).strip().lower()
        if name not in _LANGUAGES:
            raise PydanticCustomError(
                "language",
                "unknown language {name} (use python, bash, shell, sh, javascript or typescript)",
                {"name": repr(name)},
            )
        language = _LANGUAGES[name]
        if language in ("javascript", "typescript"):
            base = paths.base_dir()
            if jsrunner.find_runtime(language, base) is None:
                raise PydanticCustomError(
                    "language", jsrunner.missing_runtime_message(language, base)
                )
        return language

    @field_validator("file_path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None

    @field_validator("code")
    @classmethod
    def _code(cls, value: str | None, info: ValidationInfo) -> str | None:
        code = value if value is not None and value.strip() else None
        has_path = info.data.get("file_path") is not None
        if code is None and not has_path:
            raise PydanticCustomError("code", "a code_job needs code, or a file_path to a script")
        if code is not None and has_path:
            raise PydanticCustomError("code", "a code_job takes code or file_path, not both")
        if code is not None and info.data.get("language") == "python":
            try:
                compile(
                    code, "<code>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
                )
            except SyntaxError as exc:
                if "outside function" not in (exc.msg or ""):  # a top-level `return` is allowed
                    raise PydanticCustomError(
                        "code",
                        "python syntax error on line {line}: {message}",
                        {"line": exc.lineno, "message": exc.msg},
                    ) from None
            except ValueError:  # null bytes: the worker reports it
                pass
        return code

    @field_validator("function_name", mode="before")
    @classmethod
    def _function(cls, value: Any) -> Any:
        return "main" if value is None or value == "" else value

    @field_validator("function_name")
    @classmethod
    def _function_identifier(cls, value: str, info: ValidationInfo) -> str:
        language = info.data.get("language")
        valid = (
            jsrunner.is_identifier(value)
            if language in ("javascript", "typescript")
            else value.isidentifier()
        )
        if language not in ("bash", "sh") and not valid:
            raise PydanticCustomError(
                "function_name", "function_name {name} is not a valid name", {"name": repr(value)}
            )
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        return None if value == "" else value


@node_handler("code_job", props=CodeJobProps, outputs=("default",))
async def code_job(node: ExecutableNode[CodeJobProps], ctx: NodeContext) -> NodeOutput:
    config: CodeJobProps = node.config
    if config.language == "python":
        return await _run_python(node, config, ctx)
    if config.language in ("javascript", "typescript"):
        return await _run_js(config, ctx)
    return await _run_script(config, ctx)


def _code_file(config: CodeJobProps, ctx: NodeContext) -> Path:
    assert config.file_path is not None
    path = resolve_path(ctx.base_dir, config.file_path)
    if not path.is_file():
        shown = display_path(ctx.base_dir, path)
        if path.exists():
            raise NodeError(f"code file_path is not a file: {shown}")
        raise NodeError(
            f"code file not found: {shown} (relative paths are resolved against {ctx.base_dir})"
        )
    return path


# -- python ------------------------------------------------------------------------------------


def _pool_factory(ctx: Any) -> Any:
    def new_pool() -> PythonWorkerPool:
        options = ctx.resources.options
        limit = getattr(options, "max_parallel", None) or DEFAULT_MAX_PARALLEL
        cap = os.environ.get(WORKERS_VARIABLE, "").strip()
        if cap.isdigit() and int(cap) > 0:
            limit = min(limit, int(cap))
        return PythonWorkerPool(size=max(1, os.cpu_count() or 1), limit=limit)

    return new_pool


async def _close_pool(pool: PythonWorkerPool) -> None:
    await pool.close()


def python_pool(ctx: NodeContext) -> PythonWorkerPool:
    """The python worker pool: the host process's (shared by its executions), started on
    first use."""
    pool: PythonWorkerPool = ctx.resources.process_service(
        "python_pool", _pool_factory(ctx), _close_pool
    )
    return pool


async def _run_python(
    node: ExecutableNode[CodeJobProps], config: CodeJobProps, ctx: NodeContext
) -> NodeOutput:
    job: dict[str, Any] = {
        "function_name": config.function_name,
        "inputs": {label: decode_json_text(value) for label, value in ctx.inputs.items()},
        "variables": ctx.variables,
        "cwd": str(ctx.base_dir),
    }
    if config.file_path is not None:
        job["file_path"] = str(_code_file(config, ctx))
        job["shown"] = config.file_path
    else:
        job["code"] = config.code
        job["filename"] = f"<code_job {node.label or node.id}>"
    pool = python_pool(ctx)
    started = time.perf_counter()
    reply = await pool.run(job)
    metadata: dict[str, Any] = {
        "language": "python",
        "stdout": reply.get("stdout", ""),
        "stderr": reply.get("stderr", ""),
        "duration_seconds": round(time.perf_counter() - started, 6),
    }
    if not reply.get("ok"):
        raise CodeJobError(reply.get("error") or "the python code failed", metadata)
    if reply.get("converted"):
        metadata["result_converted"] = (
            "the result was not JSON-serialisable; the values JSON cannot hold were converted "
            "with str()"
        )
    return create_node_output({"default": reply.get("result")}, metadata)


# -- javascript / typescript -------------------------------------------------------------------


async def _run_js(config: CodeJobProps, ctx: NodeContext) -> NodeOutput:
    runtime = jsrunner.find_runtime(config.language, ctx.base_dir)
    if runtime is None:  # validated, but PATH may have changed since
        raise NodeError(jsrunner.missing_runtime_message(config.language, ctx.base_dir))
    file_path = _code_file(config, ctx) if config.file_path is not None else None
    started = time.perf_counter()
    reply = await jsrunner.run_js(
        runtime,
        language=config.language,
        inputs={label: decode_json_text(value) for label, value in ctx.inputs.items()},
        variables=dict(ctx.variables),
        cwd=Path(ctx.base_dir),
        function_name=config.function_name,
        code=config.code,
        file_path=file_path,
        shown=config.file_path,
    )
    metadata: dict[str, Any] = {
        "language": config.language,
        "runtime": runtime.name if runtime.version is None else f"{runtime.name} {runtime.version}",
        "stdout": reply["stdout"],
        "stderr": reply["stderr"],
        "exit_code": reply["exit_code"],
        "duration_seconds": round(time.perf_counter() - started, 6),
    }
    if not reply["ok"]:
        raise CodeJobError(reply["error"], metadata)
    if reply.get("converted"):
        metadata["result_converted"] = (
            "the result held values JSON cannot (BigInt, Map, Set); they were converted"
        )
    return create_node_output({"default": reply.get("result")}, metadata)


# -- bash / sh ---------------------------------------------------------------------------------


def _script_env(inputs: dict[str, Any], variables: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    for label, value in inputs.items():
        text = env_text(value)
        safe = _ENV_UNSAFE.sub("_", label)
        env[f"INPUT_{safe.upper()}"] = text
        env[f"INPUT_{safe}"] = text  # DiPeO's spelling too: its example scripts use it
    env["INPUT_KEYS"] = " ".join(inputs)
    env["DIPEO_VARIABLES"] = env_text(dict(variables))
    return env


def _interpreter(language: str) -> str:
    found = _lookup(language, os.environ.get("PATH", ""))
    if not found:
        raise NodeError(f"no {language} interpreter found on PATH")
    return found


@functools.lru_cache(maxsize=16)
def _lookup(language: str, path: str) -> str | None:
    # Cached per PATH: a search of PATH per job cost more than the job's own start.
    return (shutil.which("bash", path=path) if language == "bash" else None) or shutil.which(
        "sh", path=path
    )


async def _run_script(config: CodeJobProps, ctx: NodeContext) -> NodeOutput:
    interpreter = _interpreter(config.language)
    script_fd: int | None = None
    if config.file_path is not None:
        script = str(_code_file(config, ctx))
    else:
        # No file in the temp folder, so none can be left there: the interpreter reads the
        # code from a descriptor it inherits.
        script_fd = anonymous_file(config.code or "")
        script = f"/dev/fd/{script_fd}"
    started = time.perf_counter()
    try:
        code, out, err = await run_process(
            [interpreter, script],
            cwd=str(ctx.base_dir),
            env=_script_env(ctx.inputs, ctx.variables),
            pass_fds=() if script_fd is None else (script_fd,),
        )
    finally:
        if script_fd is not None:
            os.close(script_fd)
    stdout = out.decode("utf-8", "replace")
    stderr = err.decode("utf-8", "replace")
    metadata: dict[str, Any] = {
        "language": config.language,
        "exit_code": code,
        "stderr": clip(stderr),
        "duration_seconds": round(time.perf_counter() - started, 6),
    }
    if code != 0:
        metadata["stdout"] = clip(stdout)
        raise CodeJobError(exit_message(code, stderr), metadata)
    return create_node_output({"default": stdout.strip()}, metadata)
