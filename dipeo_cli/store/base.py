"""The StateStore protocol: what the executor and the CLI need from a history backend.

Two ways in:
- `record(state, event)` is the executor's hot path. It is synchronous and never waits: it
  snapshots what the event changed (call it right after `apply_event(state, event)`) and queues
  rows for the store's writer. `flush()` returns once everything recorded is durable.
- the async methods (`create_execution`, `update_execution_status`, `update_node_status`) are
  for callers without an event stream (handlers in DiPeO's original style, tools, tests). They
  are applied in order after everything recorded before them.

Reads (`get_execution`, `find_execution`, `list_executions`, `get_events`) see everything
recorded before the call. A run whose process died is reported FAILED ("interrupted"), never
RUNNING forever. Nothing secret is stored (see `dipeo_cli.redact`).

Implementations: `SqliteStore` (the default, `store/sqlite.py`), `MemoryStore` (SQLite in memory)
and `PostgresStore` (`store/postgres.py`), all on the shared `store/history.py`.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from dipeo_cli.events import Event
    from dipeo_cli.state import (
        ExecutionState,
        ExecutionStatus,
        NodeExecutionStatus,
        NodeOutput,
    )


@dataclass(frozen=True)
class Control:
    """A request (from any process) to pause, resume, abort or skip a node of an execution."""

    id: int
    execution_id: str
    action: str  # pause | resume | abort | skip_node
    node_id: str | None = None
    reason: str | None = None
    requested_at: str | None = None


INTERRUPTED_ERROR = "interrupted (the dipeo process ended without finishing this run)"
INTERRUPTED_NODE_ERROR = "interrupted"
INTERRUPTED_SKIP_REASON = "execution interrupted"
# A running execution's process writes a heartbeat every 2 s (store/watch.py). A run from
# another host whose heartbeat is older than this is shown interrupted by any reader; the
# margin covers clock skew between hosts and a briefly unreachable database.
HEARTBEAT_TIMEOUT_ENV = "DIPEO_HEARTBEAT_TIMEOUT"
HEARTBEAT_TIMEOUT = 30.0


def heartbeat_timeout() -> float:
    """Seconds without a heartbeat after which a run on another host counts as interrupted:
    `$DIPEO_HEARTBEAT_TIMEOUT`, else 30."""
    try:
        value = float(os.environ.get(HEARTBEAT_TIMEOUT_ENV, ""))
    except ValueError:
        return HEARTBEAT_TIMEOUT
    return value if value > 0 else HEARTBEAT_TIMEOUT


def no_heartbeat_error(host: str | None, since: str) -> str:
    return f"interrupted: no heartbeat from {host or 'an unknown host'} since {since}"


@runtime_checkable
class StateStore(Protocol):
    async def create_execution(
        self, state: ExecutionState, *, diagram_path: str | None = None
    ) -> None:
        """Store `state` whole (execution, node states, outputs); idempotent per execution id.

        Recording the ExecutionStarted event after this is harmless and keeps `diagram_path`.
        """
        ...

    async def update_execution_status(
        self, execution_id: str, status: ExecutionStatus, *, error: str | None = None
    ) -> None: ...

    async def update_node_status(
        self,
        execution_id: str,
        node_id: str,
        status: NodeExecutionStatus,
        output: NodeOutput | None = None,
        *,
        error: str | None = None,
    ) -> None: ...

    async def get_execution(self, execution_id: str) -> ExecutionState | None: ...

    async def find_execution(self, id_or_prefix: str) -> ExecutionState:
        """The execution named by an id, a unique id prefix, or "latest" (the newest one a
        user started, not a sub-diagram run).

        Raises ExecutionNotFoundError when nothing matches or the prefix is ambiguous.
        """
        ...

    async def list_executions(
        self,
        *,
        limit: int = 20,
        status: ExecutionStatus | None = None,
        diagram: str | None = None,
        parent_id: str | None = None,
    ) -> list[ExecutionState]:
        """Newest first, with `node_states` but without `node_outputs`. `diagram` is a case-insensitive
        substring of the diagram id or of the stored diagram path."""
        ...

    async def get_events(self, execution_id: str) -> list[dict[str, Any]]:
        """The event log of one execution in order: dicts with `execution_id`, `seq`, `at`,
        `type`, `node_id`, `status` and `payload` (a dict or None)."""
        ...

    def record(self, state: ExecutionState, event: Event) -> None: ...

    async def flush(self) -> None:
        """Return once every recorded row is committed; raise HistoryError if writing failed."""
        ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> StateStore: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


def ambiguous_message(wanted: str, candidates: list[ExecutionState], more: bool) -> str:
    """The ExecutionNotFoundError text for a prefix that matches several executions."""
    listing = "\n".join(
        f"  {s.id}  {getattr(s.status, 'value', s.status)}  {s.diagram_id or '-'}  {s.started_at}"
        for s in candidates
    )
    return f"{wanted!r} matches several executions; give more of the id:\n{listing}" + (
        "\n  ..." if more else ""
    )


def not_found_message(wanted: str) -> str:
    return f"no execution matches {wanted!r} (see `dipeo history` for the ids)"


# -- is the process that wrote a run still there? ------------------------------------------
# Every backend needs this to report a run whose process died as interrupted, not RUNNING.

_own_marker: str | None = None
_host: str | None = None


def hostname() -> str:
    global _host
    if _host is None:
        _host = socket.gethostname()
    return _host


def own_process_marker() -> str | None:
    """This process's start marker (see `process_marker`), computed once."""
    global _own_marker
    if _own_marker is None:
        _own_marker = process_marker(os.getpid()) or ""
    return _own_marker or None


def process_marker(pid: int) -> str | None:
    """A string that changes when `pid` is reused by another process: on Linux the boot id
    and the process start time (field 22 of /proc/<pid>/stat). None elsewhere."""
    stat = _linux_stat(pid)
    if stat is None:
        return None
    return f"{_boot_id()}:{stat[1]}"


def process_gone(pid: int | None, marker: str | None, host: str | None) -> bool:
    """True when the process that wrote a run has certainly ended. A run from another host,
    or without a pid, is never declared gone: we cannot tell."""
    if pid is None or host != hostname():
        return False
    if pid == os.getpid():
        return marker is not None and marker != own_process_marker()
    if sys.platform.startswith("linux") and os.path.isdir("/proc/self"):
        stat = _linux_stat(pid)
        if stat is None or stat[0] in ("Z", "X", "x"):
            return True
        return marker is not None and marker != f"{_boot_id()}:{stat[1]}"
    return not _pid_alive(pid)


def _linux_stat(pid: int) -> tuple[str, str] | None:
    """(state, starttime) of `pid` from /proc, or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode("ascii", "replace")
    except OSError:
        return None
    # the command name (field 2) may contain spaces and parentheses: split after the last ')'
    fields = data[data.rfind(")") + 2 :].split()
    if len(fields) < 20:
        return None
    return fields[0], fields[19]


_boot: str | None = None


def _boot_id() -> str:
    global _boot
    if _boot is None:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                _boot = f.read().strip()
        except OSError:
            _boot = "-"
    return _boot


def _pid_alive(pid: int) -> bool:
    if sys.platform == "win32":
        return _windows_pid_alive(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    return True


def _windows_pid_alive(pid: int) -> bool:  # pragma: no cover - exercised on Windows only
    # os.kill(pid, 0) would terminate the process on Windows: ask the kernel instead.
    import ctypes

    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
    if not handle:
        # typeshed declares get_last_error for win32 only, and mypy checks for this platform
        return ctypes.get_last_error() == 5  # type: ignore[attr-defined,no-any-return]
    try:
        code = ctypes.c_ulong()
        if not kernel32.GetExitCodeProcess(handle, ctypes.byref(code)):
            return True
        return code.value == 259  # STILL_ACTIVE
    finally:
        kernel32.CloseHandle(handle)
