"""The questions of user_response nodes in runs the server hosts, and their answers.

A hosted run's resources carry the board (`RunResources.prompts`): the handler calls `ask`,
which publishes the question to the execution's `interactive_prompts` subscribers and waits,
up to the node's timeout, for `answer` (the `submit_interactive_response` mutation).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from dipeo_cli.errors import ControlError, NodeTimeoutError


@dataclass(frozen=True)
class Prompt:
    execution_id: str
    node_id: str
    label: str
    prompt: str
    timeout_seconds: float
    at: float


class PromptBoard:
    def __init__(self) -> None:
        self._waiting: dict[tuple[str, str], tuple[Prompt, asyncio.Future[str]]] = {}
        self._listeners: dict[str, set[asyncio.Queue[Prompt]]] = {}

    async def ask(
        self, execution_id: str, node_id: str, label: str, question: str, timeout: float
    ) -> str:
        """Publish the question and wait for its answer; NodeTimeoutError after `timeout` s."""
        prompt = Prompt(execution_id, node_id, label, question, timeout, time.time())
        answered: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        key = (execution_id, node_id)
        self._waiting[key] = (prompt, answered)
        for queue in self._listeners.get(execution_id, ()):
            queue.put_nowait(prompt)
        try:
            async with asyncio.timeout(timeout):
                return await answered
        except TimeoutError:
            raise NodeTimeoutError(f"timed out after {timeout:g} s waiting for an answer") from None
        finally:
            if self._waiting.get(key, (None, None))[1] is answered:
                del self._waiting[key]

    def answer(self, execution_id: str, node: str, response: str) -> str:
        """Answer the waiting node `node` (an id or a label); ControlError when none waits."""
        for (eid, nid), (prompt, answered) in list(self._waiting.items()):
            if eid == execution_id and node in (nid, prompt.label) and not answered.done():
                answered.set_result(response)
                return f"answered node '{prompt.label}'"
        raise ControlError(f"node '{node}' is not waiting for an answer")

    def waiting(self, execution_id: str) -> list[Prompt]:
        return [p for (eid, _), (p, _f) in self._waiting.items() if eid == execution_id]

    def listen(self, execution_id: str) -> asyncio.Queue[Prompt]:
        """A queue that receives every question of `execution_id` from now on (the ones
        already waiting first); `unlisten` it when done."""
        queue: asyncio.Queue[Prompt] = asyncio.Queue()
        for prompt in self.waiting(execution_id):
            queue.put_nowait(prompt)
        self._listeners.setdefault(execution_id, set()).add(queue)
        return queue

    def unlisten(self, execution_id: str, queue: asyncio.Queue[Prompt]) -> None:
        listeners = self._listeners.get(execution_id)
        if listeners is not None:
            listeners.discard(queue)
            if not listeners:
                del self._listeners[execution_id]
