"""Prompt files and JSON-schema (text_format) files: where they are looked for, how they read.

A prompt file name is: an absolute path; relative to the base directory when it starts with
projects/ or files/; else <diagram dir>/prompts/<name>, <base>/files/prompts/<name>, then
<diagram dir>/<name> (DiPeO's order, then the diagram folder). A schema file is an absolute path,
else <base>/<name>, then <diagram dir>/<name>.

A schema is a mapping or JSON/YAML text, checked with jsonschema. Python source (DiPeO's
Pydantic-model text_format, or a `.py` text_format_file) is returned as text: its schema is
derived at run time in the python worker (llm/pydantic_schema.py); validation checks its syntax
only, because validating never runs diagram code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dipeo_cli.errors import NodeError

_SCHEMA_KEYS = ("type", "properties", "$ref", "anyOf", "oneOf", "allOf", "enum", "items", "const")


def diagram_dir_of(diagram: Any) -> Path:
    return Path(diagram.file).resolve().parent if diagram.file else Path.cwd()


def prompt_file_places(name: str, diagram_dir: Path, base: Path) -> list[Path]:
    """Where a prompt file is looked for, in order."""
    path = Path(name).expanduser()
    if path.is_absolute():
        return [path]
    places: list[Path] = []
    if name.startswith(("projects/", "files/")):
        places.append(base / name)
    places += [
        diagram_dir / "prompts" / name,
        base / "files" / "prompts" / name,
        diagram_dir / name,
    ]
    return places


def find_prompt_file(name: str, diagram_dir: Path, base: Path) -> Path:
    """The prompt file `name`; NodeError listing the places tried when there is none."""
    places = prompt_file_places(name, diagram_dir, base)
    for place in places:
        if place.is_file():
            return place
    raise NodeError(f"prompt file '{name}' not found (looked in {', '.join(map(str, places))})")


def read_prompt_file(name: str, diagram_dir: Path, base: Path) -> str:
    path = find_prompt_file(name, diagram_dir, base)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise NodeError(f"cannot read prompt file {path}: {exc}") from None


def parse_schema(value: Any, what: str) -> dict[str, Any]:
    """A JSON schema from a mapping or JSON/YAML text; ValueError saying what is wrong."""
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = json.loads(text)
        except ValueError:
            import yaml

            try:
                parsed = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                raise ValueError(f"{what} is neither JSON nor YAML: {exc}") from None
        value = parsed
    if not isinstance(value, dict):
        raise ValueError(f"{what} must be a JSON schema (a mapping), got {type(value).__name__}")
    if not any(key in value for key in _SCHEMA_KEYS):
        keys = ", ".join(map(str, list(value)[:8])) or "none"
        raise ValueError(
            f"{what} must be a JSON schema with 'type' and 'properties' (got keys: {keys})"
        )
    import jsonschema

    try:
        jsonschema.validators.validator_for(value).check_schema(value)
    except jsonschema.SchemaError as exc:
        where = "/".join(str(p) for p in exc.path) or "the top level"
        raise ValueError(f"{what} is not a valid JSON schema at {where}: {exc.message}") from None
    return value


def schema_file_places(name: str, diagram_dir: Path, base: Path) -> list[Path]:
    path = Path(name).expanduser()
    return [path] if path.is_absolute() else [base / name, diagram_dir / name]


def load_schema_file(name: str, diagram_dir: Path, base: Path) -> dict[str, Any] | str:
    """text_format_file: a JSON or YAML schema file (the schema), or a `.py` file (its source,
    syntax checked); ValueError when missing, unreadable or not a schema."""
    from dipeo_cli.llm.pydantic_schema import check_model_source

    places = schema_file_places(name, diagram_dir, base)
    for place in places:
        if place.is_file():
            try:
                text = place.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise ValueError(f"cannot read text_format_file {place}: {exc}") from None
            if place.suffix == ".py":
                problem = check_model_source(text, f"text_format_file {name}")
                if problem:
                    raise ValueError(problem)
                return text
            return parse_schema(text, f"text_format_file {name}")
    raise ValueError(
        f"text_format_file '{name}' not found (looked in {', '.join(map(str, places))})"
    )
