"""Built-in node handlers: one module per node type, each registering itself on import."""

from dipeo_cli.handlers import (  # noqa: F401
    code_job,
    condition,
    db,
    endpoint,
    start,
    template_job,
)
