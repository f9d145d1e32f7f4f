"""Files for handlers: paths relative to the base directory, atomic writes, and the text of
data in the formats db, endpoint, hook, template_job, diff_patch and json_schema_validator share
(json, yaml, csv, text)."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from dipeo_cli.errors import NodeError
from dipeo_cli.values import decode_json_text, to_json_safe

# The process umask, read once (reading it means setting it), for files made by tempfile.
_UMASK = os.umask(0)
os.umask(_UMASK)


def resolve_path(base_dir: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else Path(base_dir) / candidate


def display_path(base_dir: Path, path: Path) -> str:
    """The path as messages show it: relative to the base directory when inside it."""
    try:
        return str(path.relative_to(base_dir))
    except ValueError:
        return str(path)


def replace_file(path: Path, data: bytes, mode_from: Path | None = None) -> None:
    """Write `data` to `path` through a temporary file and a rename, so that a reader never
    sees half a file; parent directories are created. The file gets `mode_from`'s permissions
    when given (a patched file keeps its mode), else the usual ones. Raises OSError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        if mode_from is not None and mode_from.exists():
            shutil.copymode(mode_from, temporary)
        else:
            os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def write_atomic(path: Path, text: str) -> int:
    """Write `text` (UTF-8) to `path` with `replace_file`; returns the byte count. Raises
    NodeError when the file cannot be written."""
    data = text.encode("utf-8")
    try:
        replace_file(path, data)
    except OSError as exc:
        raise NodeError(f"cannot write {path}: {exc.strerror or exc}") from None
    return len(data)


def dump_data(value: Any, fmt: str) -> str:
    """The file text for `value` in format json | yaml | csv | text."""
    if fmt == "json":
        data = decode_json_text(value)
        if isinstance(data, str):
            try:  # a JSON scalar given as text ("42", "true") is written as that JSON
                data = json.loads(data)
            except ValueError:
                pass
        return json.dumps(to_json_safe(data)[0], indent=2, ensure_ascii=False) + "\n"
    if fmt == "yaml":
        data = decode_json_text(value)
        if isinstance(data, str):
            return data
        return yaml.safe_dump(
            to_json_safe(data)[0], sort_keys=False, allow_unicode=True, default_flow_style=False
        )
    if fmt == "csv":
        data = decode_json_text(value)
        if isinstance(data, str):
            return data
        return csv_text(csv_rows(data), header=None)
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(to_json_safe(value)[0], indent=2, ensure_ascii=False)


def read_text(path: Path, shown: str) -> str:
    if not path.is_file():
        if path.exists():
            raise NodeError(f"not a file: {shown}")
        raise NodeError(f"file not found: {shown}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise NodeError(f"{shown} is not UTF-8 text") from None
    except OSError as exc:
        raise NodeError(f"cannot read {shown}: {exc.strerror or exc}") from None


def parse_text(text: str, fmt: str, shown: str) -> Any:
    try:
        if fmt == "json":
            return json.loads(text) if text.strip() else None
        if fmt == "yaml":
            return yaml.safe_load(text)
        if fmt == "csv":
            return list(csv.DictReader(io.StringIO(text)))
    except (ValueError, yaml.YAMLError, csv.Error) as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise NodeError(f"{shown} is not valid {fmt}: {first_line}") from None
    return text


def csv_rows(data: Any) -> list[Any]:
    if isinstance(data, dict):
        return [data]
    if isinstance(data, list) and all(isinstance(row, (dict, list, tuple)) for row in data):
        return data
    raise NodeError(f"csv needs a row (a dict) or a list of rows, got {type(data).__name__}")


def csv_text(rows: list[Any], header: list[str] | None) -> str:
    buffer = io.StringIO()
    if rows and all(isinstance(row, dict) for row in rows):
        fieldnames = header
        if fieldnames is None:
            fieldnames = []
            for row in rows:
                fieldnames.extend(k for k in map(str, row) if k not in fieldnames)
            writer = csv.DictWriter(buffer, fieldnames=fieldnames, restval="", lineterminator="\n")
            writer.writeheader()
        else:
            unknown = sorted({str(k) for row in rows for k in row} - set(fieldnames))
            if unknown:
                raise NodeError(
                    f"column {', '.join(unknown)} is not in the csv header ({', '.join(fieldnames)})"
                )
            writer = csv.DictWriter(buffer, fieldnames=fieldnames, restval="", lineterminator="\n")
        writer.writerows({str(k): _cell(v) for k, v in row.items()} for row in rows)
    else:
        plain = csv.writer(buffer, lineterminator="\n")
        for row in rows:
            if isinstance(row, dict):
                raise NodeError("csv rows must all be dicts or all be lists")
            plain.writerow([_cell(v) for v in row])
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return "" if value is None else value
