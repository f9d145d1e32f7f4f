"""Help text that reads the same whatever Typer version is installed.

Typer 0.29 decorates every argument with its Python type (`DIAGRAM <str>`, `ID <list[str]>`)
and wraps required arguments in braces in the usage line (`{DIAGRAM}`); earlier versions print
`DIAGRAM` and the metavar alone. Our commands give every value an explicit metavar that says
what it is (FILE, SECONDS, KEY=VALUE, ...), so `PlainHelpGroup` keeps exactly that: it strips
the type decorations from every parameter of every command below it (commands added later by
other modules included, since it walks the tree when Typer builds it).
"""

from __future__ import annotations

import re
from typing import Any

import typer.core

_TYPE_HINT = re.compile(r"\s<[^<>]*>$")
_BRACES = re.compile(r"^\{([^{}]*)\}")


def plain_name(name: str) -> str:
    """`DIAGRAM <str>` -> `DIAGRAM` (the help column of one parameter)."""
    return _TYPE_HINT.sub("", name)


def plain_usage(piece: str) -> str:
    """`{DIAGRAM}` -> `DIAGRAM`, `{ID}...` -> `ID...` (a usage-line piece)."""
    return _BRACES.sub(r"\1", piece)


def _plain_param(param: Any) -> None:
    if getattr(param, "_dipeo_plain", False):
        return
    record = param.get_help_record
    usage = param.get_usage_pieces

    def get_help_record(ctx: Any) -> Any:
        found = record(ctx)
        if found is None:
            return None
        name, text = found
        return plain_name(name), text

    def get_usage_pieces(ctx: Any) -> list[str]:
        return [plain_usage(piece) for piece in usage(ctx)]

    param.get_help_record = get_help_record
    param.get_usage_pieces = get_usage_pieces
    param._dipeo_plain = True


def _plain_command(command: Any) -> None:
    for param in getattr(command, "params", ()):
        _plain_param(param)
    for sub in getattr(command, "commands", {}).values():
        _plain_command(sub)


class PlainHelpGroup(typer.core.TyperGroup):
    """The `dipeo` group: its commands' help without Typer-version-specific decorations."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _plain_command(self)
