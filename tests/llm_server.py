"""A fake LLM provider: a real HTTP server on 127.0.0.1 speaking OpenAI chat completions
(`POST /v1/chat/completions`) and Anthropic messages (`POST /v1/messages`).

The `llm_server` fixture (registered in tests/conftest.py) starts one per test and points the
official clients at it through the environment: OPENAI_BASE_URL, ANTHROPIC_BASE_URL,
OPENAI_API_KEY (= OPENAI_TEST_KEY) and ANTHROPIC_API_KEY (= ANTHROPIC_TEST_KEY); the other
providers' key variables are removed. Subprocesses (`dipeo run`) inherit that environment.
It also shortens the clients' retry backoff in this process; error replies carry
`retry-after-ms: 1`, so retries are fast in subprocesses too.

    def test_x(llm_server):
        llm_server.reply("first answer", {"score": 3}, Reply(status=429), "third")
        llm_server.fail(2, status=500)          # the next 2 requests fail, then the queue
        llm_server.reply_with(lambda request, n: f"answer {n}")   # when the queue is empty
        ...
        llm_server.requests[0].messages         # what the client sent, in order
        llm_server.requests[0].system           # the system prompt (either protocol)
        llm_server.requests[0].headers["authorization"]

Replies, in order: queued ones first (`reply`, `fail`), then `reply_with(fn)` if set, then
the default `reply #<n> to: <last user message>` (n = 1, 2, ... counts this server's
requests). A reply is a str (the text), a dict or list (the structured answer: the JSON text
for OpenAI, a tool_use block when an Anthropic request forced a tool), or a `Reply` (sent as
it is). When a request asks for structured output and the reply is a str, its JSON is the
structured answer, or `sample_for_schema(schema)` from dipeo_cli.llm.mock when it is not
JSON (so the default reply follows the schema).

Usage in every answer: prompt tokens = words of the system prompt and messages, completion
tokens = words of the text, cached = `Reply.cached` (default 0), unless `Reply.usage` gives
them (`{"input", "output", "cached"}`).
"""

from __future__ import annotations

import importlib
import itertools
import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from dipeo_cli.llm.mock import sample_for_schema

OPENAI_TEST_KEY = "sk-test-openai-5f2b9c1e7a"
ANTHROPIC_TEST_KEY = "sk-ant-test-3d8e6a0b4c"
PROVIDER_KEY_VARS = (
    "OPENAI_API_KEY",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_AUTH_TOKEN",
    "DEEPSEEK_API_KEY",
    "XAI_API_KEY",
    "GOOGLE_API_KEY",
    "GEMINI_API_KEY",
    "API_KEY_STORE_FILE",
    "OLLAMA_HOST",
)


@dataclass
class Reply:
    """One answer. `status` != 200 answers with the protocol's error body holding `error`."""

    text: str = ""
    structured: Any = None
    status: int = 200
    error: str | None = None
    delay: float = 0.0  # seconds before answering (per-call timeout tests)
    usage: dict[str, int] | None = None
    cached: int = 0
    model: str | None = None  # default: the requested model
    headers: dict[str, str] = field(default_factory=dict)
    stop_reason: str | None = None


@dataclass
class RecordedRequest:
    path: str
    headers: dict[str, str]  # names in lower case
    body: dict[str, Any]

    @property
    def protocol(self) -> str:
        return "anthropic" if self.path.endswith("/messages") else "openai"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The conversation without OpenAI's system message (see `system`)."""
        return [m for m in self.body.get("messages", []) if m.get("role") != "system"]

    @property
    def system(self) -> str | None:
        if self.protocol == "anthropic":
            system = self.body.get("system")
            if isinstance(system, list):  # content blocks
                return "".join(block.get("text", "") for block in system)
            return system
        for message in self.body.get("messages", []):
            if message.get("role") == "system":
                return _content_text(message.get("content"))
        return None

    @property
    def last_user_text(self) -> str:
        for message in reversed(self.body.get("messages", [])):
            if message.get("role") == "user":
                return _content_text(message.get("content"))
        return ""

    @property
    def schema(self) -> dict[str, Any] | None:
        """The JSON schema the request asks the reply to follow, if any."""
        if self.protocol == "anthropic":
            choice = self.body.get("tool_choice") or {}
            for tool in self.body.get("tools", []):
                if choice.get("type") == "tool" and tool.get("name") == choice.get("name"):
                    return tool.get("input_schema")
            return None
        fmt = self.body.get("response_format") or {}
        if fmt.get("type") == "json_schema":
            return (fmt.get("json_schema") or {}).get("schema")
        return None


ReplySpec = str | dict[str, Any] | list[Any] | Reply


class LLMServer:
    __test__ = False

    def __init__(self) -> None:
        self.port = 0
        self.requests: list[RecordedRequest] = []
        self._queue: list[ReplySpec] = []
        self._reply_fn: Callable[[RecordedRequest, int], ReplySpec] | None = None
        self._lock = threading.Lock()
        self._counter = itertools.count(1)
        self.stopping = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """For `openai.AsyncOpenAI(base_url=...)`, OPENAI_BASE_URL or a person's base_url."""
        return self.url + "/v1"

    @property
    def anthropic_base_url(self) -> str:
        """For `anthropic.AsyncAnthropic(base_url=...)` or ANTHROPIC_BASE_URL."""
        return self.url

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.requests]

    def reply(self, *replies: ReplySpec) -> None:
        """Queue answers for the next requests, in order."""
        with self._lock:
            self._queue.extend(replies)

    def fail(self, times: int = 1, status: int = 429, message: str | None = None) -> None:
        """Queue `times` error answers (then whatever was queued after)."""
        text = message or _DEFAULT_ERRORS.get(status, "something went wrong")
        self.reply(*(Reply(status=status, error=text) for _ in range(times)))

    def reply_with(self, fn: Callable[[RecordedRequest, int], ReplySpec] | None) -> None:
        """Answer with `fn(request, n)` once the queue is empty (n counts requests from 1)."""
        self._reply_fn = fn

    def _next(self, request: RecordedRequest) -> Reply:
        with self._lock:
            self.requests.append(request)
            n = next(self._counter)
            spec: ReplySpec | None = self._queue.pop(0) if self._queue else None
        if spec is None and self._reply_fn is not None:
            spec = self._reply_fn(request, n)
        if spec is None:
            spec = f"reply #{n} to: {request.last_user_text}"
        if isinstance(spec, Reply):
            return spec  # as given, even when it does not follow the schema
        if not isinstance(spec, str):
            return Reply(structured=spec)
        schema = request.schema
        if schema is None:
            return Reply(text=spec)
        try:
            return Reply(structured=json.loads(spec))
        except ValueError:
            return Reply(structured=sample_for_schema(schema))


_DEFAULT_ERRORS = {
    400: "Invalid request",
    401: "Incorrect API key provided",
    429: "Rate limit reached for requests",
    500: "The server had an error while processing your request",
    503: "The engine is currently overloaded",
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def _content_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content if isinstance(content, str) else ""


def _words(body: dict[str, Any]) -> int:
    texts = [_content_text(m.get("content")) for m in body.get("messages", [])]
    system = body.get("system")
    texts.append(_content_text(system) if system is not None else "")
    return sum(len(t.split()) for t in texts)


def _answer(request: RecordedRequest, reply: Reply) -> tuple[int, dict[str, Any]]:
    anthropic = request.protocol == "anthropic"
    if reply.status != 200:
        message = reply.error or _DEFAULT_ERRORS.get(reply.status, "error")
        if anthropic:
            kind = _ANTHROPIC_ERROR_TYPES.get(reply.status, "api_error")
            return reply.status, {"type": "error", "error": {"type": kind, "message": message}}
        kind = (
            "rate_limit_exceeded"
            if reply.status == 429
            else "server_error"
            if reply.status >= 500
            else "invalid_request_error"
        )
        error = {"message": message, "type": kind, "param": None, "code": None}
        return reply.status, {"error": error}

    text = reply.text
    if reply.structured is not None and not anthropic:
        text = json.dumps(reply.structured)
    usage = reply.usage or {}
    prompt = usage.get("input", _words(request.body))
    completion = usage.get("output", len(text.split()))
    cached = usage.get("cached", reply.cached)
    model = reply.model or request.body.get("model", "unknown")
    if anthropic:
        content: list[dict[str, Any]] = []
        if text:
            content.append({"type": "text", "text": text})
        choice = request.body.get("tool_choice") or {}
        if reply.structured is not None:
            content.append(
                {
                    "type": "tool_use",
                    "id": "toolu_test_1",
                    "name": choice.get("name", "response"),
                    "input": reply.structured,
                }
            )
        stop = reply.stop_reason or ("tool_use" if reply.structured is not None else "end_turn")
        return 200, {
            "id": "msg_test",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": {
                "input_tokens": prompt,
                "output_tokens": completion,
                "cache_read_input_tokens": cached,
                "cache_creation_input_tokens": 0,
            },
        }
    return 200, {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "finish_reason": reply.stop_reason or "stop",
                "logprobs": None,
            }
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached},
        },
    }


def _handler(server: LLMServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            path = self.path.split("?", 1)[0]
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                body = {"_raw": raw.decode("utf-8", "replace")}
            if path not in ("/v1/chat/completions", "/v1/messages"):
                self._send(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
                return
            request = RecordedRequest(path, headers, body)
            reply = server._next(request)
            if reply.delay and server.stopping.wait(reply.delay):
                return
            status, payload = _answer(request, reply)
            extra = dict(reply.headers)
            if status != 200:
                extra.setdefault("retry-after-ms", "1")
            self._send(status, payload, extra)

        def _send(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
                pass

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


@contextmanager
def serve_llm() -> Iterator[LLMServer]:
    """Run an LLMServer on a free port of 127.0.0.1 for the duration of the block."""
    server = LLMServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the official clients' retry backoff milliseconds long in this process."""
    for name in ("openai._base_client", "anthropic._base_client"):
        module = importlib.import_module(name)
        monkeypatch.setattr(module, "INITIAL_RETRY_DELAY", 0.001, raising=False)
        monkeypatch.setattr(module, "MAX_RETRY_DELAY", 0.005, raising=False)


@pytest.fixture
def llm_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[LLMServer]:
    """An LLMServer with the environment pointing the official clients at it."""
    from dipeo_cli.redact import refresh_secrets

    with serve_llm() as server:
        for name in PROVIDER_KEY_VARS:
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("OPENAI_BASE_URL", server.openai_base_url)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.anthropic_base_url)
        monkeypatch.setenv("OPENAI_API_KEY", OPENAI_TEST_KEY)
        monkeypatch.setenv("ANTHROPIC_API_KEY", ANTHROPIC_TEST_KEY)
        refresh_secrets()
        fast_retries(monkeypatch)
        yield server
