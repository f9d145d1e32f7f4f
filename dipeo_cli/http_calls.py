"""The one call point of HTTP requests that nodes make (api_job, http hooks): the run's client,
the retry loop, and a record of every call in the node's metadata.

    response, attempts = await call_http(ctx, "POST", url, headers=..., params=..., body=...,
                                         retries=3, timeout=30.0)
    metadata["http_calls"] = http_calls(ctx)

The record: one entry per call (a request with its retries), numbered from 1 within the node
execution:

    {"call": 1, "replayed": False,
     "request": {"method", "url", "params", "headers", "body"},
     "attempts": [{"attempt": 1, "status": 503, "error": None, "elapsed_ms": 2.1}, ...],
     "response": {"status", "reason", "url", "headers", "body_preview", "body_chars",
                  "elapsed_ms"} or None when no answer came,
     "error": "..." only when the call failed without an answer}

Secrets are masked before anything is kept: the values of headers whose names look secret
(Authorization, Proxy-Authorization, Cookie, anything with key/token/secret/passw) become
"***", and every string (the url, header and param values, the body) passes `redact_json`, which
masks registered secrets (bearer tokens, basic credentials, api key values, provider keys) and
values under secret-looking keys. `body_preview` is the response text's first
BODY_PREVIEW_CHARS characters; the request body is kept whole (JSON) or cut to as many
characters (text). Set-Cookie is never kept.

The replay seam. Before sending, `call_http` asks `ctx.resources.http_replay` (None by default:
every call goes out) for a recorded answer:

    class HttpReplayer(Protocol):
        async def response_for(self, call: HttpCallIdentity, request: dict) -> httpx.Response | None

`call` names the caller (execution id, node id and label, iteration, call number); `request` is
the request record as it will be stored. A returned httpx.Response is used as the answer (the
call is recorded with `"replayed": True` and no attempt); None sends the request; a NodeError
raised fails the node.

httpx is imported on first use, so importing this module stays cheap.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from dipeo_cli.context import node_calls
from dipeo_cli.errors import NodeError, NodeTimeoutError
from dipeo_cli.redact import MASK, redact, redact_json, redact_record, register_secret
from dipeo_cli.values import decode_json_text

if TYPE_CHECKING:
    import httpx

    from dipeo_cli.context import NodeContext

DEFAULT_TIMEOUT = 30.0
RETRY_BASE_DELAY = 0.2  # seconds; doubled after each attempt (0.2, 0.4, 0.8, ...)
MAX_RETRY_AFTER = 10.0  # a Retry-After up to this many seconds is honoured
BODY_EXCERPT = 200  # of an error answer, in the node's error message
BODY_PREVIEW_CHARS = 2000  # of each answer and of a text request body, in the record
RECORDS_KEY = "http_calls"
SECRET_HEADER = re.compile(
    r"^(?:authorization|proxy-authorization|cookie)$|key|token|secret|passw", re.IGNORECASE
)


class HttpError(NodeError):
    """A request that failed. `metadata` holds what is known about the answer."""


@dataclass(frozen=True)
class HttpCallIdentity:
    execution_id: str
    node_id: str
    node_label: str
    iteration: int
    call: int  # 1, 2, ... within this node execution


class HttpReplayer(Protocol):
    async def response_for(
        self, call: HttpCallIdentity, request: dict[str, Any]
    ) -> httpx.Response | None: ...


# -- the run's client and the retry loop ------------------------------------------------------


def _new_client() -> httpx.AsyncClient:
    import httpx

    return httpx.AsyncClient(follow_redirects=True, timeout=DEFAULT_TIMEOUT)


async def _close_client(client: httpx.AsyncClient) -> None:
    await client.aclose()


def http_client(ctx: NodeContext) -> httpx.AsyncClient:
    """The run's one httpx.AsyncClient, closed when the run ends."""
    return ctx.resources.service("http_client", _new_client, _close_client)


def retry_delay(attempt: int, response: httpx.Response | None = None) -> float:
    delay = RETRY_BASE_DELAY * 2.0 ** (attempt - 1)
    header = response.headers.get("retry-after") if response is not None else None
    if header:
        wait: float | None
        try:
            wait = float(header)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(header)
                wait = when.timestamp() - time.time()
            except (TypeError, ValueError):  # neither seconds nor an HTTP date: ignored
                wait = None
        if wait is not None and 0 <= wait <= MAX_RETRY_AFTER:
            delay = max(delay, wait)
    return delay


def _should_retry(status: int) -> bool:
    return status == 429 or status >= 500


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    retries: int,
    timeout: float,
    attempts_log: list[dict[str, Any]] | None = None,
    **kwargs: Any,
) -> tuple[httpx.Response, int]:
    """Send the request, retrying connection errors, 5xx and 429 up to `retries` times with
    exponential backoff. Returns the last response (whatever its status) and the attempt count;
    raises HttpError when no answer came, NodeTimeoutError when the server did not answer in
    time. Each attempt is appended to `attempts_log` when given."""
    import httpx

    log = attempts_log if attempts_log is not None else []
    attempt = 0
    while True:
        attempt += 1
        started = time.perf_counter()
        entry: dict[str, Any] = {"attempt": attempt, "status": None, "error": None}
        log.append(entry)
        try:
            response = await client.request(method, url, timeout=timeout, **kwargs)
        except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
            entry.update(error="timeout", elapsed_ms=_ms(started))
            raise NodeTimeoutError(
                f"timed out after {timeout:g} s waiting for {method} {redact(url)}"
            ) from None
        except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            entry.update(error=redact(f"{type(exc).__name__}: {exc}"), elapsed_ms=_ms(started))
            raise NodeError(f"invalid url {redact(url)!r}: {exc}") from None
        except httpx.TransportError as exc:  # no answer: connection refused, reset, DNS, ...
            reason = str(exc) or type(exc).__name__
            entry.update(error=redact(f"{type(exc).__name__}: {reason}"), elapsed_ms=_ms(started))
            if attempt <= retries:
                await asyncio.sleep(retry_delay(attempt))
                continue
            tries = f" (after {attempt} attempts)" if attempt > 1 else ""
            raise HttpError(
                f"{method} {redact(url)} failed: {type(exc).__name__}: {reason}{tries}",
                {"http": {"url": url, "method": method, "attempts": attempt}},
            ) from None
        entry.update(status=response.status_code, elapsed_ms=_ms(started))
        if _should_retry(response.status_code) and attempt <= retries:
            await asyncio.sleep(retry_delay(attempt, response))
            continue
        return response, attempt


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


# -- the call point ---------------------------------------------------------------------------


def http_calls(ctx: NodeContext) -> list[dict[str, Any]]:
    """This node execution's HTTP call records, for its metadata."""
    return node_calls(ctx, RECORDS_KEY)


async def call_http(
    ctx: NodeContext,
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    params: dict[str, Any] | None = None,
    body: Any = None,
    retries: int,
    timeout: float,
) -> tuple[httpx.Response, int]:
    """Make one HTTP call for the node `ctx` runs (with retries, see `send`), recorded in its
    `http_calls` and answered by `ctx.resources.http_replay` when that has an answer (module
    docstring). `body`: bytes or text is sent as it is, anything else as JSON. Returns the
    last response and the number of attempts (0 when replayed)."""
    records = http_calls(ctx)
    record: dict[str, Any] = {
        "call": len(records) + 1,
        "replayed": False,
        "request": request_record(method, url, headers, params, body),
        "attempts": [],
        "response": None,
    }
    records.append(record)
    identity = HttpCallIdentity(
        execution_id=ctx.execution_id,
        node_id=ctx.node_id,
        node_label=ctx.node.label,
        iteration=ctx.iteration,
        call=record["call"],
    )
    kwargs: dict[str, Any] = {"headers": headers, "params": params or None}
    if body is not None:
        kwargs["content" if isinstance(body, (bytes, str)) else "json"] = body
    replayer: HttpReplayer | None = getattr(ctx.resources, "http_replay", None)
    started = time.perf_counter()
    try:
        response = None
        attempts = 0
        if replayer is not None:
            response = await replayer.response_for(identity, record["request"])
            record["replayed"] = response is not None
        if response is None:
            response, attempts = await send(
                http_client(ctx),
                method,
                url,
                retries=retries,
                timeout=timeout,
                attempts_log=record["attempts"],
                **kwargs,
            )
    except Exception as exc:
        record["error"] = redact(str(exc).strip() or type(exc).__name__)
        if isinstance(exc, NodeError):
            exc.metadata.setdefault(RECORDS_KEY, records)
        raise
    record["response"] = response_record(response, started)
    return response, attempts


def request_record(
    method: str, url: str, headers: dict[str, str], params: dict[str, Any] | None, body: Any
) -> dict[str, Any]:
    """The request as recorded (and as a replayer sees it), secrets masked."""
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and len(body) > BODY_PREVIEW_CHARS:
        body = body[:BODY_PREVIEW_CHARS]
    return redact_record(
        {
            "method": method,
            "url": url,
            "params": dict(params or {}),
            "headers": {
                name: MASK if SECRET_HEADER.search(name) else value
                for name, value in headers.items()
            },
            "body": body,
        }
    )


def response_record(response: httpx.Response, started: float) -> dict[str, Any]:
    text = response.text
    return redact_record(
        {
            "status": response.status_code,
            "reason": response.reason_phrase,
            "url": str(response.url),
            "headers": _kept_headers(response),
            "body_preview": text[:BODY_PREVIEW_CHARS],
            "body_chars": len(text),
            "elapsed_ms": _ms(started),
        }
    )


def _kept_headers(response: httpx.Response) -> dict[str, str]:
    """The response's headers as recorded: all but Set-Cookie."""
    return {key: value for key, value in response.headers.items() if key != "set-cookie"}


# -- answers ----------------------------------------------------------------------------------


def response_value(response: httpx.Response) -> Any:
    """The response's JSON, or its text when it is not JSON; None for an empty body."""
    text = response.text
    if not text.strip():
        return None
    if "json" in response.headers.get("content-type", "").lower():
        try:
            return json.loads(text)
        except ValueError:
            return text
    return decode_json_text(text)


def response_metadata(
    response: httpx.Response, method: str, attempts: int, started: float
) -> dict[str, Any]:
    return {
        "status": response.status_code,
        "reason": response.reason_phrase,
        "url": str(response.url),
        "method": method,
        "headers": redact_json(_kept_headers(response)),
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 3),
        "attempts": attempts,
    }


def status_error(
    response: httpx.Response, method: str, url: str, metadata: dict[str, Any]
) -> HttpError:
    # masked before it is cut or its spaces squeezed: either could break a secret's form apart
    excerpt = " ".join(redact(response.text[: BODY_EXCERPT * 16])[:BODY_EXCERPT].split())
    message = f"HTTP {response.status_code} {response.reason_phrase} from {method} {redact(url)}"
    return HttpError(f"{message}: {excerpt}" if excerpt else message, metadata)


def protect_headers(headers: dict[str, str]) -> None:
    """Register the values of request headers whose names look secret."""
    for name, value in headers.items():
        if SECRET_HEADER.search(name):
            register_secret(value)
            if " " in value:  # "Bearer abc...": the credential alone too
                register_secret(value.split(" ", 1)[1].strip())
