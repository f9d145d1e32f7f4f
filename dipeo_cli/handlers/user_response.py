"""user_response: ask the person running the diagram a question; the answer is the output.

The question is `prompt`, followed by "\\n\\nContext: <input>" when the node has input (one input:
its text; several: the dict keyed by label, as JSON). The answer comes from, in this order:

1. `--answer LABEL=TEXT` on `dipeo run` (repeatable; LABEL is the node's label, or its id). A node
   that runs several times takes its answers in the order given, and keeps reusing the last one
   when they run out.
2. The terminal, when stdin and stderr are both terminals: the live table pauses, the question is
   printed on stderr and one line is read from stdin without blocking the event loop (other
   nodes keep running; two questions never interleave). No answer within `timeout` seconds
   (default 60) fails the node with "timed out after N s waiting for an answer" (DiPeO went on
   with ""); end of input (Ctrl-D) fails it too.
3. A run hosted by `dipeo serve` (its resources have `prompts`): the question is published to
   the API's `interactive_prompts` subscribers and the node waits up to `timeout` seconds for
   `submit_interactive_response` (metadata `source`: "api").
4. Standard input, when it is a pipe or a file (`echo Ada | dipeo run ask.yaml`): one line per
   answer, in the order the questions are asked (one at a time); end of input fails the node.
5. Otherwise the node fails with "node 'X' needs an answer: pass --answer 'X=...' (stdin is not a
   terminal)". Any other stdin (/dev/null, a socket) is never read.

Output `default`: the answer text (without its line ending). metadata: `source` ("--answer",
"terminal" or "stdin").
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from contextlib import nullcontext
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic_core import PydanticCustomError

from dipeo_cli.errors import NodeError, NodeTimeoutError, UsageError
from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, create_node_output
from dipeo_cli.values import to_text

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode

DEFAULT_TIMEOUT = 60.0


class UserResponseProps(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    prompt: str
    timeout: float = DEFAULT_TIMEOUT

    @field_validator("prompt", mode="before")
    @classmethod
    def _prompt(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise PydanticCustomError("prompt", "a user_response needs a prompt (the question)")
        return value

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> Any:
        return DEFAULT_TIMEOUT if value is None or value == "" else value

    @field_validator("timeout")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise PydanticCustomError("timeout", "timeout must be greater than 0")
        return value


def parse_answers(pairs: list[str] | tuple[str, ...] | None, graph: Any) -> dict[str, list[str]]:
    """`--answer LABEL=TEXT` values -> {node id: [texts in order]}. A label that names no
    user_response node is a usage error, so that a typo is caught before anything runs."""
    answers: dict[str, list[str]] = {}
    if not pairs:
        return answers
    asking = [node for node in graph.nodes.values() if node.type == "user_response"]
    for pair in pairs:
        label, sep, text = pair.partition("=")
        label = label.strip()
        if not sep or not label:
            raise UsageError(f"--answer expects LABEL=TEXT, got {pair!r}")
        matched = [n for n in asking if n.label == label] or [n for n in asking if n.id == label]
        if not matched:
            names = ", ".join(repr(n.label) for n in asking)
            raise UsageError(
                f"--answer {label!r}: no user_response node has that label"
                + (f" (user_response nodes: {names})" if names else " (the diagram has none)")
            )
        for node in matched:
            answers.setdefault(node.id, []).append(text)
    return answers


def question(prompt: str, inputs: dict[str, Any]) -> str:
    if not inputs:
        return prompt
    context = next(iter(inputs.values())) if len(inputs) == 1 else inputs
    return f"{prompt}\n\nContext: {to_text(context)}"


def interactive() -> bool:
    """stdin and stderr are both terminals (a closed or missing stdin is not)."""
    try:
        return bool(sys.stdin and sys.stdin.isatty() and sys.stderr and sys.stderr.isatty())
    except (ValueError, OSError, AttributeError):
        return False


@node_handler("user_response", props=UserResponseProps, outputs=("default",))
async def user_response(node: ExecutableNode[UserResponseProps], ctx: NodeContext) -> NodeOutput:
    config: UserResponseProps = node.config
    message = question(config.prompt, ctx.inputs)
    queue = getattr(ctx.resources, "answers", {}).get(node.id)
    if queue:
        answer = queue.pop(0) if len(queue) > 1 else queue[0]
        return create_node_output({"default": answer}, {"source": "--answer"})
    label = node.label or node.id
    prompts = getattr(ctx.resources, "prompts", None)
    if prompts is not None:
        answer = await prompts.ask(ctx.execution_id, node.id, label, message, config.timeout)
        return create_node_output({"default": answer}, {"source": "api"})
    if not interactive() and piped():
        lock = ctx.resources.service("user_response.lock", asyncio.Lock, lambda _: None)
        async with lock:  # answers are taken in the order the questions are asked
            line = await read_piped_line()
        if line is None:
            raise NodeError(f"node '{label}' needs an answer: stdin reached end of input")
        return create_node_output({"default": line}, {"source": "stdin"})
    if not interactive():
        raise NodeError(
            f"node '{label}' needs an answer: pass --answer '{label}=...' (stdin is not a terminal)"
        )
    lock = ctx.resources.service("user_response.lock", asyncio.Lock, lambda _: None)
    async with lock:  # one question on the terminal at a time
        pause = getattr(ctx.resources, "pause_progress", None)
        with pause() if pause is not None else nullcontext():
            answer = await ask_terminal(label, message, config.timeout)
    return create_node_output({"default": answer}, {"source": "terminal"})


def piped() -> bool:
    """stdin is a pipe or a regular file: answers written ahead of time."""
    import stat

    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (ValueError, OSError, AttributeError):
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


async def read_piped_line() -> str | None:
    """The next line of stdin (None at end of input), read by a daemon thread so that a pipe
    that stays open never keeps the process alive, nor blocks the event loop."""
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[str] = loop.create_future()

    def read_line() -> None:
        try:
            line = sys.stdin.readline()
        except (OSError, ValueError):
            line = ""
        loop.call_soon_threadsafe(_settle, answered, line)

    threading.Thread(target=read_line, name="read answer", daemon=True).start()
    line = await answered
    if not line:
        return None
    return line.rstrip("\n").rstrip("\r")


async def ask_terminal(label: str, message: str, timeout: float) -> str:
    """Print the question on stderr and read one line from the terminal on stdin."""
    from dipeo_cli.redact import redact

    stream = sys.stderr
    stream.write(
        redact(f"\n? {label}: {message}\n  (type the answer, then Enter; {timeout:g} s)\n> ")
    )
    stream.flush()
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[bytes | None] = loop.create_future()

    def finish(data: bytes | None) -> None:
        if not answered.done():
            answered.set_result(data)

    fd = sys.stdin.fileno()
    buffer = bytearray()

    def readable() -> None:
        try:
            chunk = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:  # EIO: the terminal went away
            chunk = b""
        if not chunk:
            finish(None)
            return
        buffer.extend(chunk)
        if b"\n" in buffer:
            finish(bytes(buffer))

    try:
        loop.add_reader(fd, readable)
        reader = True
    except (NotImplementedError, ValueError, OSError):
        # Event loops without add_reader (Windows): a daemon thread reads the line, so an
        # unanswered question never keeps the process alive.
        reader = False

        def read_line() -> None:
            line = sys.stdin.readline()
            loop.call_soon_threadsafe(finish, line.encode() if line else None)

        threading.Thread(target=read_line, name=f"ask {label}", daemon=True).start()
    try:
        async with asyncio.timeout(timeout):
            data = await answered
    except TimeoutError:
        stream.write("\n")
        stream.flush()
        raise NodeTimeoutError(f"timed out after {timeout:g} s waiting for an answer") from None
    finally:
        if reader:
            loop.remove_reader(fd)
    if data is None:
        raise NodeError("no answer: stdin reached end of input")
    return data.decode("utf-8", "replace").split("\n", 1)[0].rstrip("\r")


def _settle(answered: asyncio.Future[str], line: str) -> None:
    if not answered.done():
        answered.set_result(line)
