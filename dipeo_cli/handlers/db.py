"""db: read, write, append to or update a local file (json, yaml, csv or text).

Paths are relative to the base directory and may hold `{name}` / `{name.key}` placeholders,
filled from the inputs (a `default` input that is a dict is spread too) and the execution
variables (which win). A bare name with no directory (`users`) that does not exist in the base
directory but does as `dbs/users.json` (or `dbs/<name>` when it has an extension) is DiPeO's
database folder: that file is used. The format is `format` when given, else the file's
extension (.json, .yaml/.yml, .csv), else text.

    read    the parsed content; `format: csv` gives a list of row dicts, but a .csv file read
            without a `format` is text (as in DiPeO). `lines` ("1:120", "5", "10:", ":3",
            comma-separated or a list; 1-based, inclusive) cuts those lines out of the file's
            text before it is parsed. `keys` (dot paths, a list or comma-separated; `a.b.0`
            indexes lists) picks parts out: one key gives its value, several a dict by key; a
            missing key fails the node. Several files (a list, or glob patterns; `**` recurses)
            give {path: content}, paths relative to the base directory; a pattern that matches
            nothing is skipped (metadata `unmatched`) unless nothing matches at all. A missing
            file FAILS the node ("file not found: path"); DiPeO returned {} and went on.
    write   the input `generated_code`, `content`, `value` or `default` (else the first
            non-empty input) is written: text verbatim to text files (and to yaml/csv files when
            it is text), data dumped in the format. Output: the data written.
    append  json/yaml: the file holds a list (created if missing; a non-list is wrapped) and the
            value is appended; csv: rows (a dict or a list of dicts) are appended; text: a line.
            Output: everything the file now holds.
    update  sets the value at the `keys` dot path(s) in a json/yaml file (created if missing);
            with several keys the value is a dict holding each key's value, by the whole dot
            path or by its last part (as DiPeO). Output: the whole data.

Writes are atomic (a temporary file, then a rename). metadata: `operation`, `path`, `format`,
`bytes`. The file helpers it shares with other handlers live in `dipeo_cli.files`.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from dipeo_cli.errors import NodeError
from dipeo_cli.files import (
    csv_rows,
    csv_text,
    display_path,
    dump_data,
    parse_text,
    read_text,
    resolve_path,
    write_atomic,
)
from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, create_node_output
from dipeo_cli.values import decode_json_text, get_path, set_path, split_path

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode

FORMAT_ALIASES = {"yml": "yaml", "txt": "text", "md": "text", "markdown": "text"}
EXTENSION_FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".csv": "csv"}
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_]+)*)\}")
_GLOB_CHARS = re.compile(r"[*?\[]")


def format_for(path: Path, given: str | None, fallback: str | None = "text") -> str | None:
    if given:
        return given
    return EXTENSION_FORMATS.get(path.suffix.lower(), fallback)


# ---------------------------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------------------------


class DbProps(BaseModel):
    # Checks that involve two properties sit on the later one (`validate_default` so that they
    # run when it is absent), so that each problem names the property to fix.
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    operation: Literal["read", "write", "append", "update"] = "read"
    file: str | list[str] = Field(
        default="",
        validation_alias=AliasChoices("file", "source_details", "sourceDetails"),
        validate_default=True,
    )
    format: Literal["json", "yaml", "csv", "text"] | None = None
    keys: list[str] = Field(default=[], validate_default=True)
    lines: list[tuple[int | None, int | None]] | None = None
    serialize_json: bool = False
    sub_type: str | None = None

    @field_validator("operation", mode="before")
    @classmethod
    def _operation(cls, value: Any) -> Any:
        if value is None or value == "":
            return "read"
        value = value.lower() if isinstance(value, str) else value
        if value not in ("read", "write", "append", "update"):
            raise PydanticCustomError(
                "operation",
                "operation {op} is not supported (use read, write, append or update)",
                {"op": repr(value)},
            )
        return value

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        value = value.lower() if isinstance(value, str) else value
        value = FORMAT_ALIASES.get(value, value)
        if value not in ("json", "yaml", "csv", "text"):
            raise PydanticCustomError(
                "format",
                "format {fmt} is not supported (use json, yaml, csv or text)",
                {"fmt": repr(value)},
            )
        return value

    @field_validator("keys", mode="before")
    @classmethod
    def _keys(cls, value: Any) -> Any:
        if value is None or value == "":
            return []
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("lines", mode="before")
    @classmethod
    def _lines(cls, value: Any) -> Any:
        if value is None or value == "" or value == []:
            return None
        try:
            return parse_line_ranges(value)
        except ValueError as exc:
            raise PydanticCustomError("lines", "{message}", {"message": str(exc)}) from None

    @field_validator("file")
    @classmethod
    def _file(cls, value: str | list[str], info: ValidationInfo) -> str | list[str]:
        files = _listed(value)
        operation = info.data.get("operation", "read")
        if not files:
            raise PydanticCustomError("file", "a db node needs a file to {op}", {"op": operation})
        if operation != "read":
            if len(files) != 1:
                raise PydanticCustomError("file", "{op} takes exactly one file", {"op": operation})
            if _GLOB_CHARS.search(_PLACEHOLDER.sub("", files[0])):
                raise PydanticCustomError(
                    "file", "{op} cannot use a glob pattern", {"op": operation}
                )
        return value

    @field_validator("keys")
    @classmethod
    def _update_key(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("operation") == "update" and not value:
            raise PydanticCustomError(
                "keys", "update needs a dot path in keys (for example: stats.count)"
            )
        for key in value:
            if not isinstance(key, str) or not split_path(key):
                raise PydanticCustomError("keys", "keys must be dot paths such as stats.count")
        return value

    @property
    def files(self) -> list[str]:
        return _listed(self.file)


def parse_line_ranges(spec: Any) -> list[tuple[int | None, int | None]]:
    """`lines` as (start, end) pairs, 1-based and inclusive, None for an open end; duplicates
    dropped, order kept. Raises ValueError saying what is wrong."""
    ranges: list[tuple[int | None, int | None]] = []
    items = spec if isinstance(spec, (list, tuple)) else [spec]
    for item in items:
        if isinstance(item, bool) or not isinstance(item, (str, int)):
            raise ValueError(f"lines must be text such as '1:120' or '5,10:20', not {item!r}")
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            start_text, colon, end_text = part.partition(":")
            start = _line_number(start_text, part)
            end = _line_number(end_text, part) if colon else start
            if start is None and end is None and not colon:
                continue
            if start is not None and end is not None and end < start:
                raise ValueError(f"lines range '{part}' ends before it starts")
            if (start, end) not in ranges:
                ranges.append((start, end))
    if not ranges:
        raise ValueError("lines names no line (use '1:120', '5', '10:' or '1:3,8:9')")
    return ranges


def _line_number(text: str, part: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"lines must look like '1:120', '5', '10:' or '1:3,8:9', not '{part}'")
    if int(text) < 1:
        raise ValueError(f"line numbers start at 1 ('{part}')")
    return int(text)


def _listed(file: str | list[str]) -> list[str]:
    items = [file] if isinstance(file, str) else list(file)
    return [item for item in items if item and item.strip()]


@node_handler("db", props=DbProps, outputs=("default",))
async def db(node: ExecutableNode[DbProps], ctx: NodeContext) -> NodeOutput:
    config: DbProps = node.config
    names = _placeholder_values(ctx)
    if config.operation == "read":
        return _read(config, ctx.base_dir, names)
    path = _db_path(ctx.base_dir, _fill(config.files[0], names))
    shown = display_path(ctx.base_dir, path)
    value = _value_to_write(ctx.inputs)
    fmt: str | None
    if config.operation == "write":
        fmt = format_for(path, config.format, None) or (
            "json" if isinstance(decode_json_text(value), (dict, list)) else "text"
        )
        text = dump_data(value, fmt)
        data = decode_json_text(value) if fmt != "text" else value
    elif config.operation == "append":
        fmt = format_for(path, config.format)
        assert fmt is not None
        data, text = _append(path, shown, fmt, value)
    else:
        fmt = format_for(path, config.format)
        if fmt not in ("json", "yaml"):
            raise NodeError(f"update works on json or yaml files, not {fmt} ({shown})")
        current = parse_text(read_text(path, shown), fmt, shown) if path.is_file() else None
        data = current if current is not None else {}
        for key, new_value in _update_values(config.keys, decode_json_text(value)).items():
            try:
                data = set_path(data, key, new_value)
            except KeyError as exc:
                raise NodeError(f"cannot update '{key}' in {shown}: {exc.args[0]}") from None
        text = dump_data(data, fmt)
    size = write_atomic(path, text)
    metadata = {"operation": config.operation, "path": shown, "format": fmt, "bytes": size}
    return create_node_output({"default": data}, metadata)


def _read(config: DbProps, base_dir: Path, names: dict[str, Any]) -> NodeOutput:
    results: dict[str, Any] = {}
    several = len(config.files) > 1
    unmatched: list[str] = []
    total_lines: dict[str, int] = {}
    for pattern in config.files:
        filled = _fill(pattern, names)
        if _GLOB_CHARS.search(filled):
            several = True
            matches = sorted(glob.glob(str(resolve_path(base_dir, filled)), recursive=True))
            paths = [Path(match) for match in matches if Path(match).is_file()]
            if not paths:
                unmatched.append(filled)
        else:
            paths = [_db_path(base_dir, filled)]
        for path in paths:
            shown = display_path(base_dir, path)
            results[shown] = _read_one(config, path, shown, total_lines)
    if not results:
        raise NodeError(f"no file matches {' or '.join(unmatched)}")
    if several:
        data: Any = results
    else:
        data = next(iter(results.values()))
    if config.serialize_json:
        data = json.dumps(data, ensure_ascii=False, indent=2)
    metadata: dict[str, Any] = {
        "operation": "read",
        "path": list(results) if several else next(iter(results)),
    }
    if unmatched:
        metadata["unmatched"] = unmatched
    if config.lines is not None:
        metadata["total_lines"] = total_lines if several else next(iter(total_lines.values()))
    return create_node_output({"default": data}, metadata)


def _read_one(config: DbProps, path: Path, shown: str, total_lines: dict[str, int]) -> Any:
    text = read_text(path, shown)
    # Without a `format`, a .csv file is read as text: DiPeO did so, and diagrams written for it
    # parse that text themselves. `format: csv` gives a list of row dicts.
    fmt = config.format or ("text" if path.suffix.lower() == ".csv" else format_for(path, None))
    assert fmt is not None
    if config.lines is not None:
        text, total_lines[shown] = select_lines(text, config.lines)
    data = parse_text(text, fmt, shown)
    if not config.keys:
        return data
    data = decode_json_text(data)  # text that holds JSON, as DiPeO
    picked: dict[str, Any] = {}
    for key in config.keys:
        try:
            picked[key] = get_path(data, key)
        except KeyError as exc:
            raise NodeError(f"key '{key}' not found in {shown}: {exc.args[0]}") from None
    return picked[config.keys[0]] if len(config.keys) == 1 else picked


def select_lines(text: str, ranges: list[tuple[int | None, int | None]]) -> tuple[str, int]:
    """The text of those line ranges (1-based, inclusive, in the order given), and how many
    lines the text has. Ranges past the end give what exists."""
    lines = text.splitlines(keepends=True)
    selected: list[str] = []
    for start, end in ranges:
        for line in lines[(start or 1) - 1 : end]:
            if selected and not selected[-1].endswith(("\n", "\r")):
                selected[-1] += "\n"  # the file's last line, followed by another range
            selected.append(line)
    return "".join(selected), len(lines)


def _db_path(base_dir: Path, name: str) -> Path:
    """The file a db node means by `name`: DiPeO's `dbs/` folder for a bare name that exists
    only there."""
    path = resolve_path(base_dir, name)
    if "/" in name or os.sep in name or path.exists():
        return path
    candidate = Path(base_dir) / "dbs" / (name if Path(name).suffix else f"{name}.json")
    return candidate if candidate.exists() else path


def _update_values(keys: list[str], value: Any) -> dict[str, Any]:
    if len(keys) == 1:
        return {keys[0]: value}
    if not isinstance(value, dict):
        raise NodeError(
            f"updating several keys ({', '.join(keys)}) needs a dict of values, "
            f"got {type(value).__name__}"
        )
    values: dict[str, Any] = {}
    for key in keys:
        last = split_path(key)[-1]
        if key in value:
            values[key] = value[key]
        elif last in value:
            values[key] = value[last]
        else:
            given = ", ".join(map(str, value)) or "nothing"
            raise NodeError(f"no value for key '{key}' in the input (it has: {given})")
    return values


def _append(path: Path, shown: str, fmt: str, value: Any) -> tuple[Any, str]:
    exists = path.is_file()
    existing_text = read_text(path, shown) if exists else ""
    item = decode_json_text(value)
    if fmt in ("json", "yaml"):
        current = parse_text(existing_text, fmt, shown) if existing_text.strip() else None
        items = [] if current is None else current if isinstance(current, list) else [current]
        items.append(item)
        return items, dump_data(items, fmt)
    if fmt == "csv":
        rows = csv_rows(item)
        if existing_text.strip():
            header = next(csv.reader(io.StringIO(existing_text)))
            prefix = existing_text if existing_text.endswith("\n") else existing_text + "\n"
            text = prefix + csv_text(rows, header=header)
        else:
            text = csv_text(rows, header=None)
        return parse_text(text, "csv", shown), text
    line = dump_data(value, "text")
    prefix = (
        existing_text if not existing_text or existing_text.endswith("\n") else existing_text + "\n"
    )
    text = prefix + line + ("" if line.endswith("\n") else "\n")
    return text, text


def _value_to_write(inputs: dict[str, Any]) -> Any:
    for key in ("generated_code", "content", "value", "default"):
        if key in inputs:
            return inputs[key]
    for value in inputs.values():
        if value not in (None, "", {}, []):
            return value
    if inputs:
        return next(iter(inputs.values()))
    raise NodeError("nothing to write: connect an input (unlabelled, or labelled content or value)")


def _placeholder_values(ctx: NodeContext) -> dict[str, Any]:
    names: dict[str, Any] = {}
    default = ctx.inputs.get("default")
    if isinstance(default, dict):
        names.update(default)
    names.update(ctx.inputs)
    names.update(ctx.variables)
    return names


def _fill(path: str, names: dict[str, Any]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        try:
            value = names[name] if name in names else get_path(names, name)
        except KeyError:
            raise NodeError(
                f"the path {path!r} uses {{{name}}}, which is neither an input nor a variable"
            ) from None
        return (
            value
            if isinstance(value, str)
            else json.dumps(value)
            if isinstance(value, (dict, list))
            else str(value)
        )

    return _PLACEHOLDER.sub(replace, path)
