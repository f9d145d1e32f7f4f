"""A real HTTP server on 127.0.0.1 for the api_job and hook tests.

It records every request and answers from a script: `server.script(path, *replies)` queues
replies for a path (the last one repeats); paths without a script echo the request back as
JSON. A reply is (status, body, headers) or (status, body, headers, delay_seconds), or a function
of the Request that returns one.

    with serve() as server:
        server.script("/flaky", (503, "busy", {}), (200, {"ok": True}, {}))
        url = server.url("/flaky")
        ...
        server.requests[0].headers["Authorization"]
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class TestServer:
    port: int = 0
    requests: list[Request] = field(default_factory=list)
    scripts: dict[str, list[tuple]] = field(default_factory=dict)
    stopping: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    __test__ = False  # not a pytest class

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def script(self, path: str, *replies: tuple) -> None:
        with self.lock:
            self.scripts[path] = list(replies)

    def hits(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def next_reply(self, request: Request) -> tuple:
        with self.lock:
            self.requests.append(request)
            queue = self.scripts.get(request.path)
            if not queue:
                echo = {
                    "method": request.method,
                    "path": request.path,
                    "query": {k: v[0] if len(v) == 1 else v for k, v in request.query.items()},
                    "headers": request.headers,
                    "body": request.body.decode("utf-8", "replace"),
                }
                return (200, echo, {})
            reply = queue.pop(0) if len(queue) > 1 else queue[0]
        return reply(request) if callable(reply) else reply


def _handler(server: TestServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            request = Request(
                self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()), body
            )
            status, payload, headers, *rest = server.next_reply(request)
            if rest and rest[0]:
                if server.stopping.wait(rest[0]):
                    return
            if isinstance(payload, (dict, list)):
                data = json.dumps(payload).encode()
                headers = {"Content-Type": "application/json", **headers}
            else:
                data = str(payload).encode()
                headers = {"Content-Type": "text/plain; charset=utf-8", **headers}
            try:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeouts)
                pass

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    return Handler


@contextmanager
def serve() -> Iterator[TestServer]:
    server = TestServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(server))
    server.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
