"""Helpers for the subprocesses handlers start (bash code jobs, JS/TS runtimes, shell hooks):
each runs in its own process group so that a timeout kills it whole, and its output is clipped
before it goes into the history."""

from __future__ import annotations

import json
import os
import signal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

CAPTURE_LIMIT = 64 * 1024  # characters of stdout/stderr kept per job


def kill_process_group(process: asyncio.subprocess.Process) -> None:
    """SIGKILL the process's group (it was started with start_new_session=True)."""
    if process.returncode is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        try:
            process.kill()
        except ProcessLookupError:
            pass


def clip(text: str) -> str:
    """At most CAPTURE_LIMIT characters, saying how many were dropped (secrets are masked before
    the cut: half a secret would no longer be recognised when the output is stored)."""
    if len(text) <= CAPTURE_LIMIT:
        return text
    from dipeo_cli.redact import redact

    kept = redact(text)[:CAPTURE_LIMIT]
    return kept + f"\n[... {len(text) - CAPTURE_LIMIT} more characters not kept]"


def env_text(value: Any) -> str:
    """A value as an environment variable: text as it is, anything else as JSON."""
    if value is None:
        text = ""
    elif isinstance(value, str):
        text = value
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
    return text.replace("\0", "")


def exit_message(code: int | None, stderr: str, ended: str | None = None) -> str:
    """Why a process failed: the signal that killed it, or `ended` (default "exit code N"),
    then the last lines of its stderr."""
    if code is not None and code < 0:
        try:
            head = f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            head = f"killed by signal {-code}"
    else:
        head = ended or f"exit code {code}"
    lines = [line.strip() for line in stderr.strip().splitlines() if line.strip()]
    return f"{head}: {' | '.join(lines[-3:])}" if lines else head
