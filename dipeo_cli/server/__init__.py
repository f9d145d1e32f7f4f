"""`dipeo serve`: DiPeO's GraphQL API for executions (spec/dipeo-graphql.md).

    schema.py   the operations (snake_case, as DiPeO published them) and the Schema
    schema_types.py  the types, inputs, scalars and enums, and their redacting converters
    host.py     ExecutionHost: starts executions in this process, steers them here or elsewhere
    follow.py   follows an execution through the history store (subscriptions)
    prompts.py  questions of user_response nodes and their answers
    app.py      the ASGI app (token, request log) and the uvicorn server

Only `dipeo_cli/cli/serve.py` imports this package, inside the command: Strawberry and
uvicorn never load for `dipeo --help` or `dipeo run`.
"""
