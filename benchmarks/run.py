"""dipeo benchmarks: each figure next to a baseline measured in the same run, as a ratio,
because these machines are noisy.

    python benchmarks/run.py                    # every benchmark, 5 fresh processes each, medians
    python benchmarks/run.py --repeat 9         # more samples
    python benchmarks/run.py --only pyfanout    # one benchmark (repeatable; --list names them)
    python benchmarks/run.py --db local-postgres --only db
                                                # the chain on PostgreSQL, as a ratio to SQLite
    python benchmarks/retry.py                  # retry's cost per node against a live run

Every dipeo figure runs in a fresh process with the history ON (a real SQLite file), as a user's
`dipeo run` would; the baseline does the same work with bare asyncio (or plain Jinja2, or plain
`python -c pass`) and no history. The workloads are in benchmarks/workload.py. Children run with
bytecode caching on (PYTHONDONTWRITEBYTECODE removed) after one warm-up, as an installed command
runs for a user; otherwise every process would recompile every module.
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
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
WORKLOAD = str(HERE / "workload.py")
# the dipeo of this checkout, not whichever one is installed
BASE_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
BASE_ENV["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")])
)
DIPEO = [sys.executable, "-m", "dipeo_cli"]

Row = tuple[str, str, str, str]


class Bench:
    def __init__(self, repeat: int, tmp: str, db: str | None = None) -> None:
        self.repeat = repeat
        self.tmp = tmp
        self.db = db  # --db: another history to compare with SQLite

    def home(self) -> str:
        return tempfile.mkdtemp(dir=self.tmp)

    def child(self, mode: str, n: int, db: str | None = None) -> dict[str, float]:
        env = {**BASE_ENV, "DIPEO_HOME": self.home()}
        env.pop("DIPEO_DB", None)
        if db:
            env["DIPEO_DB"] = db
        out = subprocess.run(
            [sys.executable, WORKLOAD, mode, str(n)],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise SystemExit(f"benchmark {mode} {n} failed:\n{out.stderr[-3000:]}")
        result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
        return result

    def median(self, fn: Callable[[], float]) -> float:
        fn()  # warm-up: bytecode caches, page cache
        return statistics.median(fn() for _ in range(self.repeat))

    def field(self, mode: str, n: int, key: str = "seconds") -> float:
        return self.median(lambda: self.child(mode, n)[key])

    def wall(self, cmd: list[str], home: str | None = None) -> float:
        env = {**BASE_ENV, "DIPEO_HOME": home or self.home()}

        def once() -> float:
            t0 = time.perf_counter()
            subprocess.run(cmd, env=env, capture_output=True, check=False)
            return time.perf_counter() - t0

        return self.median(once)


def us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f} us"


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.0f} ms"


# -- the benchmarks ------------------------------------------------------------------------------


def bench_chain(b: Bench) -> list[Row]:
    rows: list[Row] = []
    per: dict[int, float] = {}
    for n in (1000, 200):
        per[n] = b.field("chain", n) / n
        base = b.field("baseline-chain", n) / n
        rows.append(
            (f"chain of {n} nodes, per node", us(per[n]), us(base), f"{per[n] / base:.1f}x")
        )
    rows.append(
        ("chain per node, N=1000 / N=200", f"{per[1000] / per[200]:.2f}", "1.0 (floor)", "")
    )
    return rows


def bench_fanout(b: Bench) -> list[Row]:
    ours = b.field("fanout", 100)
    base = b.field("baseline-fanout", 100)
    return [("100 parallel async nodes x 100 ms, wall", ms(ours), ms(base), f"{ours / base:.2f}x")]


def bench_loop(b: Bench) -> list[Row]:
    ours = b.field("loop", 500) / 500
    base = b.field("baseline-loop", 500) / 500
    return [("loop of 500 iterations, per iteration", us(ours), us(base), f"{ours / base:.1f}x")]


def _fanout_jobs(b: Bench, mode: str, what: str) -> list[Row]:
    ours = b.field(mode, 100)
    base = b.field("baseline-fanout", 100)
    floor = b.field("floor-" + ("python" if mode == "pyfanout" else "bash"), 100)
    memory = [b.child(f"{mode}-memory", 100) for _ in range(3)]
    rss = statistics.median(m["children_peak_mib"] for m in memory)
    pss = statistics.median(m["children_peak_pss_mib"] for m in memory)
    return [
        (
            f"100 parallel {what}, wall / 0.1 s",
            f"{ours / 0.1:.2f}",
            f"{base / 0.1:.2f} (asyncio)",
            f"{ours / base:.2f}x",
        ),
        (
            "  the same 100 processes started without dipeo (this machine's floor)",
            f"{floor / 0.1:.2f}",
            f"{base / 0.1:.2f} (asyncio)",
            f"{floor / base:.2f}x",
        ),
        (
            "  their processes' memory at peak, summed RSS / PSS",
            f"{rss:.0f} MiB",
            f"PSS {pss:.0f} MiB",
            "",
        ),
    ]


def bench_pyfanout(b: Bench) -> list[Row]:
    return _fanout_jobs(b, "pyfanout", "python code_jobs time.sleep(0.1)")


def bench_bashfanout(b: Bench) -> list[Row]:
    return _fanout_jobs(b, "bashfanout", "bash code_jobs sleep 0.1")


def _per_node(b: Bench, mode: str, what: str) -> list[Row]:
    ours = b.field(mode, 200)
    base = b.field("chainper", 200)
    return [
        (f"per-node cost, {what}", us(ours), f"{us(base)} (trivial node)", f"{ours / base:.1f}x")
    ]


def bench_pynode(b: Bench) -> list[Row]:
    return _per_node(b, "pychain", "one python code_job")


def bench_nodes(b: Bench) -> list[Row]:
    return [
        *_per_node(b, "condchain", "one condition (chain)"),
        *_per_node(b, "endchain", "one endpoint (fan-out of N after Start)"),
        *_per_node(b, "dbchain", "one db read of a small JSON file (chain)"),
    ]


def _template_chain(folder: Path, n: int) -> str:
    # Each template renders its input's length, not the input: the chain's text stays short,
    # as the baseline's does (rendering the whole previous text would grow the data stored per
    # node with N). `n` is a run variable (--input-data), so every node can see it.
    lines = ["version: light", "nodes:", "  - {label: Start, type: start}"]
    arrows = ["connections:"]
    for i in range(n):
        lines.append(
            f"  - {{label: T{i}, type: template_job, "
            f"template_content: 'step {i} n={{{{ n }}}} got={{{{ default | length }}}}'}}"
        )
        arrows.append(f"  - {{from: {'Start' if i == 0 else f'T{i - 1}'}, to: T{i}}}")
    path = folder / f"templates{n}.light.yaml"
    path.write_text("\n".join(lines + arrows) + "\n")
    return str(path)


def bench_template(b: Bench) -> list[Row]:
    folder = Path(b.tmp)
    home = b.home()
    runs = []
    for n in (1000, 1):
        cmd = [*DIPEO, "run", _template_chain(folder, n), "--input-data", '{"n": 1}', "--quiet"]
        check = subprocess.run(
            cmd, env={**BASE_ENV, "DIPEO_HOME": home}, capture_output=True, text=True, check=False
        )
        if check.returncode != 0:  # a failed chain stops early and would time too little
            raise SystemExit(f"template chain of {n} failed:\n{check.stderr[-3000:]}")
        runs.append(b.wall(cmd, home))
    many, one = runs
    ours = (many - one) / 999
    base = b.field("baseline-jinja", 1000)
    return [
        (
            "chain of 1,000 template_jobs, per node (process minus 1-node run)",
            us(ours),
            f"{us(base)} (Jinja2 compile+render)",
            f"{ours / base:.2f}x",
        ),
    ]


def bench_scale(b: Bench) -> list[Row]:
    samples = {n: [b.child("chain", n) for _ in range(b.repeat + 1)][1:] for n in (1000, 10000)}

    def per(n: int, key: str) -> float:
        return statistics.median(s[key] for s in samples[n]) / n

    # Running: until the history is closed. Where SQLite's checkpoints fall depends on size
    # (every 4 MB of writes, and at the close): timed without the close, a 1,000-node chain
    # left its checkpoint out of the figure while a 10,000-node one had most of its own in.
    for runs in samples.values():
        for s in runs:
            s["closed"] = s["seconds"] + s["close_seconds"]
    run_ratio = per(10000, "closed") / per(1000, "closed")
    load_ratio = per(10000, "load_seconds") / per(1000, "load_seconds")
    mem = {n: statistics.median(s["peak_mib"] for s in samples[n]) for n in samples}
    base_mem = b.field("baseline-chain", 10000, "peak_mib")
    return [
        (
            "chain 10,000 / chain 1,000, per node: running, history closed",
            f"{run_ratio:.2f}",
            f"{us(per(10000, 'closed'))} vs {us(per(1000, 'closed'))}",
            "floor 1.0",
        ),
        (
            "chain 10,000 / chain 1,000, per node: loading+compiling",
            f"{load_ratio:.2f}",
            f"{us(per(10000, 'load_seconds'))} vs {us(per(1000, 'load_seconds'))}",
            "floor 1.0",
        ),
        (
            "peak memory, chain of 10,000",
            f"{mem[10000]:.0f} MiB",
            f"chain 1,000: {mem[1000]:.0f} MiB; asyncio: {base_mem:.0f} MiB",
            f"{mem[10000] / base_mem:.1f}x",
        ),
    ]


def bench_start(b: Bench) -> list[Row]:
    python_start = b.wall([sys.executable, "-c", "pass"])
    diagram = str(HERE / "twenty_nodes.light.yaml")
    run_time = b.wall([*DIPEO, "run", diagram, "--quiet"])
    return [
        (
            "20-node offline diagram, process start to exit",
            ms(run_time),
            f"{ms(python_start)} (python -c pass)",
            f"{run_time / python_start:.1f}x",
        ),
    ]


def bench_help(b: Bench) -> list[Row]:
    python_start = b.wall([sys.executable, "-c", "pass"])
    help_time = b.wall([*DIPEO, "--help"])
    return [
        (
            "dipeo --help, cold",
            ms(help_time),
            f"{ms(python_start)} (python -c pass)",
            f"{help_time / python_start:.1f}x",
        ),
    ]


def bench_db(b: Bench) -> list[Row]:
    """The chain of 1,000 on --db against the same chain on SQLite, runs interleaved so that
    both see the same machine load (only with --db)."""
    if not b.db:
        return []
    n = 1000
    b.child("chain", n)  # warm-up of both: bytecode caches, the server's caches
    b.child("chain", n, b.db)
    pairs = [(b.child("chain", n)["seconds"], b.child("chain", n, b.db)["seconds"])]
    pairs += [
        (b.child("chain", n)["seconds"], b.child("chain", n, b.db)["seconds"])
        for _ in range(b.repeat - 1)
    ]
    sqlite = statistics.median(p[0] for p in pairs) / n
    other = statistics.median(p[1] for p in pairs) / n
    return [
        (
            f"chain of {n} nodes on --db, per node",
            us(other),
            f"{us(sqlite)} (SQLite)",
            f"{other / sqlite:.2f}x",
        )  # fmt: skip
    ]


BENCHMARKS: dict[str, Callable[[Bench], list[Row]]] = {
    "db": bench_db,
    "chain": bench_chain,
    "fanout": bench_fanout,
    "loop": bench_loop,
    "pyfanout": bench_pyfanout,
    "bashfanout": bench_bashfanout,
    "pynode": bench_pynode,
    "nodes": bench_nodes,
    "template": bench_template,
    "scale": bench_scale,
    "start": bench_start,
    "help": bench_help,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME")
    parser.add_argument("--list", action="store_true", help="name the benchmarks and stop")
    parser.add_argument(
        "--db",
        help="also run the chain on this history (a postgresql:// URL, or local-postgres for a "
        "throw-away local server) as a ratio to SQLite in the same run (benchmark 'db')",
    )
    args = parser.parse_args()
    if args.list:
        print("\n".join(BENCHMARKS))
        return
    rows: list[Row] = []
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
        rows = run_all(args)
    finally:
        if server is not None:
            server.stop()
    width = max(len(row[0]) for row in rows)
    print(f"{'figure':<{width}}  {'dipeo':>10}  {'baseline (same run)':>40}  ratio")
    for name, ours_s, base_s, ratio in rows:
        print(f"{name:<{width}}  {ours_s:>10}  {base_s:>40}  {ratio}")


def run_all(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args.repeat, tmp, args.db)
        for name, fn in BENCHMARKS.items():
            if args.only and name not in args.only:
                continue
            for row in fn(bench):
                rows.append(row)
                print(" | ".join(row), file=sys.stderr, flush=True)
    return rows


if __name__ == "__main__":
    main()
