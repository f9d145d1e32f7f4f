"""A secret never reaches the history database, the terminal or `show`, in any form a server
echoes it in: JSON-escaped (a secret with quotes and backslashes), URL-encoded (%20 and +),
base64 alone and base64 of `user:secret` (basic auth).

Each test runs the real `dipeo` in subprocesses against a server on 127.0.0.1 that answers with
an error echoing the credential, then searches every output and the database bytes (with its
-wal file) for every form of the secret.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import quote, quote_plus

from tests.httpkit import Request, serve
from tests.llm_server import Reply

# quotes, a backslash, a space and a slash: every escaping scheme changes it
TOKEN = 'we"ird\\tok-SECRET 7/Q'
KEY = "sk-we\"ird\\tok-KEY 9/Z'x"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def forms(secret: str) -> dict[str, str]:
    """The secret as servers echo it (and as it looks once more JSON-escaped in the database)."""
    escaped = json.dumps(secret)[1:-1]
    return {
        "raw": secret,
        "json": escaped,
        "json twice": json.dumps(escaped)[1:-1],
        "url %20": quote(secret, safe=""),
        "url +": quote_plus(secret),
        "base64": b64(secret),
        "base64 user:pass": b64(f"bob:{secret}"),
    }


def dipeo(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dipeo_cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def everything_written(run_args: list[str], env: dict[str, str] | None = None) -> dict[str, str]:
    """stdout and stderr of `run --json`, `run`, `show`, `show --json`, and the database bytes."""
    texts: dict[str, str] = {}
    for name, args in {
        "run --json": ["run", *run_args, "--json"],
        "run": ["run", *run_args],
        "show": ["show", "latest"],
        "show --json": ["show", "latest", "--json"],
        "history --json": ["history", "--json"],
    }.items():
        proc = dipeo(*args, env=env)
        assert "Traceback" not in proc.stderr, proc.stderr
        texts[f"{name} stdout"], texts[f"{name} stderr"] = proc.stdout, proc.stderr
    home = Path(os.environ["DIPEO_HOME"])
    files = sorted(home.glob("history.db*"))
    assert files, "no history database"
    for path in files:
        texts[path.name] = path.read_bytes().decode("utf-8", "replace")
    return texts


def leaks(texts: dict[str, str], secret: str) -> list[str]:
    return [
        f"{form} form in {where}"
        for where, text in texts.items()
        for form, value in forms(secret).items()
        if value in text
    ]


API_DIAGRAM = """\
version: light
nodes:
  - {label: Start, type: start}
  - label: Json
    type: api_job
    url: "{{base}}/json"
    auth_type: bearer
    auth_config: {token: "{{WEIRD_API_TOKEN}}"}
    max_retries: 0
  - label: Percent
    type: api_job
    url: "{{base}}/percent"
    auth_type: bearer
    auth_config: {token: "{{WEIRD_API_TOKEN}}"}
    max_retries: 0
  - label: Plus
    type: api_job
    url: "{{base}}/plus"
    params: {q: "{{token}}"}
    max_retries: 0
  - label: Base64
    type: api_job
    url: "{{base}}/b64"
    auth_type: api_key
    auth_config: {key_name: X-Token, key_value: "{{WEIRD_API_TOKEN}}"}
    max_retries: 0
  - label: Basic
    type: api_job
    url: "{{base}}/basic"
    auth_type: basic
    auth_config: {username: bob, password: "{{WEIRD_API_TOKEN}}"}
    max_retries: 0
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Json}
  - {from: Start, to: Percent}
  - {from: Start, to: Plus}
  - {from: Start, to: Base64}
  - {from: Start, to: Basic}
  - {from: Json, to: End, label: json}
  - {from: Percent, to: End, label: percent}
  - {from: Plus, to: End, label: plus}
  - {from: Base64, to: End, label: b64}
  - {from: Basic, to: End, label: basic}
"""


def _bearer(request: Request) -> str:
    return request.headers.get("Authorization", "").removeprefix("Bearer ")


def _echoes(request: Request) -> tuple:
    """401 answers that echo the credential the way real servers do."""
    if request.path == "/json":  # the header, JSON-escaped in a JSON error body
        return 401, {"error": "invalid token", "got": request.headers["Authorization"]}, {}
    if request.path == "/percent":  # URL-encoded in the body and in a response header
        token = _bearer(request)
        return 401, f"bad token={quote(token, safe='')}", {"X-Echo": quote(token, safe="")}
    if request.path == "/plus":  # the query, form-encoded as the client sent it
        return 401, f"bad q={quote_plus(request.query['q'][0])}", {}
    if request.path == "/b64":
        return 401, f"bad key (base64 {b64(request.headers['X-Token'])})", {}
    return 401, f"bad credentials: {request.headers['Authorization']}", {}


def test_api_job_errors_echoing_the_token_in_any_encoding_are_masked_everywhere() -> None:
    with serve() as server:
        for path in ("/json", "/percent", "/plus", "/b64", "/basic"):
            server.script(path, _echoes)
        Path("api.light.yaml").write_text(API_DIAGRAM, encoding="utf-8")
        args = ["api.light.yaml", "--continue-on-error", "-i", f"base={server.base_url}"]
        args += ["-i", f"token={TOKEN}"]
        texts = everything_written(args, env={"WEIRD_API_TOKEN": TOKEN})
    # the credential was really sent, and really echoed
    assert server.hits("/basic")[0].headers["Authorization"] == f"Basic {b64('bob:' + TOKEN)}"
    assert server.hits("/plus")[0].query["q"] == [TOKEN]
    assert "HTTP 401" in texts["run --json stdout"]
    assert "bad key (base64 ***" in texts["show --json stdout"]
    assert leaks(texts, TOKEN) == []


PERSON_DIAGRAM = """\
version: light
persons:
  Writer: {service: openai, model: gpt-test, api_key_id: APIKEY_WEIRD1}
nodes:
  - {label: Start, type: start}
  - {label: Ask, type: person_job, person: Writer, default_prompt: Say hi.}
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Ask}
  - {from: Ask, to: End}
"""


def test_a_key_with_quotes_and_backslashes_echoed_by_the_provider_is_masked_everywhere(
    llm_server,
) -> None:
    def reject(request, n):
        key = request.headers["authorization"].removeprefix("Bearer ")
        return Reply(
            status=401,
            error=(
                f"Incorrect API key provided: {json.dumps(key)}; "
                f"as sent: {quote_plus(key)} / {quote(key, safe='')}; fingerprint {b64(key)}"
            ),
        )

    llm_server.reply_with(reject)
    Path("files").mkdir()
    Path("files/apikeys.json").write_text(
        json.dumps({"APIKEY_WEIRD1": {"service": "openai", "key": KEY}}), encoding="utf-8"
    )
    Path("person.light.yaml").write_text(textwrap.dedent(PERSON_DIAGRAM), encoding="utf-8")
    texts = everything_written(["person.light.yaml"])
    assert llm_server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert "Incorrect API key provided" in texts["run --json stdout"]
    assert leaks(texts, KEY) == []


def test_an_error_body_is_masked_before_it_is_cut_or_squeezed(monkeypatch) -> None:
    import httpx

    from dipeo_cli import redact
    from dipeo_cli.http_calls import BODY_EXCERPT, status_error
    from dipeo_cli.llm.translation import _provider_message

    monkeypatch.setattr(redact, "_registered", set())
    secret = "tab\tand  two spaces-SECRET"
    redact.register_secret(secret)
    body = "x" * (BODY_EXCERPT - 8) + secret
    response = httpx.Response(401, text=body, request=httpx.Request("GET", "http://h/"))
    message = str(status_error(response, "GET", "http://h/", {}))
    assert message.endswith("x" * 10 + "***")
    assert _provider_message("y" * 495 + secret) == "y" * 495 + "***"


CLIPPED_DIAGRAM = """\
version: light
nodes:
  - {label: Start, type: start}
  - label: Long
    type: template_job
    template_content: "{{ 'b' * 3990 }}{{ secret }}"
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Long}
  - {from: Long, to: End}
"""


def test_a_secret_where_the_summary_cuts_a_result_is_masked_not_cut_in_half(monkeypatch) -> None:
    from typer.testing import CliRunner

    from dipeo_cli import redact
    from dipeo_cli.cli import app

    secret = "abcdefgh12345678XYZ"
    monkeypatch.setenv("MY_SECRET_TOKEN", secret)
    redact.refresh_secrets()
    Path("clipped.light.yaml").write_text(CLIPPED_DIAGRAM, encoding="utf-8")
    result = CliRunner().invoke(app, ["run", "clipped.light.yaml", "-i", f"secret={secret}"])
    assert result.exit_code == 0, result.output
    assert "b" * 10 + "***" in result.stdout  # the summary cuts the result at 4,000 characters
    assert secret[:6] not in result.output
