"""hook: shell commands as real subprocesses, webhooks against a real HTTP server on 127.0.0.1,
files written for real."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dipeo_cli import http_calls
from dipeo_cli.cli import app
from dipeo_cli.errors import NodeError, NodeTimeoutError
from dipeo_cli.handlers import hook
from tests.httpkit import TestServer, serve
from tests.test_handlers_props import compile_problem, make_ctx, make_graph

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_calls, "RETRY_BASE_DELAY", 0.01)


@pytest.fixture
def server() -> Iterator[TestServer]:
    with serve() as running:
        yield running


def call(props: dict[str, Any], *, inputs=None, variables=None, base_dir=None) -> Any:
    graph = make_graph(("Hook", "hook", props))
    ctx = make_ctx(graph, "Hook", inputs=inputs, variables=variables, base_dir=base_dir)

    async def go():
        try:
            return await hook.hook(graph.node_by_label("Hook"), ctx)
        finally:
            await ctx.resources.close()

    return asyncio.run(go())


# -- shell -------------------------------------------------------------------------------------


def test_shell_sees_inputs_as_environment_and_its_json_stdout_is_the_output():
    out = call(
        {
            "hook_type": "shell",
            "command": 'printf \'{"who": "%s", "n": %s, "cfg": %s, "node": "%s"}\' '
            '"$DIPEO_INPUT_NAME" "$DIPEO_INPUT_COUNT" "$DIPEO_INPUT_MY_CFG" "$DIPEO_NODE"',
        },
        inputs={"default": {"name": "Ada", "count": 2}, "my-cfg": {"deep": [1]}},
    )
    assert out.value == {"default": {"who": "Ada", "n": 2, "cfg": {"deep": [1]}, "node": "Hook"}}
    assert out.metadata["exit_code"] == 0 and out.metadata["attempts"] == 1


def test_shell_text_output_and_argv_lists_run_without_a_shell():
    out = call({"hook_type": "shell", "command": ["echo", "$NOT_EXPANDED", "a b"]})
    assert out.value == {"default": "$NOT_EXPANDED a b"}
    out = call({"hook_type": "shell", "command": "printf", "args": ["%s-%s", "x", "y z"]})
    assert out.value == {"default": "x-y z"}


def test_shell_runs_in_the_base_directory_with_execution_id(tmp_path):
    out = call(
        {"hook_type": "shell", "command": 'echo "$(pwd)|$DIPEO_EXECUTION_ID|$DIPEO_INPUTS"'},
        inputs={"default": "hi"},
        base_dir=tmp_path,
    )
    cwd, execution_id, inputs = out.value["default"].split("|")
    assert Path(cwd).resolve() == tmp_path.resolve()
    assert execution_id == "exec-test" and json.loads(inputs) == {"default": "hi"}


def test_shell_non_zero_exit_fails_with_stderr():
    with pytest.raises(hook.HookError) as caught:
        call({"hook_type": "shell", "command": "echo partial; echo 'it broke' >&2; exit 3"})
    assert str(caught.value) == "hook command failed: exit code 3: it broke"
    assert caught.value.metadata["stdout"].strip() == "partial"
    assert caught.value.metadata["exit_code"] == 3


def test_shell_missing_program_fails_clearly():
    with pytest.raises(NodeError, match="hook command not found: no-such-program-xyz"):
        call({"hook_type": "shell", "command": ["no-such-program-xyz"]})


def test_shell_retry_count_retries_a_failing_command(tmp_path):
    counter = tmp_path / "count"
    command = f"n=$(cat {counter} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {counter}; [ $n -ge 3 ] && echo done"
    out = call({"hook_type": "shell", "command": command, "retry_count": 2})
    assert out.value == {"default": "done"}
    assert out.metadata["attempts"] == 3
    counter.write_text("-5")
    with pytest.raises(hook.HookError, match=r"after 2 attempts\): exit code 1"):
        call({"hook_type": "shell", "command": command, "retry_count": 1})


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    return "\nState:\tZ" not in status


def test_shell_timeout_kills_the_whole_process_group(tmp_path):
    pid_file = tmp_path / "child.pid"
    started = time.monotonic()
    with pytest.raises(NodeTimeoutError, match=r"timed out after 0.3 s"):
        call(
            {
                "hook_type": "shell",
                "command": f"sleep 30 & echo $! > {pid_file}; wait",
                "timeout": 0.3,
            }
        )
    assert time.monotonic() - started < 5
    child = int(pid_file.read_text())
    deadline = time.monotonic() + 2
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not _alive(child)


# -- http --------------------------------------------------------------------------------------


def test_http_posts_the_inputs_as_json(server):
    server.script("/hook", (200, {"received": True}, {}))
    out = call(
        {"hook_type": "webhook", "url": server.url("/{{path}}"), "headers": {"X-Team": "{{team}}"}},
        inputs={"default": {"path": "hook", "n": 1}, "extra": "text"},
        variables={"team": "infra"},
    )
    [request] = server.requests
    assert request.method == "POST" and request.path == "/hook"
    assert request.json() == {"default": {"path": "hook", "n": 1}, "extra": "text"}
    assert request.headers["X-Team"] == "infra"
    assert request.headers["X-DiPeO-Node"] == "Hook"
    assert request.headers["X-DiPeO-Execution-Id"] == "exec-test"
    assert out.value == {"default": {"received": True}}
    assert out.metadata["http"]["status"] == 200


def test_http_retries_server_errors_then_fails(server):
    server.script("/hook", (500, "down", {}))
    with pytest.raises(NodeError, match=r"HTTP 500 Internal Server Error from POST .*/hook: down"):
        call({"hook_type": "http", "url": server.url("/hook"), "retry_count": 1})
    assert len(server.hits("/hook")) == 2


def test_http_timeout(server):
    server.script("/slow", (200, "late", {}, 2.0))
    with pytest.raises(NodeTimeoutError, match="timed out after 0.2 s"):
        call({"hook_type": "http", "url": server.url("/slow"), "timeout": 0.2})


# -- file --------------------------------------------------------------------------------------


def test_file_writes_the_inputs_as_json(tmp_path):
    out = call(
        {"hook_type": "file", "file_path": "out/{{name}}/hook.json"},
        inputs={"default": {"name": "run1", "values": [1, 2]}},
        base_dir=tmp_path,
    )
    written = json.loads((tmp_path / "out" / "run1" / "hook.json").read_text())
    assert written == {
        "inputs": {"default": {"name": "run1", "values": [1, 2]}},
        "node": "Hook",
        "node_id": "Hook",
        "execution_id": "exec-test",
    }
    assert out.value == {"default": written}
    assert out.metadata["path"] == str(Path("out/run1/hook.json"))


# -- validation and the example ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("props", "expected"),
    [
        ({}, "property 'hook_type': required property is missing"),
        ({"hook_type": ""}, "property 'hook_type': a hook needs a hook_type (shell, http or file)"),
        ({"hook_type": "python"}, "python hooks are not supported; use a code_job"),
        ({"hook_type": "ftp"}, "unknown hook_type 'ftp' (use shell, http or file)"),
        ({"hook_type": "shell"}, "property 'command': a shell hook needs a command"),
        ({"hook_type": "http"}, "property 'url': an http hook needs a url"),
        ({"hook_type": "http", "url": "ftp://x"}, "property 'url': the url must start with http"),
        ({"hook_type": "http", "url": "http://x", "method": "GET"}, "property 'method'"),
        ({"hook_type": "file"}, "property 'file_path': a file hook needs a file_path"),
        ({"hook_type": "shell", "command": "true", "timeout": -1}, "property 'timeout'"),
        ({"hook_type": "shell", "command": "true", "retry_count": 99}, "property 'retry_count'"),
    ],
)
def test_validation_names_the_property(props, expected):
    assert expected in compile_problem("hook", props)


def test_the_example_diagram_runs(isolated):
    result = CliRunner().invoke(
        app,
        ["run", str(REPO / "diagrams" / "hooks.light.yaml"), "--json", "-i", "name=Ada"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"] == {"greeting": "Hello, Ada!", "count": 3}
    written = json.loads((isolated / "results" / "hook.json").read_text())
    assert written["inputs"] == {"default": {"greeting": "Hello, Ada!", "count": 3}}
    assert written["node"] == "Record"
