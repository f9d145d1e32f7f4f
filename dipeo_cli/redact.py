"""Keep secrets out of the history database, the terminal and the logs.

A secret is
- the value of an environment variable whose name looks secret (`*_KEY`, `*_API_KEY`,
  `*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*_AUTH*`, case-insensitive), read once and cached
  (`refresh_secrets()` reads the environment again), and
- any value handed to `register_secret()` (handlers register keys they load from key files).

Values shorter than 8 characters are ignored: they are too common to replace safely.

    redact(text)          the text with every secret replaced by "***" (longest first)
    redact_json(obj)      a deep copy of a JSON value: secrets in strings replaced, and values
                          under keys such as "Authorization", "api_key", "password", "token"
                          replaced by "***"
    dump_redacted(obj)    compact JSON text of redact_json(obj); values that are not JSON are
                          written as their (redacted) str(), pydantic models as their dump

With no secrets known, strings are not scanned at all; only dict keys are checked.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from typing import Any

MASK = "***"
MIN_SECRET_LENGTH = 8

_SECRET_NAME = re.compile(r"(?:_KEY$|APIKEY$|TOKEN|SECRET|PASSWORD|_AUTH)", re.IGNORECASE)
# Keys whose value is a credential whatever it looks like. Anchored at the end (after a
# separator) so that "token_usage", "max_tokens" or "tokens" are not caught.
_SECRET_KEY = re.compile(
    r"(?:^|[_\-. ])(?:authorization|(?:api|secret|private|access)[_\-]?key|apikey|"
    r"password|passwd|token|secret)$",
    re.IGNORECASE,
)

_env_secrets: frozenset[str] | None = None
_registered: set[str] = set()
_secrets: tuple[str, ...] | None = None  # env + registered, longest first


def secret_values() -> tuple[str, ...]:
    """Every known secret, longest first (cached; see `refresh_secrets`)."""
    global _env_secrets, _secrets
    if _secrets is None:
        if _env_secrets is None:
            _env_secrets = frozenset(
                value
                for name, value in os.environ.items()
                if len(value) >= MIN_SECRET_LENGTH and _SECRET_NAME.search(name)
            )
        _secrets = tuple(sorted(_env_secrets | _registered, key=len, reverse=True))
    return _secrets


def refresh_secrets() -> None:
    """Read the environment again on the next use (registered secrets are kept)."""
    global _env_secrets, _secrets
    _env_secrets = None
    _secrets = None


def register_secret(value: str | None) -> None:
    """Treat `value` as a secret from now on (e.g. an API key read from a key file)."""
    global _secrets
    if value and len(value) >= MIN_SECRET_LENGTH and value not in _registered:
        _registered.add(value)
        _secrets = None


def redact(text: str) -> str:
    """`text` with every known secret replaced by "***"."""
    secrets = _secrets if _secrets is not None else secret_values()
    if not secrets or not isinstance(text, str):
        return text
    return _redact_str(text, secrets)


_URL_PASSWORD = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)([^@\s]*)(@)")


def mask_url_password(url: str) -> str:
    """`scheme://user:password@host/...` with the password masked (and registered as a
    secret, so that no later output shows it either)."""
    match = _URL_PASSWORD.match(url)
    if not match:
        return redact(url)
    register_secret(match.group(2))
    return redact(url[: match.start(2)] + MASK + url[match.end(2) :])


def redact_json(obj: Any) -> Any:
    """A deep copy of the JSON value `obj` with secrets and credential-named values masked.

    Tuples become lists; values that are not JSON types are returned as they are.
    """
    secrets = _secrets if _secrets is not None else secret_values()
    return _walk(obj, secrets, True)


def dump_redacted(obj: Any) -> str:
    """Compact JSON text of `redact_json(obj)`; what the history database stores."""
    secrets = _secrets if _secrets is not None else secret_values()
    try:
        return _ENCODER.encode(_walk(obj, secrets, False))
    except (ValueError, TypeError, RecursionError):
        # circular or absurdly deep structures: keep something readable, never fail a run
        return _ENCODER.encode(_redact_str(str(obj), secrets))


def _redact_str(text: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


@lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


def _walk(obj: Any, secrets: tuple[str, ...], copy: bool) -> Any:
    """`obj` with secrets masked. With copy=False, containers in which nothing changed are
    returned as they are (for immediate serialisation only)."""
    if isinstance(obj, str):
        return _redact_str(obj, secrets) if secrets else obj
    if isinstance(obj, dict):
        out = {}
        changed = copy
        for key, value in obj.items():
            if isinstance(key, str):
                if value is not None and _is_secret_key(key):
                    new = MASK
                else:
                    new = _walk(value, secrets, copy)
                if secrets:
                    masked = _redact_str(key, secrets)
                    if masked is not key:
                        key, changed = masked, True
            else:
                new = _walk(value, secrets, copy)
            if new is not value:
                changed = True
            out[key] = new
        return out if changed else obj
    if isinstance(obj, (list, tuple)):
        items = [_walk(item, secrets, copy) for item in obj]
        if (
            copy
            or isinstance(obj, tuple)
            or any(a is not b for a, b in zip(items, obj, strict=True))
        ):
            return items
        return obj
    return obj


def _default(obj: Any) -> Any:
    secrets = _secrets if _secrets is not None else secret_values()
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return _walk(dump(mode="json"), secrets, False)
        except Exception:  # a model that cannot dump itself is still written as text
            pass
    return _redact_str(str(obj), secrets)


_ENCODER = json.JSONEncoder(default=_default, ensure_ascii=False, separators=(",", ":"))


class RedactingStream:
    """A text stream that removes known secrets from everything written to it, so that no
    report (summary, live table, show) can print an API key taken from the environment."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(redact(text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
