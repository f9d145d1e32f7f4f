"""template_job: render a Jinja2 template, optionally to a file.

The template is `template_content`, or the file `template_path` (relative to the base
directory; the path may itself use template syntax). Names, later ones winning (DiPeO's order):

    generated_at    the current time, ISO 8601
    variables       the node's `variables` property
    inputs          by label; a `default` input that is a dict (or JSON text of one) is also
                    spread into the top level
    execution variables

An undefined name fails the node, naming it. With `output_path` (rendered as a template too) the
text is written there, parent directories created. The output is the rendered text; metadata
`output_path`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

import jinja2
from jinja2.exceptions import SecurityError
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from dipeo_cli.errors import NodeError
from dipeo_cli.files import display_path, resolve_path, write_atomic
from dipeo_cli.registry import node_handler
from dipeo_cli.sandbox import compile_template, compiled, render_template
from dipeo_cli.state import NodeOutput, create_node_output
from dipeo_cli.template_budget import RenderStoppedError
from dipeo_cli.values import decode_json_text

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode


class TemplateJobProps(BaseModel):
    # Checks that involve two properties sit on the later one (`validate_default` so that they
    # run when it is absent), so that each problem names the property to fix.
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    template_path: str | None = None
    template_content: str | None = Field(default=None, validate_default=True)
    output_path: str | None = None
    variables: dict[str, Any] = {}
    engine: Literal["internal", "jinja2"] = "jinja2"
    preprocessor: Any = None

    @field_validator("template_path", "output_path")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value.strip() if value and value.strip() else None

    @field_validator("template_content")
    @classmethod
    def _content(cls, value: str | None, info: ValidationInfo) -> str | None:
        content = value if value else None
        has_path = info.data.get("template_path") is not None
        if content is None and not has_path:
            raise PydanticCustomError(
                "template", "a template_job needs template_content or a template_path"
            )
        if content is not None and has_path:
            raise PydanticCustomError(
                "template", "a template_job takes template_content or template_path, not both"
            )
        return _syntax_checked(content, "template_content")

    @field_validator("output_path", mode="after")
    @classmethod
    def _output_path(cls, value: str | None) -> str | None:
        return _syntax_checked(value, "output_path")

    @field_validator("engine", mode="before")
    @classmethod
    def _engine(cls, value: Any) -> Any:
        if value is None or value == "":
            return "jinja2"
        return value.lower() if isinstance(value, str) else value

    @field_validator("variables", mode="before")
    @classmethod
    def _variables(cls, value: Any) -> Any:
        return {} if value is None or value == "" else value

    @field_validator("preprocessor")
    @classmethod
    def _preprocessor(cls, value: Any) -> Any:
        if value:
            raise PydanticCustomError(
                "preprocessor", "template_job preprocessors are not supported yet"
            )
        return value


def _syntax_checked(source: str | None, name: str) -> str | None:
    if source is not None:
        try:
            compile_template(source)
        except jinja2.TemplateSyntaxError as exc:
            raise PydanticCustomError(
                "template_syntax",
                "{name} has a template syntax error on line {line}: {message}",
                {"name": name, "line": exc.lineno, "message": exc.message or str(exc)},
            ) from None
    return source


@node_handler("template_job", props=TemplateJobProps, outputs=("default",))
async def template_job(node: ExecutableNode[TemplateJobProps], ctx: NodeContext) -> NodeOutput:
    config: TemplateJobProps = node.config
    names = _namespace(config, ctx)
    metadata: dict[str, Any] = {}
    if config.template_content is not None:
        source = config.template_content
    else:
        assert config.template_path is not None
        path = resolve_path(
            ctx.base_dir, await _render(config.template_path, names, "template_path")
        )
        try:
            source = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise NodeError(
                f"template file not found: {display_path(ctx.base_dir, path)}"
            ) from None
        except (OSError, UnicodeDecodeError) as exc:
            raise NodeError(
                f"cannot read template {display_path(ctx.base_dir, path)}: {exc}"
            ) from None
        metadata["template_path"] = display_path(ctx.base_dir, path)
    text = await _render(source, names, "template")
    if config.output_path is not None:
        target = resolve_path(
            ctx.base_dir, (await _render(config.output_path, names, "output_path")).strip()
        )
        metadata["bytes"] = write_atomic(target, text)
        metadata["output_path"] = display_path(ctx.base_dir, target)
    return create_node_output({"default": text}, metadata)


def _namespace(config: TemplateJobProps, ctx: NodeContext) -> dict[str, Any]:
    names: dict[str, Any] = dict(config.variables)
    inputs = dict(ctx.inputs)
    if "default" in inputs:
        default = decode_json_text(inputs["default"])
        if isinstance(default, dict):
            names.update(default)
            inputs["default"] = default
    names.update(inputs)
    names.update(ctx.variables)
    return names


async def _render(source: str, names: dict[str, Any], what: str) -> str:
    try:
        if "generated_at" not in names and "generated_at" in compiled(source).names:
            # the lowest of the names: set only when read, once per node (clock reads add up)
            names["generated_at"] = datetime.now(UTC).isoformat()
        return await render_template(source, names)
    except SecurityError as exc:
        raise NodeError(f"{what} tried something unsafe and was stopped: {exc}") from None
    except RenderStoppedError as exc:
        raise NodeError(f"{what} rendering stopped: {exc}") from None
    except jinja2.UndefinedError as exc:
        shown = sorted(k for k in names if k != "generated_at")
        available = (
            ", ".join(shown[:20]) + (", ..." if len(shown) > 20 else "") if shown else "none"
        )
        raise NodeError(f"{what}: {exc.message} (available: {available})") from None
    except jinja2.TemplateSyntaxError as exc:
        raise NodeError(
            f"{what} has a template syntax error on line {exc.lineno}: {exc.message}"
        ) from None
    except jinja2.TemplateError as exc:
        raise NodeError(f"{what}: {exc}") from None
    except Exception as exc:  # an error inside a filter or expression of the template
        raise NodeError(f"{what}: {type(exc).__name__}: {exc}") from None
