"""How long `dipeo retry` takes to reach the failed node of a long chain: the replay cost per node
as a ratio to the live per-node cost, both measured in the same run (in process, history on).

    python benchmarks/retry.py [--nodes 1000] [--repeat 5]

A chain of N template_jobs whose last node fails runs live once; then `retry` replays the N-1
completed nodes and runs the last one live. Each figure is the median of --repeat rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


class Quiet:
    def start(self, state: Any) -> None: ...
    def update(self, state: Any, event: Any) -> None: ...
    def stop(self, state: Any) -> None: ...


def chain(path: Path, nodes: int) -> None:
    lines = ["nodes:", "  - {label: Start, type: start}"]
    for i in range(1, nodes + 1):
        lines.append(f"  - {{label: N{i}, type: template_job, template_content: 'step {i}'}}")
    lines.append("  - {label: Last, type: db, operation: read, sub_type: file, file: missing.txt}")
    lines.append("connections:")
    previous = "Start"
    for i in range(1, nodes + 1):
        lines.append(f"  - {{from: {previous}, to: N{i}}}")
        previous = f"N{i}"
    lines.append(f"  - {{from: {previous}, to: Last}}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


async def one_round(folder: Path, nodes: int) -> tuple[float, float]:
    from dipeo_cli.executor import RunOptions
    from dipeo_cli.retry import plan_retry
    from dipeo_cli.runner import execute, prepare
    from dipeo_cli.store import open_store

    path = folder / "chain.light.yaml"
    graph = prepare(str(path))
    async with await open_store(folder / "history.db") as store:
        started = time.perf_counter()
        live = await execute(
            graph,
            store=store,
            progress=Quiet(),
            variables={},
            options=RunOptions(max_iterations=10),
        )
        live_seconds = time.perf_counter() - started
        original = live.state
        plan = plan_retry(
            original,
            prepare(str(path)),
            iterations=await store.get_iterations(original.id),
            events=await store.get_events(original.id),
            record=await store.run_record(original.id),
            variables={},
            diagram_from=str(path),
        )
        started = time.perf_counter()
        retried = await execute(
            plan.graph,
            store=store,
            progress=Quiet(),
            variables={},
            options=RunOptions(max_iterations=10),
            replay=plan.replay,
            retry_of=original.id,
        )
        retry_seconds = time.perf_counter() - started
        assert plan.replay.replayed == nodes + 1, plan.replay.replayed  # Start and the chain
        assert retried.state.status.value == "FAILED"
    return live_seconds, retry_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    lives, retries = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            chain(folder / "chain.light.yaml", args.nodes)
            live, again = asyncio.run(one_round(folder, args.nodes))
            lives.append(live)
            retries.append(again)
    live_us = statistics.median(lives) / (args.nodes + 2) * 1e6
    retry_us = statistics.median(retries) / (args.nodes + 2) * 1e6
    print(f"{'figure':46} {'value':>10}")
    print(f"{'live run, per node':46} {live_us:>8.0f} us")
    print(f"{'retry reaching the failed node, per node':46} {retry_us:>8.0f} us")
    print(f"{'ratio retry / live':46} {retry_us / live_us:>9.2f}x")


if __name__ == "__main__":
    main()
