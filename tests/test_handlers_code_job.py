from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import pytest

from dipeo_cli.context import RunResources
from dipeo_cli.errors import NodeError
from dipeo_cli.handlers.code_job import CodeJobError
from tests.conftest import DIPEO_EXAMPLES, needs_examples
from tests.test_handlers_props import call, make_ctx, make_graph, run_one

EXAMPLE_CODES = DIPEO_EXAMPLES / "examples" / "codes"

# -- python --------------------------------------------------------------------------------------


def test_python_sees_inputs_by_label_inputs_and_variables() -> None:
    code = "result = {'a': a, 'keys': sorted(inputs), 'v': variables['v']}"
    output = run_one("code_job", {"code": code}, inputs={"a": 1, "b": 2}, variables={"v": "x"})
    assert output.value == {"default": {"a": 1, "keys": ["a", "b"], "v": "x"}}
    assert output.metadata["language"] == "python"


def test_python_result_dict_is_the_default_value_not_ports() -> None:
    output = run_one("code_job", {"code": "result = {'condtrue': 1}"})
    assert output.value == {"default": {"condtrue": 1}}


def test_python_json_text_inputs_are_decoded() -> None:
    output = run_one("code_job", {"code": "result = data['n'] + 1"}, inputs={"data": '{"n": 1}'})
    assert output.value["default"] == 2


def test_python_function_main_is_called_with_inputs() -> None:
    code = "def main(inputs):\n    return inputs['x'] * 10\n"
    assert run_one("code_job", {"code": code}, inputs={"x": 4}).value["default"] == 40


def test_python_function_name_prop_selects_the_function() -> None:
    code = "def process_data(d):\n    return d.get('n')\nresult = process_data(inputs)\n"
    output = run_one("code_job", {"code": code, "function_name": "process_data"}, inputs={"n": 3})
    assert output.value["default"] == 3


def test_python_without_result_gives_none() -> None:
    assert run_one("code_job", {"code": "x = 1"}).value == {"default": None}


def test_python_stdout_and_stderr_go_to_metadata() -> None:
    code = "import sys\nprint('hello')\nprint('warn', file=sys.stderr)\nresult = 1"
    output = run_one("code_job", {"code": code})
    assert output.metadata["stdout"] == "hello\n"
    assert output.metadata["stderr"] == "warn\n"


def test_python_exception_fails_the_node_with_type_message_and_line() -> None:
    code = "x = 1\nraise RuntimeError('kaboom')\n"
    with pytest.raises(CodeJobError) as caught:
        run_one("code_job", {"code": code})
    assert str(caught.value) == "RuntimeError: kaboom (line 2: raise RuntimeError('kaboom'))"
    assert isinstance(caught.value, NodeError)


def test_python_failure_keeps_what_was_printed() -> None:
    with pytest.raises(CodeJobError) as caught:
        run_one("code_job", {"code": "print('before')\n1/0"})
    assert caught.value.metadata["stdout"] == "before\n"


def test_python_runs_in_the_base_directory(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("content")
    output = run_one("code_job", {"code": "result = open('data.txt').read()"}, base_dir=tmp_path)
    assert output.value["default"] == "content"


def test_python_file_path_is_relative_to_the_base_directory(tmp_path: Path) -> None:
    (tmp_path / "codes").mkdir()
    (tmp_path / "codes" / "tool.py").write_text(
        "import helper\n\ndef main(inputs):\n    return helper.double(inputs['n'])\n"
    )
    (tmp_path / "codes" / "helper.py").write_text("def double(n):\n    return n * 2\n")
    output = run_one("code_job", {"file_path": "codes/tool.py"}, inputs={"n": 5}, base_dir=tmp_path)
    assert output.value["default"] == 10


def test_python_missing_file_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match="file not found: nope.py"):
        run_one("code_job", {"file_path": "nope.py"}, base_dir=tmp_path)


def test_python_non_json_result_is_converted_and_noted() -> None:
    output = run_one(
        "code_job", {"code": "import datetime\nresult = {'d': datetime.date(2025, 1, 2)}"}
    )
    assert output.value["default"] == {"d": "2025-01-02"}
    assert "converted with str()" in output.metadata["result_converted"]


def test_python_pool_is_one_per_run_and_closed_with_the_run() -> None:
    graph = make_graph(
        ("A", "code_job", {"code": "import os\nresult = os.getpid()"}),
        ("B", "code_job", {"code": "import os\nresult = os.getpid()"}),
    )

    async def go() -> tuple[int, int, list[int]]:
        resources = RunResources(base_dir=Path.cwd())
        a = await call(make_ctx(graph, "A", resources=resources))
        b = await call(make_ctx(graph, "B", resources=resources))
        pool = resources.service("python_pool", lambda: None, lambda _: None)
        pids = pool.pids
        await resources.close()
        return a.value["default"], b.value["default"], pids

    a_pid, b_pid, pids = asyncio.run(go())
    assert a_pid == b_pid and pids == [a_pid]
    assert not Path(f"/proc/{a_pid}").exists()


def test_python_timeout_kills_the_worker() -> None:
    graph = make_graph(
        ("Slow", "code_job", {"code": "import time\ntime.sleep(30)", "timeout": 0.3}),
        ("Next", "code_job", {"code": "result = 'ok'"}),
    )

    async def go() -> str:
        resources = RunResources(base_dir=Path.cwd())
        try:
            started = time.perf_counter()
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(call(make_ctx(graph, "Slow", resources=resources)), 0.3)
            assert time.perf_counter() - started < 2
            return (await call(make_ctx(graph, "Next", resources=resources))).value["default"]
        finally:
            await resources.close()

    assert asyncio.run(go()) == "ok"


def test_python_concurrent_nodes_share_the_pool() -> None:
    graph = make_graph(("J", "code_job", {"code": "import time\ntime.sleep(0.05)\nresult = i * i"}))

    async def go() -> list[int]:
        resources = RunResources(base_dir=Path.cwd())
        try:
            outputs = await asyncio.gather(
                *(
                    call(make_ctx(graph, "J", inputs={"i": i}, resources=resources))
                    for i in range(8)
                )
            )
            return [o.value["default"] for o in outputs]
        finally:
            await resources.close()

    assert asyncio.run(go()) == [i * i for i in range(8)]


# -- bash / sh -----------------------------------------------------------------------------------


def test_bash_inputs_are_environment_variables() -> None:
    code = 'echo "$INPUT_DEFAULT|$INPUT_MY_DATA|$INPUT_my_data|$INPUT_NOTHING|$INPUT_KEYS"'
    output = run_one(
        "code_job",
        {"language": "bash", "code": code},
        inputs={"default": "text", "my-data": {"a": 1}, "nothing": None},
    )
    assert output.value == {"default": 'text|{"a": 1}|{"a": 1}||default my-data nothing'}
    assert output.metadata["exit_code"] == 0


def test_bash_sees_variables_as_json() -> None:
    output = run_one(
        "code_job", {"language": "shell", "code": 'echo "$DIPEO_VARIABLES"'}, variables={"y": 7}
    )
    assert json.loads(output.value["default"]) == {"y": 7}


def test_bash_stdout_is_stripped_and_stderr_kept_in_metadata() -> None:
    output = run_one("code_job", {"language": "bash", "code": "echo '  out  '\necho err >&2\n"})
    assert output.value["default"] == "out"
    assert output.metadata["stderr"] == "err\n"


def test_bash_non_zero_exit_fails_with_the_end_of_stderr() -> None:
    code = "echo one >&2\necho two >&2\nexit 3\n"
    with pytest.raises(CodeJobError, match=r"^exit code 3: one \| two$"):
        run_one("code_job", {"language": "bash", "code": code})


def test_sh_language_and_script_file_in_the_base_directory(tmp_path: Path) -> None:
    (tmp_path / "run.sh").write_text('pwd\necho "$INPUT_NAME"\n')
    output = run_one(
        "code_job",
        {"language": "sh", "file_path": "run.sh"},
        inputs={"name": "n"},
        base_dir=tmp_path,
    )
    assert output.value["default"].splitlines() == [str(tmp_path.resolve()), "n"]


def test_bash_cancellation_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "pids"
    code = f"sleep 30 &\necho $! > {marker}\nwait\n"
    graph = make_graph(("Slow", "code_job", {"language": "bash", "code": code}))

    async def go() -> int:
        ctx = make_ctx(graph, "Slow", base_dir=tmp_path)
        task = asyncio.ensure_future(call(ctx))
        for _ in range(200):
            if marker.exists() and marker.read_text().strip():
                break
            await asyncio.sleep(0.02)
        started = time.perf_counter()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.perf_counter() - started < 2
        return int(marker.read_text())

    child = asyncio.run(go())
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{child}/stat").read_text().split()[2] == "Z":
                break
        except FileNotFoundError:
            break
        time.sleep(0.02)
    else:
        pytest.fail(f"background process {child} survived the cancellation")


# -- file_path and function_name -----------------------------------------------------------------


def test_python_file_function_name_missing_lists_the_functions(tmp_path: Path) -> None:
    (tmp_path / "tool.py").write_text("def main(i):\n    pass\n\ndef other(i):\n    pass\n")
    props = {"file_path": "tool.py", "function_name": "nope"}
    with pytest.raises(
        CodeJobError,
        match=r"^function 'nope' not found in tool.py \(functions defined: main, other\)$",
    ):
        run_one("code_job", props, base_dir=tmp_path)


@needs_examples
def test_dipeo_example_python_file_with_function_name(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE_CODES / "example_python.py", tmp_path / "example.py")
    props = {"file_path": "example.py", "functionName": "process_text"}
    output = run_one("code_job", props, inputs={"text": "shout"}, base_dir=tmp_path)
    assert output.value["default"] == "SHOUT"
    output = run_one(
        "code_job", {"file_path": "example.py"}, inputs={"numbers": [1, 2, 3]}, base_dir=tmp_path
    )
    assert output.value["default"]["sum"] == 6


@needs_examples
def test_dipeo_example_bash_file(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE_CODES / "example_bash.sh", tmp_path / "example.sh")
    props = {"language": "bash", "file_path": "example.sh"}
    output = run_one(
        "code_job", props, inputs={"data_source": "db", "text": "hello"}, base_dir=tmp_path
    )
    lines = output.value["default"].splitlines()
    report = json.loads("\n".join(lines[lines.index("{") :]))
    assert report["data_source"] == "db" and report["processed_text"] == "HELLO"


def test_missing_code_file_fails_at_run_time_for_every_language(tmp_path: Path) -> None:
    for language in ("python", "bash"):
        with pytest.raises(NodeError, match=r"^code file not found: codes/x\.src \(relative"):
            run_one(
                "code_job", {"language": language, "file_path": "codes/x.src"}, base_dir=tmp_path
            )
    (tmp_path / "folder").mkdir()
    with pytest.raises(NodeError, match="^code file_path is not a file: folder$"):
        run_one("code_job", {"file_path": "folder"}, base_dir=tmp_path)
