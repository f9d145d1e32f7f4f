"""One benchmark workload, run in a fresh process by benchmarks/run.py:

    python benchmarks/workload.py MODE N   ->  prints one JSON line {"seconds", "peak_mib", ...}

`baseline-*` modes do the same work with bare asyncio (or plain Jinja2) and no history; the
others run dipeo's executor with the history ON (a real SQLite file in $DIPEO_HOME).
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time

mode, n = sys.argv[1], int(sys.argv[2])


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(seconds: float, **extra: float) -> None:
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib(), **extra}))
    sys.exit(0)


# -- floors: before anything heavy is imported ----------------------------------------------------

if mode == "floor-python":
    # This machine's floor for a process per job: a warm python forks N children that each
    # sleep 0.1 s, and waits for them (no pool, no protocol, no history). It runs before this
    # file imports asyncio, so the python that forks is as light as the template process
    # dipeo's pool forks its workers from (the cost of a fork and of an exit grows with it).
    t0 = time.perf_counter()
    children = []
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            time.sleep(0.1)
            os._exit(0)
        children.append(pid)
    for pid in children:
        os.waitpid(pid, 0)
    emit(time.perf_counter() - t0)

if mode == "floor-bash":
    # The same for bash jobs, started the cheapest way Python can: os.posix_spawn (vfork+exec,
    # no pipes, no thread pool), each in its own session, running the same script as the dipeo
    # jobs read from a descriptor (so each job is bash plus the `sleep` it forks, as in dipeo).
    # (A shell loop of `bash -c 'sleep 0.1' &` was measured before: bash forks, where
    # posix_spawn does not, and it was slower than this.)
    import shutil

    bash = shutil.which("bash") or "/bin/bash"
    script = os.memfd_create("floor.sh", 0)  # inheritable: the children read /dev/fd/N
    os.write(script, b"sleep 0.1\n")
    argv = ["bash", f"/dev/fd/{script}"]
    t0 = time.perf_counter()
    children = [os.posix_spawn(bash, argv, os.environ, setsid=True) for _ in range(n)]
    for pid in children:
        os.waitpid(pid, 0)
    emit(time.perf_counter() - t0)

if mode in ("pyfanout", "pyfanout-memory"):
    # What `dipeo run` does at launch for a diagram that mentions code_job: start the python
    # pool's template while the rest is imported (dipeo_cli.pytemplate).
    try:
        from dipeo_cli import pytemplate
    except ImportError:  # a checkout from before it existed
        pass
    else:
        pytemplate.start_early()

import asyncio  # noqa: E402
import threading  # noqa: E402

# -- baselines -----------------------------------------------------------------------------------

if mode == "baseline-jinja":
    # Plain Jinja2: compile and render N distinct templates, each fed the previous one's text,
    # as the template chain of benchmarks/run.py does.
    import jinja2

    env = jinja2.Environment()
    t0 = time.perf_counter()
    text = ""
    for i in range(n):
        template = env.from_string(f"step {i} n={{{{ n }}}} got={{{{ default | length }}}}")
        text = template.render(n=1, default=text)
    emit((time.perf_counter() - t0) / n)

if mode.startswith("baseline"):

    async def noop(x: int) -> int:
        return x + 1

    async def sleeper(x: int) -> int:
        await asyncio.sleep(0.1)
        return x

    async def base() -> float:
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

    emit(asyncio.run(base()))

# -- dipeo ---------------------------------------------------------------------------------------

# A mode with one run per process does what `dipeo run` does: no collections while loading, the
# run's start resumes them (modes that run several diagrams in one process are not `dipeo run`).
SEVERAL_RUNS = ("pychain", "condchain", "endchain", "dbchain", "chainper")
try:
    from dipeo_cli.heap import pause_until_run  # noqa: E402
except ImportError:  # a checkout from before it existed
    pass
else:
    if mode not in SEVERAL_RUNS:
        pause_until_run()

try:
    from dipeo_cli.compiler import compile_graph  # noqa: E402
except ImportError:  # a checkout from before compiler.py (benchmarks compare checkouts)
    from dipeo_cli.graph import compile_graph  # type: ignore[attr-defined,no-redef]  # noqa: E402
from dipeo_cli.diagram import parse_diagram  # noqa: E402
from dipeo_cli.executor import RunOptions  # noqa: E402
from dipeo_cli.registry import load_builtin_handlers, node_handler  # noqa: E402
from dipeo_cli.render import open_progress  # noqa: E402
from dipeo_cli.runner import execute  # noqa: E402
from dipeo_cli.state import create_node_output  # noqa: E402
from dipeo_cli.store import open_store  # noqa: E402


@node_handler("bench_step")
async def step(node, ctx):  # type: ignore[no-untyped-def]
    value = ctx.inputs.get("default")
    return create_node_output({"default": (value if isinstance(value, int) else 0) + 1})


@node_handler("bench_sleep")
async def nap(node, ctx):  # type: ignore[no-untyped-def]
    await asyncio.sleep(0.1)
    return create_node_output({"default": 1})


@node_handler("bench_check", outputs=("condtrue", "condfalse"))
async def check(node, ctx):  # type: ignore[no-untyped-def]
    value = ctx.inputs["default"]
    return create_node_output({"condtrue" if value >= n else "condfalse": value})


NODE_OF = {
    "chain": "type: bench_step",
    "pychain": "type: code_job, code: 'result = 1'",
    "condchain": "type: condition, condition_type: custom, expression: 'true'",
    "endchain": "type: endpoint",
    # a read of a small JSON file (written below, in the folder the run's paths resolve in)
    "dbchain": "type: db, operation: read, file: bench.json",
}


def diagram_text(kind: str, size: int) -> str:
    nodes = ["- {label: Start, type: start}"]
    arrows: list[str] = []
    if kind == "endchain":  # an endpoint has no outputs: N endpoints after Start
        for i in range(size):
            nodes.append(f"- {{label: N{i}, {NODE_OF[kind]}}}")
            arrows.append(f"- {{from: Start, to: N{i}}}")
    elif kind in NODE_OF:
        for i in range(size):
            nodes.append(f"- {{label: N{i}, {NODE_OF[kind]}}}")
            source = "Start" if i == 0 else f"N{i - 1}"
            if kind == "condchain" and i > 0:
                source = f"'{source}[condtrue]'"
            arrows.append(f"- {{from: {source}, to: N{i}}}")
    elif kind in ("fanout", "pyfanout", "bashfanout"):
        body = {
            "fanout": "type: bench_sleep",
            "pyfanout": "type: code_job, code: 'import time; time.sleep(0.1); result = 1'",
            "bashfanout": "type: code_job, language: bash, code: 'sleep 0.1'",
        }[kind]
        nodes.append("- {label: End, type: endpoint}")
        for i in range(size):
            nodes.append(f"- {{label: W{i}, {body}}}")
            arrows.append(f"- {{from: Start, to: W{i}}}")
            arrows.append(f"- {{from: W{i}, to: End, label: w{i}}}")
    elif kind == "loop":
        nodes += [
            "- {label: Step, type: bench_step}",
            "- {label: Check, type: bench_check}",
            "- {label: End, type: endpoint}",
        ]
        arrows += [
            "- {from: Start, to: Step}",
            "- {from: Step, to: Check}",
            "- {from: 'Check[condfalse]', to: Step}",
            "- {from: 'Check[condtrue]', to: End}",
        ]
    return (
        "version: light\nnodes:\n"
        + "\n".join(nodes)
        + "\nconnections:\n"
        + ("\n".join(arrows) or " []")
    )


def _pss_mib(pids: list[int]) -> float:
    """Proportional set size: shared pages (a fork's, say) counted once over their sharers."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total / 1024


class TreeMemory:
    """Samples the summed RSS of this process's descendants (the python workers, the bash jobs)
    every 10 ms and keeps the peak."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self.peak_pss_mib = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        me = os.getpid()
        while not self._stop.wait(0.01):
            parents: dict[int, int] = {}
            rss: dict[int, int] = {}
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        fields = f.read().rsplit(")", 1)[1].split()
                except OSError:
                    continue
                parents[int(entry)] = int(fields[1])
                rss[int(entry)] = int(fields[21]) * 4
            total = 0
            ours = []
            for pid in rss:
                p, hops = pid, 0
                while p in parents and p != me and hops < 20:
                    p, hops = parents[p], hops + 1
                if p == me and pid != me:
                    total += rss[pid]
                    ours.append(pid)
            if total > self.peak_kib:
                self.peak_kib = total
                self.peak_pss_mib = max(self.peak_pss_mib, _pss_mib(ours))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak_kib / 1024


async def run_graph(kind: str, size: int, store) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(load + compile seconds, execute seconds) of one diagram."""
    t0 = time.perf_counter()
    registry = load_builtin_handlers()
    graph = compile_graph(parse_diagram(diagram_text(kind, size), "bench.light.yaml"), registry)
    t1 = time.perf_counter()
    outcome = await execute(
        graph,
        store=store,
        progress=open_progress("quiet", sys.stderr),
        variables={},
        options=RunOptions(max_iterations=size + 10),
    )
    t2 = time.perf_counter()  # execute() returns only once the history is committed
    assert outcome.state.status.value == "COMPLETED", outcome.state.error
    return t1 - t0, t2 - t1


async def main() -> None:
    store = await open_store(None)
    extra: dict[str, float] = {}
    if mode in SEVERAL_RUNS:
        # per node: (N nodes - 1 node) / (N - 1), both in this process after a warm-up run
        # (first imports and the worker pool's start excluded)
        kind = "chain" if mode == "chainper" else mode
        if kind == "dbchain":  # in a folder of its own: the run's paths resolve in the cwd
            import tempfile

            os.chdir(os.environ.get("DIPEO_HOME") or tempfile.mkdtemp())
            with open("bench.json", "w") as f:
                json.dump({"n": 1}, f)  # a value as small as the trivial node's
        await run_graph(kind, 1, store)
        _, one = await run_graph(kind, 1, store)
        _, many = await run_graph(kind, n, store)
        seconds = (many - one) / (n - 1)
    elif mode in ("pyfanout", "bashfanout"):
        _, seconds = await run_graph(mode, n, store)
    elif mode in ("pyfanout-memory", "bashfanout-memory"):
        # apart from the timed run: the sampling thread competes for the GIL
        memory = TreeMemory()
        _, seconds = await run_graph(mode.split("-")[0], n, store)
        extra["children_peak_mib"] = memory.stop()
        extra["children_peak_pss_mib"] = memory.peak_pss_mib
    else:
        load, seconds = await run_graph(mode, n, store)
        extra["load_seconds"] = load
    # Closing the history is part of what a run costs: SQLite copies the WAL into the database
    # file (a checkpoint) every 4 MB of writes and when the last connection closes, so a
    # 1,000-node chain pays its checkpoint here while a 10,000-node one paid most of its own
    # during the run (benchmarks/run.py's scale row adds both).
    closing = time.perf_counter()
    await store.close()
    extra["close_seconds"] = time.perf_counter() - closing
    emit(seconds, **extra)


asyncio.run(main())
