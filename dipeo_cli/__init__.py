"""dipeo: a command-line runner for DiPeO diagrams.

The public API for handler authors:

    from dipeo_cli import node_handler, create_node_output, NodeOutput, NodeExecutionStatus

Importing the package stays light: the state models and the registry load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "DiagramError",
    "DipeoError",
    "ExecutionState",
    "ExecutionStatus",
    "NodeExecutionStatus",
    "NodeOutput",
    "NodeState",
    "TokenUsage",
    "create_node_output",
    "node_handler",
]

_LAZY = {
    "ExecutionState": "dipeo_cli.state",
    "ExecutionStatus": "dipeo_cli.state",
    "NodeExecutionStatus": "dipeo_cli.state",
    "NodeOutput": "dipeo_cli.state",
    "NodeState": "dipeo_cli.state",
    "TokenUsage": "dipeo_cli.state",
    "create_node_output": "dipeo_cli.state",
    "node_handler": "dipeo_cli.registry",
    "DiagramError": "dipeo_cli.errors",
    "DipeoError": "dipeo_cli.errors",
}

if TYPE_CHECKING:
    from dipeo_cli.errors import DiagramError, DipeoError
    from dipeo_cli.registry import node_handler
    from dipeo_cli.state import (
        ExecutionState,
        ExecutionStatus,
        NodeExecutionStatus,
        NodeOutput,
        NodeState,
        TokenUsage,
        create_node_output,
    )


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'dipeo_cli' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value
