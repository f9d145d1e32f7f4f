"""A real headless Chromium for the tests, driven over its DevTools protocol with `websockets`.

`Browser.start()` runs Debian's `chromium` (or `chromium-browser`, `google-chrome`) with
`--remote-debugging-port=0` in a throw-away profile, reads the DevTools address from its
stderr, and attaches to its page; `Page` sends protocol commands (`navigate`, `evaluate`,
`wait_for`). `chromium_path()` is None where no Chromium is installed: tests skip then.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import websockets

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def chromium_path() -> str | None:
    return next((found for name in NAMES if (found := shutil.which(name))), None)


class Page:
    """One tab: commands and their answers over the tab's DevTools WebSocket."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)
        self.console: list[str] = []

    async def send(self, method: str, **params: Any) -> Any:
        number = next(self.ids)
        await self.ws.send(json.dumps({"id": number, "method": method, "params": params}))
        while True:
            message = json.loads(await self.ws.recv())
            if message.get("id") == number:
                if "error" in message:
                    raise AssertionError(f"{method}: {message['error']}")
                return message.get("result")
            self._note(message)

    def _note(self, message: dict[str, Any]) -> None:
        # what the page says on its console and its uncaught errors, to explain a failure
        if message.get("method") == "Runtime.consoleAPICalled":
            args = message["params"]["args"]
            self.console.append(" ".join(str(a.get("value", a.get("description"))) for a in args))
        elif message.get("method") == "Runtime.exceptionThrown":
            self.console.append(str(message["params"]["exceptionDetails"]))

    async def navigate(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send(
            "Runtime.evaluate", expression=expression, awaitPromise=True, returnByValue=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 20) -> Any:
        """Polls `expression` every 50 ms until it is true (as JavaScript sees it); an
        exception counts as false (right after a navigation the page is not there yet)."""
        deadline = time.monotonic() + timeout
        failure = ""
        while True:
            try:
                if await self.evaluate(f"Boolean({expression})"):
                    return True
            except AssertionError as exc:
                failure = str(exc)
            if time.monotonic() > deadline:
                html = await self.evaluate("document.body ? document.body.innerText : ''")
                raise AssertionError(
                    f"timed out waiting for {expression}\n{failure}\npage: {html}\n"
                    f"console: {self.console}"
                )
            await asyncio.sleep(0.05)


class Browser:
    def __init__(
        self, proc: subprocess.Popen[bytes], profile: tempfile.TemporaryDirectory[str]
    ) -> None:
        self.proc, self.profile = proc, profile
        self.ws: Any = None

    @classmethod
    async def start(cls, executable: str) -> tuple[Browser, Page]:
        # Chromium's helper processes may still write to the profile while it is removed
        profile = tempfile.TemporaryDirectory(prefix="dipeo-chromium-", ignore_cleanup_errors=True)
        # stderr to a file: a pipe nobody reads after the start would fill and stall Chromium
        log = Path(profile.name) / "chromium.log"
        with open(log, "wb") as sink:
            proc = subprocess.Popen(
                [
                    executable,
                    "--headless=new",
                    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
                    "--disable-gpu",
                    "--no-first-run",
                    "--remote-debugging-port=0",
                    f"--user-data-dir={Path(profile.name) / 'profile'}",
                    "about:blank",
                ],
                stdout=subprocess.DEVNULL,
                stderr=sink,
            )
        browser = cls(proc, profile)
        try:
            endpoint = await browser._devtools_url(log)
            port = re.search(r":(\d+)/", endpoint).group(1)  # type: ignore[union-attr]
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            page_url = next(t["webSocketDebuggerUrl"] for t in targets if t["type"] == "page")
            browser.ws = await websockets.connect(page_url, max_size=None)
        except BaseException:
            browser.close_process()
            raise
        page = Page(browser.ws)
        await page.send("Page.enable")
        await page.send("Runtime.enable")
        return browser, page

    async def _devtools_url(self, log: Path) -> str:
        deadline = time.monotonic() + 30
        while True:
            said = log.read_text(errors="replace")
            match = re.search(r"DevTools listening on (ws://\S+)", said)
            if match:
                return match.group(1)
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"Chromium did not start: {said[-2000:]}")
            await asyncio.sleep(0.05)

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        self.close_process()

    def close_process(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.profile.cleanup()
