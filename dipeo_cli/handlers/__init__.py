"""Built-in node handlers: one module per node type, each registering itself on import."""

from dipeo_cli.handlers import (  # noqa: F401
    api_job,
    code_job,
    condition,
    db,
    diff_patch,
    endpoint,
    hook,
    json_schema_validator,
    person_batch_job,
    person_job,
    start,
    sub_diagram,
    template_job,
    user_response,
)
