"""The one in-memory form of a diagram, whatever file format it came from.

Loaders (light.py, native.py, readable.py) produce a `Diagram` in which every arrow already
points at node ids; `graph.compile_graph` turns it into something that can run.

The models build their validators on first use (`defer_build`): the light loader makes its
instances with `prebuilt` from values it has checked itself, so a `dipeo run` of a light
diagram never builds them (5 ms of its start).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

DEFERRED = ConfigDict(defer_build=True)


class Position(BaseModel):
    model_config = DEFERRED

    x: float = 0
    y: float = 0


class DiagramNode(BaseModel):
    model_config = DEFERRED

    id: str
    type: str  # lower-case DiPeO type name: "start", "code_job", ...
    label: str
    props: dict[str, Any] = Field(default_factory=dict)
    position: Position = Field(default_factory=Position)
    line: int | None = None  # 1-based line in the source file, when the format gives one

    @property
    def where(self) -> str:
        """How error messages name this node."""
        return f"node '{self.label}'" if self.label else f"node '{self.id}'"


class DiagramArrow(BaseModel):
    model_config = DEFERRED

    id: str
    source: str  # node id
    target: str  # node id
    source_handle: str = "default"  # output port of the source: default, condtrue, error, ...
    target_handle: str = "default"  # input handle of the target: default or first
    label: str | None = None  # variable name at the target; None means "default"
    content_type: str | None = None  # raw_text | object | conversation_state | None (as is)
    data: dict[str, Any] = Field(default_factory=dict)
    written_as: str = ""  # the connection as the file wrote it, for error messages

    @property
    def where(self) -> str:
        return f"connection {self.written_as or self.id}"


class Person(BaseModel):
    model_config = DEFERRED

    id: str
    label: str
    service: str = "openai"
    model: str = "gpt-4.1-nano"
    api_key_id: str | None = None
    system_prompt: str | None = None
    base_url: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)


class Diagram(BaseModel):
    model_config = DEFERRED

    nodes: list[DiagramNode] = Field(default_factory=list)
    arrows: list[DiagramArrow] = Field(default_factory=list)
    persons: dict[str, Person] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    format: str = "light"  # light | native | readable
    file: str | None = None  # path as the user gave it; None for inline diagrams
    source: str | None = Field(default=None, exclude=True)  # the text it was parsed from
    # What the loader found wrong but could still build around (a connection to a missing label,
    # a node without a type): compile reports these together with its own problems.
    problems: list[Any] = Field(default_factory=list, exclude=True)

    def node_by_id(self) -> dict[str, DiagramNode]:
        return {node.id: node for node in self.nodes}
