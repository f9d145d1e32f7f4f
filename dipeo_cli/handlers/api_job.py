"""api_job: one HTTP request with httpx, retried on connection errors, 5xx and 429.

Properties: `url` (required), `method` GET|POST|PUT|DELETE|PATCH (default GET), `headers`,
`params` (the query string), `body`, `timeout` (seconds per request, default 30),
`auth_type` none|bearer|basic|api_key with `auth_config` (`token`; `username`/`password`;
`key_name` (default X-API-Key)/`key_value`), `max_retries` (default 3).

    templating  `{{name}}` in the url, the header values, the params values and the body's
                strings (also inside dicts and lists) is replaced by the value of `name` (dot
                paths such as `{{user.id}}` reach inside it): inputs by label, a `default` input
                that is a dict spread into the top level, then the execution variables (which
                win). A body string that is exactly one placeholder keeps the value's type.
                `auth_config` values may be placeholders too; they also see the environment
                variables, so a token can stay out of the diagram (`token: "{{API_TOKEN}}"`).
                An undefined name fails the node, naming it.
    overrides   inputs labelled `url`, `headers`, `params` or `body` replace the configured
                values (they are used as they are, not templated).
    body        a dict or list is sent as JSON, text as it is; GET sends no body.
    retries     connection errors, 5xx and 429 are retried `max_retries` times with exponential
                backoff (a small `Retry-After` is honoured). The last answer counts: anything but
                2xx fails the node with "HTTP <status> <reason> from <METHOD> <url>: <body
                excerpt>" (it goes out of the `error` port when the node has one).
    output      the response JSON, or its text when it is not JSON (None when empty);
                metadata `http`: status, reason, url, method, response headers, elapsed_ms,
                attempts; and `http_calls`: the full record of the call (request with secrets
                masked, each attempt, the response with a body preview; dipeo_cli.http_calls).

Secrets: the bearer token, the password (and the basic credentials), the api key value and the
values of request headers whose names look secret are registered with `dipeo_cli.redact`, so they
never reach the history or the terminal (values shorter than 8 characters are too common to
mask); the request record in `http_calls` shows such headers as "***".

The request goes through `dipeo_cli.http_calls.call_http` (the run's one httpx.AsyncClient, the
retries, the record, the replay seam), as the hook handler's do.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING, Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from dipeo_cli.errors import NodeError
from dipeo_cli.http_calls import (
    DEFAULT_TIMEOUT,
    call_http,
    http_calls,
    protect_headers,
    response_metadata,
    response_value,
    status_error,
)
from dipeo_cli.http_calls import HttpError as HttpError  # re-exported: where it was raised
from dipeo_cli.redact import register_secret
from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, create_node_output
from dipeo_cli.values import decode_json_text, get_path, split_path, to_text

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode

METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")
AUTH_TYPES = ("none", "bearer", "basic", "api_key")
_HTTP_URL = re.compile(r"^https?://[^/\s]", re.IGNORECASE)
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


class UndefinedName(NodeError):
    """A `{{name}}` placeholder whose name is not defined."""

    def __init__(self, message: str, expression: str) -> None:
        super().__init__(message)
        self.expression = expression


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------


class ApiJobProps(BaseModel):
    # Checks that involve two properties sit on the later one (`validate_default` so that they
    # run when it is absent), so that each problem names the property to fix.
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    url: str
    method: str = "GET"
    headers: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    body: Any = Field(default=None, validate_default=True)
    timeout: float = DEFAULT_TIMEOUT
    auth_type: str = Field(default="none", validation_alias=AliasChoices("auth_type", "authType"))
    auth_config: dict[str, Any] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("auth_config", "authConfig"),
        validate_default=True,
    )
    max_retries: int = Field(
        default=3,
        ge=0,
        le=10,
        validation_alias=AliasChoices("max_retries", "maxRetries", "retries"),
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.strip():
            raise PydanticCustomError("url", "an api_job needs a url")
        return check_url(value.strip())

    @field_validator("method", mode="before")
    @classmethod
    def _method(cls, value: Any) -> Any:
        if value is None or value == "":
            return "GET"
        name = str(value).strip().upper()
        if name not in METHODS:
            raise PydanticCustomError(
                "method",
                "unknown method {name} (use GET, POST, PUT, DELETE or PATCH)",
                {"name": repr(str(value))},
            )
        return name

    @field_validator("headers", "params", mode="before")
    @classmethod
    def _mapping(cls, value: Any) -> Any:
        return {} if value is None or value == "" else value

    @field_validator("body")
    @classmethod
    def _body(cls, value: Any, info: ValidationInfo) -> Any:
        if value == "":
            value = None
        if value is not None and info.data.get("method") == "GET":
            raise PydanticCustomError(
                "body", "a GET request sends no body (use params, or another method)"
            )
        return value

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

    @field_validator("auth_type", mode="before")
    @classmethod
    def _auth_type(cls, value: Any) -> Any:
        if value is None or value == "":
            return "none"
        name = str(value).strip().lower().replace("-", "_")
        if name == "apikey":
            name = "api_key"
        if name not in AUTH_TYPES:
            raise PydanticCustomError(
                "auth_type",
                "unknown auth_type {name} (use none, bearer, basic or api_key)",
                {"name": repr(str(value))},
            )
        return name

    @field_validator("auth_config", mode="before")
    @classmethod
    def _auth_config_value(cls, value: Any) -> Any:
        return {} if value is None or value == "" else value

    @field_validator("auth_config")
    @classmethod
    def _auth_config(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        needed = {"bearer": ("token",), "basic": ("username",), "api_key": ("key_value",)}
        for key in needed.get(info.data.get("auth_type", "none"), ()):
            if value.get(key) in (None, ""):
                raise PydanticCustomError(
                    "auth_config",
                    "auth_type {auth} needs auth_config.{key}",
                    {"auth": info.data.get("auth_type"), "key": key},
                )
        # Literal credentials written in the diagram are secrets from now on.
        for key in ("token", "password", "key_value"):
            if isinstance(value.get(key), str) and not _PLACEHOLDER.search(value[key]):
                register_secret(value[key])
        return value


# ---------------------------------------------------------------------------------------------
# Templating: {{name}} from the inputs and the variables
# ---------------------------------------------------------------------------------------------


def template_names(ctx: NodeContext) -> dict[str, Any]:
    """The names `{{...}}` sees: inputs by label (a dict `default` also spread into the top
    level), then the execution variables, which win."""
    names: dict[str, Any] = {}
    inputs = dict(ctx.inputs)
    if "default" in inputs:
        default = decode_json_text(inputs["default"])
        if isinstance(default, dict):
            names.update(default)
            inputs["default"] = default
    names.update(inputs)
    names.update(ctx.variables)
    return names


def render(value: Any, names: dict[str, Any], what: str, *, keep_type: bool = False) -> Any:
    """`value` with every `{{name}}` in its strings replaced (inside dicts and lists too).

    With keep_type, a string that is exactly one placeholder becomes the value itself (so a JSON
    body keeps numbers, lists and objects). Raises NodeError naming an undefined name."""
    if isinstance(value, str):
        if "{{" not in value:
            return value
        whole = _PLACEHOLDER.fullmatch(value.strip())
        if keep_type and whole is not None:
            return _lookup(whole.group(1), names, what)
        return _PLACEHOLDER.sub(lambda m: to_text(_lookup(m.group(1), names, what)), value)
    if isinstance(value, dict):
        return {
            key: render(item, names, f"{what}.{key}", keep_type=keep_type)
            for key, item in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [
            render(item, names, f"{what}[{index}]", keep_type=keep_type)
            for index, item in enumerate(value)
        ]
    return value


def _lookup(expression: str, names: dict[str, Any], what: str) -> Any:
    parts = split_path(expression)
    if not parts or parts[0] not in names:
        shown = sorted(names)
        available = (
            ", ".join(shown[:20]) + (", ..." if len(shown) > 20 else "") if shown else "none"
        )
        raise UndefinedName(
            f"{what}: '{expression}' is undefined (available: {available})", expression
        )
    try:
        return get_path(names[parts[0]], ".".join(parts[1:]))
    except KeyError as exc:
        raise NodeError(f"{what}: '{expression}': {exc.args[0]}") from None


# ---------------------------------------------------------------------------------------------
# Validation shared with the hook handler
# ---------------------------------------------------------------------------------------------


def check_url(url: str) -> str:
    """`url`, if it is http(s) or starts with a placeholder; else a validation error."""
    if not url.startswith("{{") and not _HTTP_URL.match(url):
        raise PydanticCustomError(
            "url", "the url must start with http:// or https:// (got {url})", {"url": repr(url)}
        )
    return url


# ---------------------------------------------------------------------------------------------
# The handler
# ---------------------------------------------------------------------------------------------


@node_handler("api_job", props=ApiJobProps, outputs=("default",))
async def api_job(node: ExecutableNode[ApiJobProps], ctx: NodeContext) -> NodeOutput:
    config: ApiJobProps = node.config
    names = template_names(ctx)
    inputs = ctx.inputs

    if inputs.get("url") not in (None, ""):
        url = to_text(inputs["url"]).strip()
    else:
        url = render(config.url, names, "url")
    headers = _string_map(
        _input_mapping(inputs, "headers")
        if "headers" in inputs
        else render(config.headers, names, "headers")
    )
    params = (
        _input_mapping(inputs, "params")
        if "params" in inputs
        else render(config.params, names, "params")
    )
    if "body" in inputs:
        body = decode_json_text(inputs["body"])
    else:
        body = render(config.body, names, "body", keep_type=True)
    if body is not None and config.method == "GET":
        raise NodeError("a GET request sends no body (the input 'body' was given)")

    headers.update(_auth_headers(config, names))
    protect_headers(headers)

    started = time.perf_counter()
    response, attempts = await call_http(
        ctx,
        config.method,
        url,
        headers=headers,
        params=params,
        body=body,
        retries=config.max_retries,
        timeout=config.timeout,
    )
    metadata = {
        "http": response_metadata(response, config.method, attempts, started),
        "http_calls": http_calls(ctx),
    }
    if not response.is_success:
        raise status_error(response, config.method, str(response.url), metadata)
    return create_node_output({"default": response_value(response)}, metadata)


def _input_mapping(inputs: dict[str, Any], label: str) -> dict[str, Any]:
    value = decode_json_text(inputs[label])
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise NodeError(f"the input '{label}' must be an object, got {type(value).__name__}")
    return value


def _string_map(mapping: dict[str, Any]) -> dict[str, str]:
    return {str(key): to_text(value) for key, value in mapping.items() if value is not None}


def _auth_headers(config: ApiJobProps, names: dict[str, Any]) -> dict[str, str]:
    if config.auth_type == "none":
        return {}
    # Credentials may name an environment variable too: `token: "{{API_TOKEN}}"`.
    env_names = {**os.environ, **names}
    auth: dict[str, str] = {}
    for key, value in config.auth_config.items():
        if value is None:
            continue
        try:
            auth[key] = to_text(render(value, env_names, f"auth_config.{key}"))
        except UndefinedName as exc:
            raise NodeError(
                f"auth_config.{key}: '{exc.expression}' is not an input, a variable or an "
                "environment variable"
            ) from None
    if config.auth_type == "bearer":
        token = auth["token"]
        register_secret(token)
        return {"Authorization": f"Bearer {token}"}
    if config.auth_type == "basic":
        import base64

        password = auth.get("password", "")
        register_secret(password)
        pair = f"{auth['username']}:{password}".encode()
        credentials = base64.b64encode(pair).decode("ascii")
        register_secret(credentials)
        return {"Authorization": f"Basic {credentials}"}
    key_value = auth["key_value"]
    register_secret(key_value)
    return {auth.get("key_name") or "X-API-Key": key_value}
