"""The web monitor's files: `/` is monitor.html, `/static/NAME` a file of the package's static
folder (the page's script and style, and the vendored, pinned mermaid.min.js). They hold no
data, so they need no token: the page sends the one it was opened with (`/?token=T`) with its
GraphQL requests."""

from __future__ import annotations

from importlib import resources
from typing import Any

TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}
# what the page may load: its own files only, and WebSockets to the server it came from
POLICY = (
    b"default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    b"style-src 'self' 'unsafe-inline'"
)


def page_file(path: str) -> tuple[str, bytes] | None:
    """The name and bytes of the file at URL path `path`, or None when it is not one."""
    if path in ("", "/", "/index.html"):
        name = "monitor.html"
    elif path.startswith("/static/"):
        name = path[len("/static/") :]
    else:
        return None
    # one plain name of a known kind: no folders, no dot files
    if "/" in name or "\\" in name or name.startswith(".") or _suffix(name) not in TYPES:
        return None
    item = resources.files("dipeo_cli.server").joinpath("static", name)
    if not item.is_file():
        return None
    return name, item.read_bytes()


def _suffix(name: str) -> str:
    return name[name.rfind(".") :] if "." in name else ""


async def send_page(send: Any, name: str, body: bytes, method: str) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", TYPES[_suffix(name)]),
                (b"content-length", str(len(body)).encode()),
                (b"content-security-policy", POLICY),
                (b"x-content-type-options", b"nosniff"),
                (b"cache-control", b"no-cache"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
