"""mypy strict holds for the package (the settings are [tool.mypy] in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "dipeo_cli"


@pytest.mark.timeout(180)  # ~20 s on two idle cores; room for a machine running other suites
def test_mypy_finds_nothing(tmp_path):
    """Run in CI through the suite; a cold cache (tmp_path) so a stale one never hides an error."""
    repo = PACKAGE.parent
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy"), "--no-color-output"],
        cwd=repo,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
