"""api_job against a real HTTP server on 127.0.0.1 (tests/httpkit.py): methods, params, bodies,
templating, input overrides, auth (and that no credential reaches the history), retries,
failures, the error port and timeouts."""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dipeo_cli import http_calls
from dipeo_cli.cli import app
from dipeo_cli.errors import NodeError, NodeTimeoutError
from dipeo_cli.handlers import api_job
from tests.httpkit import TestServer, free_port, serve
from tests.test_handlers_props import compile_problem, make_ctx, make_graph

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_calls, "RETRY_BASE_DELAY", 0.01)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[TestServer]:
    with serve() as running:
        yield running


def call(props: dict[str, Any], *, inputs=None, variables=None) -> Any:
    """Run one api_job node; returns its NodeOutput (or raises what the handler raised)."""
    graph = make_graph(("Call", "api_job", props))
    ctx = make_ctx(graph, "Call", inputs=inputs, variables=variables)

    async def go():
        try:
            return await api_job.api_job(graph.node_by_label("Call"), ctx)
        finally:
            await ctx.resources.close()

    return asyncio.run(go())


def run_cli(diagram: str, *args: str):
    Path("d.light.yaml").write_text(textwrap.dedent(diagram), encoding="utf-8")
    return CliRunner().invoke(app, ["run", "d.light.yaml", "--json", *args], catch_exceptions=False)


def history_bytes() -> bytes:
    home = Path(os.environ["DIPEO_HOME"])
    return b"".join(p.read_bytes() for p in sorted(home.rglob("*")) if p.is_file())


# -- requests ----------------------------------------------------------------------------------


def test_get_with_params_returns_the_json_and_http_metadata(server):
    server.script("/items", (200, {"items": [1, 2]}, {"X-Total": "2"}))
    out = call({"url": server.url("/items"), "params": {"page": 2, "q": "a b"}})
    assert out.value == {"default": {"items": [1, 2]}}
    [request] = server.requests
    assert request.method == "GET" and request.query == {"page": ["2"], "q": ["a b"]}
    assert request.body == b""
    http = out.metadata["http"]
    assert http["status"] == 200 and http["method"] == "GET" and http["attempts"] == 1
    assert http["url"].startswith(server.url("/items?"))
    assert http["headers"]["x-total"] == "2"
    assert http["elapsed_ms"] >= 0


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_methods_send_a_json_body(server, method):
    out = call({"url": server.url("/x"), "method": method.lower(), "body": {"a": [1, {"b": 2}]}})
    [request] = server.requests
    assert request.method == method
    assert request.json() == {"a": [1, {"b": 2}]}
    assert request.headers["Content-Type"] == "application/json"
    assert out.value["default"]["method"] == method


def test_text_body_is_sent_as_it_is_and_text_answers_stay_text(server):
    server.script("/t", (200, "plain answer", {}))
    out = call({"url": server.url("/t"), "method": "POST", "body": "line 1\nline 2"})
    assert server.requests[0].body == b"line 1\nline 2"
    assert out.value == {"default": "plain answer"}


def test_empty_answer_is_none(server):
    server.script("/empty", (204, "", {}))
    out = call({"url": server.url("/empty"), "method": "DELETE"})
    assert out.value == {"default": None}
    assert out.metadata["http"]["status"] == 204


def test_templating_in_url_headers_params_and_body(server):
    props = {
        "url": server.url("/users/{{user.id}}/{{ kind }}"),
        "method": "POST",
        "headers": {"X-Trace": "trace-{{trace}}", "X-Count": 3},
        "params": {"v": "{{version}}"},
        "body": {
            "name": "{{user.name}}",
            "tags": ["{{kind}}", "fixed"],
            "count": "{{count}}",  # exactly one placeholder: keeps its type
            "text": "n={{count}}",
            "first": "{{items.0}}",
        },
    }
    call(
        props,
        inputs={"default": {"user": {"id": 7, "name": "Ada"}, "kind": "admin"}, "trace": "t1"},
        variables={"count": 5, "version": "v2", "items": ["i0", "i1"], "kind": "staff"},
    )
    [request] = server.requests
    # variables win over inputs (as in template_job)
    assert request.path == "/users/7/staff"
    assert request.headers["X-Trace"] == "trace-t1" and request.headers["X-Count"] == "3"
    assert request.query == {"v": ["v2"]}
    assert request.json() == {
        "name": "Ada",
        "tags": ["staff", "fixed"],
        "count": 5,
        "text": "n=5",
        "first": "i0",
    }


def test_an_undefined_placeholder_fails_naming_it(server):
    with pytest.raises(NodeError, match=r"url: 'missing' is undefined \(available: a\)"):
        call({"url": server.url("/{{missing}}")}, variables={"a": 1})
    assert server.requests == []


def test_inputs_labelled_url_headers_params_body_override(server):
    call(
        {
            "url": server.url("/configured"),
            "method": "POST",
            "headers": {"X-A": "configured"},
            "params": {"p": "configured"},
            "body": {"configured": True},
        },
        inputs={
            "url": server.url("/from-input"),
            "headers": {"X-B": "input"},
            "params": '{"p": "input"}',  # JSON text is decoded
            "body": {"from": "input", "raw": "{{not templated}}"},
        },
    )
    [request] = server.requests
    assert request.path == "/from-input"
    assert request.headers.get("X-B") == "input" and "X-A" not in request.headers
    assert request.query == {"p": ["input"]}
    assert request.json() == {"from": "input", "raw": "{{not templated}}"}


# -- auth and secrets --------------------------------------------------------------------------

TOKEN = "tok-5f1c2a9e-very-secret"
PASSWORD = "correct-horse-battery"
KEY = "key-8d7e6f5a4b3c2d1e"


@pytest.mark.parametrize(
    ("auth", "header", "expected", "secret"),
    [
        ("bearer", "Authorization", f"Bearer {TOKEN}", TOKEN),
        ("basic", "Authorization", "Basic YWRhOmNvcnJlY3QtaG9yc2UtYmF0dGVyeQ==", PASSWORD),
        ("api_key", "X-Custom-Key", KEY, KEY),
    ],
)
def test_auth_header_reaches_the_server_and_never_the_history(
    server, auth, header, expected, secret
):
    config = {
        "bearer": {"token": TOKEN},
        "basic": {"username": "ada", "password": PASSWORD},
        "api_key": {"key_name": "X-Custom-Key", "key_value": KEY},
    }[auth]
    # The echo answer contains the request headers, so the credential comes back in the output.
    result = run_cli(
        f"""
        version: light
        nodes:
          - {{label: Start, type: start}}
          - label: Call
            type: api_job
            url: {server.url("/echo")}
            auth_type: {auth}
            auth_config: {json.dumps(config)}
          - {{label: End, type: endpoint}}
        connections: [{{from: Start, to: Call}}, {{from: Call, to: End}}]
        """
    )
    assert result.exit_code == 0, result.output
    assert server.requests[0].headers[header] == expected
    shown = CliRunner().invoke(app, ["show", "latest", "--json"], catch_exceptions=False)
    for text in (result.stdout, result.stderr, shown.stdout):
        assert secret not in text and expected not in text
    stored = history_bytes()
    assert b"/echo" in stored  # the output is there ...
    assert secret.encode() not in stored and expected.encode() not in stored  # ... not the secret
    # the `http` summary has no request headers (`http_calls` has them, masked)
    outputs = json.loads(shown.stdout)["node_outputs"]
    [http] = [o["metadata"]["http"] for o in outputs.values() if "http" in o["metadata"]]
    assert set(http) == {"status", "reason", "url", "method", "headers", "elapsed_ms", "attempts"}


def test_api_key_defaults_to_x_api_key_and_a_token_can_come_from_the_environment(
    server, monkeypatch
):
    monkeypatch.setenv("SERVICE_CREDENTIAL", "env-provided-credential")
    call(
        {
            "url": server.url("/k"),
            "auth_type": "api_key",
            "auth_config": {"key_value": "{{SERVICE_CREDENTIAL}}"},
        }
    )
    assert server.requests[0].headers["X-API-Key"] == "env-provided-credential"
    from dipeo_cli.redact import redact

    assert redact("x env-provided-credential y") == "x *** y"


# -- retries, failures, the error port, timeouts -----------------------------------------------


def test_retries_5xx_and_429_then_succeeds(server):
    server.script(
        "/flaky",
        (503, "busy", {}),
        (429, "slow down", {"Retry-After": "0"}),
        (200, {"ok": True}, {}),
    )
    out = call({"url": server.url("/flaky")})
    assert out.value == {"default": {"ok": True}}
    assert out.metadata["http"]["attempts"] == 3
    assert len(server.hits("/flaky")) == 3


def test_retries_give_up_after_max_retries(server):
    server.script("/down", (502, "bad gateway body", {}))
    with pytest.raises(NodeError, match=r"HTTP 502 Bad Gateway from GET .*/down: bad gateway body"):
        call({"url": server.url("/down"), "max_retries": 2})
    assert len(server.hits("/down")) == 3


def test_4xx_is_not_retried_and_fails_with_status_and_excerpt(server):
    server.script("/missing", (404, "x" * 500, {}))
    with pytest.raises(api_job.HttpError) as caught:
        call({"url": server.url("/missing")})
    message = str(caught.value)
    assert message == f"HTTP 404 Not Found from GET {server.url('/missing')}: {'x' * 200}"
    assert caught.value.metadata["http"]["status"] == 404
    assert len(server.hits("/missing")) == 1


def test_connection_errors_are_retried_then_fail():
    url = f"http://127.0.0.1:{free_port()}/nothing"
    with pytest.raises(api_job.HttpError, match=r"GET .* failed: ConnectError: .*after 3 attempts"):
        call({"url": url, "max_retries": 2})


def test_a_url_without_scheme_from_a_variable_fails_without_retrying():
    with pytest.raises(NodeError, match=r"invalid url 'localhost/x'"):
        call({"url": "{{host}}/x"}, variables={"host": "localhost"})


def test_retry_after_is_honoured_when_small_and_ignored_when_garbage(server):
    server.script(
        "/ra",
        (503, "", {"Retry-After": "0.3"}),
        (503, "", {"Retry-After": "soon"}),
        (200, "ok", {}),
    )
    started = time.monotonic()
    out = call({"url": server.url("/ra")})
    assert out.metadata["http"]["attempts"] == 3
    assert 0.3 <= time.monotonic() - started < 2


def test_a_slow_server_times_out(server):
    server.script("/slow", (200, "late", {}, 2.0))
    with pytest.raises(NodeTimeoutError, match=r"timed out after 0.2 s"):
        call({"url": server.url("/slow"), "timeout": 0.2})


def test_404_fails_the_run_with_status_and_body_through_the_cli(server):
    server.script("/gone", (404, '{"detail": "no such todo"}', {}))
    result = run_cli(
        f"""
        version: light
        nodes:
          - {{label: Start, type: start}}
          - {{label: Call, type: api_job, url: "{server.url("/gone")}"}}
          - {{label: End, type: endpoint}}
        connections: [{{from: Start, to: Call}}, {{from: Call, to: End}}]
        """
    )
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["status"] == "FAILED"
    assert "HTTP 404 Not Found from GET" in data["error"]
    assert "no such todo" in data["error"]


def test_error_port_takes_the_failure_and_the_run_completes(server):
    server.script("/boom", (500, "kaput", {}))
    result = run_cli(
        f"""
        version: light
        nodes:
          - {{label: Start, type: start}}
          - {{label: Call, type: api_job, url: "{server.url("/boom")}", max_retries: 0}}
          - {{label: Ok, type: endpoint}}
          - {{label: Handled, type: endpoint}}
        connections:
          - {{from: Start, to: Call}}
          - {{from: Call, to: Ok}}
          - {{from: "Call[error]", to: Handled}}
        """
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["result"] == f"HTTP 500 Internal Server Error from GET {server.url('/boom')}: kaput"


def test_the_example_diagram_runs_against_a_local_server(server):
    server.script("/todos/1", (200, {"id": 1, "title": "write docs", "completed": False}, {}))
    result = CliRunner().invoke(
        app,
        ["run", str(REPO / "diagrams" / "api_call.light.yaml"), "--json"]
        + ["-i", f"base_url={server.base_url}"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"] == "Todo 1: write docs (open)"


# -- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({}, "property 'url': required property is missing"),
        ({"url": "  "}, "property 'url': an api_job needs a url"),
        ({"url": "example.com/x"}, "property 'url': the url must start with http:// or https://"),
        ({"url": "http://x", "method": "FETCH"}, "property 'method': unknown method 'FETCH'"),
        ({"url": "http://x", "auth_type": "oauth"}, "property 'auth_type': unknown auth_type"),
        ({"url": "http://x", "auth_type": "bearer"}, "auth_type bearer needs auth_config.token"),
        (
            {"url": "http://x", "auth_type": "basic", "auth_config": {"password": "p"}},
            "property 'auth_config': auth_type basic needs auth_config.username",
        ),
        ({"url": "http://x", "body": {"a": 1}}, "property 'body': a GET request sends no body"),
        ({"url": "http://x", "timeout": 0}, "property 'timeout'"),
        ({"url": "http://x", "max_retries": -1}, "property 'max_retries'"),
    ],
)
def test_validation_names_the_property(props, expected):
    assert expected in compile_problem("api_job", props)


def test_validation_accepts_dipeo_spellings():
    graph = make_graph(
        (
            "Call",
            "api_job",
            {
                "url": "http://x",
                "method": "post",
                "authType": "API-KEY",
                "authConfig": {"key_value": "k"},
                "body": {"a": 1},
                "timeout": "",
            },
        )
    )
    config = graph.node_by_label("Call").config
    assert (config.method, config.auth_type, config.timeout) == ("POST", "api_key", 30.0)
