"""The GraphQL schema of `dipeo serve`: the execution part of DiPeO's mid-2025 API, with its
snake_case names (spec/dipeo-graphql.md), so that clients written for DiPeO run unchanged.

Resolvers find the `ExecutionHost` in `info.context["host"]`; the types and their (redacting)
converters are in schema_types.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from strawberry.schema.config import StrawberryConfig
from strawberry.types import Info

from dipeo_cli.errors import UsageError
from dipeo_cli.redact import redact, redact_json
from dipeo_cli.server.follow import follow
from dipeo_cli.server.schema_types import (
    SCALARS,
    DateTime,
    ExecuteDiagramInput,
    ExecutionControlInput,
    ExecutionFilterInput,
    ExecutionGraph,
    ExecutionID,
    ExecutionResult,
    ExecutionStateType,
    ExecutionStatus,
    InteractivePrompt,
    InteractiveResponseInput,
    JSONScalar,
    NodeExecution,
    NodeID,
    NodeType,
    execution_result,
    node_execution,
    state_type,
)
from dipeo_cli.state import ExecutionState, iso


def _host(info: Info) -> Any:
    return info.context["host"]


async def _resolve(info: Info, execution_id: str) -> ExecutionState:
    try:
        state: ExecutionState = await _host(info).find(execution_id)
    except UsageError as exc:
        raise ValueError(redact(str(exc))) from None
    return state


# -- operations --------------------------------------------------------------------------------


@strawberry.type
class Query:
    @strawberry.field
    async def execution(self, info: Info, id: ExecutionID) -> ExecutionStateType | None:
        try:
            state = await _host(info).find(id)
        except UsageError:
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
    async def execution_graph(self, info: Info, id: ExecutionID) -> ExecutionGraph | None:
        """The execution drawn as a Mermaid flowchart and a DOT graph (an extension)."""
        from dipeo_cli.picture import picture_of_execution
        from dipeo_cli.render.graph import render_picture

        try:
            state = await _host(info).find(id)
        except UsageError:
            return None
        picture = await picture_of_execution(_host(info).store, state)
        return ExecutionGraph(
            execution_id=ExecutionID(state.id),
            mermaid=redact(render_picture(picture, "mermaid")),
            dot=redact(render_picture(picture, "dot")),
            node_ids=[node.node_id for node in picture.nodes],
        )

    @strawberry.field
    async def health(self, info: Info) -> JSONScalar:
        from dipeo_cli import __version__

        host = _host(info)
        return JSONScalar(
            redact_json(
                {
                    "status": "healthy",
                    "version": __version__,
                    "timestamp": iso(time.time()),
                    "database": str(host.store.where),
                    "running_here": len(host.hosted),
                }
            )
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
                queue=data.queue,
            )
        except UsageError as exc:
            return execution_result(False, error=str(exc))
        done = "queued" if data.queue else "started"
        return execution_result(True, message=f"execution {state.id} {done}", state=state)

    @strawberry.mutation
    async def control_execution(self, info: Info, data: ExecutionControlInput) -> ExecutionResult:
        try:
            done, state = await _host(info).control(data.execution_id, data.action, data.node_id)
        except UsageError as exc:
            return execution_result(False, error=str(exc))
        return execution_result(True, message=done, state=state)

    @strawberry.mutation
    async def submit_interactive_response(
        self, info: Info, data: InteractiveResponseInput
    ) -> ExecutionResult:
        try:
            done, state = await _host(info).answer(data.execution_id, data.node_id, data.response)
        except UsageError as exc:
            return execution_result(False, error=str(exc))
        return execution_result(True, message=done, state=state)


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def execution_updates(
        self,
        info: Info,
        execution_id: ExecutionID,
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
        execution_id: ExecutionID,
    ) -> AsyncGenerator[ExecutionStatus, None]:
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
        execution_id: ExecutionID,
        node_types: list[NodeType] | None = None,
    ) -> AsyncGenerator[NodeExecution, None]:
        """One NodeExecution per node status change, from the execution's start on."""
        state = await _resolve(info, execution_id)
        wanted = {str(t.value) for t in node_types} if node_types else None
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
        execution_id: ExecutionID,
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
                    execution_id=ExecutionID(prompt.execution_id),
                    node_id=NodeID(prompt.node_id),
                    prompt=redact(prompt.prompt),
                    timeout_seconds=round(prompt.timeout_seconds),
                    timestamp=DateTime(iso(prompt.at)),
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
