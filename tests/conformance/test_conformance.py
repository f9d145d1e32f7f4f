"""Conformance: DiPeO's offline behaviours (reference §9) and its shipped offline diagrams, run
through the CLI as a user runs them, asserting what a user should get from this runner.

Each §9 case is a fixture in `diagrams/`, written as DiPeO users write light YAML (positions,
`trigger_mode: manual`, `content_type: raw_text` on every connection as DiPeO's exporter writes,
endpoints saving under `files/results/`). Where DiPeO's observed behaviour (reference §9, §8) is a
bug, the test asserts the behaviour DESIGN.md §2 fixes and says what DiPeO did.

A rule that matters for reading the expected values: `content_type: raw_text` turns dicts and
lists into JSON text on the arrow (DESIGN §2 "Data on arrows"). Code jobs, templates, conditions
and endpoints decode text that holds a JSON object or array back into the object, so results
and saved files hold the data, as a user expects.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from dipeo_cli.cli import app
from dipeo_cli.diagram import load_diagram
from dipeo_cli.errors import DiagramError
from tests.conftest import DIPEO_EXAMPLES, needs_examples

HERE = Path(__file__).resolve().parent
DIAGRAMS = HERE / "diagrams"
EXAMPLES = DIPEO_EXAMPLES / "examples"


def fixture(case: int) -> str:
    [path] = DIAGRAMS.glob(f"t{case}_*.light.yaml")
    return str(path)


def run(diagram: str, *args: str) -> tuple[int, dict[str, Any]]:
    """`dipeo run DIAGRAM --json ARGS`: the exit code and the JSON object on stdout."""
    result = CliRunner().invoke(app, ["run", diagram, "--json", *args], catch_exceptions=False)
    assert "Traceback" not in result.output
    return result.exit_code, json.loads(result.stdout)


def show(execution_id: str) -> dict[str, Any]:
    result = CliRunner().invoke(app, ["show", execution_id, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def history() -> list[dict[str, Any]]:
    result = CliRunner().invoke(app, ["history", "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def states(shown: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Node states by label."""
    return {s["label"]: s for s in shown["node_states"].values()}


def outputs(shown: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Node outputs (`value` + `metadata`) by label."""
    labels = {nid: s["label"] for nid, s in shown["node_states"].items()}
    return {labels[nid]: out for nid, out in shown["node_outputs"].items()}


def summary(shown: dict[str, Any]) -> dict[str, tuple[str, int]]:
    """label -> (status, iterations): the shape of the run."""
    return {label: (s["status"], s["iterations"]) for label, s in states(shown).items()}


def results(name: str) -> Path:
    return Path("files", "results", name)


def read_json(name: str) -> Any:
    return json.loads(results(name).read_text(encoding="utf-8"))


# -- §9.1 start data, labels, endpoint values ------------------------------------------------

INSPECTED = {"x": 5, "name": "alice", "y": 7}


def test_9_1_start_data_labels_and_endpoint_values():
    code, out = run(fixture(1), "--input-data", '{"y": 7}')
    assert code == 0, out
    assert out["status"] == "COMPLETED" and out["error"] is None

    # Start outputs {**custom_data, **variables}; each arrow delivers that dict (as JSON text,
    # raw_text), and the code job decodes it into a local named by the arrow's label.
    # DiPeO wrapped it once more: its Inspect saw default = {"default": {"y": 7, "x": 5, ...}}.
    # `variables` holds the execution variables. DiPeO has no such name, and its `globals` was
    # shadowed to None by its wrapper (the reference's probe printed "globals": null).
    expected = {"keys": ["cfg", "default"], "default": INSPECTED, "cfg": INSPECTED}
    expected["variables"] = {"y": 7}

    # An endpoint with one labelled input keeps the label (DiPeO's rule, DESIGN §2): only an
    # unlabelled (`default`) input is unwrapped. DiPeO wrote {"payload": {...}} too.
    assert read_json("t1_out.json") == {"payload": expected}
    # Unlabelled arrow into a code job: the local is `default`; `inputs` holds only the inputs.
    assert results("t1_out2.txt").read_text(encoding="utf-8") == "text-['default']"

    # Two endpoints ran: the result is a dict by endpoint label. End's value came over a
    # raw_text arrow as JSON text; the endpoint decodes it back into the dict.
    assert set(out["result"]) == {"End", "End2"}
    assert out["result"]["End"] == {"payload": expected}
    assert out["result"]["End2"] == "text-['default']"

    shown = show(out["id"])
    assert outputs(shown)["Start"]["value"] == {"default": INSPECTED}
    assert shown["variables"] == {"y": 7}
    assert {label: s["status"] for label, s in states(shown).items()} == dict.fromkeys(
        ["Start", "Inspect", "End", "Inspect2", "End2"], "COMPLETED"
    )


def test_9_1_command_line_variables_beat_custom_data():
    # DiPeO's manual start lets custom_data win on collisions ({**input_variables,
    # **custom_data}), so `--input-data '{"x": 9}'` was ignored. DESIGN §2: CLI input beats the
    # diagram's defaults.
    code, out = run(fixture(1), "--input-data", '{"x": 9}')
    assert code == 0, out
    assert read_json("t1_out.json")["payload"]["default"] == {"x": 9, "name": "alice"}


# -- §9.2 a code job that raises -------------------------------------------------------------


def test_9_2_code_error_fails_the_node_and_the_run():
    # DiPeO exits 0 with "Execution Successful" and writes "kaboom" into the endpoint's file:
    # the error is swallowed into an output. A runner trusted in CI must fail: the node is
    # FAILED with the error, the run ends FAILED (exit 1), nothing downstream runs, and the
    # history keeps it.
    code, out = run(fixture(2))
    assert code == 1
    assert out["status"] == "FAILED"
    assert out["error"].startswith("node 'Boom' failed: RuntimeError: kaboom")
    assert out["result"] is None
    assert not results("t2_out.txt").exists()

    shown = show(out["id"])
    assert shown["status"] == "FAILED"
    node = states(shown)
    assert node["Start"]["status"] == "COMPLETED"
    assert node["Boom"]["status"] == "FAILED"
    assert node["Boom"]["error"].startswith("RuntimeError: kaboom")
    assert node["End"]["status"] == "SKIPPED"
    assert node["End"]["skip_reason"] == "upstream node 'Boom' failed"
    [entry] = history()
    assert entry["id"] == out["id"] and entry["status"] == "FAILED"
    assert "kaboom" in entry["error"]


def test_9_2_continue_on_error_is_dipeos_behaviour_but_still_fails_the_run():
    # --continue-on-error lets the error flow on as an output (so the file holds the error, as
    # in DiPeO), but the execution still ends FAILED: a failure is never reported as success.
    code, out = run(fixture(2), "--continue-on-error")
    assert code == 1
    assert out["status"] == "FAILED"
    assert "kaboom" in results("t2_out.txt").read_text(encoding="utf-8")
    assert states(show(out["id"]))["End"]["status"] == "COMPLETED"


# -- §9.3 a loop closed through a condition ----------------------------------------------------


def loop_file(skippable: bool) -> str:
    data = yaml.safe_load(Path(fixture(3)).read_text(encoding="utf-8"))
    if skippable:
        [check] = [n for n in data["nodes"] if n["label"] == "Check"]
        check["skippable"] = True
    path = Path("t3_loop_skippable.light.yaml" if skippable else "t3_loop.light.yaml")
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("skippable", [False, True], ids=["not-skippable", "skippable"])
def test_9_3_loop_runs_whether_or_not_the_condition_is_skippable(skippable):
    # DiPeO: without `skippable: true` on Check only Start runs, then the run times out (exit 1);
    # with it, the loop runs. Here the loop is found when the diagram compiles, so Count's first
    # execution does not wait for the arrow that closes the loop: it runs either way.
    code, out = run(loop_file(skippable))
    assert code == 0, out

    # The condition passes its one input on unchanged, so Count sees {"n": k} on every round
    # (and records it in `seen`). DiPeO gave Count {"default": {"n": 0}} on its first round and
    # {"state": {...}} afterwards, and its End wrote {"state": {"n": 3, ...}}.
    expected = {"n": 3, "seen": {"n": 2, "seen": {"n": 1, "seen": {"n": 0}}}}
    assert read_json("t3_out.json") == expected
    assert out["result"] == expected

    shown = show(out["id"])
    assert summary(shown) == {
        "Start": ("COMPLETED", 1),
        "Count": ("COMPLETED", 3),
        "Check": ("COMPLETED", 3),
        "End": ("COMPLETED", 1),
    }
    assert outputs(shown)["Check"]["metadata"]["result"] is True


def test_a_condition_reads_the_keys_of_a_raw_text_default_input():
    # DiPeO's exporter puts `content_type: raw_text` on every connection, so the start's dict
    # reaches the condition as JSON text; the expression still reads its keys by name.
    Path("score.light.yaml").write_text(
        "version: light\n"
        "nodes:\n"
        "- {label: Start, type: start, trigger_mode: manual, custom_data: {score: 42}}\n"
        "- {label: Passed, type: condition, condition_type: custom, expression: score >= 50}\n"
        "- {label: Pass, type: endpoint}\n"
        "- {label: Fail, type: endpoint}\n"
        "connections:\n"
        "- {from: Start, to: Passed, content_type: raw_text}\n"
        "- {from: 'Passed[condtrue]', to: Pass, content_type: raw_text}\n"
        "- {from: 'Passed[condfalse]', to: Fail, content_type: raw_text}\n",
        encoding="utf-8",
    )
    code, out = run("score.light.yaml")
    assert code == 0, out
    assert out["result"] == {"score": 42}
    assert states(show(out["id"]))["Pass"]["status"] == "SKIPPED"
    code, out = run("score.light.yaml", "-i", "score=80")
    assert code == 0, out
    assert out["result"] == {"score": 80}
    assert states(show(out["id"]))["Fail"]["status"] == "SKIPPED"


# -- §9.4 parallel branches, a join by label, db ------------------------------------------------


def test_9_4_parallel_join_and_db_write_append_read():
    code, out = run(fixture(4))
    assert code == 0, out

    # B is a bash job: INPUT_KEYS lists the input labels. DiPeO listed its own internals too
    # ("keys=default inputs node_id globals").
    row = {"left": {"a": 1}, "right": "keys=default"}
    assert read_json("t4_db.json") == row
    assert read_json("t4_list.json") == [row]
    # Two inputs: the endpoint's value is the dict by label. Each came over a raw_text arrow as
    # JSON text and is decoded: the row read back, and the list after the append (DiPeO said
    # "Appendd to files/results/t4_list.json (0 bytes)", sic).
    end = {"readback": row, "appended": [row]}
    assert read_json("t4_end.json") == end
    assert out["result"] == end

    shown = show(out["id"])
    node = states(shown)
    assert all(s["status"] == "COMPLETED" for s in node.values())

    # A (sleeps 0.3 s) and B ran at the same time; C waited for both.
    def at(label: str, key: str) -> datetime:
        return datetime.fromisoformat(node[label][key])

    assert at("B", "started_at") < at("A", "ended_at")
    assert at("A", "started_at") < at("B", "ended_at")
    assert at("C", "started_at") >= max(at("A", "ended_at"), at("B", "ended_at"))


def test_9_4_append_adds_to_the_list_on_every_run():
    assert run(fixture(4))[0] == 0
    assert run(fixture(4))[0] == 0
    row = {"left": {"a": 1}, "right": "keys=default"}
    assert read_json("t4_list.json") == [row, row]
    assert read_json("t4_db.json") == row


# -- §9.5 template, user_response, untaken branch -----------------------------------------------

GREETING = "Hello world! n=3 gen=True"


def test_9_5_template_answer_and_untaken_branch():
    code, out = run(fixture(5), "--answer", "Ask=yes")
    assert code == 0, out
    assert results("t5_tpl.txt").read_text(encoding="utf-8") == GREETING
    # Check (detect_max_iterations, no node with max_iteration) decides false, so its condtrue
    # arrow (label ct) cannot deliver and End runs on the other two, as in DiPeO.
    assert out["result"] == {"tpl": GREETING, "ask": "yes"}
    assert read_json("t5_out.json") == {"tpl": GREETING, "ask": "yes"}

    shown = show(out["id"])
    assert {label: s["status"] for label, s in states(shown).items()} == dict.fromkeys(
        ["Start", "Tpl", "Ask", "Check", "End"], "COMPLETED"
    )
    check = outputs(shown)["Check"]
    assert check["metadata"]["result"] is False
    assert set(check["value"]) == {"condfalse"}


def test_9_5_user_response_without_a_terminal_or_answer_fails_and_says_how():
    # DiPeO with --no-interactive went on with an empty answer (End = {"tpl": ..., "ask": ""}),
    # exit 0. Without a terminal and without --answer there is nobody to ask: the node fails
    # and says how to pass the answer; stdin is never read.
    code, out = run(fixture(5))
    assert code == 1
    assert out["status"] == "FAILED"
    assert "node 'Ask' needs an answer: pass --answer 'Ask=...'" in out["error"]
    node = states(show(out["id"]))
    assert node["Ask"]["status"] == "FAILED"
    assert node["End"]["status"] == "SKIPPED"
    assert not results("t5_out.json").exists()


# -- §9.6 exclusive endpoints -------------------------------------------------------------------


def test_9_6_exclusive_endpoints_complete_with_the_other_one_skipped():
    # DiPeO waits for EndA, which can never run, until the timeout (exit 1), after EndB wrote
    # {"default": {"default": {}}}. Here the run ends as soon as nothing can become ready.
    code, out = run(fixture(6))
    assert code == 0, out
    assert out["status"] == "COMPLETED"
    assert out["duration_seconds"] < 5
    # Only EndB ran, so the result is its value: Start's {} passed on by Cond (as raw_text,
    # decoded by the endpoint).
    assert out["result"] == {}
    assert read_json("t6_b.json") == {}
    assert not results("t6_a.json").exists()

    node = states(show(out["id"]))
    assert node["EndB"]["status"] == "COMPLETED"
    assert node["EndA"]["status"] == "SKIPPED"
    assert node["EndA"]["skip_reason"].startswith("branch not taken")
    assert "'Cond'" in node["EndA"]["skip_reason"]


# -- §9.7 no endpoint ---------------------------------------------------------------------------


def test_9_7_no_endpoint_completes_without_a_result():
    code, out = run(fixture(7))
    assert code == 0, out
    assert out["status"] == "COMPLETED" and out["result"] is None
    work = outputs(show(out["id"]))["Work"]
    assert work["value"] == {"default": 42}
    assert work["metadata"]["stdout"] == "working\n"


# -- §9.8 variables in templates and conditions ---------------------------------------------------


def test_9_8_variables_reach_templates_and_conditions():
    code, out = run(fixture(8), "--input-data", '{"y": 7}')
    assert code == 0, out
    # The condition sees the variable `y` by name and the template's text as `default`.
    # DiPeO's End wrapped it: {"default": "y=7"}; an endpoint with one input outputs that value.
    assert out["result"] == "y=7"
    assert results("t8_out.txt").read_text(encoding="utf-8") == "y=7"
    node = states(show(out["id"]))
    assert node["End"]["status"] == "COMPLETED"
    assert node["Otherwise"]["status"] == "SKIPPED"


def test_9_8_the_other_branch_when_the_expression_is_false():
    code, out = run(fixture(8), "-i", "y=8")
    assert code == 0, out
    assert out["result"] == "y=8"
    assert not results("t8_out.txt").exists()
    assert states(show(out["id"]))["End"]["status"] == "SKIPPED"


def test_9_8_an_undefined_template_variable_fails_naming_it():
    code, out = run(fixture(8))
    assert code == 1
    assert out["error"].startswith("node 'Render' failed")
    assert "'y'" in out["error"]


# -- §9.9 hooks ---------------------------------------------------------------------------------


def test_9_9_hooks_run():
    # DiPeO: any hook node raises AttributeError (missing `config`, missing HookType.WEBHOOK)
    # and fails the whole execution. Here a shell hook gets its inputs as DIPEO_INPUT_<KEY>
    # (the keys of a dict `default` input included) and its stdout is the output; a file hook
    # writes what it received.
    code, out = run(fixture(9))
    assert code == 0, out
    assert out["result"] == "hello alice"
    assert results("t9_out.txt").read_text(encoding="utf-8") == "hello alice"
    assert read_json("t9_hook.json") == {
        "inputs": {"message": "hello alice"},
        "node": "Record",
        "node_id": "node_2",
        "execution_id": out["id"],
    }


# -- DiPeO's shipped diagrams that run offline ------------------------------------------------------

SIMPLE_ITER_CODE_LIGHT = EXAMPLES / "simple_diagrams" / "simple_iter_code.light.yaml"
SIMPLE_ITER_CODE_NATIVE = EXAMPLES / "native_diagrams" / "simple_iter_code.native.json"
SIMPLE_ITER_CODE_READABLE = EXAMPLES / "readable_diagrams" / "simple_iter_code.readable.yaml"

# Shared diagrams that validate and need no LLM or network, but need DiPeO's own code generator:
# its internal Python modules, the AST caches its typescript_ast step writes under temp/, its
# Jinja templates, and a `node_spec_path` from the batch diagram that calls them. None of those
# is in the DiPeO examples folder (DIPEO_EXAMPLES_DIR), so these are validated (tests/test_validate_examples.py), not run.
CODEGEN = DIPEO_EXAMPLES / "projects" / "codegen"
NOT_RUN = {
    "projects/codegen/diagrams/models/generate_backend_models_single.light.yaml": (
        "DiPeO-internal module dipeo/infrastructure/codegen/generators/spec_parser.py, "
        "temp/nodes/*.spec.ts.json and temp/codegen/mappings.ts.json from the typescript_ast "
        "step, projects/codegen/templates/backend/unified_node_model.j2"
    ),
    "projects/codegen/diagrams/models/generate_frontend_registry.light.yaml": (
        "DiPeO-internal module dipeo/infrastructure/codegen/generators/registry_generator.py, "
        "temp/nodes/*.spec.ts.json from the typescript_ast step"
    ),
    "projects/codegen/diagrams/models/generate_frontend_single.light.yaml": (
        "DiPeO-internal module dipeo/infrastructure/codegen/generators/node_extractor.py, "
        "temp/nodes/*.spec.ts.json, projects/codegen/templates/frontend/*.j2"
    ),
}
RUN = {
    "examples/simple_diagrams/simple_iter_code.light.yaml",
    "examples/native_diagrams/simple_iter_code.native.json",
    "examples/readable_diagrams/simple_iter_code.readable.yaml",
}
_ONLINE_TYPES = {"person_job", "person_batch_job", "api_job", "integrated_api"}


def _needs_llm_or_network(path: Path) -> bool:
    try:
        diagram = load_diagram(path)
    except DiagramError:
        return True  # does not load: not a candidate (test_validate_examples checks the message)
    for node in diagram.nodes:
        props = node.props
        if node.type in _ONLINE_TYPES:
            return True
        if node.type == "condition" and str(props.get("condition_type", "")).lower() == (
            "llm_decision"
        ):
            return True
        if node.type == "hook" and str(props.get("hook_type", "")).lower() in ("http", "webhook"):
            return True
    return False


@needs_examples
def test_every_offline_shared_diagram_is_run_here_or_listed_with_a_reason():
    offline_valid = set()
    for path in sorted(DIPEO_EXAMPLES.rglob("*")):
        if path.suffix not in (".yaml", ".yml", ".json") or not path.is_file():
            continue
        if "nodes" not in path.read_text(encoding="utf-8", errors="replace"):
            continue
        if _needs_llm_or_network(path):
            continue
        result = CliRunner().invoke(app, ["validate", str(path)], catch_exceptions=False)
        if result.exit_code == 0:
            offline_valid.add(str(path.relative_to(DIPEO_EXAMPLES)))
    assert offline_valid == RUN | set(NOT_RUN)


@needs_examples
def test_codegen_diagrams_are_not_run_because_dipeo_internals_are_missing():
    generators = DIPEO_EXAMPLES / "dipeo" / "infrastructure" / "codegen" / "generators"
    for module in ("spec_parser.py", "registry_generator.py", "node_extractor.py"):
        assert not (generators / module).exists()
    assert not (CODEGEN / "templates").exists()
    assert not list(DIPEO_EXAMPLES.rglob("*.spec.ts.json"))


@needs_examples
@pytest.mark.parametrize(
    "path, failing_line",
    [
        (SIMPLE_ITER_CODE_LIGHT, "a+=1"),
        (SIMPLE_ITER_CODE_NATIVE, "print(a)"),
        (SIMPLE_ITER_CODE_READABLE, 'print(f"Value of a: {a}")'),
    ],
    ids=["light", "native", "readable"],
)
def test_simple_iter_code_fails_at_once_with_the_name_error(path: Path, failing_line: str):
    # The example's inner code uses `a`, which is never one of its inputs (`a=1` in "Code Job~1"
    # is a local of that node, and it passes on no `result`). DiPeO failed with an
    # UnboundLocalError swallowed into an output, the condition went false, the loop stalled and
    # the run timed out. Here the node fails with the NameError, the run stops at once (exit 1),
    # and the endpoint's file is not written.
    code, out = run(str(path))
    assert code == 1
    assert out["status"] == "FAILED"
    error = f"NameError: name 'a' is not defined (line 1: {failing_line})"
    assert out["error"] == f"node 'Code Job' failed: {error}"
    assert out["result"] is None
    assert not results("simple_iter_output.txt").exists()
    assert not results("total.txt").exists()

    shown = show(out["id"])
    # The loop shape reached: Start, then Code Job~1 (the loop's entry from outside), then one
    # execution of Code Job, which failed; the condition and the endpoint never ran.
    assert summary(shown) == {
        "Start": ("COMPLETED", 1),
        "Code Job~1": ("COMPLETED", 1),
        "Code Job": ("FAILED", 1),
        "Condition": ("SKIPPED", 0),
        "Endpoint": ("SKIPPED", 0),
    }
    node = states(shown)
    assert node["Code Job"]["error"] == error
    assert node["Condition"]["skip_reason"] == "upstream node 'Code Job' failed"
    assert "'Code Job' failed" in node["Endpoint"]["skip_reason"]
    assert outputs(shown)["Code Job~1"]["value"] == {"default": None}


@needs_examples
def test_simple_iter_code_repaired_by_a_user_runs_its_loop():
    # The same diagram with its code fixed to pass `a` along (and the raw_text `a` compared as a
    # number). Its loop is entered from "Code Job~1", not from Start: the shape DiPeO deadlocks
    # on (reference §8). Here Code Job counts 2..11 and the endpoint writes the last value.
    data = yaml.safe_load(SIMPLE_ITER_CODE_LIGHT.read_text(encoding="utf-8"))
    by_label = {node["label"]: node for node in data["nodes"]}
    by_label["Code Job~1"]["code"] = "a = 1\nresult = a\n"
    by_label["Code Job"]["code"] = "a = int(default)\na += 1\nresult = a\n"
    by_label["Condition"]["expression"] = "int(a) > 10"
    Path("repaired.light.yaml").write_text(yaml.safe_dump(data, sort_keys=False), "utf-8")

    code, out = run("repaired.light.yaml")
    assert code == 0, out
    assert out["result"] == "11"
    assert results("simple_iter_output.txt").read_text(encoding="utf-8") == "11"
    assert summary(show(out["id"])) == {
        "Start": ("COMPLETED", 1),
        "Code Job~1": ("COMPLETED", 1),
        "Code Job": ("COMPLETED", 10),
        "Condition": ("COMPLETED", 10),
        "Endpoint": ("COMPLETED", 1),
    }
