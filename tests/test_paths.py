from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dipeo_cli import paths


@pytest.fixture
def no_dipeo_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("DIPEO_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    return home


def test_dipeo_home_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DIPEO_HOME", str(tmp_path / "custom"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.data_dir() == tmp_path / "custom"
    assert paths.default_db_path() == tmp_path / "custom" / "history.db"


def test_linux_uses_xdg_data_home(
    monkeypatch: pytest.MonkeyPatch, no_dipeo_home: Path, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert paths.data_dir() == tmp_path / "xdg" / "dipeo"


def test_linux_falls_back_to_local_share(
    monkeypatch: pytest.MonkeyPatch, no_dipeo_home: Path
) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    assert paths.data_dir() == no_dipeo_home / ".local" / "share" / "dipeo"


def test_relative_xdg_data_home_is_ignored_as_the_spec_says(
    monkeypatch: pytest.MonkeyPatch, no_dipeo_home: Path
) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/dir")
    assert paths.data_dir() == no_dipeo_home / ".local" / "share" / "dipeo"


def test_macos_uses_application_support(
    monkeypatch: pytest.MonkeyPatch, no_dipeo_home: Path
) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    expected = no_dipeo_home / "Library" / "Application Support" / "dipeo"
    assert paths.data_dir() == expected


def test_windows_uses_local_app_data(
    monkeypatch: pytest.MonkeyPatch, no_dipeo_home: Path, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setenv("LOCALAPPDATA", str(tmp_path / "AppData" / "Local"))
    assert paths.data_dir() == tmp_path / "AppData" / "Local" / "dipeo"


def test_base_dir_is_the_cwd_unless_set(
    monkeypatch: pytest.MonkeyPatch, isolated: Path, tmp_path: Path
) -> None:
    assert paths.base_dir() == isolated
    monkeypatch.setenv("DIPEO_BASE_DIR", str(tmp_path / "files"))
    assert paths.base_dir() == tmp_path / "files"


def test_relative_base_dir_is_made_absolute(
    monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    monkeypatch.setenv("DIPEO_BASE_DIR", "files")
    assert paths.base_dir() == isolated / "files"


def test_dipeo_db_names_the_default_history(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DIPEO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DIPEO_DB", raising=False)
    assert paths.default_db() == tmp_path / "home" / "history.db"
    monkeypatch.setenv("DIPEO_DB", "postgresql://u:p@db.example:5432/dipeo")
    assert paths.default_db() == "postgresql://u:p@db.example:5432/dipeo"
    monkeypatch.setenv("DIPEO_DB", str(tmp_path / "elsewhere.db"))
    assert paths.default_db() == tmp_path / "elsewhere.db"
    monkeypatch.setenv("DIPEO_DB", "   ")
    assert paths.default_db() == tmp_path / "home" / "history.db"
