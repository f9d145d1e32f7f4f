"""Answering LLM and HTTP calls from a recorded execution: `dipeo run DIAGRAM --replay ID`.

Every person_job, person_batch_job item and llm_decision call is answered from execution ID's
`llm_calls` records, matched by node label, iteration, batch index and call number (the call
points in `llm/call.py` and `http_calls.py` ask `resources.llm_replay` / `http_replay` before
calling out). No network, no key, no tokens spent.

A call is answered only when the request is the one recorded (system prompt, messages, model,
schema; for HTTP: method, URL, params, headers, body): otherwise the node fails with a readable
diff naming the node, the iteration and the message that changed, so a diagram's prompts can
be tested in CI (record once against a real model, replay on every commit). `loose=True`
(`--replay-loose`) uses the recorded answer anyway. A call that was never recorded (a new node,
an extra iteration) fails and says so.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

from dipeo_cli.errors import NodeError
from dipeo_cli.state import TokenUsage

# What must be equal for a recorded answer to stand in (the rest, e.g. the timeout, may change).
LLM_FIELDS = ("model", "system", "messages", "response_schema")
HTTP_FIELDS = ("method", "url", "params", "headers", "body")


class Recording:
    """The calls of one recorded execution, indexed for lookup."""

    def __init__(self, execution_id: str, iterations: list[dict[str, Any]]) -> None:
        self.execution_id = execution_id
        self.llm: dict[tuple[str, int, int | None, int], dict[str, Any]] = {}
        self.http: dict[tuple[str, int, int], tuple[dict[str, Any], Any]] = {}
        for it in iterations:
            output = it.get("output") or {}
            metadata = output.get("metadata") or {}
            key = (it.get("label") or it["node_id"], it["iteration"])
            for call in metadata.get("llm_calls") or ():
                if call.get("reply") is not None:
                    self.llm[(*key, call.get("batch_index"), call["call"])] = call
            value = (output.get("value") or {}).get("default")
            for call in metadata.get("http_calls") or ():
                if call.get("response") is not None:
                    self.http[(*key, call["call"])] = (call, value)

    def recorded_for(self, label: str) -> str:
        found = sorted({(k[1], k[3]) for k in self.llm if k[0] == label})
        if not found:
            return f"the recording has no LLM call of node '{label}'"
        listed = ", ".join(f"iteration {i} call {c}" for i, c in found)
        return f"the recording has, for node '{label}': {listed}"


class LLMReplay:
    """`resources.llm_replay` for `--replay`: see the module docstring."""

    def __init__(self, recording: Recording, *, loose: bool = False) -> None:
        self.recording = recording
        self.loose = loose

    async def reply_for(self, call: Any, request: dict[str, Any]) -> Any:
        from dipeo_cli.llm.base import LLMReply

        key = (call.node_label, call.iteration, call.batch_index, call.call)
        recorded = self.recording.llm.get(key)
        where = _where(call.node_label, call.iteration, call.call, call.batch_index)
        if recorded is None:
            raise NodeError(
                f"{where} was never recorded in execution {self.recording.execution_id} "
                f"({self.recording.recorded_for(call.node_label)})"
            )
        if not self.loose:
            changes = request_changes(recorded["request"], request, LLM_FIELDS)
            if changes:
                raise NodeError(
                    f"{where}: the request differs from the one recorded in execution "
                    f"{self.recording.execution_id} (--replay-loose uses the recorded answer "
                    "anyway):\n" + "\n".join(changes)
                )
        reply = recorded["reply"]
        return LLMReply(
            text=reply.get("text") or "",
            usage=TokenUsage(),  # replayed: nothing spent
            model=reply.get("model") or "",
            latency_ms=0.0,
            structured=reply.get("structured"),
            mock=bool(reply.get("mock")),
        )


class HttpReplay:
    """`resources.http_replay` for `--replay`: api_job answers from the recording."""

    def __init__(self, recording: Recording, *, loose: bool = False) -> None:
        self.recording = recording
        self.loose = loose

    async def response_for(self, call: Any, request: dict[str, Any]) -> Any:
        import httpx

        key = (call.node_label, call.iteration, call.call)
        found = self.recording.http.get(key)
        where = _where(call.node_label, call.iteration, call.call, None, "HTTP call")
        if found is None:
            raise NodeError(
                f"{where} was never recorded in execution {self.recording.execution_id}"
            )
        recorded, value = found
        if not self.loose:
            changes = request_changes(recorded["request"], request, HTTP_FIELDS)
            if changes:
                raise NodeError(
                    f"{where}: the request differs from the one recorded in execution "
                    f"{self.recording.execution_id}:\n" + "\n".join(changes)
                )
        response = recorded["response"]
        headers = dict(response.get("headers") or {})
        headers.pop("content-length", None)
        headers.pop("content-encoding", None)
        # The node's recorded output is the response body as dipeo read it (the record keeps
        # only a preview of the text): give it back in the form it came in.
        if isinstance(value, str):
            body = value.encode("utf-8")
        elif value is None:
            body = (response.get("body_preview") or "").encode("utf-8")
        else:
            body = json.dumps(value).encode("utf-8")
            headers.setdefault("content-type", "application/json")
        return httpx.Response(
            int(response.get("status") or 200),
            headers=headers,
            content=body,
            request=httpx.Request(request.get("method") or "GET", request.get("url") or ""),
        )


def _where(
    label: str, iteration: int, call: int, batch_index: int | None, kind: str = "LLM call"
) -> str:
    item = f", batch item {batch_index}" if batch_index is not None else ""
    return f"node '{label}' iteration {iteration}{item}, {kind} {call}"


def request_changes(
    recorded: dict[str, Any], now: dict[str, Any], fields: tuple[str, ...]
) -> list[str]:
    """Readable differences between a recorded request and the one about to be sent: for each
    changed message its role and the words that changed, for other fields old -> new."""
    changes: list[str] = []
    for field in fields:
        old, new = recorded.get(field), now.get(field)
        if old == new:
            continue
        if field == "messages" and isinstance(old, list) and isinstance(new, list):
            changes += _message_changes(old, new)
        elif isinstance(old, str) and isinstance(new, str):
            changes.append(f"  {field}: {_word_diff(old, new)}")
        else:
            changes.append(f"  {field}: {_short(old)} -> {_short(new)}")
    return changes


def _message_changes(old: list[Any], new: list[Any]) -> list[str]:
    changes = []
    if len(old) != len(new):
        changes.append(f"  messages: {len(old)} recorded, {len(new)} now")
    for i, (a, b) in enumerate(zip(old, new, strict=False), start=1):
        if a == b:
            continue
        role = (b or {}).get("role") or (a or {}).get("role") or "?"
        text_a = str((a or {}).get("content", ""))
        text_b = str((b or {}).get("content", ""))
        changes.append(f"  message {i} ({role}): {_word_diff(text_a, text_b)}")
    for i, extra in enumerate(new[len(old) :], start=len(old) + 1):
        changes.append(
            f"  message {i} ({extra.get('role', '?')}) is new: {_short(extra.get('content'))}"
        )
    return changes


def _word_diff(old: str, new: str) -> str:
    """The words that changed, as `[-old-]{+new+}` marks in a short context."""
    a, b = old.split(), new.split()
    parts: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag == "equal":
            words = a[i1:i2]
            parts.append(
                " ".join(words)
                if len(words) <= 6
                else f"{' '.join(words[:3])} … {' '.join(words[-3:])}"
            )
            continue
        if i2 > i1:
            parts.append(f"[-{' '.join(a[i1:i2])}-]")
        if j2 > j1:
            parts.append(f"{{+{' '.join(b[j1:j2])}+}}")
    return " ".join(p for p in parts if p)


def _short(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"
