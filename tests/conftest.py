"""Every test gets its own data directory (history database) and working directory."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.llm_server import llm_server  # noqa: F401  (the fake LLM provider fixture)

REPO = Path(__file__).resolve().parent.parent
SHARED_DIAGRAMS = REPO.parent / "shared" / "diagrams" / "dipeo"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "dipeo-home"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("DIPEO_HOME", str(home))
    monkeypatch.delenv("DIPEO_BASE_DIR", raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("DIPEO_LLM", raising=False)
    monkeypatch.chdir(work)
    yield work
    from dipeo_cli.redact import refresh_secrets

    refresh_secrets()  # secrets are read from the environment once per process
