"""The one HTTP call point (dipeo_cli.http_calls): each api_job call recorded in full in
`http_calls` (secrets masked), every attempt listed, and the replay seam."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from dipeo_cli import http_calls
from dipeo_cli.cli import app
from dipeo_cli.context import RunResources
from dipeo_cli.handlers import api_job
from dipeo_cli.http_calls import HttpCallIdentity
from tests.httpkit import TestServer, free_port, serve
from tests.test_handlers_api_job import call, history_bytes
from tests.test_handlers_props import make_ctx, make_graph

TOKEN = "tok-7a1b9c3d-call-record-secret"


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_calls, "RETRY_BASE_DELAY", 0.01)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[TestServer]:
    with serve() as running:
        yield running


DIAGRAM = """\
nodes:
  - {{label: Start, type: start}}
  - label: Call
    type: api_job
    method: POST
    url: {url}
    auth_type: bearer
    auth_config: {{token: {token}}}
    headers: {{X-Trace: abc, X-Plain-Copy: {token}, X-Echo-Token: short}}
    params: {{sig: {token}, page: 2}}
    body: {{name: ada, n: 1}}
  - {{label: End, type: endpoint}}
connections: [{{from: Start, to: Call}}, {{from: Call, to: End}}]
"""


def test_api_job_records_the_request_with_secrets_masked_and_the_response(server) -> None:
    Path("d.light.yaml").write_text(
        DIAGRAM.format(url=server.url("/echo"), token=TOKEN), encoding="utf-8"
    )
    result = CliRunner().invoke(app, ["run", "d.light.yaml", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert server.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"  # it was sent
    shown = CliRunner().invoke(app, ["show", "latest", "--json"], catch_exceptions=False)
    outputs = json.loads(shown.stdout)["node_outputs"].values()
    [calls] = [o["metadata"]["http_calls"] for o in outputs if "http_calls" in o["metadata"]]
    [record] = calls
    assert record["call"] == 1 and record["replayed"] is False
    request = record["request"]
    assert request["method"] == "POST" and request["url"] == server.url("/echo")
    assert request["params"] == {"sig": "***", "page": 2}
    assert request["headers"] == {
        "X-Trace": "abc",
        "X-Plain-Copy": "***",  # not a secret name, but a registered secret's value
        "X-Echo-Token": "***",  # a secret name, whatever its value
        "Authorization": "***",
    }
    assert request["body"] == {"name": "ada", "n": 1}
    [attempt] = record["attempts"]
    assert attempt["attempt"] == 1 and attempt["status"] == 200 and attempt["error"] is None
    response = record["response"]
    assert response["status"] == 200 and response["reason"] == "OK"
    assert response["headers"]["content-type"].startswith("application/json")
    assert '"method": "POST"' in response["body_preview"]
    assert response["body_chars"] >= len(response["body_preview"]) > 0
    assert TOKEN not in shown.stdout
    assert TOKEN.encode() not in history_bytes()


def test_retries_are_one_call_with_every_attempt_listed(server) -> None:
    server.script("/flaky", (503, "busy", {}), (502, "down", {}), (200, {"ok": True}, {}))
    out = call({"url": server.url("/flaky"), "max_retries": 3})
    [record] = out.metadata["http_calls"]
    assert [a["status"] for a in record["attempts"]] == [503, 502, 200]
    assert record["response"]["status"] == 200 and out.metadata["http"]["attempts"] == 3


def test_a_call_without_an_answer_is_recorded_with_its_error() -> None:
    url = f"http://127.0.0.1:{free_port()}/nothing"
    with pytest.raises(api_job.HttpError) as caught:
        call({"url": url, "max_retries": 1})
    [record] = caught.value.metadata["http_calls"]
    assert record["response"] is None and "ConnectError" in record["error"]
    assert [a["status"] for a in record["attempts"]] == [None, None]
    assert all("ConnectError" in a["error"] for a in record["attempts"])


class FakeReplayer:
    def __init__(self) -> None:
        self.asked: list[tuple[HttpCallIdentity, dict[str, Any]]] = []

    async def response_for(
        self, call: HttpCallIdentity, request: dict[str, Any]
    ) -> httpx.Response | None:
        self.asked.append((call, request))
        return httpx.Response(
            201, json={"recorded": True}, request=httpx.Request(request["method"], request["url"])
        )


def test_an_http_replayer_answers_instead_of_the_server(server) -> None:
    replayer = FakeReplayer()
    graph = make_graph(("Call", "api_job", {"url": server.url("/x"), "params": {"q": 1}}))
    ctx = make_ctx(graph, "Call", iteration=3, resources=RunResources(http_replay=replayer))

    async def go() -> Any:
        try:
            return await api_job.api_job(graph.node_by_label("Call"), ctx)
        finally:
            await ctx.resources.close()

    out = asyncio.run(go())
    assert out.value == {"default": {"recorded": True}}
    assert server.requests == []
    [(identity, request)] = replayer.asked
    assert (identity.node_label, identity.iteration, identity.call) == ("Call", 3, 1)
    [record] = out.metadata["http_calls"]
    assert record["replayed"] is True and record["attempts"] == []
    assert record["request"] == request and request["params"] == {"q": 1}
    assert record["response"]["status"] == 201 and out.metadata["http"]["attempts"] == 0


def test_the_default_is_no_replayer() -> None:
    assert RunResources().http_replay is None and RunResources().llm_replay is None
    assert http_calls.RECORDS_KEY == "http_calls"
