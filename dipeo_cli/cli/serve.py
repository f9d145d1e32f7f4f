"""`dipeo serve`: DiPeO's GraphQL API for executions (dipeo_cli/server/), on uvicorn.

Strawberry and uvicorn are imported inside the command only, so that `dipeo --help` and
`dipeo run` never load them.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import typer

from dipeo_cli.cli import DbOption, _fail, _open_store, root

LOOPBACK = ("127.0.0.1", "localhost", "::1")
TOKEN_ENV = "DIPEO_SERVER_TOKEN"


@root.command()
def serve(
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to listen on (loopback by default)."
    ),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0: any free port)."),
    db: str | None = DbOption,
    root: str | None = typer.Option(
        None,
        "--root",
        help="Only diagram files under this folder run (default: the working directory).",
    ),
    token: str | None = typer.Option(
        None,
        "--token",
        help=f"Require this bearer token from every client (default: ${TOKEN_ENV}); "
        "needed for any --host but loopback.",
    ),
    allow_inline: bool = typer.Option(
        False,
        "--allow-inline",
        help="Also run diagrams sent inline (execute_diagram diagram_data).",
    ),
    schema: bool = typer.Option(False, "--schema", help="Print the GraphQL schema (SDL) and exit."),
) -> None:
    """Serve DiPeO's GraphQL API for executions at http://HOST:PORT/graphql: run, follow
    (WebSocket subscriptions), pause, resume, abort and skip executions on this history; and a
    web monitor at http://HOST:PORT/ (with a token: /?token=TOKEN)."""
    if schema:
        from dipeo_cli.server.schema import build_schema

        print(build_schema().as_str())
        return
    from pathlib import Path

    from dipeo_cli.redact import register_secret

    token = token or os.environ.get(TOKEN_ENV) or None
    if host not in LOOPBACK and not token:
        _fail(
            f"--host {host} can be reached from other machines: set a token with --token "
            f"or ${TOKEN_ENV} (clients then send Authorization: Bearer <token>)"
        )
    register_secret(token)  # never echoed back, in any response or log line
    folder = Path(root).expanduser() if root else Path.cwd()
    if not folder.is_dir():
        _fail(f"--root {root}: not a folder")
    import asyncio

    try:
        asyncio.run(_serve(host, port, db, folder, token, allow_inline))
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        raise typer.Exit(130) from None


async def _serve(
    bind: str, port: int, db: str | None, root: Any, token: str | None, allow_inline: bool
) -> None:
    from dipeo_cli.errors import HistoryError
    from dipeo_cli.llm.mode import choose_llm_mode
    from dipeo_cli.server.app import build_server
    from dipeo_cli.server.host import ExecutionHost

    try:
        llm_mode = choose_llm_mode(None)
    except Exception as exc:  # a bad $DIPEO_LLM: one line, exit 2
        _fail(str(exc))
    store = await _open_store(db)
    host = ExecutionHost(store, root=root, allow_inline=allow_inline, llm_mode=llm_mode)
    server = build_server(host, bind=bind, port=port, token=token, out=sys.stdout, log=sys.stderr)
    try:
        await server.serve()
    except SystemExit:  # uvicorn could not listen (it logged why)
        pass
    finally:
        await host.stop()
        try:
            await store.close()
        except HistoryError as exc:
            print(f"error: {exc}", file=sys.stderr)
    if server.url is None:  # it never listened (port taken, address unknown)
        _fail(f"could not listen on {bind}:{port}")
    print("dipeo serve: stopped", file=sys.stderr)
