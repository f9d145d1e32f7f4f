"""Keep secrets out of the history database, the terminal and the logs.

A secret is
- the value of an environment variable whose name looks secret (`*_KEY`, `*_API_KEY`,
  `*TOKEN*`, `*SECRET*`, `*PASSWORD*`, `*_AUTH*`, case-insensitive), read once and cached
  (`refresh_secrets()` reads the environment again), and
- any value handed to `register_secret()` (handlers register keys they load from key files).

Values shorter than 8 characters are ignored: they are too common to replace safely.

A secret is masked in every form a server commonly echoes it in (see `encodings`): as written,
JSON-escaped (once or twice, ASCII-only or not), as a Python repr, URL-encoded (`%20` or `+` for
spaces, upper- or lower-case hex), and base64 (standard or URL-safe, alone or inside a longer
base64 text such as the `user:pass` of basic auth). The encodings are computed once per secret
and joined into one compiled alternation, longest first, so masking costs one regex scan.

    redact(text)          the text with every secret replaced by "***" (longest first)
    redact_json(obj)      a deep copy of a JSON value: secrets in strings replaced, and values
                          under keys such as "Authorization", "api_key", "password", "token"
                          replaced by "***"
    dump_redacted(obj)    compact JSON text of redact_json(obj); values that are not JSON are
                          written as their (redacted) str(), pydantic models as their dump

With no secrets known, strings are not scanned at all; only dict keys are checked.
"""

from __future__ import annotations

import base64
import json
import os
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

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
_masker: _Masker | None = None  # masks every encoding of every secret (None: no secrets)
_encoded: dict[str, tuple[frozenset[str], frozenset[str]]] = {}  # secret -> (forms, anchors)

_SAFE_RUN = re.compile(r"[A-Za-z0-9_.~-]+")  # what JSON, URL-encoding and repr leave as it is
_B64_RUN = re.compile(r"[A-Za-z0-9]+")  # what both base64 alphabets write alike
_URLSAFE = str.maketrans("+/", "-_")


class _Masker:
    """One compiled alternation of every form of every secret, longest first, and the anchors:
    substrings one of which each form contains, so that text holding none (nearly all text) is
    passed by a few substring tests instead of a regex scan."""

    __slots__ = ("anchors", "pattern")

    def __init__(self, forms: set[str], anchors: set[str]) -> None:
        ordered = sorted(forms, key=lambda form: (-len(form), form))
        self.pattern = re.compile("|".join(map(re.escape, ordered)))
        kept: list[str] = []
        for anchor in sorted(anchors, key=len):  # one that holds a shorter one is never needed
            if not any(shorter in anchor for shorter in kept):
                kept.append(anchor)
        self.anchors = tuple(kept)

    def mask(self, text: str) -> str:
        """`text` with every form replaced by MASK; the very same object when none is there."""
        for anchor in self.anchors:
            if anchor in text:
                return self.pattern.sub(MASK, text)
        return text


def secret_values() -> tuple[str, ...]:
    """Every known secret, longest first (cached; see `refresh_secrets`)."""
    global _env_secrets, _secrets, _masker
    if _secrets is None:
        if _env_secrets is None:
            _env_secrets = frozenset(
                value
                for name, value in os.environ.items()
                if len(value) >= MIN_SECRET_LENGTH and _SECRET_NAME.search(name)
            )
        secrets = tuple(sorted(_env_secrets | _registered, key=len, reverse=True))
        forms: set[str] = set()
        anchors: set[str] = set()
        for secret in secrets:
            if secret not in _encoded:
                _encoded[secret] = _encode(secret)
            forms |= _encoded[secret][0]
            anchors |= _encoded[secret][1]
        _masker = _Masker(forms, anchors) if forms else None
        _secrets = secrets
    return _secrets


def encodings(secret: str) -> frozenset[str]:
    """The forms of `secret` that are masked: as written, JSON-escaped (once and twice), Python
    repr (either quote escaped), URL-encoded (%20 or +, either case of hex), and base64 (alone, and the part of any longer base64 text that encodes it,
    at each of the three byte alignments: `user:secret` in basic auth, whatever the user)."""
    return _encode(secret)[0]


def _encode(secret: str) -> tuple[frozenset[str], frozenset[str]]:
    """(forms, anchors) of `secret`: every form contains one of the anchors."""
    # repr escapes a quote only when the text around it holds the other quote too
    texts = {secret, repr(secret)[1:-1], repr(secret + "'\"")[1:-4]}
    for ascii_only in (True, False):
        once = json.dumps(secret, ensure_ascii=ascii_only)[1:-1]
        texts |= {once, json.dumps(once, ensure_ascii=ascii_only)[1:-1], once.replace("/", "\\/")}
    for encoded in (quote(secret, safe=""), quote(secret), quote_plus(secret)):
        texts |= {encoded, re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), encoded)}
    safe = max(_SAFE_RUN.findall(secret), key=len, default="")
    anchors = {safe} if len(safe) >= 4 else set(texts)

    raw = secret.encode("utf-8")
    whole = base64.b64encode(raw).decode("ascii")
    b64 = {whole, whole.rstrip("=")}
    for shift in range(3):  # `secret` starting at byte 0, 1 or 2 of a 3-byte base64 group
        text = base64.b64encode(bytes(shift) + raw).decode("ascii")
        core = text[-(-8 * shift // 6) : (8 * (shift + len(raw))) // 6]
        b64.add(core)
        run = max(_B64_RUN.findall(core), key=len, default="")
        anchors |= {run} if len(run) >= 4 else {core, core.translate(_URLSAFE)}
    b64 |= {form.translate(_URLSAFE) for form in b64}
    forms = frozenset(form for form in texts | b64 if len(form) >= MIN_SECRET_LENGTH)
    return forms, frozenset(anchors)


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
    """`text` with every known secret, in any of its encodings, replaced by "***"."""
    masker = _current()
    if masker is None or not isinstance(text, str):
        return text
    return masker.mask(text)


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
    return _walk(obj, _current(), True)


def redact_record(record: dict[str, Any]) -> dict[str, Any]:
    """`redact_json` of a record (a dict keyed by strings), typed as one."""
    masked: dict[str, Any] = _walk(record, _current(), True)
    return masked


def dump_redacted(obj: Any) -> str:
    """Compact JSON text of `redact_json(obj)`; what the history database stores."""
    masker = _current()
    try:
        return _dump_json(_walk(obj, masker, False))
    except (ValueError, TypeError, RecursionError):
        # circular or absurdly deep structures: keep something readable, never fail a run
        text = str(obj)
        return _dump_json(masker.mask(text) if masker is not None else text)


def _current() -> _Masker | None:
    if _secrets is None:
        secret_values()
    return _masker


@lru_cache(maxsize=4096)
def _is_secret_key(key: str) -> bool:
    return _SECRET_KEY.search(key) is not None


# Values with nothing to mask inside: most of what a run records (numbers, flags) is these.
_PLAIN = frozenset({int, float, bool, type(None)})


def _walk(obj: Any, secrets: _Masker | None, copy: bool) -> Any:
    """`obj` with secrets masked. With copy=False, containers in which nothing changed are
    returned as they are (for immediate serialisation only)."""
    if type(obj) in _PLAIN:
        return obj
    if isinstance(obj, str):
        return secrets.mask(obj) if secrets is not None else obj
    if isinstance(obj, dict):
        out = {}
        changed = copy
        for key, value in obj.items():
            if isinstance(key, str):
                if value is not None and _is_secret_key(key):
                    new = MASK
                elif type(value) in _PLAIN:
                    new = value
                else:
                    new = _walk(value, secrets, copy)
                if secrets is not None:
                    masked = secrets.mask(key)
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
    secrets = _current()
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        try:
            return _walk(dump(mode="json"), secrets, False)
        except Exception:  # a model that cannot dump itself is still written as text
            pass
    text = str(obj)
    return secrets.mask(text) if secrets is not None else text


def compact_json(
    default: Callable[[Any], Any] | None = None, *, sort_keys: bool = False
) -> Callable[[Any], str]:
    """A function giving the compact JSON text of a value (non-ASCII kept, `default` for other
    types), as `json.JSONEncoder(...).encode` does minus its setup on every call: the history
    writes several small values per node, and that setup was most of their cost (1.1 against
    0.35 us for `{"default": 1}`). Circular values raise RecursionError (no cycle check)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # a Python without the C accelerator
        return json.JSONEncoder(
            default=default, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys
        ).encode
    encode = make(
        None, default, json.encoder.encode_basestring, None, ":", ",", sort_keys, False, True
    )

    def dumps(value: Any) -> str:
        return "".join(encode(value, 0))

    return dumps


_dump_json = compact_json(_default)


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
