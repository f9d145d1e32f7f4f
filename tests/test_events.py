"""The events behave as frozen, slotted dataclasses (dipeo_cli/events.py writes them out by hand):
frozen, compared by type and fields, hashable when their fields are, copyable and picklable."""

from __future__ import annotations

import copy
import pickle
from dataclasses import FrozenInstanceError

import pytest

from dipeo_cli import events as ev
from dipeo_cli.state import ExecutionStatus, create_node_output

EVERY_EVENT = [
    ev.NodeInfo("a", "A", "start"),
    ev.ExecutionStarted("x", None, {"n": 1}, (ev.NodeInfo("a", "A", "start"),), 1.0),
    ev.NodeStarted("a", 1, 1.0, inputs={"default": 1}, sources=(("default", "s", 1),)),
    ev.NodeCompleted("a", create_node_output(1), 2.0, iteration=1),
    ev.NodeFailed("a", "boom", 2.0, aborted=True),
    ev.NodeSkipped("a", "branch not taken", 2.0),
    ev.NodeCapped("a", 3, 2.0),
    ev.ExecutionPaused(2.0, "asked"),
    ev.ExecutionResumed(3.0),
    ev.NodeStatusChanged("a", "PAUSED", 2.0),
    ev.ExecutionStatusChanged(ExecutionStatus.RUNNING, 2.0),
    ev.ExecutionFinished(ExecutionStatus.COMPLETED, None, 4.0, result={"r": 1}),
]


@pytest.mark.parametrize("event", EVERY_EVENT, ids=lambda e: type(e).__name__)
def test_an_event_is_frozen_slotted_and_survives_copy_and_pickle(event: ev.Frozen) -> None:
    name = event.__slots__[0]
    with pytest.raises(FrozenInstanceError):
        setattr(event, name, "other")
    with pytest.raises(FrozenInstanceError):
        delattr(event, name)
    assert not hasattr(event, "__dict__")
    assert copy.copy(event) == event
    assert copy.deepcopy(event) == event
    assert pickle.loads(pickle.dumps(event)) == event


def test_events_compare_by_type_and_fields_and_show_them_in_order() -> None:
    assert ev.NodeSkipped("a", "r", 1.0) == ev.NodeSkipped(node_id="a", reason="r", at=1.0)
    assert hash(ev.NodeSkipped("a", "r", 1.0)) == hash(ev.NodeSkipped("a", "r", 1.0))
    assert ev.NodeSkipped("a", "r", 1.0) != ev.NodeSkipped("a", "r", 2.0)
    assert ev.NodeSkipped("a", "r", 1.0) != ev.NodeCapped("a", "r", 1.0)  # type: ignore[arg-type]
    assert repr(ev.NodeFailed("a", "boom", 1.0)) == (
        "NodeFailed(node_id='a', error='boom', at=1.0, output=None, token_usage=None, "
        "iteration=0, aborted=False)"
    )


def test_a_node_started_event_leaves_its_inputs_out_of_comparison_and_repr() -> None:
    one = ev.NodeStarted("a", 1, 1.0, inputs={"default": 1})
    other = ev.NodeStarted("a", 1, 1.0, inputs={"default": 2})
    assert one == other and hash(one) == hash(other)
    assert one.inputs == {"default": 1}
    assert repr(one) == "NodeStarted(node_id='a', iteration=1, at=1.0, sources=())"
