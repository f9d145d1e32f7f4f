"""`dipeo retry` replays what completed and runs the rest; `dipeo run --replay` answers LLM and
HTTP calls from a recording (offline, no key), failing with a diff when a prompt changed."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app


@pytest.fixture
def cli() -> Any:
    runner = CliRunner()

    def invoke(*args: str) -> Any:
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def write(name: str, text: str) -> str:
    Path(name).write_text(textwrap.dedent(text), encoding="utf-8")
    return name


def loop_diagram(base_url: str, prompt: str = "Say something new about {{topic}}.") -> str:
    return write(
        "talk.light.yaml",
        f"""\
        persons:
          Talker: {{service: openai, model: gpt-test, api_key_id: TALK_KEY, base_url: '{base_url}'}}
        nodes:
          - {{label: Start, type: start, custom_data: {{topic: tea}}}}
          - label: Talk
            type: person_job
            person: Talker
            default_prompt: "{prompt}"
            max_iteration: 3
          - {{label: Again?, type: condition, condition_type: detect_max_iterations}}
          - {{label: End, type: endpoint}}
        connections:
          - {{from: Start, to: Talk}}
          - {{from: Talk, to: Again?}}
          - {{from: "Again?[condfalse]", to: Talk}}
          - {{from: "Again?[condtrue]", to: End}}
        """,
    )


def run_json(cli: Any, *args: str) -> tuple[int, dict[str, Any], str]:
    result = cli(*args, "--json")
    return (
        result.exit_code,
        json.loads(result.stdout) if result.stdout.strip() else {},
        result.stderr,
    )


def test_a_recorded_loop_replays_offline_with_no_key_and_no_request(
    cli: Any, llm_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALK_KEY", "sk-talk-0123456789")
    diagram = loop_diagram(llm_server.openai_base_url)
    code, recorded, _ = run_json(cli, "run", diagram)
    assert code == 0, recorded
    assert len(llm_server.requests) == 3
    monkeypatch.delenv("TALK_KEY")  # no key needed to replay
    code, replayed, err = run_json(cli, "run", diagram, "--replay", recorded["id"])
    assert code == 0, err
    assert replayed["result"] == recorded["result"]
    assert len(llm_server.requests) == 3, "a replay sends nothing"
    assert replayed["token_usage"]["total"] == 0
    shown = json.loads(cli("show", replayed["id"], "--node", "Talk", "--json").stdout)
    assert [it["iteration"] for it in shown] == [1, 2, 3]
    assert all(it["output"]["metadata"]["llm_calls"][0]["replayed"] for it in shown)


def test_a_changed_prompt_word_fails_the_replay_with_a_diff(
    cli: Any, llm_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALK_KEY", "sk-talk-0123456789")
    diagram = loop_diagram(llm_server.openai_base_url)
    _, recorded, _ = run_json(cli, "run", diagram)
    loop_diagram(llm_server.openai_base_url, prompt="Say something old about {{topic}}.")
    code, replayed, err = run_json(cli, "run", diagram, "--replay", recorded["id"])
    assert code == 1
    assert "node 'Talk' iteration 1" in replayed["error"]
    assert "[-new-]" in replayed["error"] and "{+old+}" in replayed["error"]
    code, loose, _ = run_json(cli, "run", diagram, "--replay", recorded["id"], "--replay-loose")
    assert code == 0 and loose["result"] == recorded["result"]
    assert len(llm_server.requests) == 3


def test_a_call_that_was_never_recorded_says_so(
    cli: Any, llm_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TALK_KEY", "sk-talk-0123456789")
    diagram = loop_diagram(llm_server.openai_base_url)
    _, recorded, _ = run_json(cli, "run", diagram)
    text = Path(diagram).read_text(encoding="utf-8").replace("max_iteration: 3", "max_iteration: 4")
    Path(diagram).write_text(text, encoding="utf-8")
    code, replayed, _ = run_json(cli, "run", diagram, "--replay", recorded["id"])
    assert code == 1
    assert "node 'Talk' iteration 4, LLM call 1 was never recorded" in replayed["error"]


def chain_with_files() -> str:
    """Five nodes; each writes a side-effect file; the fourth reads data.txt."""
    steps = []
    for i in range(1, 6):
        code = f"open('ran-{i}.txt', 'a').write('x')\\nresult = {i}"
        if i == 4:
            code = f"open('ran-{i}.txt', 'a').write('x')\\nresult = open('data.txt').read()"
        steps.append(
            f'  - label: Step{i}\n    type: code_job\n    language: python\n    code: "{code}"\n'
        )
    connections = "".join(
        f"  - {{from: {a}, to: {b}}}\n"
        for a, b in zip(
            ["Start", *[f"Step{i}" for i in range(1, 6)]],
            [*[f"Step{i}" for i in range(1, 6)], "End"],
            strict=True,
        )
    )
    text = (
        "nodes:\n  - {label: Start, type: start}\n"
        + "".join(steps)
        + "  - {label: End, type: endpoint}\nconnections:\n"
        + connections
    )
    Path("chain.light.yaml").write_text(text, encoding="utf-8")
    return "chain.light.yaml"


def ran(i: int) -> int:
    path = Path(f"ran-{i}.txt")
    return len(path.read_text()) if path.exists() else 0


def test_retry_after_fixing_a_missing_file_runs_only_from_the_failure(cli: Any) -> None:
    diagram = chain_with_files()
    code, failed, _ = run_json(cli, "run", diagram)
    assert code == 1 and "data.txt" in failed["error"]
    assert [ran(i) for i in range(1, 6)] == [1, 1, 1, 1, 0]
    Path("data.txt").write_text("found", encoding="utf-8")
    code, retried, err = run_json(cli, "retry", failed["id"])
    assert code == 0, err
    assert retried["result"] == 5
    assert [ran(i) for i in range(1, 6)] == [1, 1, 1, 2, 1], "steps 1-3 were replayed, not run"
    assert "will replay: Start, Step1, Step2, Step3" in err
    assert "Step4 (failed:" in err and "Step5 (never ran" in err
    shown = json.loads(cli("show", retried["id"], "--json").stdout)
    assert shown["retry_of"] == failed["id"]
    step1 = next(k for k, v in shown["node_states"].items() if v["label"] == "Step1")
    assert shown["node_outputs"][step1]["metadata"]["replayed_from"] == failed["id"]
    listed = json.loads(cli("history", "--json").stdout)
    assert listed[0]["retry_of"] == failed["id"] and listed[1]["retry_of"] is None
    # the original is never modified
    again = json.loads(cli("show", failed["id"], "--json").stdout)
    assert again["status"] == "FAILED" and again["retry_of"] is None


def test_retry_from_a_label_and_retry_all(cli: Any) -> None:
    diagram = chain_with_files()
    Path("data.txt").write_text("here", encoding="utf-8")
    code, done, _ = run_json(cli, "run", diagram)
    assert code == 0 and [ran(i) for i in range(1, 6)] == [1] * 5
    code, again, err = run_json(cli, "retry", done["id"])
    assert code == 0 and again["result"] == 5
    assert [ran(i) for i in range(1, 6)] == [1] * 5, "a completed run replays everything"
    code, from3, err = run_json(cli, "retry", done["id"], "--from", "Step3")
    assert code == 0
    assert [ran(i) for i in range(1, 6)] == [1, 1, 2, 2, 2]
    assert "Step3 (--from)" in err and "Step4 (downstream of Step3)" in err
    code, everything, _ = run_json(cli, "retry", done["id"], "--all")
    assert code == 0 and [ran(i) for i in range(1, 6)] == [2, 2, 3, 3, 3]
    bad = cli("retry", done["id"], "--from", "Nope")
    assert bad.exit_code == 2 and "no node 'Nope'" in bad.stderr


def test_a_changed_node_and_its_downstream_run_live(cli: Any) -> None:
    diagram = chain_with_files()
    Path("data.txt").write_text("here", encoding="utf-8")
    _, done, _ = run_json(cli, "run", diagram)
    text = Path(diagram).read_text(encoding="utf-8").replace("result = 2", "result = 22")
    Path(diagram).write_text(text, encoding="utf-8")
    code, retried, err = run_json(cli, "retry", done["id"])
    assert code == 0
    assert "Step2 (changed since the original run)" in err
    assert [ran(i) for i in range(1, 6)] == [1, 2, 2, 2, 2]


def test_a_loop_that_failed_in_its_third_round_replays_two_rounds(cli: Any) -> None:
    write(
        "rounds.light.yaml",
        """\
        nodes:
          - {label: Start, type: start, custom_data: {n: 0}}
          - label: Round
            type: code_job
            language: python
            max_iteration: 5
            code: |
              import os
              n = default['n']
              open('round-log.txt', 'a').write('r')
              if n == 2 and not os.path.exists('ok.txt'):
                  raise RuntimeError('round three needs ok.txt')
              result = {'n': n + 1}
          - {label: More?, type: condition, condition_type: custom, expression: "default['n'] < 4"}
          - {label: End, type: endpoint}
        connections:
          - {from: Start, to: Round}
          - {from: Round, to: More?}
          - {from: "More?[condtrue]", to: Round}
          - {from: "More?[condfalse]", to: End}
        """,
    )
    code, failed, _ = run_json(cli, "run", "rounds.light.yaml")
    assert code == 1 and "round three" in failed["error"]
    assert Path("round-log.txt").read_text() == "rrr"
    Path("ok.txt").write_text("", encoding="utf-8")
    code, retried, err = run_json(cli, "retry", failed["id"])
    assert code == 0, err
    assert retried["result"] == {"n": 4}
    # rounds one and two were replayed; round three (and four) ran live
    assert Path("round-log.txt").read_text() == "rrr" + "rr"
    iterations = json.loads(cli("show", retried["id"], "--node", "Round", "--json").stdout)
    replayed = [bool(it["output"]["metadata"].get("replayed_from")) for it in iterations]
    assert replayed == [True, True, False, False]


def test_a_masked_variable_must_be_given_again(cli: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_TOKEN", "tok-0123456789-secret")
    write(
        "greet.light.yaml",
        """\
        nodes:
          - {label: Start, type: start}
          - {label: Greet, type: template_job, template_content: "hi {{name}}"}
          - {label: End, type: endpoint}
        connections:
          - {from: Start, to: Greet}
          - {from: Greet, to: End}
        """,
    )
    _, done, _ = run_json(
        cli, "run", "greet.light.yaml", "-i", "name=Ada", "-i", "auth=tok-0123456789-secret"
    )
    refused = cli("retry", done["id"])
    assert refused.exit_code == 2 and "-i auth=" in refused.stderr
    code, again, _ = run_json(cli, "retry", done["id"], "-i", "auth=tok-0123456789-secret")
    assert code == 0 and again["result"] == "hi Ada"


def test_retry_runs_the_recorded_source_when_the_file_is_gone(cli: Any) -> None:
    diagram = chain_with_files()
    Path("data.txt").write_text("here", encoding="utf-8")
    _, done, _ = run_json(cli, "run", diagram)
    Path(diagram).unlink()
    code, again, err = run_json(cli, "retry", done["id"], "--from", "Step5")
    assert code == 0, err
    assert "the diagram recorded with it" in err
    assert [ran(i) for i in range(1, 6)] == [1, 1, 1, 1, 2]


def test_api_job_answers_are_replayed_too(cli: Any) -> None:
    from tests.httpkit import serve

    with serve() as server:
        server.script("/item", (200, {"id": 7, "name": "kettle"}, {}))
        write(
            "api.light.yaml",
            f"""\
            nodes:
              - {{label: Start, type: start}}
              - {{label: Get, type: api_job, url: "{server.url("/item")}", method: GET}}
              - {{label: End, type: endpoint}}
            connections:
              - {{from: Start, to: Get}}
              - {{from: Get, to: End}}
            """,
        )
        code, recorded, err = run_json(cli, "run", "api.light.yaml")
        assert code == 0, err
        assert recorded["result"] == {"id": 7, "name": "kettle"}
        code, replayed, err = run_json(cli, "run", "api.light.yaml", "--replay", recorded["id"])
        assert code == 0, err
        assert replayed["result"] == recorded["result"]
        assert len(server.hits("/item")) == 1, "the replay sent nothing"


def test_replay_of_an_unknown_execution_is_a_usage_error(cli: Any) -> None:
    chain_with_files()
    result = cli("run", "chain.light.yaml", "--replay", "nope")
    assert result.exit_code == 2 and "nope" in result.stderr
