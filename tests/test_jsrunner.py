"""code_job in javascript and typescript: runtime lookup, validation, and real runs.

JavaScript runs on the `node` found on PATH (skipped without one). TypeScript runs on tsx: the
one on PATH, else one this module installs with npm into a temporary directory (skipped when
npm is missing or the install fails, or when DIPEO_TEST_NO_NPM is set).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

from dipeo_cli import jsrunner
from dipeo_cli.errors import NodeError
from dipeo_cli.handlers.code_job import CodeJobError
from tests.conftest import DIPEO_EXAMPLES, needs_examples
from tests.test_handlers_props import call, compile_problem, make_ctx, make_graph, run_one

EXAMPLE_CODES = DIPEO_EXAMPLES / "examples" / "codes"
needs_node = pytest.mark.skipif(shutil.which("node") is None, reason="node is not on PATH")


def fake_bin(folder: Path, name: str, version_output: str = "") -> Path:
    """An executable `name` in `folder` that prints `version_output`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho '{version_output}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def js(code: str, **kwargs):
    return run_one("code_job", {"language": "javascript", "code": code}, **kwargs)


# -- runtime lookup ------------------------------------------------------------------------------


def test_typescript_prefers_tsx_then_deno_then_bun(tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))
    fake_bin(bin_dir, "bun")
    assert jsrunner.find_runtime("typescript").name == "bun"  # type: ignore[union-attr]
    fake_bin(bin_dir, "deno")
    runtime = jsrunner.find_runtime("typescript")
    assert runtime is not None and runtime.name == "deno"
    assert runtime.argv("r.mjs") == [
        str(bin_dir / "deno"),
        "run",
        "-A",
        "--quiet",
        "--no-prompt",
        "r.mjs",
    ]
    fake_bin(bin_dir, "tsx")
    assert jsrunner.find_runtime("typescript").argv("r.mjs") == [str(bin_dir / "tsx"), "r.mjs"]  # type: ignore[union-attr]


def test_typescript_uses_node_only_when_it_strips_types(tmp_path: Path, monkeypatch) -> None:
    for version, expected in [
        ("v20.11.0", None),
        ("v22.5.1", None),
        ("v22.6.0", ("--experimental-strip-types", "--disable-warning=ExperimentalWarning")),
        ("v23.6.0", ("--disable-warning=ExperimentalWarning",)),
    ]:
        bin_dir = tmp_path / version
        fake_bin(bin_dir, "node", version)
        monkeypatch.setenv("PATH", str(bin_dir))
        runtime = jsrunner.find_runtime("typescript")
        if expected is None:
            assert runtime is None, version
            message = jsrunner.missing_runtime_message("typescript")
            assert message.endswith(f"(node {version} is on PATH, too old to run typescript)")
        else:
            assert runtime is not None and runtime.args == expected, version
            assert runtime.version == version


def test_javascript_prefers_node_then_deno_then_bun(tmp_path: Path, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    monkeypatch.setenv("PATH", str(bin_dir))
    assert jsrunner.find_runtime("javascript") is None
    fake_bin(bin_dir, "bun")
    assert jsrunner.find_runtime("javascript").name == "bun"  # type: ignore[union-attr]
    fake_bin(bin_dir, "deno")
    assert jsrunner.find_runtime("javascript").name == "deno"  # type: ignore[union-attr]
    fake_bin(bin_dir, "node", "v18.0.0")  # any node runs javascript
    assert jsrunner.find_runtime("javascript").name == "node"  # type: ignore[union-attr]


def test_a_project_local_tsx_counts(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    local = fake_bin(tmp_path / "node_modules" / ".bin", "tsx")
    assert jsrunner.find_runtime("typescript") is None
    runtime = jsrunner.find_runtime("typescript", tmp_path)
    assert runtime is not None and runtime.path == str(local)


def test_no_runtime_is_a_validation_error_naming_what_to_install(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    for language in ("typescript", "TS"):
        message = compile_problem("code_job", {"language": language, "code": "result = 1"})
        assert (
            "property 'language': typescript code needs a runtime: install tsx "
            "(npm install -g tsx), deno or bun, or use node >= 22.6"
        ) in message
    message = compile_problem("code_job", {"language": "JavaScript", "file_path": "x.js"})
    assert (
        "property 'language': javascript code needs a runtime: install node "
        "(https://nodejs.org), deno or bun"
    ) in message


def test_function_name_must_be_a_name() -> None:
    message = compile_problem("code_job", {"code": "result = 1", "function_name": "a-b"})
    assert "property 'function_name': function_name 'a-b' is not a valid name" in message


# -- javascript on node --------------------------------------------------------------------------


@needs_node
def test_inputs_are_consts_by_label_with_inputs_and_variables() -> None:
    code = "result = {sum: a + b.n, keys: Object.keys(inputs), v: variables.v}"
    output = js(code, inputs={"a": 1, "b": '{"n": 2}', "not-a-name": 3}, variables={"v": "x"})
    assert output.value == {"default": {"sum": 3, "keys": ["a", "b", "not-a-name"], "v": "x"}}
    assert output.metadata["language"] == "javascript"
    assert output.metadata["runtime"] == "node"


@needs_node
def test_declared_result_and_shadowed_inputs_work() -> None:
    code = "const data = inputs.data || {};\nconst result = data.n * 2;"
    assert js(code, inputs={"data": {"n": 21}}).value["default"] == 42


@needs_node
def test_top_level_return_and_await() -> None:
    code = "await new Promise((r) => setTimeout(r, 5));\nreturn [x, 'done'];"
    assert js(code, inputs={"x": 1}).value["default"] == [1, "done"]


@needs_node
def test_function_main_is_called_with_inputs_and_awaited() -> None:
    code = "async function main(inputs) { return inputs.n + 1 }"
    assert js(code, inputs={"n": 1}).value["default"] == 2
    code = "function shout(i) { return i.text.toUpperCase() }\nresult = 'unused'"
    output = run_one(
        "code_job",
        {"language": "js", "code": code, "function_name": "shout"},
        inputs={"text": "hi"},
    )
    assert output.value["default"] == "HI"


@needs_node
def test_no_result_gives_none() -> None:
    assert js("const x = 1").value == {"default": None}


@needs_node
def test_console_output_goes_to_metadata_not_the_result() -> None:
    code = "console.log('hello');\nconsole.error('warn');\nresult = {ok: true}"
    output = js(code)
    assert output.value["default"] == {"ok": True}
    assert output.metadata["stdout"] == "hello\n"
    assert output.metadata["stderr"] == "warn\n"


@needs_node
def test_imports_and_require_work_in_inline_code() -> None:
    code = "import path from 'node:path';\nconst os = require('node:os');\nresult = [path.sep, typeof os.cpus]"
    assert js(code).value["default"] == ["/", "function"]


@needs_node
def test_inline_module_with_exports_calls_the_exported_function() -> None:
    code = "export function main(inputs) { return inputs.n * 5 }\nexport function other() {}"
    assert js(code, inputs={"n": 2}).value["default"] == 10
    with pytest.raises(
        CodeJobError, match=r"^function 'main' not found in the code \(it exports: other\)$"
    ):
        js("export function other() {}")


@needs_node
def test_thrown_error_fails_with_type_message_and_user_line() -> None:
    with pytest.raises(CodeJobError) as caught:
        js("const x = 1;\nthrow new RangeError('kaboom');\n")
    assert str(caught.value) == "RangeError: kaboom (line 2: throw new RangeError('kaboom');)"
    with pytest.raises(CodeJobError, match=r"^TypeError: .*null.* \(line 3: null\.foo;\)$"):
        js("// comment\nimport fs from 'node:fs';\nnull.foo;")
    with pytest.raises(CodeJobError, match=r"^the code threw \"str\"$"):
        js("throw 'str'")


@needs_node
def test_syntax_error_names_the_line() -> None:
    with pytest.raises(CodeJobError, match=r"^SyntaxError: .*'bar'.* \(line 2: foo bar;\)$"):
        js("let x = 1;\nfoo bar;")


@needs_node
def test_exit_without_result_fails_and_keeps_the_output() -> None:
    with pytest.raises(CodeJobError) as caught:
        js("console.log('bye');\nprocess.exit(3)")
    assert str(caught.value).startswith(
        "the process ended (exit code 3) before the code returned a result"
    )
    assert caught.value.metadata["stdout"] == "bye\n"
    assert caught.value.metadata["exit_code"] == 3


@needs_node
def test_values_json_cannot_hold_are_converted_and_noted() -> None:
    output = js("result = {big: 10n, set: new Set([1]), map: new Map([['k', 2]])}")
    assert output.value["default"] == {"big": "10", "set": [1], "map": {"k": 2}}
    assert "converted" in output.metadata["result_converted"]
    with pytest.raises(CodeJobError, match="the result cannot be converted to JSON"):
        js("const o = {}; o.self = o; result = o")


@needs_node
def test_large_inputs_travel_on_stdin() -> None:
    big = "x" * 3_000_000  # far beyond what argv or the environment can hold
    assert js("result = blob.length", inputs={"blob": big}).value["default"] == 3_000_000


@needs_node
def test_runs_in_the_base_directory(tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("content")
    code = "const fs = require('node:fs');\nresult = fs.readFileSync('data.txt', 'utf8')"
    assert js(code, base_dir=tmp_path).value["default"] == "content"


@needs_node
def test_file_path_esm_module_with_relative_import(tmp_path: Path) -> None:
    (tmp_path / "codes").mkdir()
    (tmp_path / "codes" / "helper.mjs").write_text("export const double = (n) => n * 2;\n")
    (tmp_path / "codes" / "tool.mjs").write_text(
        "import { double } from './helper.mjs';\n"
        "export function main(inputs) { return double(inputs.n) }\n"
        "export async function triple(inputs) { return inputs.n * 3 }\n"
    )
    props = {"language": "js", "file_path": "codes/tool.mjs"}
    assert run_one("code_job", props, inputs={"n": 5}, base_dir=tmp_path).value["default"] == 10
    props["function_name"] = "triple"
    assert run_one("code_job", props, inputs={"n": 5}, base_dir=tmp_path).value["default"] == 15
    props["function_name"] = "zz"
    with pytest.raises(
        CodeJobError,
        match=r"^function 'zz' not found in codes/tool.mjs \(it exports: main, triple\)$",
    ):
        run_one("code_job", props, base_dir=tmp_path)


@needs_node
def test_file_path_commonjs_module(tmp_path: Path) -> None:
    (tmp_path / "tool.cjs").write_text(
        "function main(inputs) { return `hi ${inputs.name}` }\nmodule.exports = { main };\n"
    )
    props = {"language": "javascript", "file_path": "tool.cjs"}
    output = run_one("code_job", props, inputs={"name": "Ada"}, base_dir=tmp_path)
    assert output.value["default"] == "hi Ada"


@needs_node
def test_error_in_a_file_names_the_files_line(tmp_path: Path) -> None:
    (tmp_path / "bad.mjs").write_text("export function main() {\n  return null.x;\n}\n")
    props = {"language": "js", "file_path": "bad.mjs"}
    with pytest.raises(CodeJobError, match=r"\(line 2: return null\.x;\)$"):
        run_one("code_job", props, base_dir=tmp_path)


@needs_node
def test_missing_file_fails_at_run_time_naming_it(tmp_path: Path) -> None:
    with pytest.raises(NodeError, match=r"^code file not found: nope\.js \(relative paths are"):
        run_one("code_job", {"language": "js", "file_path": "nope.js"}, base_dir=tmp_path)


@needs_node
def test_cancellation_kills_the_whole_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    code = (
        "const { spawn } = require('node:child_process');\n"
        "const child = spawn('sleep', ['30'], { stdio: 'ignore' });\n"
        f"require('node:fs').writeFileSync({json.dumps(str(marker))}, String(child.pid));\n"
        "await new Promise(() => {});\n"
    )
    graph = make_graph(("Slow", "code_job", {"language": "js", "code": code}))

    async def go() -> int:
        ctx = make_ctx(graph, "Slow", base_dir=tmp_path)
        task = asyncio.ensure_future(call(ctx))
        for _ in range(250):
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
        pytest.fail(f"child process {child} survived the cancellation")


# -- typescript on tsx ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tsx_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A directory holding a `tsx` executable: the one on PATH, or one installed with npm."""
    found = shutil.which("tsx")
    if found:
        return str(Path(found).parent)
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        pytest.skip("typescript tests need tsx on PATH, or node and npm to install it")
    if os.environ.get("DIPEO_TEST_NO_NPM"):
        pytest.skip("DIPEO_TEST_NO_NPM is set: not installing tsx")
    folder = tmp_path_factory.mktemp("tsx")
    command = [npm, "install", "--no-save", "--no-audit", "--no-fund", "--loglevel=error"]
    try:
        done = subprocess.run(
            [*command, "--prefix", str(folder), "tsx@4"],
            capture_output=True,
            text=True,
            timeout=45,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"could not install tsx with npm: {exc}")
    bin_dir = folder / "node_modules" / ".bin"
    if done.returncode != 0 or not (bin_dir / "tsx").exists():
        pytest.skip(f"could not install tsx with npm: {done.stderr.strip()[-300:]}")
    return str(bin_dir)


@pytest.fixture
def with_tsx(tsx_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", tsx_dir + os.pathsep + os.environ.get("PATH", ""))


def ts(code: str, **kwargs):
    return run_one("code_job", {"language": "typescript", "code": code}, **kwargs)


@pytest.mark.usefixtures("with_tsx")
def test_typescript_inline_code_with_types() -> None:
    code = (
        "interface Reading { city: string; temp: number }\n"
        "const rows: Reading[] = readings;\n"
        "console.log(`got ${rows.length}`);\n"
        "const result: number = Math.max(...rows.map((r: Reading) => r.temp));\n"
    )
    output = ts(code, inputs={"readings": [{"city": "a", "temp": 3}, {"city": "b", "temp": 9}]})
    assert output.value["default"] == 9
    assert output.metadata["runtime"] == "tsx"
    assert output.metadata["stdout"] == "got 2\n"


@pytest.mark.usefixtures("with_tsx")
def test_typescript_errors_name_the_user_line() -> None:
    with pytest.raises(CodeJobError, match=r"^TypeError: .* \(line 2: \(null as any\)\.foo;\)$"):
        ts("const x: number = 1;\n(null as any).foo;")
    with pytest.raises(CodeJobError, match=r"^SyntaxError: .* \(line 2: foo bar;\)$"):
        ts("let x: number = 1;\nfoo bar;")


@needs_examples
@pytest.mark.usefixtures("with_tsx")
def test_typescript_dipeo_example_file_and_function_name(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE_CODES / "example_typescript.ts", tmp_path / "example.ts")
    props = {"language": "ts", "file_path": "example.ts"}
    output = run_one(
        "code_job", props, inputs={"data_source": "db", "items": [1, "a"]}, base_dir=tmp_path
    )
    value = output.value["default"]
    assert value["message"] == "TypeScript processed data from: db"
    assert value["processedData"]["itemCount"] == 2
    props["function_name"] = "processJson"
    output = run_one("code_job", props, inputs={"json_data": '{"k": 1}'}, base_dir=tmp_path)
    assert output.value["default"] == {"success": True, "data": {"k": 1}, "keys": ["k"]}
    props["function_name"] = "missing"
    with pytest.raises(
        CodeJobError,
        match=r"function 'missing' not found in example.ts \(it exports: main, processJson\)",
    ):
        run_one("code_job", props, base_dir=tmp_path)


# -- the example diagram -------------------------------------------------------------------------


@needs_node
def test_code_languages_example_runs_python_bash_and_javascript() -> None:
    from typer.testing import CliRunner

    from dipeo_cli.cli import app
    from tests.conftest import REPO

    path = REPO / "diagrams" / "code_languages.light.yaml"
    result = CliRunner().invoke(app, ["run", str(path), "--json", "-i", 'words=["tea", "jam"]'])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["result"] == "by length: tea, jam; 2 words; TEA JAM"
