"""`dipeo serve`: the installed command on a free port, driven by real clients (gql over HTTP
and over both WebSocket protocols, raw WebSockets, curl-like HTTP), on a real history that a
`dipeo run` in another process shares."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dipeo_cli.state import parse_iso

gql_module = pytest.importorskip("gql")
from gql import Client, GraphQLRequest  # noqa: E402
from gql.transport.aiohttp import AIOHTTPTransport  # noqa: E402
from gql.transport.websockets import WebsocketsTransport  # noqa: E402

TRANSPORT_WS = "graphql-transport-ws"
GRAPHQL_WS = "graphql-ws"  # the older protocol DiPeO's client spoke
SECRET = "s3cret-value-for-serve-tests"
TOKEN = "serve-test-token-123456"

# DiPeO's command-line client operations (mid-2025), exactly as spec/dipeo-graphql.md lists them.
EXECUTE_DIAGRAM = """
mutation ExecuteDiagram($data: ExecuteDiagramInput!) {
    execute_diagram(data: $data) {
        success
        execution {
            id
            status
            diagram_id
            started_at
        }
        message
        error
    }
}
"""
CONTROL_EXECUTION = """
mutation ControlExecution($data: ExecutionControlInput!) {
    control_execution(data: $data) {
        success
        execution {
            id
            status
        }
        message
        error
    }
}
"""
SUBMIT_INTERACTIVE_RESPONSE = """
mutation SubmitInteractiveResponse($data: InteractiveResponseInput!) {
    submit_interactive_response(data: $data) {
        success
        execution {
            id
            status
        }
        message
        error
    }
}
"""
EXECUTION_UPDATES = """
subscription ExecutionUpdates($execution_id: ExecutionID!) {
    execution_updates(execution_id: $execution_id) {
        id
        status
        diagram_id
        started_at
        ended_at
        node_states
        node_outputs
        variables
        token_usage {
            input
            output
            total
        }
        error
        is_active
        duration_seconds
    }
}
"""
NODE_UPDATES = """
subscription NodeUpdates($execution_id: ExecutionID!, $node_types: [NodeType!]) {
    node_updates(execution_id: $execution_id, node_types: $node_types) {
        execution_id
        node_id
        node_type
        status
        progress
        output
        error
        tokens_used
        timestamp
    }
}
"""
INTERACTIVE_PROMPTS = """
subscription InteractivePrompts($execution_id: ExecutionID!) {
    interactive_prompts(execution_id: $execution_id) {
        execution_id
        node_id
        prompt
        timeout_seconds
        timestamp
    }
}
"""
EXECUTION_QUERY = """
query Execution($id: ExecutionID!) {
    execution(id: $id) { id status node_states node_outputs variables error is_active }
}
"""


def chain(*steps: tuple[str, str], extra: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """A light diagram: Start -> each (label, bash code) code_job in turn -> End."""
    nodes: list[dict[str, Any]] = [{"label": "Start", "type": "start"}]
    nodes += [
        {"label": label, "type": "code_job", "props": {"language": "bash", "code": code}}
        for label, code in steps
    ]
    nodes += [*extra, {"label": "End", "type": "endpoint"}]
    labels = [n["label"] for n in nodes]
    return {
        "version": "light",
        "nodes": nodes,
        "connections": [{"from": a, "to": b} for a, b in zip(labels, labels[1:], strict=False)],
    }


def write(folder: Path, name: str, diagram: dict[str, Any]) -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(diagram, sort_keys=False), encoding="utf-8")
    return path


class Served:
    def __init__(self, proc: subprocess.Popen[str], url: str, db: str, root: Path) -> None:
        self.proc, self.url, self.db, self.root = proc, url, db, root
        self.ws_url = url.replace("http://", "ws://")

    def post(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> Any:
        import httpx

        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.post(
            self.url,
            json={"query": query, "variables": variables or {}},
            headers=headers,
            timeout=10,
        )

    def call(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> Any:
        response = self.post(query, variables, token)
        assert response.status_code == 200, response.text
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=20)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.proc.stdout.close()  # type: ignore[union-attr]


def start_server(
    tmp: Path, *args: str, env: dict[str, str] | None = None, db: str | None = None
) -> Served:
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    db = db or str(tmp / "history.db")
    with open(tmp / "serve.log", "w") as log:  # the child keeps its own copy of the descriptor
        proc = subprocess.Popen(
            ["dipeo", "serve", "--port", "0", "--db", db, "--root", str(root), *args],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env={**os.environ, **(env or {})},
        )
    line = proc.stdout.readline()  # type: ignore[union-attr]
    match = re.search(r"(http://\S+/graphql)", line)
    if not match:
        proc.kill()
        proc.wait()
        proc.stdout.close()  # type: ignore[union-attr]
        raise AssertionError(f"no URL from dipeo serve: {line!r} {(tmp / 'serve.log').read_text()}")
    return Served(proc, match.group(1), db, root)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("serve")
    served = start_server(tmp, "--allow-inline", env={"SERVE_TEST_API_KEY": SECRET})
    yield served
    served.stop()


def execute(served: Served, diagram: dict[str, Any] | str, **data: Any) -> str:
    if isinstance(diagram, str):
        data["diagram_id"] = diagram
    else:
        data["diagram_data"] = diagram
    result = served.call(EXECUTE_DIAGRAM, {"data": data})["execute_diagram"]
    assert result["success"], result
    return result["execution"]["id"]


def control(served: Served, execution_id: str, action: str, node_id: str | None = None) -> Any:
    data = {"execution_id": execution_id, "action": action, "node_id": node_id}
    return served.call(CONTROL_EXECUTION, {"data": data})["control_execution"]


def state_of(served: Served, execution_id: str) -> Any:
    return served.call(EXECUTION_QUERY, {"id": execution_id})["execution"]


def wait_for(served: Served, execution_id: str, check: Any, timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        state = state_of(served, execution_id)
        if check(state):
            return state
        assert time.monotonic() < deadline, state
        time.sleep(0.05)


def node(state: Any, label: str) -> Any:
    return next(n for n in state["node_states"].values() if n["label"] == label)


async def collect(
    served: Served,
    document: str,
    variables: dict[str, Any],
    protocol: str,
    *,
    token: str | None = None,
    until: Any = None,
    on_item: Any = None,
) -> list[Any]:
    """Run a subscription to its end (or until `until(items)`), with gql's WebSocket transport."""
    transport = WebsocketsTransport(
        url=served.ws_url,
        subprotocols=[protocol],
        init_payload={"token": token} if token else {},
    )
    items: list[Any] = []
    async with Client(transport=transport) as session:
        async with asyncio.timeout(20):
            async for item in session.subscribe(
                GraphQLRequest(document, variable_values=variables)
            ):
                items.append(item)
                if on_item is not None:
                    await on_item(item, items)
                if until is not None and until(items):
                    break
    return items


# -- the command --------------------------------------------------------------------------------


def test_schema_prints_dipeos_operations_in_snake_case():
    from dipeo_cli.cli import app

    result = CliRunner().invoke(app, ["serve", "--schema"])
    assert result.exit_code == 0, result.output
    sdl = result.output
    for line in (
        "execution_updates(execution_id: ExecutionID!): ExecutionStateType!",
        "node_updates(execution_id: ExecutionID!, node_types: [NodeType!] = null): NodeExecution!",
        "execute_diagram(data: ExecuteDiagramInput!): ExecutionResult!",
        "control_execution(data: ExecutionControlInput!): ExecutionResult!",
        "executions(filter: ExecutionFilterInput = null, limit: Int! = 100, offset: Int! = 0)",
        "interactive_prompts(execution_id: ExecutionID!): InteractivePrompt",
    ):
        assert line in sdl
    status = re.search(r"enum ExecutionStatus \{([^}]*)\}", sdl).group(1).split()
    assert set(status) == {
        "STARTED",
        "PENDING",
        "RUNNING",
        "PAUSED",
        "COMPLETED",
        "FAILED",
        "ABORTED",
        "SKIPPED",
        "QUEUED",  # ours: execute_diagram(queue: true)
    }
    node_types = set(re.search(r"enum NodeType \{([^}]*)\}", sdl).group(1).split())
    assert {
        "start",
        "code_job",
        "user_response",
        "template_job",
        "sub_diagram",
        "job",
        "notion",
    } <= node_types


def test_other_hosts_need_a_token(monkeypatch):
    from dipeo_cli.cli import app

    monkeypatch.delenv("DIPEO_SERVER_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2
    assert "--token" in result.output and "Traceback" not in result.output


# -- queries and mutations over HTTP -------------------------------------------------------------


@pytest.mark.e2e
def test_execute_a_file_under_root_then_query_it(server):
    write(server.root, "quick.light.yaml", chain(("Echo", "echo hi")))
    eid = execute(server, "quick", variables={"who": "me", "key": SECRET})  # DiPeO's name lookup
    state = wait_for(server, eid, lambda s: not s["is_active"])
    assert state["status"] == "COMPLETED"
    assert node(state, "Echo")["type"] == "code_job"
    assert state["variables"] == {"who": "me", "key": "***"}  # secrets masked in responses
    data = server.call(
        'query ($p: ExecutionID!) { latest: execution(id: "latest") { id }'
        " prefix: execution(id: $p) { id } executions(limit: 5) { id status started_at } health }",
        {"p": eid[:10]},
    )
    assert data["latest"]["id"] == data["prefix"]["id"] == eid
    started = [e["started_at"] for e in data["executions"]]
    assert started == sorted(started, reverse=True)
    assert data["health"]["status"] == "healthy"


@pytest.mark.e2e
@pytest.mark.e2e
def test_serve_keeps_its_history_in_postgresql(tmp_path, postgres_db):
    """`--db postgresql://...` is a URL, not a file name: the run lands in PostgreSQL."""
    served = start_server(tmp_path, db=postgres_db)
    try:
        write(served.root, "quick.light.yaml", chain(("Echo", "echo hi")))
        eid = execute(served, "quick")
        assert wait_for(served, eid, lambda s: not s["is_active"])["status"] == "COMPLETED"
    finally:
        assert served.stop() == 0
    assert not (tmp_path / "history.db").exists()
    shown = subprocess.run(
        ["dipeo", "show", eid, "--json", "--db", postgres_db], capture_output=True, text=True
    )
    assert json.loads(shown.stdout)["status"] == "COMPLETED", shown.stderr


def test_paths_outside_root_and_invalid_diagrams_are_refused(server):
    outside = server.root.parent / "outside.light.yaml"
    write(server.root.parent, "outside.light.yaml", chain(("X", "touch ran")))
    before = len(server.call("{ executions(limit: 1000) { id } }")["executions"])
    for diagram_id in (str(outside), "../outside.light.yaml"):
        result = server.call(EXECUTE_DIAGRAM, {"data": {"diagram_id": diagram_id}})[
            "execute_diagram"
        ]
        assert result["success"] is False and "outside the server's root" in result["error"]
        assert result["execution"] is None
    bad = {"version": "light", "nodes": [{"label": "A", "type": "no_such_type"}]}
    result = server.call(EXECUTE_DIAGRAM, {"data": {"diagram_data": bad}})["execute_diagram"]
    assert result["success"] is False and "no_such_type" in result["error"]
    assert len(server.call("{ executions(limit: 1000) { id } }")["executions"]) == before


# -- controls ----------------------------------------------------------------------------------


@pytest.mark.e2e
def test_pause_holds_new_nodes_and_resume_goes_on(server):
    python_b = {
        "label": "B",
        "type": "code_job",
        "props": {"language": "python", "code": "result = 'b'"},
    }
    eid = execute(server, chain(("A", "sleep 0.4"), extra=[python_b]))
    wait_for(server, eid, lambda s: node(s, "A")["status"] == "RUNNING")
    paused = control(server, eid, "PAUSE")
    assert paused["success"], paused
    assert paused["execution"]["status"] == "PAUSED"
    time.sleep(1.4)  # A finishes meanwhile; B must not start
    state = state_of(server, eid)
    assert state["status"] == "PAUSED" and node(state, "A")["status"] == "COMPLETED"
    assert node(state, "B")["status"] == "PENDING"
    assert control(server, eid, "resume")["success"]
    state = wait_for(server, eid, lambda s: not s["is_active"])
    assert state["status"] == "COMPLETED" and node(state, "B")["status"] == "COMPLETED", state
    again = control(server, eid, "pause")
    assert again["success"] is False and "already finished" in again["error"]


@pytest.mark.e2e
def test_skip_a_node_that_has_not_started_but_not_one_that_runs(server):
    eid = execute(server, chain(("A", "sleep 1"), ("B", "echo b")))
    wait_for(server, eid, lambda s: node(s, "A")["status"] == "RUNNING")
    running = control(server, eid, "skip_node", "A")
    assert running["success"] is False and "running" in running["error"]
    skipped = control(server, eid, "skip_node", "B")
    assert skipped["success"], skipped
    state = wait_for(server, eid, lambda s: not s["is_active"])
    assert node(state, "B")["status"] == "SKIPPED"
    assert node(state, "B")["skip_reason"] == "skipped on request"
    ran = control(server, eid, "skip_node", "A")
    assert ran["success"] is False and "finished" in ran["error"]


@pytest.mark.e2e
def test_abort_cancels_the_running_node(server):
    eid = execute(server, chain(("Long", "sleep 30"), ("After", "echo after")))
    wait_for(server, eid, lambda s: node(s, "Long")["status"] == "RUNNING")
    started = time.monotonic()
    result = control(server, eid, "abort")
    assert result["success"], result
    state = wait_for(server, eid, lambda s: not s["is_active"], timeout=5)
    assert time.monotonic() - started < 5
    assert state["status"] == "ABORTED"
    assert node(state, "After")["status"] == "SKIPPED"


@pytest.mark.e2e
def test_interactive_response_answers_a_waiting_user_response(server):
    ask = {
        "label": "Ask",
        "type": "user_response",
        "props": {"prompt": "Your name?", "timeout": 20},
    }
    eid = execute(server, chain(extra=[ask]))

    async def answer(item: Any, items: list[Any]) -> None:
        data = {
            "execution_id": eid,
            "node_id": item["interactive_prompts"]["node_id"],
            "response": "Ada",
        }
        transport = AIOHTTPTransport(url=server.url)
        async with Client(transport=transport) as session:
            result = await session.execute(
                GraphQLRequest(SUBMIT_INTERACTIVE_RESPONSE, variable_values={"data": data})
            )
        assert result["submit_interactive_response"]["success"], result

    prompts = asyncio.run(
        collect(server, INTERACTIVE_PROMPTS, {"execution_id": eid}, TRANSPORT_WS, on_item=answer)
    )
    assert len(prompts) == 1 and prompts[0]["interactive_prompts"]["prompt"].startswith(
        "Your name?"
    )
    assert prompts[0]["interactive_prompts"]["timeout_seconds"] == 20
    state = wait_for(server, eid, lambda s: not s["is_active"])
    assert state["status"] == "COMPLETED"
    ask_id = next(nid for nid, n in state["node_states"].items() if n["label"] == "Ask")
    assert state["node_outputs"][ask_id]["value"]["default"] == "Ada"
    late = server.call(
        SUBMIT_INTERACTIVE_RESPONSE,
        {"data": {"execution_id": eid, "node_id": "Ask", "response": "x"}},
    )["submit_interactive_response"]
    assert late["success"] is False and "finished" in late["error"]


# -- subscriptions -------------------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("protocol", [TRANSPORT_WS, GRAPHQL_WS])
def test_dipeo_client_operations_run_unchanged(server, protocol):
    """DiPeO's client: inline diagram_data, then execution_updates and node_updates over
    WebSocket, then control_execution on a second run; all through gql."""
    diagram = chain(("A", "sleep 0.3; echo a"), ("B", "echo b"))

    async def scenario() -> tuple[list[Any], list[Any], Any]:
        async with Client(transport=AIOHTTPTransport(url=server.url)) as session:
            data = {
                "diagram_data": diagram,
                "variables": {"x": 1},
                "debug_mode": False,
                "max_iterations": 100,
                "timeout_seconds": 60,
            }
            started = await session.execute(
                GraphQLRequest(EXECUTE_DIAGRAM, variable_values={"data": data})
            )
        run = started["execute_diagram"]
        assert run["success"] and run["execution"]["status"] in ("STARTED", "RUNNING")
        eid = run["execution"]["id"]
        updates, nodes = await asyncio.gather(
            collect(server, EXECUTION_UPDATES, {"execution_id": eid}, protocol),
            collect(
                server, NODE_UPDATES, {"execution_id": eid, "node_types": ["code_job"]}, protocol
            ),
        )
        async with Client(transport=AIOHTTPTransport(url=server.url)) as session:
            data["diagram_data"] = chain(("Long", "sleep 30"))
            second = await session.execute(
                GraphQLRequest(EXECUTE_DIAGRAM, variable_values={"data": data})
            )
            sid = second["execute_diagram"]["execution"]["id"]
            await asyncio.sleep(0.3)
            aborted = await session.execute(
                GraphQLRequest(
                    CONTROL_EXECUTION,
                    variable_values={"data": {"execution_id": sid, "action": "abort"}},
                )
            )
        return updates, nodes, aborted["control_execution"]

    updates, nodes, aborted = asyncio.run(scenario())
    states = [u["execution_updates"] for u in updates]
    assert states[-1]["status"] == "COMPLETED" and states[-1]["is_active"] is False
    assert all(s["is_active"] for s in states[:-1])
    assert states[-1]["variables"] == {"x": 1}
    assert {n["label"] for n in states[-1]["node_states"].values()} == {"Start", "A", "B", "End"}
    seen = [(n["node_updates"]["node_type"], n["node_updates"]["status"]) for n in nodes]
    assert seen == [("code_job", "RUNNING"), ("code_job", "COMPLETED")] * 2
    assert nodes[1]["node_updates"]["output"]["value"]["default"].strip() == "a"
    assert aborted["success"], aborted


@pytest.mark.e2e
def test_execution_events_yield_each_status(server):
    eid = execute(server, chain(("A", "sleep 0.5")))

    async def pause_then_resume(item: Any, items: list[Any]) -> None:
        if item["execution_events"] == "RUNNING" and "PAUSED" not in str(items):
            assert control(server, eid, "pause")["success"]
        elif item["execution_events"] == "PAUSED":
            assert control(server, eid, "resume")["success"]

    items = asyncio.run(
        collect(
            server,
            "subscription ($id: ExecutionID!) { execution_events(execution_id: $id) }",
            {"id": eid},
            GRAPHQL_WS,
            on_item=pause_then_resume,
        )
    )
    statuses = [i["execution_events"] for i in items]
    assert statuses[-4:] == ["RUNNING", "PAUSED", "RUNNING", "COMPLETED"]
    assert statuses[0] in ("STARTED", "RUNNING")


@pytest.mark.e2e
def test_follow_and_abort_a_dipeo_run_in_another_process(server):
    path = write(
        server.root, "elsewhere.light.yaml", chain(("Tick", "sleep 0.3"), ("Long", "sleep 30"))
    )
    proc = subprocess.Popen(
        ["dipeo", "run", str(path), "--db", str(server.db), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        eid = None
        while eid is None:
            assert time.monotonic() < deadline, "the dipeo run never showed up in the history"
            found = server.call(
                '{ executions(filter: {diagram_id: "elsewhere", active_only: true}) { id } }'
            )
            eid = found["executions"][0]["id"] if found["executions"] else None
            time.sleep(0.05)
        seen_at: dict[str, float] = {}
        lags: list[float] = []

        async def abort_when_long_runs(item: Any, items: list[Any]) -> None:
            state = item["execution_updates"]
            tick = node(state, "Tick")
            if tick["status"] == "COMPLETED" and not lags:
                lags.append(time.time() - parse_iso(tick["ended_at"]))
            long = node(state, "Long")["status"]
            seen_at.setdefault(long, time.monotonic())
            if long == "RUNNING" and "abort" not in seen_at:
                seen_at["abort"] = time.monotonic()
                result = control(server, eid, "abort")  # through the store: another process
                assert result["success"], result

        items = asyncio.run(
            collect(
                server,
                EXECUTION_UPDATES,
                {"execution_id": eid},
                TRANSPORT_WS,
                on_item=abort_when_long_runs,
            )
        )
        assert proc.wait(timeout=10) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    final = items[-1]["execution_updates"]
    assert final["status"] == "ABORTED" and node(final, "Long")["status"] in ("ABORTED", "SKIPPED")
    # a change in the other process reaches the subscriber within 0.5 s
    assert lags and lags[0] < 0.5, lags


# -- security and shutdown ------------------------------------------------------------------------


@pytest.mark.e2e
def test_token_required_then_ctrl_c_aborts_and_records(tmp_path):
    served = start_server(tmp_path, "--token", TOKEN)
    try:
        refused = served.post("{ health }")
        assert refused.status_code == 401
        assert served.post("{ health }", token="wrong").status_code == 401
        assert served.call("{ health }", token=TOKEN)["health"]["status"] == "healthy"
        for protocol in (TRANSPORT_WS, GRAPHQL_WS):
            with pytest.raises(Exception):  # noqa: B017 - closed or rejected, as the protocol says
                asyncio.run(
                    collect(
                        served,
                        'subscription { execution_events(execution_id: "latest") }',
                        {},
                        protocol,
                        token="wrong",
                    )
                )
        assert asyncio.run(_raw_ws_close(served.ws_url)) == 4403
        # inline diagrams are refused without --allow-inline
        inline = served.call(EXECUTE_DIAGRAM, {"data": {"diagram_data": chain()}}, token=TOKEN)
        assert inline["execute_diagram"]["success"] is False
        assert "--allow-inline" in inline["execute_diagram"]["error"]
        write(served.root, "long.light.yaml", chain(("Long", "sleep 30")))
        started = served.call(
            EXECUTE_DIAGRAM, {"data": {"diagram_id": "long.light.yaml"}}, token=TOKEN
        )
        eid = started["execute_diagram"]["execution"]["id"]
        events = asyncio.run(
            collect(
                served,
                "subscription ($id: ExecutionID!) { execution_events(execution_id: $id) }",
                {"id": eid},
                TRANSPORT_WS,
                token=TOKEN,
                until=lambda items: True,
            )
        )
        assert events[0]["execution_events"] in ("STARTED", "RUNNING")
        time.sleep(0.3)
    finally:
        code = served.stop()
    assert code == 0
    log = (tmp_path / "serve.log").read_text()
    assert "POST /graphql 401" in log and "POST /graphql 200" in log and TOKEN not in log
    shown = subprocess.run(
        ["dipeo", "show", eid, "--json", "--db", str(served.db)], capture_output=True, text=True
    )
    state = json.loads(shown.stdout)
    assert state["status"] == "ABORTED"


async def _raw_ws_close(ws_url: str) -> int:
    import websockets

    async with websockets.connect(ws_url, subprotocols=[TRANSPORT_WS]) as ws:
        await ws.send(json.dumps({"type": "connection_init", "payload": {"token": "nope"}}))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await ws.recv()
    return closed.value.rcvd.code
