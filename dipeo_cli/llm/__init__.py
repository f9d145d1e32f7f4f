"""LLM persons: a diagram's Person resolved to a PersonConfig, and a client to call it.

    config = resolve_person(person, base_dir=ctx.base_dir, llm_override=ctx.resources.llm_mode)
    client = llm_client(config, ctx.resources)          # cached per run, closed at its end
    reply = await client.complete(LLMRequest(messages=(LLMMessage("user", "Hi"),)))

`services.py` has the service names, endpoints and the key lookup order; `mock.py` the exact
offline reply format; `persons.py` finds and resolves a node's persons; `call.py` is the one
call point handlers go through (it records every call and has the replay seam). Nothing here
imports `openai`, `anthropic` or httpx: the SDKs are imported by `llm_client` when a run first
needs them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# Loaded on first use (PEP 562): `dipeo run` reads its --llm flag from llm.mode without
# paying for the services and the request/reply models a diagram without persons never uses.
_LAZY = {
    "LLMClient": "dipeo_cli.llm.base",
    "LLMError": "dipeo_cli.llm.base",
    "LLMMessage": "dipeo_cli.llm.base",
    "LLMReply": "dipeo_cli.llm.base",
    "LLMRequest": "dipeo_cli.llm.base",
    "PersonConfig": "dipeo_cli.llm.base",
    "KNOWN_SERVICES": "dipeo_cli.llm.services",
    "LLMConfigError": "dipeo_cli.llm.mode",
    "choose_llm_mode": "dipeo_cli.llm.mode",
    "llm_client": "dipeo_cli.llm.services",
    "normalize_service": "dipeo_cli.llm.services",
    "resolve_person": "dipeo_cli.llm.services",
}

if TYPE_CHECKING:
    from dipeo_cli.llm.base import (
        LLMClient,
        LLMError,
        LLMMessage,
        LLMReply,
        LLMRequest,
        PersonConfig,
    )
    from dipeo_cli.llm.mode import LLMConfigError, choose_llm_mode
    from dipeo_cli.llm.services import (
        KNOWN_SERVICES,
        llm_client,
        normalize_service,
        resolve_person,
    )

__all__ = [
    "KNOWN_SERVICES",
    "LLMClient",
    "LLMConfigError",
    "LLMError",
    "LLMMessage",
    "LLMReply",
    "LLMRequest",
    "PersonConfig",
    "choose_llm_mode",
    "llm_client",
    "normalize_service",
    "resolve_person",
]


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'dipeo_cli.llm' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
