"""The one error tree of dipeo.

    DipeoError                      base of every error this package raises on purpose
    ├── DiagramError                the diagram cannot run; carries every Problem found (exit 2)
    ├── UsageError                  bad command-line input: unknown option value, bad JSON (exit 2)
    ├── PluginError                 a --plugin or entry point could not be loaded (exit 2)
    ├── HistoryError                the history database cannot be opened, read or written: a
    │                               full disk, a damaged file, a newer schema (exit 2; exit 1
    │                               when a run that happened could not be recorded)
    │   ├── ExecutionNotFoundError  `dipeo show ID` matched no execution, or several
    │   └── HistoryMissingError     a read-only command named a database that does not exist
    ├── ControlError                pause/resume/abort/skip cannot apply (finished run, a node
    │                               that already ran, an unknown node)
    ├── LLMConfigError              llm: a person cannot be called (service, API key, key file)
    │   └── UnavailableServiceError  this machine cannot call the person yet: a warning
    │       │                        at validation, refused by `run`
    │       ├── MissingKeyError      no API key found for the person
    │       └── MissingProgramError  its service's program (`claude`) is not on PATH
    └── NodeError                   raised inside a run; fails one node, never the process
        ├── NodeTimeoutError        a node ran past its `timeout`
        ├── IterationLimitError     a node would run more often than `--max-iterations`
        ├── ExpressionError         expression_syntax: a condition expression is invalid or
        │                           failed (expression evaluates it)
        │   └── UndefinedNameError  expression: it names no input, variable or builtin
        ├── LLMError                llm: an LLM call failed for good, after the client's retries
        ├── BatchError              person_job: some items (or persons) of a batch failed
        ├── CodeJobError            code_job: the code raised, or exited non-zero
        ├── HookError               hook: the hook command failed, after its retries
        ├── HttpError               api_job: no answer, or an error status
        └── UndefinedName           api_job: a `{{name}}` placeholder names nothing defined

Handlers may raise anything: the executor turns every exception a handler raises into a FAILED
node with the exception's message. NodeError exists so that our own handlers can say precisely
what went wrong without a traceback. LLMConfigError is found at validation (a Problem of the
diagram) or, at run time, fails the node as a NodeError. The classes named with a module
(`llm:`, `code_job:`, ...) are defined there, next to the code that raises them.

Two parse errors are caught where they are used and reported as a Problem at validation or as
a NodeError, so they derive from ValueError, not DipeoError:

    ValueError
    ├── PatchError                  unified_diff: the diff is not a unified diff
    └── PromptSyntaxError           prompt: a template's blocks do not balance

and one stays inside a template render, where Jinja2 must not catch it as its own error:

    Exception
    └── RenderStoppedError          template_budget: a render ran out of its budget (size,
                                    memory) or was cancelled; template_job turns it into a
                                    NodeError

tests/test_errors_tree.py fails when a class is missing here or drawn under the wrong parent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal


class DipeoError(Exception):
    """Base class of every error dipeo raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a diagram, located as precisely as we can.

    `where` names the node label, connection or person ("node 'Check'",
    "connection 'A' -> 'B'"); `line` is a 1-based line number for syntax errors.

    `severity` is "error" (the diagram cannot run: DiagramError) or "warning" (legal, but
    almost certainly a mistake, or a matter of this machine rather than of the diagram: a
    missing API key). `blocks_run` marks a warning that `dipeo run` still refuses, before
    anything runs (a person without a key, a service program that is not installed):
    `validate` checks the diagram, `run` needs the machine too.
    """

    message: str
    where: str | None = None
    line: int | None = None
    severity: Literal["error", "warning"] = "error"
    blocks_run: bool = False

    @property
    def is_warning(self) -> bool:
        return self.severity == "warning"

    def render(self, file: str | None) -> str:
        location = file or "<diagram>"
        if self.line is not None:
            location = f"{location}:{self.line}"
        if self.where:
            return f"{location}: {self.where}: {self.message}"
        return f"{location}: {self.message}"

    def as_error(self) -> Problem:
        """This problem as an error (`--strict`, or a run that needs what is missing)."""
        return Problem(self.message, self.where, self.line)

    def to_json(self) -> dict[str, Any]:
        return {"message": self.message, "where": self.where, "line": self.line}


def warning(message: str, where: str | None = None, *, blocks_run: bool = False) -> Problem:
    """A Problem of severity "warning" (a handler's check may return these beside its error
    strings)."""
    return Problem(message, where, severity="warning", blocks_run=blocks_run)


class DiagramError(DipeoError):
    """A diagram that cannot run. Holds every problem found, not only the first."""

    def __init__(
        self,
        problems: list[Problem],
        file: str | None = None,
        warnings: Sequence[Problem] = (),
    ) -> None:
        self.problems = list(problems)
        self.file = file
        self.warnings = list(warnings)  # found beside the errors; shown by `validate`
        super().__init__("\n".join(p.render(file) for p in self.problems))


class UsageError(DipeoError):
    """Invalid command-line input (bad JSON in --input-data, unknown status, ...)."""


class PluginError(DipeoError):
    """A plugin module or entry point failed to import or register."""


class HistoryError(DipeoError):
    """The history database could not be opened, migrated, read or written."""


class ExecutionNotFoundError(HistoryError):
    """No execution (or more than one) matches the id or prefix the user gave."""


class HistoryMissingError(HistoryError):
    """A command that only reads the history named a database file that does not exist (it
    is never created for a read)."""


class ControlError(DipeoError):
    """A control request (pause, resume, abort, skip a node) that cannot apply: the execution
    has finished, the node already ran, is running or does not exist."""


class NodeError(DipeoError):
    """A node failed for a reason our own code can state in one line.

    `metadata` is what is known about the failed attempt (what the code printed, the HTTP
    status, tokens already spent, ...); the executor keeps it as the failed node's output
    metadata, so the history shows it."""

    def __init__(self, message: str = "", metadata: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.metadata: dict[str, Any] = dict(metadata or {})


class NodeTimeoutError(NodeError):
    """A node ran longer than its `timeout` property allows."""


class IterationLimitError(NodeError):
    """A node would exceed the run-wide iteration cap (`--max-iterations`)."""


def describe_exception(exc: BaseException) -> str:
    """A one-line error for a handler exception: our own errors by message, others with type."""
    message = str(exc).strip()
    if isinstance(exc, NodeError):
        return message or type(exc).__name__
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
