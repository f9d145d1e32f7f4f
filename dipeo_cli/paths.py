"""Where dipeo keeps its data and where diagrams' relative paths resolve.

    data_dir()          $DIPEO_HOME, else the user data directory + "dipeo"
    default_db_path()   data_dir() / "history.db"
    default_db()        $DIPEO_DB (a path or URL), else default_db_path(); `--db` beats both
    base_dir()          $DIPEO_BASE_DIR, else the current directory

The user data directory follows each platform's convention, without a third-party dependency:
Linux and other Unixes `$XDG_DATA_HOME` (when absolute, as the XDG spec demands) or
`~/.local/share`; macOS `~/Library/Application Support`; Windows `%LOCALAPPDATA%`.
Nothing here creates a directory: the history store does when it opens the database.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

APP_NAME = "dipeo"
DB_ENV = "DIPEO_DB"
DB_FILE_NAME = "history.db"


def data_dir() -> Path:
    """The directory holding dipeo's data (the history database)."""
    home = os.environ.get("DIPEO_HOME")
    if home:
        return Path(home).expanduser()
    return _user_data_dir() / APP_NAME


def default_db_path() -> Path:
    """The history database used when `--db` is not given."""
    return data_dir() / DB_FILE_NAME


def default_db() -> str | Path:
    """The history used when `--db` is not given: `$DIPEO_DB` (the same forms as `--db`: a
    file path, `sqlite:///PATH`, `:memory:`, `postgresql://...`), else `default_db_path()`."""
    chosen = os.environ.get(DB_ENV, "").strip()
    if not chosen:
        return default_db_path()
    return chosen if "://" in chosen or chosen == ":memory:" else Path(chosen).expanduser()


def base_dir() -> Path:
    """Where diagrams' relative file paths resolve: `$DIPEO_BASE_DIR`, else the cwd."""
    base = os.environ.get("DIPEO_BASE_DIR")
    if base:
        return Path(base).expanduser().absolute()
    return Path.cwd()


def _user_data_dir() -> Path:
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return Path(local) if local else Path.home() / "AppData" / "Local"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support"
    xdg = os.environ.get("XDG_DATA_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg)
    return Path.home() / ".local" / "share"
