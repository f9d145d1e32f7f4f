"""Every JSON document the CLI prints follows one set of conventions: a `schema_version`, the
same keys whatever the outcome, token usage always the same object."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from dipeo_cli.cli import app
from dipeo_cli.documents import SCHEMA_VERSION

REPO = Path(__file__).resolve().parents[1]
HELLO = str(REPO / "diagrams" / "hello.light.yaml")
SUB = str(REPO / "diagrams" / "sub_diagram.light.yaml")
USAGE_KEYS = {"input", "output", "cached", "total"}


def cli_json(*args: str, code: int = 0):
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, result.output
    return json.loads(result.stdout)


def test_schema_version_is_an_int_starting_at_two():
    assert SCHEMA_VERSION == 2 and isinstance(SCHEMA_VERSION, int)


def test_validate_json_has_the_same_keys_whether_valid_or_not():
    Path("bad.light.yaml").write_text("nodes:\n  - {label: A, type: nope}\n", encoding="utf-8")
    good = cli_json("validate", HELLO, "--json")
    bad = cli_json("validate", "bad.light.yaml", "--json", code=2)
    assert set(good) == set(bad)
    assert good["valid"] is True and bad["valid"] is False
    assert good["schema_version"] == bad["schema_version"] == SCHEMA_VERSION
    assert bad["node_count"] is None and bad["problems"]
    assert good["node_count"] == 3 and good["problems"] == []


def test_token_usage_is_always_an_object_with_the_same_keys():
    run = cli_json("run", HELLO, "--json")
    assert run["token_usage"] == dict.fromkeys(USAGE_KEYS, 0)
    shown = cli_json("show", run["id"], "--json")
    assert shown["schema_version"] == SCHEMA_VERSION
    assert set(shown["token_usage"]) == USAGE_KEYS
    for node_state in shown["node_states"].values():
        assert set(node_state["token_usage"]) == USAGE_KEYS  # never null for a node without LLM
        assert all(isinstance(v, int) for v in node_state["token_usage"].values())
    [iteration] = cli_json("show", run["id"], "--node", "Greet", "--json")
    assert iteration["schema_version"] == SCHEMA_VERSION
    assert set(iteration["token_usage"]) == USAGE_KEYS


def test_llm_usage_keeps_the_same_keys():
    run = cli_json("run", str(REPO / "diagrams" / "debate.light.yaml"), "--json")
    assert set(run["token_usage"]) == USAGE_KEYS and run["token_usage"]["total"] > 0
    assert all(isinstance(v, int) for v in run["token_usage"].values())
    shown = cli_json("show", run["id"], "--json")
    usages = [n["token_usage"] for n in shown["node_states"].values()]
    assert all(set(u) == USAGE_KEYS for u in usages) and any(u["total"] for u in usages)


def test_history_json_has_parent_retry_and_node_counts():
    parent = cli_json("run", SUB, "--json")
    records = cli_json("history", "--json")
    for record in records:
        assert record["schema_version"] == SCHEMA_VERSION
        assert record["retry_of"] is None
        assert set(record["token_usage"]) == USAGE_KEYS
    [top] = [r for r in records if r["id"] == parent["id"]]
    children = [r for r in records if r["parent_id"] == parent["id"]]
    assert top["parent_id"] is None and len(children) == 4
    assert top["node_counts"]["COMPLETED"] == 5
    assert sum(top["node_counts"].values()) == 5
    assert set(top) == set(children[0])
