"""dipeo benchmarks: each figure next to a plain-asyncio (or plain-python) baseline measured in
the same run, as a ratio, because these machines are noisy.

    python benchmarks/run.py            # all benchmarks, 5 fresh processes each, medians
    python benchmarks/run.py --repeat 9 # more samples
    python benchmarks/run.py --db postgresql://user:pass@host/db --only-db
                                        # the chain on that history too, as a ratio to SQLite
    python benchmarks/run.py --db local-postgres --only-db
                                        # the same on a throw-away local server (tests/pgserver.py)

Every dipeo figure runs in a fresh process with the history ON (a real SQLite file), as a user's
`dipeo run` would; the baseline does the same work with bare asyncio and no history. Children
run with bytecode caching on (PYTHONDONTWRITEBYTECODE removed) after one warm-up, as an
installed command runs for a user; otherwise every process would recompile every module.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent

# -- workloads, run inside a fresh child process ------------------------------------------------

CHILD = r"""
import asyncio, json, os, sys, time, resource
mode, n = sys.argv[1], int(sys.argv[2])

def peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

if mode.startswith("baseline"):
    async def noop(x):
        return x + 1
    async def sleeper(x):
        await asyncio.sleep(0.1)
        return x
    async def main():
        t0 = time.perf_counter()
        if mode == "baseline-chain":
            x = 0
            for _ in range(n):
                x = await asyncio.ensure_future(noop(x))
        elif mode == "baseline-fanout":
            await asyncio.gather(*(asyncio.ensure_future(sleeper(i)) for i in range(n)))
        elif mode == "baseline-loop":
            x = 0
            while x < n:  # body + condition: two awaited steps per iteration
                x = await asyncio.ensure_future(noop(x))
                await asyncio.ensure_future(noop(x))
        return time.perf_counter() - t0
    print(json.dumps({"seconds": asyncio.run(main()), "peak_mib": peak_mib()}))
    sys.exit(0)

from dipeo_cli.diagram import parse_diagram
from dipeo_cli.executor import RunOptions
from dipeo_cli.graph import compile_graph
from dipeo_cli.registry import load_builtin_handlers, node_handler
from dipeo_cli.render import open_progress
from dipeo_cli.runner import execute
from dipeo_cli.state import create_node_output
from dipeo_cli.store import open_store

@node_handler("bench_step")
async def step(node, ctx):
    value = ctx.inputs.get("default")
    return create_node_output({"default": (value if isinstance(value, int) else 0) + 1})

@node_handler("bench_sleep")
async def nap(node, ctx):
    await asyncio.sleep(0.1)
    return create_node_output({"default": 1})

@node_handler("bench_check", outputs=("condtrue", "condfalse"))
async def check(node, ctx):
    value = ctx.inputs["default"]
    return create_node_output({"condtrue" if value >= n else "condfalse": value})

nodes = ["- {label: Start, type: start}"]
arrows = []
if mode == "chain":
    for i in range(n):
        nodes.append(f"- {{label: N{i}, type: bench_step}}")
        arrows.append(f"- {{from: {'Start' if i == 0 else f'N{i-1}'}, to: N{i}}}")
elif mode == "fanout":
    nodes.append("- {label: End, type: endpoint}")
    for i in range(n):
        nodes.append(f"- {{label: W{i}, type: bench_sleep}}")
        arrows.append(f"- {{from: Start, to: W{i}}}")
        arrows.append(f"- {{from: W{i}, to: End, label: w{i}}}")
elif mode == "loop":
    nodes += ["- {label: Step, type: bench_step}", "- {label: Check, type: bench_check}",
              "- {label: End, type: endpoint}"]
    arrows += ["- {from: Start, to: Step}", "- {from: Step, to: Check}",
               "- {from: 'Check[condfalse]', to: Step}", "- {from: 'Check[condtrue]', to: End}"]
text = "version: light\nnodes:\n" + "\n".join(nodes) + "\nconnections:\n" + ("\n".join(arrows) or " []")

async def main():
    registry = load_builtin_handlers()
    graph = compile_graph(parse_diagram(text, "bench.light.yaml"), registry)
    store = await open_store(None)
    t0 = time.perf_counter()
    outcome = await execute(graph, store=store, progress=open_progress("quiet", sys.stderr),
                            variables={}, options=RunOptions(max_iterations=n + 10))
    elapsed = time.perf_counter() - t0  # execute() returns only once the history is committed
    await store.close()
    assert outcome.state.status.value == "COMPLETED", outcome.state.error
    return elapsed
print(json.dumps({"seconds": asyncio.run(main()), "peak_mib": peak_mib()}))
"""


BASE_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def child(mode: str, n: int, home: str, db: str | None = None) -> dict:
    env = {**BASE_ENV, "DIPEO_HOME": home}
    env.pop("DIPEO_DB", None)
    if db:
        env["DIPEO_DB"] = db
    out = subprocess.run(
        [sys.executable, "-c", CHILD, mode, str(n)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise SystemExit(f"benchmark {mode} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def median_of(repeat: int, fn) -> float:
    fn()  # warm-up: bytecode caches, page cache
    return statistics.median(fn() for _ in range(repeat))


def wall(cmd: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env or BASE_ENV, capture_output=True, check=False)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--db",
        help="also run the chain on this history (a postgresql:// URL, or local-postgres for a "
        "throw-away local server) and report it as a ratio to SQLite in the same run",
    )
    parser.add_argument("--only-db", action="store_true", help="only the --db comparison")
    args = parser.parse_args()
    r = args.repeat
    rows: list[tuple[str, str, str, str]] = []
    server = None
    if args.db == "local-postgres":
        sys.path.insert(0, str(HERE.parent))
        from tests.pgserver import PostgresServer, find_bindir

        bindir = find_bindir()
        if bindir is None:
            raise SystemExit("no PostgreSQL server programs found")
        server = PostgresServer(bindir)
        server.start()
        args.db = server.url
    try:
        with tempfile.TemporaryDirectory() as tmp:
            rows = figures(args, r, tmp)
    finally:
        if server is not None:
            server.stop()

    width = max(len(row[0]) for row in rows)
    print(f"{'figure':<{width}}  {'dipeo':>10}  {'baseline (same run)':>28}  ratio")
    for name, ours_s, base_s, ratio in rows:
        print(f"{name:<{width}}  {ours_s:>10}  {base_s:>28}  {ratio}")


def db_figures(db: str, r: int, fresh_home) -> list[tuple[str, str, str, str]]:
    """The chain of 1,000 on `db` against the same chain on SQLite, runs interleaved so that
    both see the same machine load."""
    n = 1000
    child("chain", n, fresh_home())  # warm-up of both: bytecode caches, the server's caches
    child("chain", n, fresh_home(), db)
    pairs = [
        (child("chain", n, fresh_home())["seconds"], child("chain", n, fresh_home(), db)["seconds"])
        for _ in range(r)
    ]
    sqlite = statistics.median(p[0] for p in pairs) / n
    other = statistics.median(p[1] for p in pairs) / n
    return [
        (
            f"chain of {n} nodes on --db, per node",
            f"{other * 1e6:.0f} us",
            f"{sqlite * 1e6:.0f} us (SQLite)",
            f"{other / sqlite:.2f}x",
        )
    ]


def figures(args, r: int, tmp: str) -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []

    def fresh_home() -> str:
        return tempfile.mkdtemp(dir=tmp)

    if args.db:
        rows += db_figures(args.db, r, fresh_home)
        if args.only_db:
            return rows
    for n in (1000, 200):
        ours = median_of(r, lambda n=n: child("chain", n, fresh_home())["seconds"]) / n
        base = median_of(r, lambda n=n: child("baseline-chain", n, fresh_home())["seconds"]) / n
        rows.append(
            (
                f"chain of {n} nodes, per node",
                f"{ours * 1e6:.0f} us",
                f"{base * 1e6:.1f} us",
                f"{ours / base:.1f}x",
            )
        )
        if n == 1000:
            per_node_1000 = ours
        else:
            rows.append(
                ("chain per node, N=1000 / N=200", f"{per_node_1000 / ours:.2f}", "~1.0", "")
            )

    ours = median_of(r, lambda: child("fanout", 100, fresh_home())["seconds"])
    base = median_of(r, lambda: child("baseline-fanout", 100, fresh_home())["seconds"])
    rows.append(
        (
            "100 parallel nodes x 100 ms, wall",
            f"{ours * 1e3:.0f} ms",
            f"{base * 1e3:.0f} ms",
            f"{ours / base:.2f}x",
        )
    )

    ours = median_of(r, lambda: child("loop", 500, fresh_home())["seconds"]) / 500
    base = median_of(r, lambda: child("baseline-loop", 500, fresh_home())["seconds"]) / 500
    rows.append(
        (
            "loop of 500 iterations, per iteration",
            f"{ours * 1e6:.0f} us",
            f"{base * 1e6:.1f} us",
            f"{ours / base:.1f}x",
        )
    )

    mem = statistics.median(child("chain", 1000, fresh_home())["peak_mib"] for _ in range(3))
    base_mem = statistics.median(
        child("baseline-chain", 1000, fresh_home())["peak_mib"] for _ in range(3)
    )
    rows.append(
        (
            "peak memory, chain of 1,000",
            f"{mem:.0f} MiB",
            f"{base_mem:.0f} MiB",
            f"{mem / base_mem:.1f}x",
        )
    )

    dipeo = [sys.executable, "-m", "dipeo_cli"]
    python_start = median_of(r, lambda: wall([sys.executable, "-c", "pass"]))
    help_time = median_of(r, lambda: wall([*dipeo, "--help"]))
    rows.append(
        (
            "dipeo --help, cold",
            f"{help_time * 1e3:.0f} ms",
            f"{python_start * 1e3:.0f} ms (python -c pass)",
            f"{help_time / python_start:.1f}x",
        )
    )

    diagram = HERE / "twenty_nodes.light.yaml"
    env = {**BASE_ENV, "DIPEO_HOME": fresh_home()}
    run_time = median_of(r, lambda: wall([*dipeo, "run", str(diagram), "--quiet"], env))
    rows.append(
        (
            "20-node offline diagram, process start to exit",
            f"{run_time * 1e3:.0f} ms",
            f"{python_start * 1e3:.0f} ms (python -c pass)",
            f"{run_time / python_start:.1f}x",
        )
    )
    return rows


if __name__ == "__main__":
    main()
