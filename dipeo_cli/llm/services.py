"""Service names, endpoints and API keys: a diagram's Person -> a PersonConfig ready to call.

Service names are DiPeO's, case-insensitive, with `_` read as `-`:

    service      client      endpoint (base URL)                                key variables
    openai       openai      person base_url, else $OPENAI_BASE_URL, else the   OPENAI_API_KEY
                             SDK's default (api.openai.com)
    anthropic    anthropic   person base_url, else $ANTHROPIC_BASE_URL          ANTHROPIC_API_KEY
    google       openai      Gemini's OpenAI-compatible endpoint                GOOGLE_API_KEY,
                                                                                GEMINI_API_KEY
    grok         openai      https://api.x.ai/v1                                XAI_API_KEY
    deepseek     openai      https://api.deepseek.com                           DEEPSEEK_API_KEY
    ollama       openai      $OLLAMA_HOST (default http://localhost:11434) + /v1  none needed
    mock         mock        offline, see mock.py                               none needed
    claude-code  claude-code the `claude` program on PATH (claude_code_service)  its own login

Aliases: chatgpt -> openai, claude -> anthropic, gemini -> google, xai -> grok.
`claude-code-custom` is read as `claude-code`. `bedrock` and `vertex` are DiPeO names we do not support
(LLMConfigError saying so); any other name is an LLMConfigError listing the known ones. A
person's `base_url` (or `extra["base_url"]`) always wins, so vLLM, LM Studio or a proxy is
`service: openai` with a `base_url`.

The key of a person, first found wins:

    1. `api_key_id` as the name of an environment variable   (api_key_id: MY_OPENAI_KEY)
    2. `api_key_id` as an entry of DiPeO's key file          (api_key_id: APIKEY_52609F)
    3. the provider's environment variable(s)                 (OPENAI_API_KEY, ...)
    4. the first key-file entry whose `service` is the person's provider (DiPeO's fallback for
       a diagram made with someone else's key store)

The key file is `$API_KEY_STORE_FILE` (relative paths from the base directory), else
`<base_dir>/files/apikeys.json`, shaped `{"APIKEY_XXXXXX": {"label", "service", "key"}}`.
Every key found is registered with `dipeo_cli.redact`, so no output shows it. A person that
needs a key and has none raises LLMConfigError naming the variables to set.

`llm_override="replay"` (`dipeo run --replay ID`) resolves persons as usual but needs no key:
their answers come from a recorded execution. `llm_override="mock"` (the run's `llm_mode`: `--llm mock`, or `$DIPEO_LLM` as the CLI's default,
see `choose_llm_mode`) turns every person into a mock person: no key, no network. The package
never reads nor writes `$DIPEO_LLM` itself: the mode is a per-run value, so two runs in one
process can differ.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from dipeo_cli.llm.base import LLMClient, PersonConfig
from dipeo_cli.llm.mode import OVERRIDE_ENV, LLMConfigError, choose_llm_mode  # noqa: F401 (kept here)
from dipeo_cli.redact import register_secret

DEFAULT_TIMEOUT = 120.0  # seconds per call (per HTTP attempt), when the request sets none
MAX_RETRIES = 3  # the official clients retry 408/409/429/5xx, timeouts and connection errors
ANTHROPIC_DEFAULT_MAX_TOKENS = 4096  # Anthropic requires max_tokens
KEY_FILE_ENV = "API_KEY_STORE_FILE"


class UnavailableServiceError(LLMConfigError):
    """The person is right but this machine cannot call it yet. A matter of the machine, not
    of the diagram: `validate` warns, `run` refuses (llm/persons.py `check_person`)."""


class MissingKeyError(UnavailableServiceError):
    """A person needs an API key and none is found."""


class MissingProgramError(UnavailableServiceError):
    """A person's service runs a program (`claude`) that is not on PATH."""


@dataclass(frozen=True)
class Provider:
    name: str  # canonical provider name
    service: str  # the client family: "openai", "anthropic" or "mock"
    key_env: tuple[str, ...] = ()
    base_url: str | None = None  # the provider's endpoint (None: the SDK's default)
    base_url_env: str | None = None  # an environment variable that overrides `base_url`
    needs_key: bool = True


PROVIDERS: dict[str, Provider] = {
    p.name: p
    for p in (
        Provider("openai", "openai", ("OPENAI_API_KEY",), base_url_env="OPENAI_BASE_URL"),
        Provider(
            "anthropic", "anthropic", ("ANTHROPIC_API_KEY",), base_url_env="ANTHROPIC_BASE_URL"
        ),
        Provider(
            "google",
            "openai",
            ("GOOGLE_API_KEY", "GEMINI_API_KEY"),
            "https://generativelanguage.googleapis.com/v1beta/openai/",
        ),
        Provider("grok", "openai", ("XAI_API_KEY",), "https://api.x.ai/v1"),
        Provider("deepseek", "openai", ("DEEPSEEK_API_KEY",), "https://api.deepseek.com"),
        Provider("ollama", "openai", (), needs_key=False),
        Provider("mock", "mock", (), needs_key=False),
        Provider("claude-code", "claude-code", (), needs_key=False),
    )
}
ALIASES = {
    "chatgpt": "openai",
    "claude": "anthropic",
    "gemini": "google",
    "xai": "grok",
    "claude-code-custom": "claude-code",
}
UNSUPPORTED = ("bedrock", "vertex")
KNOWN_SERVICES = tuple(sorted({*PROVIDERS, *ALIASES}))


def normalize_service(name: str | None) -> str:
    """The canonical provider for a service name as DiPeO spells it ("Claude" -> "anthropic").

    An empty name is "openai" (DiPeO's default). Raises LLMConfigError for unsupported or
    unknown names.
    """
    key = (name or "openai").strip().lower().replace("_", "-")
    key = ALIASES.get(key, key)
    if key in PROVIDERS:
        return key
    known = ", ".join(KNOWN_SERVICES)
    if key in UNSUPPORTED:
        raise LLMConfigError(
            f"service '{name}' is not supported by this runner (supported: {known}; "
            "an OpenAI-compatible server works as 'openai' with a base_url)"
        )
    raise LLMConfigError(f"unknown service '{name}' (known services: {known})")


def resolve_person(
    person: Any,
    *,
    base_dir: Path | None = None,
    llm_override: str | None = None,
    key_file: Path | None = None,
) -> PersonConfig:
    """The PersonConfig for a diagram's `Person` (id, label, service, model, api_key_id,
    system_prompt, base_url, extra). Raises LLMConfigError naming the person.

    `base_dir` (default: `dipeo_cli.paths.base_dir()`) locates `files/apikeys.json`;
    `key_file` replaces that location (and `$API_KEY_STORE_FILE`).
    """
    label = getattr(person, "label", None) or person.id
    where = f"person '{label}'"
    override = (llm_override or "").strip().lower()
    if override == "mock":
        return _config(person, label, PROVIDERS["mock"], None, None)
    if override not in ("", "replay"):
        raise LLMConfigError(f"the LLM override accepts only 'mock', got {llm_override!r}")
    try:
        provider = PROVIDERS[normalize_service(person.service)]
    except LLMConfigError as exc:
        raise LLMConfigError(exc.reason, where) from None
    if provider.service == "mock":
        return _config(person, label, provider, None, None)
    if provider.service == "claude-code":
        from dipeo_cli.llm.claude_code_service import INSTALL_HINT, find_claude

        if find_claude() is None:
            raise MissingProgramError(f"service claude-code needs `claude`: {INSTALL_HINT}", where)
        return _config(person, label, provider, None, None)

    if base_dir is None:
        from dipeo_cli.paths import base_dir as default_base_dir

        base_dir = default_base_dir()
    store = _key_file_path(base_dir, key_file)
    key = _find_key(person, provider, store, where)
    # "replay": answers come from a recorded execution, so no key is needed (none is sent)
    if key is None and provider.needs_key and override != "replay":
        raise MissingKeyError(_missing_key_reason(person, provider, store, base_dir), where)
    register_secret(key)
    return _config(person, label, provider, key, _base_url(person, provider, where))


def _config(
    person: Any, label: str, provider: Provider, key: str | None, base_url: str | None
) -> PersonConfig:
    return PersonConfig(
        person_id=person.id,
        label=label,
        service=provider.service,
        provider=provider.name,
        model=person.model,
        api_key=key,
        base_url=base_url,
        system_prompt=person.system_prompt or None,
    )


def _base_url(person: Any, provider: Provider, where: str) -> str | None:
    extra = getattr(person, "extra", None) or {}
    url = getattr(person, "base_url", None) or extra.get("base_url") or extra.get("baseUrl")
    if not url and provider.name == "ollama":
        host = os.environ.get("OLLAMA_HOST") or "http://localhost:11434"
        if "://" not in host:
            host = f"http://{host}"
        url = host.rstrip("/") + "/v1"
    if not url and provider.base_url_env:
        url = os.environ.get(provider.base_url_env)
    url = url or provider.base_url
    if url is not None and not str(url).startswith(("http://", "https://")):
        raise LLMConfigError(f"base_url must start with http:// or https://, got {url!r}", where)
    return str(url) if url else None


def _key_file_path(base_dir: Path, key_file: Path | None) -> Path:
    if key_file is not None:
        return Path(key_file)
    configured = os.environ.get(KEY_FILE_ENV)
    if configured:
        path = Path(configured).expanduser()
        return path if path.is_absolute() else base_dir / path
    return base_dir / "files" / "apikeys.json"


def _find_key(person: Any, provider: Provider, store: Path, where: str) -> str | None:
    key_id = (getattr(person, "api_key_id", None) or "").strip()
    if key_id and os.environ.get(key_id):
        return os.environ[key_id]
    entries = _read_key_file(store, where)
    if key_id:
        found = _entry_key(entries.get(key_id))
        if found:
            return found
    for name in provider.key_env:
        if os.environ.get(name):
            return os.environ[name]
    for entry in entries.values():
        service = entry.get("service") if isinstance(entry, dict) else None
        if isinstance(service, str) and _same_provider(service, provider.name):
            found = _entry_key(entry)
            if found:
                return found
    return None


def _read_key_file(path: Path, where: str) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise LLMConfigError(f"cannot read the key file {path}: {exc.strerror}", where) from None
    try:
        data = json.loads(text) if text.strip() else {}
    except ValueError as exc:
        raise LLMConfigError(f"the key file {path} is not valid JSON: {exc}", where) from None
    if not isinstance(data, dict):
        raise LLMConfigError(
            f'the key file {path} must hold an object {{"APIKEY_...": {{"service", "key"}}}}',
            where,
        )
    return data


def _entry_key(entry: Any) -> str | None:
    if isinstance(entry, str):
        return entry or None
    if isinstance(entry, dict):
        key = entry.get("key")
        return key if isinstance(key, str) and key else None
    return None


def _same_provider(service: str, provider: str) -> bool:
    try:
        return normalize_service(service) == provider
    except LLMConfigError:
        return False


def _missing_key_reason(person: Any, provider: Provider, store: Path, base_dir: Path) -> str:
    try:
        shown = store.relative_to(base_dir).as_posix()
    except ValueError:
        shown = str(store)
    variables = " or ".join(provider.key_env)
    key_id = getattr(person, "api_key_id", None)
    if key_id:
        return (
            f"no API key for {provider.name}: set {variables}, "
            f"or define {key_id} in the environment or in {shown}"
        )
    return (
        f"no API key for {provider.name}: set {variables}, or give the person an "
        f"api_key_id naming an environment variable or an entry of {shown}"
    )


# -- run time: one official client per (provider, endpoint, key) per run -------------------------


def llm_client(config: PersonConfig, resources: Any) -> LLMClient:
    """The client for a resolved person, created on first use and cached in the run's
    `RunResources` (closed when the run ends). The SDK modules are imported here, never when
    `dipeo_cli.llm` is imported."""
    if config.service == "mock":
        from dipeo_cli.llm.mock import MockClient

        return cast(
            LLMClient,
            resources.service(
                f"llm.mock:{config.person_id}", lambda: MockClient(config), _no_close
            ),
        )
    if config.service == "claude-code":
        from dipeo_cli.llm.claude_code_service import ClaudeCodeClient

        return cast(
            LLMClient,
            resources.service(
                f"llm.claude-code:{config.person_id}", lambda: ClaudeCodeClient(config), _no_close
            ),
        )
    fingerprint = hashlib.sha256((config.api_key or "").encode()).hexdigest()[:16]
    name = f"llm.{config.service}:{config.base_url or '-'}:{fingerprint}"
    if config.service == "openai":
        from dipeo_cli.llm import openai_service

        sdk = resources.service(name, lambda: openai_service.new_client(config), _close)
        return openai_service.OpenAIChat(sdk, config)
    if config.service == "anthropic":
        from dipeo_cli.llm import anthropic_service

        sdk = resources.service(name, lambda: anthropic_service.new_client(config), _close)
        return anthropic_service.AnthropicChat(sdk, config)
    raise LLMConfigError(f"no client for service {config.service!r}", f"person '{config.label}'")


def _no_close(_: Any) -> None:
    return None


def _close(client: Any) -> Any:
    return client.close()
