"""Pydantic models built from values dipeo made itself, without validation or a set per instance.

    node = prebuilt(DiagramNode, {"id": ..., "type": ..., ...every field...})

Validating values the loader or the state fold have just produced (plain strings, ints, dicts
they built) is pure cost, and each validated instance also carries its own "fields set": with
three models per node loaded and two per node run, those sets were a fifth of what a
10,000-node run held. Instances made here share one set of every field name per model
(pydantic's assignment adds a name already in it, so it never grows), so `model_fields_set`
says every field is set; dipeo never asks for `exclude_unset`.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

M = TypeVar("M", bound=BaseModel)
_EVERY_FIELD: dict[type[BaseModel], set[str]] = {}


def prebuilt(model: type[M], values: dict[str, Any]) -> M:
    """`model(**values)` for already valid values that name every field (the dict is kept as
    the instance's own: do not reuse it)."""
    fields = _EVERY_FIELD.get(model)
    if fields is None:
        fields = _EVERY_FIELD[model] = set(model.model_fields)
    built = model.__new__(model)
    object.__setattr__(built, "__dict__", values)
    object.__setattr__(built, "__pydantic_fields_set__", fields)
    object.__setattr__(built, "__pydantic_extra__", None)
    object.__setattr__(built, "__pydantic_private__", None)
    return built
