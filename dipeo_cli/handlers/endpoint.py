"""endpoint: the execution's result, optionally saved to a file.

One unlabelled input (`default`): that value; one labelled input or several: the dict keyed by
label (DiPeO keeps a single arrow's label: `{"payload": value}`). Text holding a JSON object or array is
decoded first (DiPeO's exporter puts `content_type: raw_text` on every arrow, which turns data
into JSON text on the way), as code, templates and conditions do. It is the node's `default`
output, which the executor reports as the execution's result. With `save_to_file`, it is written (atomically,
parent directories created) to `file_path` (aliases `file_name`, `filePath`, `fileName`), relative
to the base directory, in `file_format`:

    json        indented JSON
    yaml        YAML, keys in their order
    txt, md     text as it is; anything else as indented JSON

When `file_format` is absent it comes from the file's extension (.json, .yaml/.yml, .md), else
txt. DiPeO ignored `file_format` and wrote `str()` of the data; we honour it.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from dipeo_cli.files import display_path, dump_data, resolve_path, write_atomic
from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, create_node_output
from dipeo_cli.values import decode_json_text

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode

_FORMAT_ALIASES = {"text": "txt", "yml": "yaml", "markdown": "md"}
_EXTENSION_FORMATS = {".json": "json", ".yaml": "yaml", ".yml": "yaml", ".md": "md"}


class EndpointProps(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    save_to_file: bool = False
    file_path: str | None = Field(
        default=None,
        validation_alias=AliasChoices("file_path", "file_name", "filePath", "fileName"),
        validate_default=True,
    )
    file_format: Literal["json", "yaml", "txt", "md"] | None = None

    @field_validator("save_to_file", mode="before")
    @classmethod
    def _save(cls, value: Any) -> Any:
        return False if value is None or value == "" else value

    @field_validator("file_format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if value is None or value == "":
            return None
        if isinstance(value, str):
            value = value.lower().lstrip(".")
            value = _FORMAT_ALIASES.get(value, value)
        if value not in ("json", "yaml", "txt", "md"):
            raise PydanticCustomError(
                "file_format",
                "file_format {fmt} is not supported (use json, yaml, txt or md)",
                {"fmt": repr(value)},
            )
        return value

    @field_validator("file_path")
    @classmethod
    def _path(cls, value: str | None, info: ValidationInfo) -> str | None:
        path = value if value and value.strip() else None
        if info.data.get("save_to_file") and path is None:
            raise PydanticCustomError(
                "file_path", "save_to_file is set but there is no file_path to save to"
            )
        return path

    def resolved_format(self) -> str:
        if self.file_format:
            return self.file_format
        suffix = PurePath(self.file_path).suffix.lower() if self.file_path else ""
        return _EXTENSION_FORMATS.get(suffix, "txt")


@node_handler("endpoint", props=EndpointProps, outputs=())
async def endpoint(node: ExecutableNode[EndpointProps], ctx: NodeContext) -> NodeOutput:
    config: EndpointProps = node.config
    inputs = {label: decode_json_text(value) for label, value in ctx.inputs.items()}
    only = next(iter(inputs)) if len(inputs) == 1 else None
    data = inputs[only] if only in ("default", "first") else inputs
    metadata: dict[str, Any] = {}
    if config.save_to_file and config.file_path:
        fmt = config.resolved_format()
        path = resolve_path(ctx.base_dir, config.file_path)
        text = dump_data(data, {"txt": "text", "md": "text"}.get(fmt, fmt))
        if fmt in ("txt", "md") and text and not text.endswith("\n") and not isinstance(data, str):
            text += "\n"
        metadata["saved_to"] = display_path(ctx.base_dir, path)
        metadata["bytes"] = write_atomic(path, text)
        metadata["file_format"] = fmt
    return create_node_output({"default": data}, metadata)
