"""diff_patch: apply a unified diff to files, all or nothing.

The diff is the input labelled `diff`, else the `diff` property, else the unlabelled (`default`)
input when it is text. `target_path` (relative to the base directory) names the file to patch;
the diff must then concern one file, and the paths in its `---`/`+++` headers are ignored.
Without `target_path` the headers name the files (`+++` path, or `---` when it is /dev/null),
with `strip_level` leading components removed (1 by default: `a/`, `b/`), and every file of the
diff is patched; such paths must stay inside the base directory.

    apply_mode   normal   every hunk must apply, or nothing is written
                 dry_run  check that every hunk applies; write nothing
                 reverse  undo the diff (apply it the other way round)
                 force    apply the hunks that apply, report the others (`rejected`, and in
                          `reject_file` when set)
    backup            (default true) before writing, copy the file to `<file>.bak`, or into
                      `backup_dir` (same relative path) when that is set
    create_missing    a missing file (or a diff against /dev/null) is created; otherwise a
                      missing file fails the node
    ignore_whitespace compare lines with runs of whitespace collapsed
    fuzz_factor       (default 2) how many lines away from the line numbers of its `@@` header
                      a hunk may be found, counted after the shift left by earlier hunks
    format            unified (git diffs are unified diffs); nothing else is supported
    validate_patch    accepted for DiPeO compatibility: every hunk is always checked first

Lines match exactly (trailing CR ignored), or with whitespace collapsed; context is never
dropped (GNU patch's fuzz). A diff that deletes a file's whole content with `+++ /dev/null`
deletes the file. A hunk that does not apply fails the node with its number, header and reason
("line 12 is 'x', the diff expects 'y'"), and no file is touched: every file is patched in memory
first, then written atomically (a temporary file and a rename, the file's mode kept).

Output `default`: `{"applied": bool (false in dry_run), "mode", "path" (the first file),
"paths", "hunks" (applied), "rejected" (force: [{"path", "hunk", "reason"}]), "created",
"deleted", "backups"}`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from dipeo_cli.errors import NodeError
from dipeo_cli.files import display_path, replace_file, resolve_path
from dipeo_cli.registry import node_handler
from dipeo_cli.state import NodeOutput, create_node_output
from dipeo_cli.unified_diff import FilePatch, PatchError, apply_hunks, parse_diff

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext
    from dipeo_cli.graph import ExecutableNode

DEV_NULL = "/dev/null"


class DiffPatchProps(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    target_path: str | None = Field(
        default=None, validation_alias=AliasChoices("target_path", "targetPath")
    )
    diff: str | None = None
    format: Literal["unified"] = "unified"
    apply_mode: Literal["normal", "force", "dry_run", "reverse"] = Field(
        default="normal", validation_alias=AliasChoices("apply_mode", "applyMode")
    )
    backup: bool = True
    validate_patch: bool = Field(
        default=True, validation_alias=AliasChoices("validate_patch", "validatePatch")
    )
    backup_dir: str | None = Field(
        default=None, validation_alias=AliasChoices("backup_dir", "backupDir")
    )
    strip_level: int = Field(
        default=1, ge=0, validation_alias=AliasChoices("strip_level", "stripLevel")
    )
    fuzz_factor: int = Field(
        default=2, ge=0, validation_alias=AliasChoices("fuzz_factor", "fuzzFactor")
    )
    reject_file: str | None = Field(
        default=None, validation_alias=AliasChoices("reject_file", "rejectFile")
    )
    ignore_whitespace: bool = Field(
        default=False, validation_alias=AliasChoices("ignore_whitespace", "ignoreWhitespace")
    )
    create_missing: bool = Field(
        default=False, validation_alias=AliasChoices("create_missing", "createMissing")
    )

    @field_validator("target_path", "diff", "backup_dir", "reject_file", mode="before")
    @classmethod
    def _blank_is_none(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return value

    @field_validator(
        "backup", "validate_patch", "ignore_whitespace", "create_missing", mode="before"
    )
    @classmethod
    def _flag(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("strip_level", "fuzz_factor", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("backup", mode="after")
    @classmethod
    def _backup_default(cls, value: Any) -> Any:
        return True if value is None else value

    @field_validator("format", mode="before")
    @classmethod
    def _format(cls, value: Any) -> Any:
        if value is None or value == "":
            return "unified"
        text = str(value).lower()
        if text in ("unified", "git", "udiff", "diff"):
            return "unified"
        raise PydanticCustomError(
            "format", "format {fmt} is not supported (only unified diffs)", {"fmt": repr(value)}
        )

    @field_validator("apply_mode", mode="before")
    @classmethod
    def _mode(cls, value: Any) -> Any:
        if value is None or value == "":
            return "normal"
        text = str(value).lower().replace("-", "_")
        if text == "dryrun":
            text = "dry_run"
        if text not in ("normal", "force", "dry_run", "reverse"):
            raise PydanticCustomError(
                "apply_mode",
                "apply_mode {mode} is not supported (use normal, dry_run, reverse or force)",
                {"mode": repr(value)},
            )
        return text

    @field_validator("diff")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_diff(value)
            except PatchError as exc:
                raise PydanticCustomError(
                    "diff", "not a unified diff: {error}", {"error": str(exc)}
                ) from None
        return value


# ---------------------------------------------------------------------------------------------
# The node
# ---------------------------------------------------------------------------------------------


def _strip(path: str, level: int) -> str:
    """GNU patch's -pN: drop N leading components (the root of an absolute path is one)."""
    if level == 0:
        return path
    parts = [p for p in path.split("/") if p]
    drop = level - 1 if path.startswith("/") else level
    return "/".join(parts[drop:])


def _diff_text(config: DiffPatchProps, inputs: dict[str, Any]) -> str:
    if "diff" in inputs:
        value = inputs["diff"]
        source = "the input 'diff'"
    elif config.diff is not None:
        return config.diff
    elif isinstance(inputs.get("default"), str):
        value = inputs["default"]
        source = "the unlabelled input"
    else:
        raise NodeError(
            "no diff: set the diff property or connect the diff text (label the arrow 'diff')"
        )
    if not isinstance(value, str):
        raise NodeError(f"{source} must be the diff text, got {type(value).__name__}")
    return value


@dataclass
class _Target:
    path: Path
    shown: str
    patch: FilePatch
    exists: bool
    original: bytes = b""
    result: str | None = None  # None: delete the file
    applied: int = 0


def _targets(config: DiffPatchProps, patches: list[FilePatch], base_dir: Path) -> list[_Target]:
    if config.target_path is not None:
        with_hunks = [p for p in patches if p.hunks]
        if len(with_hunks) > 1:
            names = ", ".join(p.new_path or p.old_path or "?" for p in with_hunks)
            raise NodeError(
                f"the diff changes {len(with_hunks)} files ({names}) but target_path names one: "
                "remove target_path to patch the files its headers name"
            )
        path = resolve_path(base_dir, config.target_path)
        return [_Target(path, display_path(base_dir, path), with_hunks[0], path.exists())]
    targets = []
    root = base_dir.resolve()
    for patch in patches:
        if not patch.hunks:
            continue
        name = patch.new_path if patch.new_path not in (None, DEV_NULL) else patch.old_path
        if name in (None, DEV_NULL):
            raise NodeError("the diff has no file names in its headers: set target_path")
        stripped = _strip(name, config.strip_level)
        if not stripped:
            raise NodeError(f"strip_level {config.strip_level} leaves nothing of the path {name!r}")
        path = resolve_path(base_dir, stripped)
        if not path.resolve().is_relative_to(root):
            raise NodeError(
                f"refusing to patch {stripped}: it is outside the base directory "
                "(set target_path to patch it on purpose)"
            )
        targets.append(_Target(path, display_path(base_dir, path), patch, path.exists()))
    return targets


def _backup_path(config: DiffPatchProps, target: _Target, base_dir: Path) -> Path:
    if config.backup_dir is None:
        return target.path.with_name(target.path.name + ".bak")
    folder = resolve_path(base_dir, config.backup_dir)
    try:
        relative = target.path.resolve().relative_to(base_dir.resolve())
    except ValueError:
        relative = Path(target.path.name)
    return folder / relative


@node_handler("diff_patch", props=DiffPatchProps, outputs=("default",))
async def diff_patch(node: ExecutableNode[DiffPatchProps], ctx: NodeContext) -> NodeOutput:
    config: DiffPatchProps = node.config
    base_dir = Path(ctx.base_dir)
    try:
        patches = parse_diff(_diff_text(config, ctx.inputs))
    except PatchError as exc:
        raise NodeError(f"not a unified diff: {exc}") from None
    if config.apply_mode == "reverse":
        patches = [p.reversed() for p in patches]
    targets = _targets(config, patches, base_dir)
    force = config.apply_mode == "force"
    rejected: list[dict[str, Any]] = []
    rejected_text: list[str] = []

    for target in targets:  # everything in memory first: no file changes unless all apply
        creates = target.patch.old_path == DEV_NULL
        if target.exists:
            if not target.path.is_file():
                raise NodeError(f"not a file: {target.shown}")
            try:
                target.original = target.path.read_bytes()
            except OSError as exc:
                raise NodeError(f"cannot read {target.shown}: {exc.strerror or exc}") from None
            if creates and target.original.strip():
                raise NodeError(
                    f"the diff creates {target.shown}, which already exists and is not empty"
                )
        elif not (config.create_missing or creates):
            raise NodeError(
                f"file not found: {target.shown} (set create_missing: true to create it)"
            )
        text = target.original.decode("utf-8", "surrogateescape")
        result = apply_hunks(
            text.splitlines(keepends=True),
            target.patch.hunks,
            fuzz=config.fuzz_factor,
            ignore_whitespace=config.ignore_whitespace,
            force=force,
        )
        for hunk, reason in result.rejected:
            if not force:
                total = len(target.patch.hunks)
                raise NodeError(
                    f"hunk {hunk.number} of {total} ({hunk.header}) does not apply to "
                    f"{target.shown}: {reason}; no file was changed"
                )
            rejected.append({"path": target.shown, "hunk": hunk.number, "reason": reason})
            rejected_text.append(f"--- {target.shown}\n+++ {target.shown}\n{hunk.text()}")
        target.applied = result.applied
        patched = "".join(result.lines)
        deletes = target.patch.new_path == DEV_NULL and not patched and not result.rejected
        target.result = None if deletes else patched

    metadata: dict[str, Any] = {"mode": config.apply_mode}
    backups: list[str] = []
    written = config.apply_mode != "dry_run"
    if written:
        for target in targets:
            if target.exists and config.backup and target.applied:
                backup = _backup_path(config, target, base_dir)
                try:
                    backup.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(target.path, backup)
                except OSError as exc:
                    raise NodeError(
                        f"cannot back up {target.shown} to {backup}: {exc.strerror or exc}"
                    ) from None
                backups.append(display_path(base_dir, backup))
        for target in targets:
            if not target.applied:  # force mode, every hunk rejected: leave it as it is
                continue
            try:
                if target.result is None:
                    target.path.unlink(missing_ok=True)
                else:
                    data = target.result.encode("utf-8", "surrogateescape")
                    replace_file(target.path, data, target.path if target.exists else None)
            except OSError as exc:
                raise NodeError(f"cannot write {target.shown}: {exc.strerror or exc}") from None
        if rejected_text and config.reject_file:
            reject_path = resolve_path(base_dir, config.reject_file)
            try:
                replace_file(reject_path, "".join(rejected_text).encode("utf-8"))
            except OSError as exc:
                raise NodeError(
                    f"cannot write {config.reject_file}: {exc.strerror or exc}"
                ) from None
            metadata["reject_file"] = display_path(base_dir, reject_path)

    paths = [t.shown for t in targets]
    value = {
        "applied": written and any(t.applied for t in targets),
        "mode": config.apply_mode,
        "path": paths[0] if paths else None,
        "paths": paths,
        "hunks": sum(t.applied for t in targets),
        "rejected": rejected,
        "created": [
            t.shown for t in targets if t.applied and not t.exists and t.result is not None
        ],
        "deleted": [t.shown for t in targets if t.exists and t.result is None],
        "backups": backups,
    }
    return create_node_output({"default": value}, metadata)
