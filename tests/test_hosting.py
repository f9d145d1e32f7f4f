"""Runs are hosted, not global: several executions in one process share the process-wide
services the host gives them (the python worker pool) and nothing else."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from dipeo_cli.context import ProcessServices
from dipeo_cli.executor import RunOptions
from dipeo_cli.render import QuietProgress as Quiet
from dipeo_cli.runner import execute, prepare
from dipeo_cli.store import MemoryStore

DIAGRAM = """\
nodes:
  - {label: Start, type: start}
  - label: Who
    type: code_job
    language: python
    code: "import os\\nresult = os.getpid()"
  - {label: End, type: endpoint}
connections:
  - {from: Start, to: Who}
  - {from: Who, to: End}
"""


def test_executions_of_one_host_share_its_worker_pool_which_outlives_them() -> None:
    Path("who.light.yaml").write_text(DIAGRAM, encoding="utf-8")

    async def main() -> Any:
        services = ProcessServices()
        async with MemoryStore() as store:

            async def one() -> Any:
                return await execute(
                    prepare("who.light.yaml"),
                    store=store,
                    progress=Quiet(),
                    variables={},
                    options=RunOptions(),
                    shared=services,
                )

            first, second = await asyncio.gather(one(), one())
            pool = services._services["python_pool"]
            alive_after_runs = set(pool.pids)
            third = await one()
            await services.close()
            return first, second, third, pool, alive_after_runs

    first, second, third, pool, alive = asyncio.run(main())
    pids = {first.state.result, second.state.result, third.state.result}
    assert pids <= alive, "every run used the host's pool, still warm after the runs ended"
    assert pool.pids == [], "the host closed it"


def test_without_a_host_pool_a_run_closes_its_own() -> None:
    Path("who.light.yaml").write_text(DIAGRAM, encoding="utf-8")

    async def main() -> Any:
        async with MemoryStore() as store:
            return await execute(
                prepare("who.light.yaml"),
                store=store,
                progress=Quiet(),
                variables={},
                options=RunOptions(),
            )

    outcome = asyncio.run(main())
    assert outcome.state.status.value == "COMPLETED"
