"""A node's person: found in the diagram, resolved to a PersonConfig, given a client.

    person = find_person(diagram.persons, "Writer")      # by id, else by label
    problems = check_person(diagram.persons, ref, llm_mode)   # compile time
    config = person_config(ctx, person)                  # run time, once per run
    client = open_client(config, ctx.resources)          # cached for the run

`llm_mode` is the run's `--llm` setting (None, or "mock": every person answers offline). At
run time it is `ctx.resources.llm_mode`; at compile time `CompileOptions.llm_mode`. Nothing
here reads or writes the environment for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dipeo_cli.errors import DipeoError, NodeError

if TYPE_CHECKING:
    from dipeo_cli.context import NodeContext


def split_names(value: Any) -> Any:
    """`"a, b"` or `["a", "b"]` -> `["a", "b"]`; None/"" -> []."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list):
        return [str(item).strip() for item in value if str(item).strip()]
    return value


def find_person(persons: dict[str, Any], ref: str | None) -> Any:
    """The diagram's person with id `ref`, else with label `ref`; NodeError listing them."""
    if ref:
        if ref in persons:
            return persons[ref]
        for person in persons.values():
            if person.label == ref:
                return person
    known = ", ".join(sorted(p.label or p.id for p in persons.values()))
    hint = (
        f"persons: {known}" if persons else "the diagram defines no persons: add a persons: section"
    )
    if not ref:
        raise NodeError(f"no person given; set person ({hint})")
    raise NodeError(f"person '{ref}' is not defined ({hint})")


def resolve_config(person: Any, base_dir: Path, llm_mode: str | None = None) -> Any:
    """The person's PersonConfig (dipeo_cli.llm.resolve_person; `llm_mode="mock"` makes it a
    mock person; raises a DipeoError)."""
    from dipeo_cli.llm import resolve_person

    return resolve_person(person, base_dir=base_dir, llm_override=llm_mode or "")


def open_client(config: Any, resources: Any) -> Any:
    """The LLMClient for a resolved person (cached by dipeo_cli.llm for the run)."""
    from dipeo_cli.llm import llm_client

    return llm_client(config, resources)


def check_person(
    persons: dict[str, Any], ref: str | None, llm_mode: str | None = None
) -> list[Any]:
    """Compile-time: the person exists and can be called (its service is known, its key found).

    Error strings, and a warning Problem that blocks a run when the key (or the program a
    service runs) is missing on this machine: the diagram is fine, the machine is not ready."""
    from dipeo_cli.errors import warning
    from dipeo_cli.llm.services import UnavailableServiceError
    from dipeo_cli.paths import base_dir

    try:
        person = find_person(persons, ref)
    except NodeError as exc:
        return [str(exc)]
    try:
        resolve_config(person, base_dir(), llm_mode)
    except ImportError:  # pragma: no cover - a build without the LLM services
        return []
    except UnavailableServiceError as exc:
        return [warning(str(exc), blocks_run=True)]
    except DipeoError as exc:
        return [str(exc)]
    return []


def person_config(ctx: NodeContext, person: Any) -> Any:
    """The person's PersonConfig, resolved once per run (with the run's `llm_mode`)."""
    resources = ctx.resources
    cache: dict[str, Any] = resources.service("person_configs", dict, lambda _: None)
    if person.id not in cache:
        try:
            cache[person.id] = resolve_config(
                person, ctx.base_dir, getattr(resources, "llm_mode", None)
            )
        except DipeoError as exc:
            raise NodeError(str(exc)) from None
    return cache[person.id]
