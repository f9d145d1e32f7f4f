"""`service: claude-code` persons: Anthropic's Claude Code, its `claude` program in print mode.

One call is one process:

    claude -p --output-format json [--model MODEL] [--system-prompt SYSTEM]   < prompt

The prompt goes on standard input (no argument-length limit, nothing in `ps`): the earlier
messages the person sees, each introduced by who said it, then the new prompt. With a response
schema, the prompt asks for JSON that follows it and the reply is parsed as JSON. The program
answers one JSON object, `{"type": "result", "is_error": false, "result": "<text>", "usage":
{"input_tokens", "output_tokens", "cache_read_input_tokens", ...}, "model"?, ...}`; `is_error`
or a non-zero exit is an LLMError with its message.

`claude` is found on PATH (`find_claude`); without it the person cannot run: `validate` warns,
`run` refuses, naming what to install. Claude Code uses its own login or ANTHROPIC_API_KEY from
the environment: dipeo passes no key.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from dipeo_cli.llm.base import LLMError, LLMReply, LLMRequest, PersonConfig
from dipeo_cli.state import TokenUsage

PROGRAM = "claude"
INSTALL_HINT = (
    "install Claude Code (npm install -g @anthropic-ai/claude-code) so that `claude` is on PATH"
)


def find_claude() -> str | None:
    """The path of the `claude` program on PATH, or None."""
    return shutil.which(PROGRAM)


def prompt_text(request: LLMRequest) -> str:
    """The conversation as one prompt: earlier messages labelled, the last one as it is."""
    *earlier, last = request.messages or ()
    parts = [f"[{m.role}]: {m.content}" for m in earlier]
    if parts:
        parts.insert(0, "The conversation so far:")
        parts.append("")
    parts.append(last.content if request.messages else "")
    if request.response_schema is not None:
        parts.append(
            "\nAnswer with one JSON value only (no prose, no code fence) that follows this "
            f"JSON schema:\n{json.dumps(request.response_schema)}"
        )
    return "\n".join(parts)


class ClaudeCodeClient:
    """One per person per run; each `complete` runs `claude -p` once."""

    def __init__(self, config: PersonConfig, program: str | None = None) -> None:
        self.config = config
        self.program = program or find_claude() or PROGRAM

    def argv(self, request: LLMRequest) -> list[str]:
        argv = [self.program, "-p", "--output-format", "json"]
        if self.config.model:
            argv += ["--model", self.config.model]
        system = request.system if request.system is not None else self.config.system_prompt
        if system:
            argv += ["--system-prompt", system]
        return argv

    async def complete(self, request: LLMRequest) -> LLMReply:
        import asyncio

        from dipeo_cli.processes import run_process

        started = time.monotonic()
        call = run_process(
            self.argv(request), cwd=os.getcwd(), stdin=prompt_text(request).encode("utf-8")
        )
        try:
            code, out, err = await asyncio.wait_for(call, request.timeout)
        except FileNotFoundError:
            raise LLMError(f"claude-code: `{self.program}` not found: {INSTALL_HINT}") from None
        except TimeoutError:
            raise LLMError(f"claude-code: no answer after {request.timeout} s") from None
        answer = _parse(out)
        if code != 0 or answer is None or answer.get("is_error"):
            detail = (answer or {}).get("result") or err.decode("utf-8", "replace").strip()
            detail = detail or out.decode("utf-8", "replace").strip()
            raise LLMError(f"claude-code ({self.config.model}): exit {code}: {detail[:500]}")
        text = answer.get("result")
        text = text if isinstance(text, str) else json.dumps(text)
        structured = None
        if request.response_schema is not None:
            structured = _json_in(text)
            if structured is None:
                raise LLMError(f"claude-code: the answer is not the JSON asked for: {text[:200]}")
        return LLMReply(
            text=text,
            usage=_usage(answer.get("usage")),
            model=str(answer.get("model") or self.config.model),
            latency_ms=(time.monotonic() - started) * 1000,
            structured=structured,
        )


def _parse(out: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(out.decode("utf-8", "replace"))
    except ValueError:
        return None
    if isinstance(data, list):  # some versions answer every event: the result is the last
        data = next((d for d in reversed(data) if isinstance(d, dict)), None)
    return data if isinstance(data, dict) else None


def _usage(raw: Any) -> TokenUsage:
    if not isinstance(raw, dict):
        return TokenUsage()
    cached = int(raw.get("cache_read_input_tokens") or 0)
    fresh = int(raw.get("input_tokens") or 0) + int(raw.get("cache_creation_input_tokens") or 0)
    output = int(raw.get("output_tokens") or 0)
    return TokenUsage(
        input=fresh + cached, output=output, cached=cached or None, total=fresh + cached + output
    )


def _json_in(text: str) -> Any:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`")
        stripped = stripped[stripped.find("\n") + 1 :] if "\n" in stripped else stripped
    try:
        return json.loads(stripped)
    except ValueError:
        return None
