"""The one in-memory form of a diagram, whatever file format it came from.

Loaders (light.py, native.py, readable.py) produce a `Diagram` in which every arrow already
points at node ids; `graph.compile_graph` turns it into something that can run.

The models build their validators on first use (`defer_build`): the light loader makes its
instances with `prebuilt` from values it has checked itself, so a `dipeo run` of a light
diagram never builds them (5 ms of its start).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from dipeo_cli.prebuilt import prebuilt

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

    def outline(self) -> Diagram:
        """This diagram without the models of its nodes and arrows, which come back (parsed
        again from `source`, in `format`) when first asked for; itself when it has no source.

        A compiled graph keeps the outline: a run needs the persons, the file, the source
        and the metadata, while the node and arrow models (half of what a loaded 10,000-node
        diagram holds) serve compile-time checks and pictures. Only for a diagram as parsed
        from `source` (a change made to it after parsing would not come back)."""
        if self.source is None or "nodes" not in self.__dict__:
            return self
        kept = {k: v for k, v in self.__dict__.items() if k not in _BULK}
        return prebuilt(Diagram, kept)

    def _reload(self, name: str) -> Any:
        from dipeo_cli.diagram import parse_diagram  # the loaders import this module

        again = parse_diagram(self.source or "", self.file, self.format, strict=False)
        for bulk in _BULK:
            self.__dict__[bulk] = again.__dict__[bulk]
        return self.__dict__[name]

    if not TYPE_CHECKING:  # for a checker, `nodes` and `arrows` are plain fields

        def __getattr__(self, name: str) -> Any:
            if name in _BULK and "source" in self.__dict__:
                return self._reload(name)
            return super().__getattr__(name)

        def model_dump(self, **kwargs: Any) -> dict[str, Any]:
            self._loaded()
            return super().model_dump(**kwargs)

        def model_dump_json(self, **kwargs: Any) -> str:
            self._loaded()
            return super().model_dump_json(**kwargs)

    def _loaded(self) -> None:
        """Bring an outline's nodes and arrows back (serializers read the fields directly)."""
        if "nodes" not in self.__dict__:
            self._reload("nodes")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Diagram):
            self._loaded()
            other._loaded()
        return super().__eq__(other)


# What `Diagram.outline` leaves out.
_BULK = ("nodes", "arrows")
