"""The GraphQL schema of `dipeo serve`: the execution part of DiPeO's mid-2025 API, with its
snake_case names (spec/dipeo-graphql.md), so that clients written for DiPeO run unchanged.

Resolvers find the `ExecutionHost` in `info.context["host"]`. Every value that leaves through
these types is built by the converters below from `redact_json` output, so secrets are masked
in queries, mutations and subscriptions alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from enum import Enum
from typing import Any, NewType

import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from dipeo_cli.redact import redact, redact_json
from dipeo_cli.server.follow import follow
from dipeo_cli.server.host import HostError
from dipeo_cli.state import ExecutionState, iso

# -- scalars and enums -------------------------------------------------------------------------

# NewTypes the schema maps to named scalars (StrawberryConfig.scalar_map, in build_schema).
JSONScalar = NewType("JSONScalar", object)
ExecutionID = NewType("ExecutionID", str)
NodeID = NewType("NodeID", str)
DiagramID = NewType("DiagramID", str)
DateTime = NewType("DateTime", str)


def _identity(value: Any) -> Any:
    return value


SCALARS = {
    JSONScalar: strawberry.scalar(
        name="JSONScalar", description="Any JSON value.", serialize=_identity, parse_value=_identity
    ),
    ExecutionID: strawberry.scalar(name="ExecutionID", serialize=str, parse_value=str),
    NodeID: strawberry.scalar(name="NodeID", serialize=str, parse_value=str),
    DiagramID: strawberry.scalar(name="DiagramID", serialize=str, parse_value=str),
    DateTime: strawberry.scalar(
        name="DateTime", description="An ISO 8601 date and time.", serialize=str, parse_value=str
    ),
}

ExecutionStatus = strawberry.enum(
    Enum(
        "ExecutionStatus",
        {
            name: name
            for name in (
                "STARTED",
                "PENDING",
                "RUNNING",
                "PAUSED",
                "COMPLETED",
                "FAILED",
                "ABORTED",
                "SKIPPED",
            )
        },
    ),
    name="ExecutionStatus",
)

# DiPeO's list, and every type this dipeo can run (built-in handlers and installed plugins).
DIPEO_NODE_TYPES = (
    "start",
    "person_job",
    "condition",
    "job",
    "code_job",
    "api_job",
    "endpoint",
    "db",
    "user_response",
    "notion",
    "person_batch_job",
    "hook",
)


def _node_types() -> list[str]:
    import re

    from dipeo_cli.registry import load_plugins

    names = {*DIPEO_NODE_TYPES, *load_plugins(()).types()}
    return sorted(n for n in names if re.fullmatch(r"[_a-z][_a-z0-9]*", n))


NodeType = strawberry.enum(Enum("NodeType", {t: t for t in _node_types()}), name="NodeType")


# -- types -------------------------------------------------------------------------------------


@strawberry.type
class TokenUsageType:
    input: int
    output: int
    cached: float | None = None
    total: float | None = None


@strawberry.type
class ExecutionStateType:
    id: str
    status: ExecutionStatus  # type: ignore[valid-type]
    diagram_id: str | None
    started_at: str
    ended_at: str | None
    node_states: JSONScalar  # type: ignore[valid-type]
    node_outputs: JSONScalar  # type: ignore[valid-type]
    variables: JSONScalar  # type: ignore[valid-type]
    token_usage: TokenUsageType
    error: str | None
    duration_seconds: float | None
    is_active: bool | None


@strawberry.type
class ExecutionResult:
    success: bool
    message: str | None = None
    error: str | None = None
    execution: ExecutionStateType | None = None
    execution_id: str | None = None


@strawberry.type
class NodeExecution:
    execution_id: ExecutionID  # type: ignore[valid-type]
    node_id: NodeID  # type: ignore[valid-type]
    node_type: NodeType  # type: ignore[valid-type]
    status: str
    progress: str | None
    output: JSONScalar | None  # type: ignore[valid-type]
    error: str | None
    tokens_used: int | None
    timestamp: DateTime  # type: ignore[valid-type]


@strawberry.type
class InteractivePrompt:
    execution_id: ExecutionID  # type: ignore[valid-type]
    node_id: NodeID  # type: ignore[valid-type]
    prompt: str
    timeout_seconds: int | None
    timestamp: DateTime  # type: ignore[valid-type]


# -- inputs ------------------------------------------------------------------------------------


@strawberry.input
class ExecuteDiagramInput:
    diagram_id: DiagramID | None = None  # type: ignore[valid-type]
    diagram_data: JSONScalar | None = None  # type: ignore[valid-type]
    variables: JSONScalar | None = None  # type: ignore[valid-type]
    debug_mode: bool = False
    max_iterations: int = 100
    timeout_seconds: int | None = None


@strawberry.input
class ExecutionControlInput:
    execution_id: ExecutionID  # type: ignore[valid-type]
    action: str
    node_id: NodeID | None = None  # type: ignore[valid-type]


@strawberry.input
class InteractiveResponseInput:
    execution_id: ExecutionID  # type: ignore[valid-type]
    node_id: NodeID  # type: ignore[valid-type]
    response: str


@strawberry.input
class ExecutionFilterInput:
    diagram_id: DiagramID | None = None  # type: ignore[valid-type]
    status: ExecutionStatus | None = None  # type: ignore[valid-type]
    started_after: DateTime | None = None  # type: ignore[valid-type]
    started_before: DateTime | None = None  # type: ignore[valid-type]
    active_only: bool = False


# -- converters (the only way data leaves: redacted) ---------------------------------------------


def state_type(state: ExecutionState) -> ExecutionStateType:
    data = redact_json(state.model_dump(mode="json"))
    usage = data["token_usage"]
    return ExecutionStateType(
        id=data["id"],
        status=ExecutionStatus[data["status"]],
        diagram_id=data["diagram_id"],
        started_at=data["started_at"],
        ended_at=data["ended_at"],
        node_states=data["node_states"],
        node_outputs=data["node_outputs"],
        variables=data["variables"],
        token_usage=TokenUsageType(
            input=usage["input"],
            output=usage["output"],
            cached=usage["cached"],
            total=usage["total"],
        ),
        error=data["error"],
        duration_seconds=data["duration_seconds"],
        is_active=state.status.is_active,
    )


def _result(
    success: bool,
    *,
    message: str | None = None,
    error: str | None = None,
    state: ExecutionState | None = None,
) -> ExecutionResult:
    return ExecutionResult(
        success=success,
        message=redact(message) if message else message,
        error=redact(error) if error else error,
        execution=state_type(state) if state is not None else None,
        execution_id=state.id if state is not None else None,
    )


def node_execution(state: ExecutionState, event: dict[str, Any]) -> NodeExecution | None:
    nid = event["node_id"]
    node = state.node_states.get(nid)
    if node is None or node.type not in NodeType.__members__:
        return None  # a node of a plugin type this server does not know
    output = state.node_outputs.get(nid) if event["status"] == "COMPLETED" else None
    payload = event.get("payload") or {}
    error = payload.get("error") or payload.get("reason") if isinstance(payload, dict) else None
    done = sum(
        1
        for n in state.node_states.values()
        if n.status.value != "PENDING" and n.status.value != "RUNNING"
    )
    return NodeExecution(
        execution_id=state.id,
        node_id=nid,
        node_type=NodeType[node.type],
        status=event["status"],
        progress=f"{done}/{len(state.node_states)} nodes done",
        output=redact_json(output.model_dump(mode="json")) if output is not None else None,
        error=redact(error) if error else None,
        tokens_used=node.token_usage.total if node.token_usage else None,
        timestamp=event["at"],
    )


def _host(info: Info) -> Any:
    return info.context["host"]


async def _resolve(info: Info, execution_id: str) -> ExecutionState:
    try:
        return await _host(info).find(execution_id)
    except HostError as exc:
        raise ValueError(redact(str(exc))) from None


# -- operations --------------------------------------------------------------------------------


@strawberry.type
class Query:
    @strawberry.field
    async def execution(self, info: Info, id: ExecutionID) -> ExecutionStateType | None:  # type: ignore[valid-type]
        try:
            state = await _host(info).find(id)
        except HostError:
            return None
        return state_type(state)

    @strawberry.field
    async def executions(
        self,
        info: Info,
        filter: ExecutionFilterInput | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[ExecutionStateType]:
        store = _host(info).store
        limit, offset = max(limit, 0), max(offset, 0)
        narrowing = filter is not None and (
            filter.started_after or filter.started_before or filter.active_only
        )
        status = filter.status.value if filter is not None and filter.status else None
        if status in ("PENDING", "SKIPPED"):  # DiPeO's statuses no execution of ours has
            return []
        states = await store.list_executions(
            limit=-1 if narrowing else limit + offset,
            status=status,
            diagram=filter.diagram_id if filter is not None else None,
        )
        if filter is not None:
            if filter.started_after:
                states = [s for s in states if s.started_at > filter.started_after]
            if filter.started_before:
                states = [s for s in states if s.started_at < filter.started_before]
            if filter.active_only:
                states = [s for s in states if s.status.is_active]
        return [state_type(s) for s in states[offset : offset + limit]]

    @strawberry.field
    async def health(self, info: Info) -> JSONScalar:  # type: ignore[valid-type]
        from dipeo_cli import __version__

        host = _host(info)
        return redact_json(
            {
                "status": "healthy",
                "version": __version__,
                "timestamp": iso(__import__("time").time()),
                "database": str(host.store.where),
                "running_here": len(host.hosted),
            }
        )


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def execute_diagram(self, info: Info, data: ExecuteDiagramInput) -> ExecutionResult:
        try:
            state = await _host(info).start(
                diagram_id=data.diagram_id,
                diagram_data=data.diagram_data,
                variables=data.variables,
                max_iterations=data.max_iterations,
                timeout_seconds=data.timeout_seconds,
            )
        except HostError as exc:
            return _result(False, error=str(exc))
        return _result(True, message=f"execution {state.id} started", state=state)

    @strawberry.mutation
    async def control_execution(self, info: Info, data: ExecutionControlInput) -> ExecutionResult:
        try:
            done, state = await _host(info).control(data.execution_id, data.action, data.node_id)
        except HostError as exc:
            return _result(False, error=str(exc))
        return _result(True, message=done, state=state)

    @strawberry.mutation
    async def submit_interactive_response(
        self, info: Info, data: InteractiveResponseInput
    ) -> ExecutionResult:
        try:
            done, state = await _host(info).answer(data.execution_id, data.node_id, data.response)
        except HostError as exc:
            return _result(False, error=str(exc))
        return _result(True, message=done, state=state)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def execution_updates(
        self,
        info: Info,
        execution_id: ExecutionID,  # type: ignore[valid-type]
    ) -> AsyncGenerator[ExecutionStateType, None]:
        """The current state at once, then the state after every change; ends after the
        final state."""
        state = await _resolve(info, execution_id)
        async for current, _events in follow(_host(info).store, state.id):
            yield state_type(current)

    @strawberry.subscription
    async def execution_events(
        self,
        info: Info,
        execution_id: ExecutionID,  # type: ignore[valid-type]
    ) -> AsyncGenerator[ExecutionStatus, None]:  # type: ignore[valid-type]
        """Each status the execution takes, the current one first."""
        state = await _resolve(info, execution_id)
        last = None
        async for current, events in follow(_host(info).store, state.id):
            # the execution's own events carry every status, also those that came and went
            # between two polls (a resume right before the end)
            statuses = [e["status"] for e in events if not e["node_id"] and e["status"]]
            for status in statuses or [current.status.value]:
                if status != last and status in ExecutionStatus.__members__:
                    last = status
                    yield ExecutionStatus[status]

    @strawberry.subscription
    async def node_updates(
        self,
        info: Info,
        execution_id: ExecutionID,  # type: ignore[valid-type]
        node_types: list[NodeType] | None = None,  # type: ignore[valid-type]
    ) -> AsyncGenerator[NodeExecution, None]:
        """One NodeExecution per node status change, from the execution's start on."""
        state = await _resolve(info, execution_id)
        wanted = {t.value for t in node_types} if node_types else None
        async for current, events in follow(_host(info).store, state.id, replay=True):
            for event in events:
                if not event["node_id"] or not event["status"]:
                    continue
                update = node_execution(current, event)
                if update is not None and (wanted is None or update.node_type.value in wanted):
                    yield update

    @strawberry.subscription
    async def interactive_prompts(
        self,
        info: Info,
        execution_id: ExecutionID,  # type: ignore[valid-type]
    ) -> AsyncGenerator[InteractivePrompt | None, None]:
        """The question of each user_response node that starts waiting (runs hosted by
        this server); ends when the execution ends."""
        host = _host(info)
        state = await _resolve(info, execution_id)
        hosted = host.hosted.get(state.id)
        if hosted is None:
            return
        queue = host.prompts.listen(state.id)
        try:
            while not hosted.task.done():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, hosted.task}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    break
                prompt = getter.result()
                yield InteractivePrompt(
                    execution_id=prompt.execution_id,
                    node_id=prompt.node_id,
                    prompt=redact(prompt.prompt),
                    timeout_seconds=round(prompt.timeout_seconds),
                    timestamp=iso(prompt.at),
                )
        finally:
            host.prompts.unlisten(state.id, queue)


def build_schema() -> strawberry.Schema:
    return strawberry.Schema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(auto_camel_case=False, scalar_map=SCALARS),
    )
