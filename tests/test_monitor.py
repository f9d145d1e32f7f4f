"""The web monitor of `dipeo serve`: its files over plain HTTP, the `execution_graph` field,
and the page itself in a real headless Chromium (DevTools protocol) against the installed
command on a free port, with a token: a node turns COMPLETED live, a click shows its output,
and Abort on another run ends it ABORTED."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest

from tests.chromium import Browser, chromium_path
from tests.test_serve import TOKEN, Served, start_server

pytestmark = pytest.mark.e2e


def python_chain(*steps: tuple[str, float, str]) -> dict[str, Any]:
    """Start -> each (label, seconds, result) python code_job, sleeping first -> End."""
    nodes: list[dict[str, Any]] = [{"label": "Start", "type": "start"}]
    nodes += [
        {
            "label": label,
            "type": "code_job",
            "props": {
                "language": "python",
                "code": f"import time\ntime.sleep({seconds})\nresult = {result!r}",
            },
        }
        for label, seconds, result in steps
    ]
    nodes.append({"label": "End", "type": "endpoint"})
    labels = [n["label"] for n in nodes]
    return {
        "version": "light",
        "nodes": nodes,
        "connections": [{"from": a, "to": b} for a, b in zip(labels, labels[1:], strict=False)],
    }


START = "mutation ($data: ExecuteDiagramInput!) { execute_diagram(data: $data) { execution_id } }"
GRAPH = "query ($id: ExecutionID!) { execution_graph(id: $id) { mermaid dot node_ids } }"


def start_run(served: Served, diagram: dict[str, Any]) -> str:
    data = {"diagram_data": diagram}
    started = served.call(START, {"data": data}, token=TOKEN)["execute_diagram"]
    assert started["execution_id"], started
    return str(started["execution_id"])


@pytest.fixture
def served(tmp_path):
    served = start_server(tmp_path, "--token", TOKEN, "--allow-inline")
    yield served
    served.stop()


def test_the_page_and_its_files_need_no_token_but_the_api_does(served):
    base = served.url.removesuffix("/graphql")
    said = served.proc.stdout.readline()  # type: ignore[union-attr]
    assert said.strip() == f"dipeo serve: web monitor at {base}/"
    page = httpx.get(base + "/", timeout=10)
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/static/monitor.js" in page.text and "/static/mermaid.min.js" in page.text
    for name, kind in (("monitor.js", "text/javascript"), ("mermaid.min.js", "text/javascript")):
        got = httpx.get(f"{base}/static/{name}", timeout=10)
        assert got.status_code == 200 and got.headers["content-type"].startswith(kind)
    assert "mermaid" in httpx.get(base + "/static/mermaid.min.js", timeout=10).text[:5000].lower()
    for missing in ("/static/nope.js", "/static/../schema.py", "/static/.hidden.js", "/other"):
        assert httpx.get(base + missing, timeout=10).status_code == 404, missing
    assert served.post("{ health }").status_code == 401


def test_execution_graph_draws_the_run_with_node_ids(served):
    eid = start_run(served, python_chain(("Quick", 0, "done")))
    for _ in range(200):
        graph = served.call(GRAPH, {"id": eid}, token=TOKEN)["execution_graph"]
        if "COMPLETED" in graph["mermaid"] and "class n0,n1,n2 completed" in graph["mermaid"]:
            break
        time.sleep(0.05)
    assert graph["mermaid"].startswith("flowchart TD")
    assert 'n1["Quick<br/>code_job<br/>COMPLETED"]' in graph["mermaid"], graph["mermaid"]
    assert "n0 --> n1" in graph["mermaid"] and graph["dot"].startswith("digraph")
    assert len(graph["node_ids"]) == 3 and all(graph["node_ids"])
    assert served.call(GRAPH, {"id": "no-such-run"}, token=TOKEN)["execution_graph"] is None


CHROMIUM = chromium_path()


@pytest.mark.timeout(120)
@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium installed (apt-get install chromium)")
def test_the_monitor_in_a_real_browser(served):
    doomed = start_run(served, python_chain(("Long", 60, "never")))
    asyncio.run(_drive(served, doomed))


async def _drive(served: Served, doomed: str) -> None:
    assert CHROMIUM is not None
    base = served.url.removesuffix("/graphql")
    browser, page = await Browser.start(CHROMIUM)
    try:
        # the list, live: a run started after the page opened shows up
        await page.navigate(f"{base}/?token={TOKEN}")
        await page.wait_for(f"document.querySelector('tr[data-execution=\"{doomed}\"]')")
        watched = start_run(served, python_chain(("First", 2, "first done"), ("Second", 0.5, "2")))
        await page.wait_for(f"document.querySelector('tr[data-execution=\"{watched}\"]')")
        await page.wait_for(
            f"document.querySelector('tr[data-execution=\"{doomed}\"]')?.dataset.status"
            " === 'RUNNING'"
        )
        # one run: opened from the list, drawn by Mermaid, its node turning COMPLETED live
        await page.evaluate(f"document.querySelector('tr[data-execution=\"{watched}\"] a').click()")
        await page.wait_for("document.querySelector('#picture svg g.node[data-node-id]')")
        first = "[...document.querySelectorAll('#nodes tbody tr')].find(r => r.cells[0].textContent === 'First')"
        await page.wait_for(f"{first}?.dataset.status === 'RUNNING'", timeout=10)
        await page.wait_for(f"{first}?.dataset.status === 'COMPLETED'", timeout=10)
        # the picture follows: the drawn node carries the status, Mermaid coloured it
        node_id = await page.evaluate(f"{first}.dataset.nodeId")
        drawn = f"document.querySelector('#picture g.node[data-node-id=\"{node_id}\"]')"
        await page.wait_for(f"{drawn}?.dataset.status === 'COMPLETED'")
        await page.wait_for(f"{drawn}.textContent.includes('COMPLETED')")
        # its output on click (on the drawing)
        await page.evaluate(f"{drawn}.dispatchEvent(new MouseEvent('click', {{bubbles: true}}))")
        await page.wait_for("document.querySelector('#output').textContent.includes('first done')")
        await page.wait_for("document.querySelector('#run-status').textContent === 'COMPLETED'")
        assert await page.evaluate("document.querySelector('#abort').disabled")

        # another run: Abort ends it ABORTED, the page shows it live
        await page.navigate(f"{base}/?execution={doomed}&token={TOKEN}")
        await page.wait_for("document.querySelector('#run-status').textContent === 'RUNNING'")
        long = "[...document.querySelectorAll('#nodes tbody tr')].find(r => r.cells[0].textContent === 'Long')"
        await page.wait_for(f"{long}?.dataset.status === 'RUNNING'")
        await page.evaluate("document.querySelector('#abort').click()")
        await page.wait_for("document.querySelector('#run-status').textContent === 'ABORTED'")
        await page.wait_for("document.querySelector('#abort').disabled")
        await page.wait_for(f"{long}?.dataset.status === 'ABORTED'")
        assert await page.evaluate("document.querySelector('#connection').textContent") == ""
    finally:
        await browser.close()
