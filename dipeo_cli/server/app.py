"""The ASGI application and the uvicorn server of `dipeo serve`.

    /graphql   queries and mutations over HTTP POST (GET for queries), subscriptions over
               WebSocket with `graphql-transport-ws` or the older `graphql-ws`
    /          the web monitor (pages.py): executions live, one drawn with its nodes' status

With a token, every API request needs `Authorization: Bearer <token>` (else 401) and every
WebSocket connection the token in its connection payload (`{"token": T}` or
`{"Authorization": "Bearer T"}`; else it is closed). One line per request goes to the log
stream. On Ctrl-C (or SIGTERM) the executions the server runs are aborted and recorded before
it exits.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import MutableMapping
from typing import Any, TextIO

import uvicorn
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError

from dipeo_cli.redact import redact, redact_json
from dipeo_cli.server.host import ExecutionHost
from dipeo_cli.server.pages import page_file, send_page

PATH = "/graphql"


def token_accepted(token: str | None, offered: Any) -> bool:
    if not token:
        return True
    if not isinstance(offered, str):
        return False
    offered = offered.strip()
    if offered.lower().startswith("bearer "):
        offered = offered[7:].strip()
    return hmac.compare_digest(offered.encode(), token.encode())


class GraphQLView(GraphQL[dict[str, Any], None]):
    """Strawberry's ASGI view, with the host in the context, the token checked on WebSocket
    connections, and secrets masked in HTTP results (errors included)."""

    def __init__(self, schema: Any, host: ExecutionHost, token: str | None) -> None:
        super().__init__(schema, graphql_ide=None)
        self.host = host
        self.token = token

    async def get_context(self, request: Any, response: Any) -> dict[str, Any]:
        return {"request": request, "response": response, "host": self.host}

    async def on_ws_connect(self, context: dict[str, Any]) -> Any:
        params = context.get("connection_params") or {}
        offered = None
        if isinstance(params, dict):
            offered = params.get("token") or params.get("authToken")
            offered = offered or params.get("Authorization") or params.get("authorization")
        if not token_accepted(self.token, offered):
            raise ConnectionRejectionError({"message": "a valid token is required"})
        return await super().on_ws_connect(context)

    async def process_result(self, request: Any, result: Any) -> Any:
        return redact_json(await super().process_result(request, result))


class Gate:
    """ASGI middleware: the route, the HTTP token check, and one log line per request."""

    def __init__(self, view: GraphQLView, token: str | None, log: TextIO) -> None:
        self.view = view
        self.token = token
        self.log = log

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return  # lifespan: nothing to set up
        started = time.monotonic()
        status: list[Any] = [None]

        async def watched_send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            elif message["type"] == "websocket.close":
                status[0] = f"closed {message.get('code', 1000)}"
            elif message["type"] == "websocket.accept" and status[0] is None:
                status[0] = "accepted"
            await send(message)

        path = scope.get("path", "")
        page = page_file(path) if kind == "http" else None
        try:
            if page is not None and scope.get("method") in ("GET", "HEAD"):
                await send_page(send, page[0], page[1], scope["method"])
                status[0] = 200
            elif path.rstrip("/") != PATH:
                if kind == "http":
                    await _plain(send, 404, f"not found: the API is at {PATH}\n")
                    status[0] = 404
                else:
                    await send({"type": "websocket.close", "code": 4404})
                    status[0] = "closed 4404"
            elif kind == "http" and not token_accepted(
                self.token, _header(scope, b"authorization")
            ):
                await _plain(send, 401, "unauthorized: send Authorization: Bearer <token>\n")
                status[0] = 401
            else:
                await self.view(scope, receive, watched_send)
        finally:
            self._log(scope, status[0], time.monotonic() - started)

    def _log(self, scope: dict[str, Any], status: Any, seconds: float) -> None:
        client = scope.get("client") or ("-", 0)
        method = scope.get("method", "WS") if scope["type"] == "http" else "WS"
        line = (
            f"{client[0]} {method} {scope.get('path', '')} {status or '-'} {seconds * 1000:.1f}ms"
        )
        try:
            print(redact(line), file=self.log, flush=True)
        except (OSError, ValueError):
            pass  # the log stream went away; serving goes on


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return str(value.decode("latin-1"))
    return None


async def _plain(send: Any, status: int, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Server(uvicorn.Server):
    """uvicorn's server, which prints the URL once it listens and aborts the executions it
    runs before it shuts down (subscribers see them end ABORTED)."""

    def __init__(self, config: uvicorn.Config, host: ExecutionHost, out: TextIO) -> None:
        super().__init__(config)
        self.host = host
        self.out = out
        self.url: str | None = None

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.should_exit or not self.servers:
            return
        address = self.servers[0].sockets[0].getsockname()
        name = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        self.url = f"http://{name}:{address[1]}{PATH}"
        print(f"dipeo serve: {self.url}", file=self.out, flush=True)
        print(f"dipeo serve: web monitor at http://{name}:{address[1]}/", file=self.out, flush=True)

    def handle_exit(self, sig: int, frame: Any) -> None:
        super().handle_exit(sig, frame)
        # uvicorn re-raises the signal once it has stopped, which would kill the process
        # before the command closes the history store: forget it, the command exits itself.
        getattr(self, "_captured_signals", []).clear()

    async def shutdown(self, sockets: Any = None) -> None:
        await self.host.stop()
        await super().shutdown(sockets)


def build_server(
    host: ExecutionHost,
    *,
    bind: str,
    port: int,
    token: str | None,
    out: TextIO,
    log: TextIO,
) -> Server:
    from dipeo_cli.server.schema import build_schema

    app = Gate(GraphQLView(build_schema(), host, token), token, log)
    config = uvicorn.Config(
        app,
        host=bind,
        port=port,
        lifespan="off",
        access_log=False,
        log_level="warning",
        ws="websockets-sansio",
        timeout_graceful_shutdown=3,
    )
    return Server(config, host, out)
