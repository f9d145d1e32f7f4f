"""The corpus report: every DiPeO diagram file validates, or is rejected with its reason, with no
API key set. Run with `-s` to see the table (`validates` / `rejected: reason`)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app
from tests.conftest import DIPEO_EXAMPLES, needs_examples

pytestmark = needs_examples
KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GOOGLE_API_KEY", "GEMINI_API_KEY")


def corpus() -> list:
    files = []
    for path in sorted(DIPEO_EXAMPLES.rglob("*")):
        if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
            text = path.read_text(encoding="utf-8", errors="replace")
            if "nodes" in text:
                files.append(path)
    return files


def report() -> list[tuple[str, str]]:
    rows = []
    for path in corpus():
        result = CliRunner().invoke(app, ["validate", str(path), "--json"])
        data = json.loads(result.stdout)
        name = str(path.relative_to(DIPEO_EXAMPLES))
        if data["valid"]:
            rows.append((name, f"validates ({len(data['warnings'])} warning(s))"))
        else:
            first = data["problems"][0]
            rows.append((name, f"rejected: {first['where'] or ''} {first['message']}"[:160]))
    return rows


def test_at_least_22_corpus_files_validate_without_api_keys(monkeypatch: pytest.MonkeyPatch):
    for key in KEYS:
        monkeypatch.delenv(key, raising=False)
    rows = report()
    for name, outcome in rows:
        print(f"{name:75} {outcome}")
    valid = sum(outcome.startswith("validates") for _, outcome in rows)
    print(f"{valid} of {len(rows)} validate")
    assert len(rows) >= 30
    assert valid >= 22, "\n".join(f"{n}: {o}" for n, o in rows)
