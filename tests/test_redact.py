from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import date
from urllib.parse import quote, quote_plus

import pytest

from dipeo_cli import redact
from dipeo_cli.redact import dump_redacted, redact_json, register_secret, secret_values

KEY = "sk-test-SECRET123456"


@pytest.fixture(autouse=True)
def clean_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Only the variables a test sets count as secrets; registrations do not leak."""
    import os

    for name in list(os.environ):
        if redact._SECRET_NAME.search(name):
            monkeypatch.delenv(name)
    monkeypatch.setattr(redact, "_registered", set())
    redact.refresh_secrets()
    yield
    redact.refresh_secrets()


def test_secret_looking_variables_are_collected(monkeypatch: pytest.MonkeyPatch) -> None:
    values = {
        "OPENAI_API_KEY": "sk-openai-0001",
        "MY_KEY": "value-0002-long",
        "GITHUB_TOKEN": "ghp_00000003",
        "client_secret_value": "secret-0004",
        "DB_PASSWORD": "hunter2hunter2",
        "PROXY_AUTH_HEADER": "Basic 00000005",
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME_DIRECTORY", "/not/a/secret/at/all")
    monkeypatch.setenv("KEYBOARD_LAYOUT", "us-international")
    redact.refresh_secrets()
    assert set(secret_values()) == set(values.values())


def test_short_values_are_not_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    redact.refresh_secrets()
    assert secret_values() == ()
    assert redact.redact("false") == "false"


def test_values_are_cached_until_refreshed(monkeypatch: pytest.MonkeyPatch) -> None:
    assert redact.redact(KEY) == KEY
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    assert redact.redact(KEY) == KEY
    redact.refresh_secrets()
    assert redact.redact(KEY) == "***"


def test_redact_replaces_every_occurrence_longest_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHORT_TOKEN", "abcdefgh")
    monkeypatch.setenv("LONG_TOKEN", "abcdefgh-ijklmnop")
    redact.refresh_secrets()
    text = "a=abcdefgh-ijklmnop b=abcdefgh c=abcdefgh-ijklmnop"
    assert redact.redact(text) == "a=*** b=*** c=***"


def test_registered_secrets_are_redacted() -> None:
    register_secret("from-a-key-file-123")
    register_secret("short")  # ignored: too common to replace safely
    assert redact.redact("key from-a-key-file-123 short") == "key *** short"


def test_without_secrets_text_is_returned_untouched() -> None:
    text = "nothing to hide here"
    assert redact.redact(text) is text


def test_redact_json_masks_strings_and_credential_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    redact.refresh_secrets()
    value = {
        "default": f"the key is {KEY}",
        "headers": {"Authorization": "Bearer abc", "X-Api-Key": "abc", "Accept": "json"},
        "config": {"api_key": "plain", "apiKey": "plain", "password": 1234, "token": "t"},
        "list": [KEY, ("tuple", KEY)],
        "client_secret": {"nested": "anything"},
        "token_usage": {"input": 1, "output": 2, "total": 3},
        "max_tokens": 100,
        "access_token": None,
    }
    assert redact_json(value) == {
        "default": "the key is ***",
        "headers": {"Authorization": "***", "X-Api-Key": "***", "Accept": "json"},
        "config": {"api_key": "***", "apiKey": "***", "password": "***", "token": "***"},
        "list": ["***", ["tuple", "***"]],
        "client_secret": "***",
        "token_usage": {"input": 1, "output": 2, "total": 3},
        "max_tokens": 100,
        "access_token": None,
    }


def test_redact_json_returns_a_deep_copy() -> None:
    value = {"a": {"b": [1, 2]}}
    copy = redact_json(value)
    copy["a"]["b"].append(3)
    assert value == {"a": {"b": [1, 2]}}


def test_dump_redacted_writes_non_json_values_as_redacted_text(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    redact.refresh_secrets()

    class Client:
        def __str__(self) -> str:
            return f"Client(key={KEY})"

    text = dump_redacted({"when": date(2024, 1, 2), "client": Client(), "n": 1})
    assert KEY not in text
    assert json.loads(text) == {"when": "2024-01-02", "client": "Client(key=***)", "n": 1}


def test_dump_redacted_survives_circular_values() -> None:
    value: dict[str, object] = {}
    value["self"] = value
    assert isinstance(json.loads(dump_redacted(value)), str)


WEIRD = "we\"ird\\tok-SECRET 7/Q'é"


@pytest.mark.parametrize(
    "form",
    [
        json.dumps(WEIRD)[1:-1],  # JSON-escaped, \u00e9
        json.dumps(WEIRD, ensure_ascii=False)[1:-1],
        json.dumps(json.dumps(WEIRD)[1:-1])[1:-1],  # escaped twice
        repr(WEIRD)[1:-1],
        repr(WEIRD + '"')[1:-2],  # repr escaping the single quote
        quote(WEIRD, safe=""),  # %20
        re.sub("%..", lambda m: m.group().lower(), quote(WEIRD, safe="")),  # lower-case hex
        quote(WEIRD),  # slash kept
        quote_plus(WEIRD),  # +
        base64.b64encode(WEIRD.encode()).decode(),
        base64.urlsafe_b64encode(WEIRD.encode()).decode().rstrip("="),
    ],
)
def test_every_encoding_a_server_echoes_is_masked(form: str) -> None:
    register_secret(WEIRD)
    assert redact.redact(f"error: got {form}!") == "error: got ***!"
    assert form not in dump_redacted({"error": f"got {form}"})


@pytest.mark.parametrize("user", ["b", "bo", "bob", "alice.smith"])
def test_base64_of_user_and_secret_is_masked_whatever_the_user(user: str) -> None:
    register_secret(WEIRD)
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        credentials = encode(f"{user}:{WEIRD}".encode()).decode()
        masked = redact.redact(f"Authorization: Basic {credentials}")
        assert "***" in masked
        # what is left of the base64 text encodes the user and at most 4 bits of the secret
        left = masked.removeprefix("Authorization: Basic ").replace("***", "")
        assert len(left) <= len(encode(f"{user}:".encode()).decode()) + 3


def test_encodings_are_computed_once_per_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = redact._encode
    monkeypatch.setattr(redact, "_encoded", {})
    monkeypatch.setattr(redact, "_encode", lambda s: calls.append(s) or real(s))
    register_secret("first-secret-value")
    redact.redact("x")
    register_secret("second-secret-value")
    redact.redact("x")
    redact.refresh_secrets()
    redact.redact("x")
    assert sorted(calls) == ["first-secret-value", "second-secret-value"]


def test_text_without_a_secret_comes_back_as_the_same_object() -> None:
    register_secret(WEIRD)
    text = "an ordinary value, long enough to be scanned " * 10
    assert redact.redact(text) is text
    assert redact.redact(WEIRD) == "***"


def test_a_short_form_of_a_long_secret_does_not_mask_ordinary_text() -> None:
    register_secret("abc def ghi")  # its encodings are all at least 8 characters long
    assert all(len(form) >= 8 for form in redact.encodings("abc def ghi"))
    assert redact.redact("abc def") == "abc def"


def test_captured_output_is_masked_before_it_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    from dipeo_cli import processes

    monkeypatch.setattr(processes, "CAPTURE_LIMIT", 20)
    register_secret("abcdefgh12345678XYZ")
    assert processes.clip("0123456789abcdefgh12345678XYZ").startswith("0123456789***\n[...")
