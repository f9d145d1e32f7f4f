"""`dipeo pause`, `resume`, `abort` and `skip`: control an execution running anywhere on this
history (another terminal, a server, CI).

Each stores a control request (the only way into a running executor: DESIGN.md §1) and waits
up to --wait seconds for the process running the execution to answer. Exit 0 with one line
saying what happened, or 2 with why not: no such execution, already finished, not running
anywhere (nobody took the request in time: it is withdrawn, so it never applies later), or a
node that is unknown or already ran.
"""

from __future__ import annotations

from typing import Any

import typer

from dipeo_cli.cli import DbOption, _fail, _open_store, _read_history, root

CONTROL_WAIT = 5.0  # seconds: the running process polls every 0.25 s, so this is generous
ANSWER_POLL = 0.05

ExecutionArgument = typer.Argument(
    ..., help="Execution id, a unique prefix of one, or 'latest'.", show_default=False
)
WaitOption = typer.Option(
    CONTROL_WAIT,
    "--wait",
    min=0.1,
    max=600.0,
    help="Seconds to wait for the process running the execution to answer.",
)


@root.command()
def pause(
    execution: str = ExecutionArgument, wait: float = WaitOption, db: str | None = DbOption
) -> None:
    """Pause a running execution: no node starts until `dipeo resume`; running nodes finish."""
    _control(db, execution, "pause", wait=wait)


@root.command()
def resume(
    execution: str = ExecutionArgument, wait: float = WaitOption, db: str | None = DbOption
) -> None:
    """Resume a paused execution exactly where it stopped."""
    _control(db, execution, "resume", wait=wait)


@root.command()
def abort(
    execution: str = ExecutionArgument,
    reason: str | None = typer.Option(
        None, "--reason", help="Why (recorded as the execution's error)."
    ),
    wait: float = WaitOption,
    db: str | None = DbOption,
) -> None:
    """Abort a running execution: running nodes are cancelled (their processes killed), the
    rest skipped; it ends ABORTED (and a `dipeo run` running it exits 130)."""
    _control(db, execution, "abort", reason=reason, wait=wait)


@root.command()
def skip(
    execution: str = ExecutionArgument,
    node: str = typer.Argument(..., help="Label or id of a node that has not started."),
    wait: float = WaitOption,
    db: str | None = DbOption,
) -> None:
    """Skip a node of a running execution before it starts ("skipped on request"); its
    downstream is treated as for any skipped node."""
    _control(db, execution, "skip_node", node=node, wait=wait)


def _control(
    db: str | None,
    execution: str,
    action: str,
    *,
    node: str | None = None,
    reason: str | None = None,
    wait: float,
) -> None:
    code, message = _read_history(_apply(db, execution, action, node, reason, wait))
    if code:
        _fail(message, code)
    print(message)


async def _apply(
    db: str | None,
    execution: str,
    action: str,
    node: str | None,
    reason: str | None,
    wait: float,
) -> tuple[int, str]:

    from dipeo_cli.errors import ControlError

    store = await _open_store(db)
    try:
        state = await store.find_execution(execution)  # repairs runs whose process died
        verb = action.removesuffix("_node")
        if state.status.is_final:
            return 2, _finished(state, verb)
        node_id = label = None
        if node is not None:
            node_id, label, problem = _skip_target(state, node)
            if problem:
                return 2, problem
        try:
            request = await store.request_control(state.id, action, node_id=node_id, reason=reason)
        except ControlError as exc:  # it finished since we looked
            return 2, f"cannot {verb} execution {state.id}: {exc}"
        outcome = await _answer(store, request, wait)
        if outcome is None:
            why = f"no process took it within {wait:g} s"
            if await store.withdraw_control(request, why):
                return 2, (
                    f"execution {state.id} is not running anywhere: {why} (the request is "
                    f"withdrawn; it is stored as {state.status.value}, so its process may run "
                    "on another host or be stuck)"
                )
            outcome = await _answer(store, request, CONTROL_WAIT)  # taken just now
            if outcome is None:
                return 2, f"execution {state.id} took the {verb} request but did not answer"
        if outcome.startswith("error: "):
            return 2, f"cannot {verb} execution {state.id}: {outcome.removeprefix('error: ')}"
        if action == "abort":
            await _await_end(store, state.id, wait)
        return 0, _done(action, state.id, outcome, label)
    finally:
        await store.close()


def _finished(state: Any, verb: str) -> str:
    text = f"execution {state.id} has already finished ({state.status.value}"
    if state.error:
        text += f": {state.error}"
    return text + f"); there is nothing to {verb}"


def _skip_target(state: Any, node: str) -> tuple[str | None, str | None, str | None]:
    """(node id, label, problem): a label or id resolved from the stored node states, and
    refused here when the node cannot be skipped any more (the executor checks again)."""
    from dipeo_cli.state import NodeExecutionStatus as NS
    from dipeo_cli.state import no_such_node, nodes_named

    found = nodes_named(state, node)
    if not found:
        return None, None, no_such_node(state, node)
    if len(found) > 1:
        return (
            None,
            None,
            f"several nodes are labelled '{node}': name one by id ({', '.join(found)})",
        )
    nid = found[0]
    ns = state.node_states[nid]
    label = ns.label or nid
    if ns.status is NS.RUNNING:
        return None, None, f"node '{label}' is running; it can no longer be skipped"
    if ns.status is not NS.PENDING and ns.status is not NS.SKIPPED or ns.iterations:
        return (
            None,
            None,
            (f"node '{label}' already ran ({ns.status.value}); it can no longer be skipped"),
        )
    return nid, label, None


async def _answer(store: Any, request: int, wait: float) -> str | None:
    """The outcome of a request once the running process answered it, or None after `wait`."""
    import asyncio
    import time

    deadline = time.monotonic() + wait
    while True:
        _taken_at, outcome = await store.control_outcome(request)
        if outcome is not None:
            return str(outcome)
        if time.monotonic() >= deadline:
            return None
        await asyncio.sleep(ANSWER_POLL)


async def _await_end(store: Any, execution_id: str, wait: float) -> None:
    """Give an aborted execution a moment to record its end, so that the line printed (and
    `dipeo show` right after) tells the final state."""
    import asyncio
    import time

    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        state = await store.get_execution(execution_id)
        if state is None or state.status.is_final:
            return
        await asyncio.sleep(ANSWER_POLL * 2)


def _done(action: str, execution_id: str, outcome: str, label: str | None) -> str:
    if action == "pause":
        if outcome == "already paused":
            return f"execution {execution_id} was already paused"
        return f"paused execution {execution_id}"
    if action == "resume":
        return f"resumed execution {execution_id}"
    if action == "abort":
        return f"aborted execution {execution_id}"
    if outcome.startswith("node ") and "already skipped" in outcome:
        return f"node '{label}' of execution {execution_id} was already skipped"
    return f"skipped node '{label}' of execution {execution_id}"
