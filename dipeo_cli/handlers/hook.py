"""hook: run a shell command, call a webhook, or write the inputs to a file.

`hook_type` is shell, http (DiPeO's `webhook` too) or file; python hooks are rejected at
validation (use a code_job). `timeout` (default 60 s) bounds the whole node, retries included;
`retry_count` (default 0) retries a failing shell command or webhook with exponential backoff.

    shell   `command`: a string runs with `/bin/sh -c`; a list is the argv, run without a shell;
            a string with `args` (a list) is split like a shell would and run without one. The
            process runs in the base directory as a job of dipeo_cli.processes (a timeout kills
            every process it started; background processes still holding its output when it
            exits are killed then), stdin closed, with the environment plus `DIPEO_INPUT_<KEY>` for each
            input (the keys of a dict `default` input too; upper-cased, non-alphanumerics as
            `_`; text as it is, other values as JSON), `DIPEO_INPUTS` (all inputs as JSON),
            `DIPEO_EXECUTION_ID` and `DIPEO_NODE`. The output is stdout, stripped, decoded when it
            is JSON; a non-zero exit fails the node with the end of stderr. The command itself
            is never templated: read the inputs from the environment ("$DIPEO_INPUT_NAME").
    http    POSTs the inputs (a JSON object keyed by label) to `url` (`{{name}}` templating as
            in api_job; `method` POST, PUT or PATCH; `headers`), with the headers
            X-DiPeO-Execution-Id and X-DiPeO-Node. Connection errors, 5xx and 429 are retried;
            any other non-2xx answer fails the node. The output is the response JSON or text.
    file    writes {"inputs": ..., "node": label, "node_id": ..., "execution_id": ...} as JSON to
            `file_path` (relative to the base directory, `{{name}}` templating, parents
            created), replacing the file. The output is that document.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import time
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from dipeo_cli import http_calls
from dipeo_cli.errors import NodeError, NodeTimeoutError
from dipeo_cli.files import display_path, resolve_path, write_atomic
from dipeo_cli.handlers import api_job as api
from dipeo_cli.processes import clip, env_text, exit_message, run_process
from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, create_node_output
from dipeo_cli.values import decode_json_text, to_json_safe, to_text

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode

HOOK_TYPES = {"shell": "shell", "http": "http", "webhook": "http", "file": "file"}
DEFAULT_TIMEOUT = 60.0
_ENV_UNSAFE = re.compile(r"[^A-Za-z0-9]")


class HookError(NodeError):
    """The hook failed. `metadata` holds what is known (exit code, stderr, attempts)."""


class HookProps(BaseModel):
    # Checks that involve two properties sit on the later one (`validate_default` so that they
    # run when it is absent), so that each problem names the property to fix.
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    hook_type: str = Field(validation_alias=AliasChoices("hook_type", "hookType"))
    command: str | list[str] | None = Field(default=None, validate_default=True)
    args: list[str] = Field(default_factory=list)
    url: str | None = Field(default=None, validate_default=True)
    method: str = "POST"
    headers: dict[str, Any] = Field(default_factory=dict)
    file_path: str | None = Field(
        default=None,
        validation_alias=AliasChoices("file_path", "filePath"),
        validate_default=True,
    )
    timeout: float = DEFAULT_TIMEOUT
    retry_count: int = Field(
        default=0, ge=0, le=10, validation_alias=AliasChoices("retry_count", "retryCount")
    )

    @field_validator("hook_type", mode="before")
    @classmethod
    def _hook_type(cls, value: Any) -> Any:
        name = str(value or "").strip().lower()
        if not name:
            raise PydanticCustomError("hook_type", "a hook needs a hook_type (shell, http or file)")
        if name == "python":
            raise PydanticCustomError("hook_type", "python hooks are not supported; use a code_job")
        if name not in HOOK_TYPES:
            raise PydanticCustomError(
                "hook_type",
                "unknown hook_type {name} (use shell, http or file)",
                {"name": repr(str(value if value is not None else ""))},
            )
        return HOOK_TYPES[name]

    @field_validator("command", mode="before")
    @classmethod
    def _command(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not value.strip():
            value = None
        if isinstance(value, list):
            value = [str(part) for part in value]
            if not value or not value[0].strip():
                raise PydanticCustomError("command", "an empty command list")
        if value is None and info.data.get("hook_type") == "shell":
            raise PydanticCustomError("command", "a shell hook needs a command")
        return value

    @field_validator("args", mode="before")
    @classmethod
    def _args(cls, value: Any) -> Any:
        if value is None or value == "":
            return []
        if isinstance(value, list):
            return [str(part) for part in value]
        return value

    @field_validator("url", mode="before")
    @classmethod
    def _url(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not value.strip():
            value = None
        if value is None and info.data.get("hook_type") == "http":
            raise PydanticCustomError("url", "an http hook needs a url")
        return api.check_url(value.strip()) if isinstance(value, str) else value

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        if value is None or value == "":
            return "POST"
        name = str(value).strip().upper()
        if name not in ("POST", "PUT", "PATCH"):
            raise PydanticCustomError(
                "method",
                "an http hook sends the inputs with POST, PUT or PATCH, not {name}",
                {"name": repr(str(value))},
            )
        return name

    @field_validator("headers", mode="before")
    @classmethod
    def _headers(cls, value: Any) -> Any:
        return {} if value is None or value == "" else value

    @field_validator("file_path", mode="before")
    @classmethod
    def _file_path(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, str) and not value.strip():
            value = None
        if value is None and info.data.get("hook_type") == "file":
            raise PydanticCustomError("file_path", "a file hook needs a file_path")
        return value.strip() if isinstance(value, str) else value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        return DEFAULT_TIMEOUT if value is None or value == "" else value

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise PydanticCustomError("timeout", "timeout must be a positive number of seconds")
        return value

    @field_validator("retry_count", mode="before")
    @classmethod
    def _retry_count(cls, value: Any) -> Any:
        return 0 if value is None or value == "" else value


@node_handler("hook", props=HookProps, outputs=("default",))
async def hook(node: ExecutableNode[HookProps], ctx: NodeContext) -> NodeOutput:
    config: HookProps = node.config
    run = {"shell": _run_shell, "http": _run_http, "file": _run_file}[config.hook_type]
    try:
        async with asyncio.timeout(config.timeout) as scope:
            return await run(node, config, ctx)
    except TimeoutError:
        if scope.expired():
            raise NodeTimeoutError(f"timed out after {config.timeout:g} s") from None
        raise


def _backoff(attempt: int) -> float:
    return http_calls.RETRY_BASE_DELAY * 2.0 ** (attempt - 1)


# -- shell -------------------------------------------------------------------------------------


def _argv(config: HookProps) -> list[str]:
    command = config.command
    if isinstance(command, list):
        return [*command, *config.args]
    assert command is not None
    if config.args:
        return [*shlex.split(command), *config.args]
    return ["/bin/sh", "-c", command]


def hook_env(node: ExecutableNode[HookProps], ctx: NodeContext) -> dict[str, str]:
    """The environment of a shell hook: ours plus DIPEO_INPUT_<KEY> for every input."""
    env = dict(os.environ)
    values: dict[str, Any] = {}
    default = decode_json_text(ctx.inputs.get("default"))
    if isinstance(default, dict):
        values.update(default)
    values.update(ctx.inputs)
    for key, value in values.items():
        env[f"DIPEO_INPUT_{_ENV_UNSAFE.sub('_', str(key)).upper()}"] = env_text(value)
    env["DIPEO_INPUTS"] = env_text(to_json_safe(dict(ctx.inputs))[0])
    env["DIPEO_EXECUTION_ID"] = str(ctx.execution_id)
    env["DIPEO_NODE"] = str(node.label or node.id)
    return env


async def _run_shell(node: ExecutableNode[HookProps], config: HookProps, ctx: NodeContext) -> NodeOutput:
    argv = _argv(config)
    env = hook_env(node, ctx)
    started = time.perf_counter()
    attempt = 0
    while True:
        attempt += 1
        code, stdout, stderr = await _spawn(argv, env, str(ctx.base_dir))
        metadata: dict[str, Any] = {
            "hook_type": "shell",
            "exit_code": code,
            "stderr": clip(stderr),
            "attempts": attempt,
            "duration_seconds": round(time.perf_counter() - started, 6),
        }
        if code == 0:
            break
        if attempt <= config.retry_count:
            await asyncio.sleep(_backoff(attempt))
            continue
        metadata["stdout"] = clip(stdout)
        tries = f" (after {attempt} attempts)" if attempt > 1 else ""
        raise HookError(f"hook command failed{tries}: {exit_message(code, stderr)}", metadata)
    text = stdout.strip()
    try:
        value: Any = json.loads(text) if text else ""
    except ValueError:
        value = text
    return create_node_output({"default": value}, metadata)


async def _spawn(argv: list[str], env: dict[str, str], cwd: str) -> tuple[int, str, str]:
    try:
        code, out, err = await run_process(argv, cwd=cwd, env=env)
    except FileNotFoundError:
        raise NodeError(f"hook command not found: {argv[0]}") from None
    except PermissionError:
        raise NodeError(f"hook command is not executable: {argv[0]}") from None
    return (
        code if code is not None else -1,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
    )


# -- http --------------------------------------------------------------------------------------


async def _run_http(node: ExecutableNode[HookProps], config: HookProps, ctx: NodeContext) -> NodeOutput:
    names = api.template_names(ctx)
    assert config.url is not None
    url = api.render(config.url, names, "url")
    headers = {
        str(key): to_text(value)
        for key, value in api.render(config.headers, names, "headers").items()
        if value is not None
    }
    http_calls.protect_headers(headers)
    headers.setdefault("X-DiPeO-Execution-Id", str(ctx.execution_id))
    headers.setdefault("X-DiPeO-Node", str(node.label or node.id))
    payload = to_json_safe(dict(ctx.inputs))[0]
    started = time.perf_counter()
    response, attempts = await http_calls.call_http(
        ctx,
        config.method,
        url,
        headers=headers,
        body=payload,
        retries=config.retry_count,
        timeout=config.timeout,
    )
    metadata = {
        "hook_type": "http",
        "http": http_calls.response_metadata(response, config.method, attempts, started),
        "http_calls": http_calls.http_calls(ctx),
    }
    if not response.is_success:
        raise http_calls.status_error(response, config.method, str(response.url), metadata)
    return create_node_output({"default": http_calls.response_value(response)}, metadata)


# -- file --------------------------------------------------------------------------------------


async def _run_file(node: ExecutableNode[HookProps], config: HookProps, ctx: NodeContext) -> NodeOutput:
    assert config.file_path is not None
    names = api.template_names(ctx)
    path = resolve_path(ctx.base_dir, api.render(config.file_path, names, "file_path"))
    document = {
        "inputs": to_json_safe(dict(ctx.inputs))[0],
        "node": node.label or node.id,
        "node_id": node.id,
        "execution_id": ctx.execution_id,
    }
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    size = await asyncio.to_thread(write_atomic, path, text)
    metadata = {"hook_type": "file", "path": display_path(ctx.base_dir, path), "bytes": size}
    return create_node_output({"default": document}, metadata)
