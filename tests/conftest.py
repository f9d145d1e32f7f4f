"""Every test gets its own data directory (history database) and working directory.

DiPeO's own example diagrams are not part of this repository. Tests that use them find them
through one setting, the environment variable DIPEO_EXAMPLES_DIR (default
`../shared/diagrams/dipeo` next to the repository; a relative value is taken from the repository
root), and are skipped, naming the variable, when that folder is absent.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.llm_server import llm_server  # noqa: F401  (the fake LLM provider fixture)
from tests.pgserver import postgres_db, postgres_url  # noqa: F401  (a real PostgreSQL server)

REPO = Path(__file__).resolve().parent.parent
EXAMPLES_ENV = "DIPEO_EXAMPLES_DIR"
DIPEO_EXAMPLES = (REPO / os.environ.get(EXAMPLES_ENV, "../shared/diagrams/dipeo")).resolve()
HAVE_EXAMPLES = DIPEO_EXAMPLES.is_dir()
EXAMPLES_MISSING = (
    f"DiPeO example diagrams not found at {DIPEO_EXAMPLES} (set {EXAMPLES_ENV} to their folder)"
)
needs_examples = pytest.mark.skipif(not HAVE_EXAMPLES, reason=EXAMPLES_MISSING)


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "dipeo-home"
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.setenv("DIPEO_HOME", str(home))
    monkeypatch.delenv("DIPEO_BASE_DIR", raising=False)
    monkeypatch.delenv("DIPEO_DB", raising=False)  # a developer's shared history stays out
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.delenv("DIPEO_LLM", raising=False)
    monkeypatch.delenv("COLUMNS", raising=False)  # piped reports follow COLUMNS when set
    monkeypatch.chdir(work)
    yield work
    from dipeo_cli.redact import refresh_secrets

    refresh_secrets()  # secrets are read from the environment once per process
