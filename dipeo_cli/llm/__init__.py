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

from dipeo_cli.llm.base import (
    LLMClient,
    LLMError,
    LLMMessage,
    LLMReply,
    LLMRequest,
    PersonConfig,
)
from dipeo_cli.llm.services import (
    KNOWN_SERVICES,
    LLMConfigError,
    choose_llm_mode,
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
