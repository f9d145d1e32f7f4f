"""Recorded outputs standing in for handler calls: the executor's replay seam.

At each launch the executor asks its `Replay` (if any) whether a recorded output stands in for
the handler call; `dipeo retry` builds one from an earlier execution's history. Replayed
completions are applied in the order they completed originally (`Recorded.order`), because
with same-label arrows the most recent value wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from dipeo_cli.graph import ExecutableNode
    from dipeo_cli.state import NodeOutput


@dataclass(frozen=True)
class Recorded:
    """A recorded node output to use instead of calling the handler. `order` is where its
    completion stood in the original run (its event sequence number): replayed completions are
    applied in that order, because with same-label arrows the most recent value wins."""

    output: NodeOutput
    order: int


class Replay(Protocol):
    """The executor asks this, at each launch, whether a recorded output stands in for the
    handler call (retry); None means run the node live."""

    def recorded(
        self,
        node: ExecutableNode,
        iteration: int,
        inputs: dict[str, Any],
        sources: tuple[tuple[str, str, int], ...],
    ) -> Recorded | None: ...
