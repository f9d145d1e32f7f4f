"""The run's LLM mode (`--llm`, `$DIPEO_LLM`) and the error for a person that cannot be called.

Apart from the rest of the package so that `dipeo run` can check the flag without loading the
LLM services, which a diagram without persons never needs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from dipeo_cli.errors import DipeoError, Problem

OVERRIDE_ENV = "DIPEO_LLM"


class LLMConfigError(DipeoError):
    """A person cannot be called: unknown or unsupported service, no API key, bad key file.

    str(err) is "person 'Writer': no API key for openai: set OPENAI_API_KEY, or define
    APIKEY_52609F in the environment or in files/apikeys.json". `where` ("person 'Writer'")
    and `reason` (the rest) make a `Problem` for a DiagramError: `err.problem()`.
    """

    def __init__(self, reason: str, where: str | None = None) -> None:
        self.reason = reason
        self.where = where
        super().__init__(f"{where}: {reason}" if where else reason)

    def problem(self) -> Problem:
        return Problem(self.reason, where=self.where)


def choose_llm_mode(flag: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """The run's LLM mode: the `--llm` flag, else `$DIPEO_LLM` (a user-set default), else None.

    The CLI calls this once per command and passes the result on (to `compile_graph` through
    `CompileOptions` and to the run through `RunResources.llm_mode`). Raises LLMConfigError for
    any value but "mock", naming where it came from."""
    source = "--llm"
    value = flag
    if value is None:
        source = f"${OVERRIDE_ENV}"
        value = (environ if environ is not None else os.environ).get(OVERRIDE_ENV) or None
    if value is None:
        return None
    if value.strip().lower() != "mock":
        raise LLMConfigError(f"{source} accepts only 'mock', got {value!r}")
    return "mock"
