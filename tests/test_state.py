"""apply_event: the one place where events become state."""

from __future__ import annotations

import pytest

from dipeo_cli import events as ev
from dipeo_cli.errors import UsageError
from dipeo_cli.runner import parse_variables
from dipeo_cli.state import (
    ExecutionStatus,
    NodeExecutionStatus,
    NodeOutput,
    NodeState,
    TokenUsage,
    apply_event,
    create_node_output,
    new_state,
)


def started():
    return new_state(
        ev.ExecutionStarted(
            "e1",
            "d.yaml",
            {"v": 1},
            (ev.NodeInfo("n1", "A", "code_job"), ev.NodeInfo("n2", "B", "endpoint")),
            1000.0,
        )
    )


def test_new_state_lists_every_node_pending():
    state = started()
    assert state.status is ExecutionStatus.RUNNING and state.is_active
    assert {nid: (s.label, s.type, s.status) for nid, s in state.node_states.items()} == {
        "n1": ("A", "code_job", NodeExecutionStatus.PENDING),
        "n2": ("B", "endpoint", NodeExecutionStatus.PENDING),
    }
    assert state.variables == {"v": 1}


def test_states_and_outputs_are_built_without_a_fields_set_each():
    # One set per instance was a third of what a 10,000-node run held (benchmarks: scale).
    state = started()
    first, second = state.node_states.values()
    assert first.__pydantic_fields_set__ is second.__pydantic_fields_set__
    assert first == NodeState(label="A", type="code_job")
    assert first.model_dump() == NodeState(label="A", type="code_job").model_dump()
    apply_event(state, ev.NodeStarted("n1", 1, 1001.0))
    assert first.status is NodeExecutionStatus.RUNNING
    assert first.model_fields_set == set(NodeState.model_fields)  # assignment did not grow it
    one, two = create_node_output(1), create_node_output({"x": 2}, {"m": 1})
    assert one.__pydantic_fields_set__ is two.__pydantic_fields_set__
    assert (one, two) == (
        NodeOutput(value={"default": 1}),
        NodeOutput(value={"x": 2}, metadata={"m": 1}),
    )


def test_a_nodes_start_and_end_set_fields_as_pydantic_assignment_does():
    # apply_event writes these two events' fields into __dict__ (pydantic's __setattr__ was
    # a fifth of the fold's cost): only right while NodeState validates no assignment and has
    # no frozen or private fields, and the result must equal plain assignment's.
    assert not NodeState.model_config.get("validate_assignment")
    assert not NodeState.model_config.get("frozen")
    assert not NodeState.__private_attributes__
    state = started()
    # a state read back from elsewhere: validated, with only some fields set
    state.node_states["n1"] = NodeState.model_validate({"label": "A", "error": "old"})
    assigned = NodeState.model_validate({"label": "A", "error": "old"})
    apply_event(state, ev.NodeStarted("n1", 2, 1001.0))
    apply_event(state, ev.NodeCompleted("n1", create_node_output(1), 1002.0, iteration=2))
    assigned.status = NodeExecutionStatus.RUNNING
    assigned.started_at = "1970-01-01T00:16:41+00:00"
    assigned.ended_at = None
    assigned.iterations = 2
    assigned.status = NodeExecutionStatus.COMPLETED
    assigned.ended_at = "1970-01-01T00:16:42+00:00"
    assigned.error = None
    node = state.node_states["n1"]
    assert node == assigned
    assert node.model_fields_set == assigned.model_fields_set
    assert node.model_dump(exclude_unset=True) == assigned.model_dump(exclude_unset=True)


def test_tokens_are_summed_per_node_over_iterations_and_per_execution():
    state = started()
    usage = TokenUsage(input=10, output=5, total=15)
    for i in (1, 2):
        apply_event(state, ev.NodeStarted("n1", i, 1000.0 + i))
        apply_event(
            state, ev.NodeCompleted("n1", create_node_output({"default": i}), 1000.5 + i, usage)
        )
    node = state.node_states["n1"]
    assert node.iterations == 2 and node.token_usage == TokenUsage(input=20, output=10, total=30)
    assert state.token_usage == TokenUsage(input=20, output=10, total=30)
    assert state.node_outputs["n1"].value == {"default": 2}


def test_failure_skip_and_finish():
    state = started()
    apply_event(state, ev.NodeStarted("n1", 1, 1001.0))
    apply_event(state, ev.NodeFailed("n1", "boom", 1002.0))
    apply_event(state, ev.NodeSkipped("n2", "upstream node 'A' failed", 1002.0))
    apply_event(
        state, ev.ExecutionFinished(ExecutionStatus.FAILED, "node 'A' failed: boom", 1003.5)
    )
    assert state.node_states["n1"].error == "boom"
    assert state.node_states["n2"].skip_reason == "upstream node 'A' failed"
    assert state.status is ExecutionStatus.FAILED and state.is_active is False
    assert state.duration_seconds == 3.5
    assert state.ended_at.startswith("1970-01-01T00:16:43.5")


def test_parse_variables_merges_sources_in_order(tmp_path):
    f = tmp_path / "v.json"
    f.write_text('{"a": 1, "b": 1}')
    assert parse_variables('{"b": 2, "c": 2}', str(f), ["c=3", "d=[1, 2]", "e=text"]) == {
        "a": 1,
        "b": 2,
        "c": 3,
        "d": [1, 2],
        "e": "text",
    }
    with pytest.raises(UsageError):
        parse_variables("[]", None, None)


def test_iso_is_exactly_what_datetime_isoformat_gives() -> None:
    """iso() reuses the text of the last whole second; it must still match datetime to the
    character: whole seconds (no fraction in isoformat), rounding up into the next second,
    times jumping back and forth."""
    import random
    from datetime import UTC, datetime

    from dipeo_cli.state import iso

    rng = random.Random(7)
    times = [0.0, 1.5, 1e9 + 0.9999999, 1e9 + 0.0000004, 1_700_000_000.0000005, 1e9, 1e9 + 1e-7]
    for _ in range(20_000):
        t = 1_700_000_000 + rng.random() * 200_000
        times += [t, float(int(t)), t + 1e-6, t - 3600]
    for t in times:
        assert iso(t) == datetime.fromtimestamp(t, UTC).isoformat(), t


def test_a_node_is_named_by_id_then_label_then_label_in_any_case():
    from dipeo_cli.state import no_such_node, nodes_named

    state = new_state(
        ev.ExecutionStarted(
            "e1",
            "d.yaml",
            {},
            (
                ev.NodeInfo("n1", "Ask", "person_job"),
                ev.NodeInfo("n2", "ask", "person_job"),
                ev.NodeInfo("n3", "Ask", "person_job"),
                ev.NodeInfo("n4", "End", "endpoint"),
            ),
            1000.0,
        )
    )
    assert nodes_named(state, "n2") == ["n2"]
    assert nodes_named(state, "Ask") == ["n1", "n3"]  # exact labels first, every one
    assert nodes_named(state, "END") == ["n4"]  # then ignoring case
    assert nodes_named(state, "Nope") == []
    assert (
        no_such_node(state, "Nope") == "no node 'Nope' in execution e1 (nodes: Ask, ask, Ask, End)"
    )
