"""A seeded fuzzer: mutated diagrams either load and compile (and can then be recorded) or are
rejected with DiagramError (the CLI's exit 2), never another exception, never a traceback.

Seeds are the diagrams in this repository (diagrams/, tests/conformance/diagrams,
tests/fixtures/diagrams) and DiPeO's own examples when DIPEO_EXAMPLES_DIR has them. Each mutation
is one of: parse the file and then delete, duplicate or rename a key, replace a value by another
type (str, int, float, list, dict, None, a huge int, a long or odd unicode string, a name from
the diagram), or change the text itself (truncate it, cut a piece out, insert syntax
characters, duplicate or swap lines, break the indentation, bytes that are not UTF-8).

The mutations are a pure function of (seed, index): a failure names both and the mutation, and
`DIPEO_FUZZ_SEED=S DIPEO_FUZZ_COUNT=N` reruns or widens the search:

    DIPEO_FUZZ_COUNT=20000 PYTHONPATH=$PWD python -m pytest -q tests/test_fuzz.py -k in_process
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from dipeo_cli.compiler import compile_graph
from dipeo_cli.diagram import parse_diagram
from dipeo_cli.errors import DiagramError
from dipeo_cli.registry import load_plugins
from dipeo_cli.runner import prepare
from tests.conftest import DIPEO_EXAMPLES, REPO

SEED = int(os.environ.get("DIPEO_FUZZ_SEED", "20240611"))
COUNT = int(os.environ.get("DIPEO_FUZZ_COUNT", "300"))
CLI_COUNT = int(os.environ.get("DIPEO_FUZZ_CLI_COUNT", "6"))

HUGE = "__HUGE_INT__"  # replaced in the text by an integer too long for int() (5,000 digits)
ODD_STRINGS = [
    "",
    " ",
    "x" * 300,  # longer than a file name may be
    "y" * 20_000,
    "ñandú 😀 \u202e\u200b 中文",
    "\x00nul\x07bell",
    "\ud800",  # a lone surrogate
    "{{ undefined }}",
    "{{",
    "{% for %}",
    "../../../../etc/passwd",
    "/dev/zero",
    "a[b]",
    "Start[condtrue]",
    "default",
    "first",
    "condtrue",
    "error",
    "python",
    "bash",
    "json",
    "1e999",
    "-1",
    "null",
    "true",
    ":",
    "- -",
]
ODD_VALUES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    1,
    2**63,
    10**30,
    -(10**300),
    0.5,
    float("nan"),
    float("inf"),
    -float("inf"),
    1e308,
    [],
    {},
    [None],
    [1, "a", {}],
    {"a": 1},
    {"": None},
    {"nodes": []},
    [[[[[[]]]]]],
    HUGE,
]
SYNTAX = list("{}[]:,-\"'\n\t#&*!|>%@`?\\") + ["\n  ", "\n- ", ": ", "---\n", "...\n"]


def seed_files() -> list[Path]:
    folders = [REPO / "diagrams", REPO / "tests" / "conformance" / "diagrams"]
    folders.append(REPO / "tests" / "fixtures" / "diagrams")
    files = [p for folder in folders for p in folder.rglob("*") if p.suffix in (".yaml", ".json")]
    if DIPEO_EXAMPLES.is_dir():
        for path in DIPEO_EXAMPLES.rglob("*"):
            if path.suffix in (".yaml", ".yml", ".json") and path.is_file():
                if "nodes" in path.read_text(encoding="utf-8", errors="replace"):
                    files.append(path)
    return sorted(files)


SEEDS = seed_files()


@dataclass
class Mutant:
    source: Path
    what: str
    data: bytes

    def text(self) -> str | None:
        try:
            return self.data.decode("utf-8")
        except UnicodeDecodeError:
            return None


# -- mutations ----------------------------------------------------------------------------------


def _containers(value: Any, path: tuple = ()) -> list[tuple[tuple, Any]]:
    """Every dict and list in `value` with its path, without recursion."""
    found, todo = [], [(path, value)]
    while todo:
        where, item = todo.pop()
        if isinstance(item, dict):
            found.append((where, item))
            todo += [((*where, k), v) for k, v in item.items()]
        elif isinstance(item, list):
            found.append((where, item))
            todo += [((*where, i), v) for i, v in enumerate(item)]
    return found


def _names(data: Any) -> list[str]:
    """Strings from the diagram itself (labels, types, handles): the likeliest to confuse it."""
    words = [v for _, c in _containers(data) for v in (c.values() if isinstance(c, dict) else c)]
    return [w for w in words if isinstance(w, str) and len(w) < 60] or ["Start"]


def _odd_value(rng: random.Random, data: Any) -> Any:
    roll = rng.random()
    if roll < 0.4:
        return rng.choice(ODD_VALUES)
    if roll < 0.7:
        return rng.choice(ODD_STRINGS)
    return rng.choice(_names(data))


def _mutate_data(rng: random.Random, data: Any) -> str:
    """Change `data` in place; say what was done."""
    containers = _containers(data)
    if not containers:
        return "nothing to change"
    where, item = rng.choice(containers)
    op = rng.choice(["delete", "duplicate", "rename", "retype", "retype", "retype", "wrap"])
    if not item:
        op = "add"
    if isinstance(item, dict):
        key = rng.choice(list(item)) if item else None
        if op == "delete":
            del item[key]
        elif op == "duplicate":
            item[f"{key}_copy" if rng.random() < 0.5 else rng.choice(_names(data))] = item[key]
        elif op == "rename":
            new = rng.choice([*_names(data), *ODD_STRINGS[:8], 7, None])
            item[new] = item.pop(key)
            key = f"{key}->{new!r}"[:80]
        elif op in ("retype", "add"):
            key = key if key is not None else rng.choice(_names(data))
            item[key] = _odd_value(rng, data)
        else:
            item[key] = [item[key]] if rng.random() < 0.5 else {"value": item[key]}
        return f"{op} {'/'.join(map(str, where))}[{key!r}]"[:200]
    index = rng.randrange(len(item)) if item else 0
    if op == "delete":
        del item[index]
    elif op == "duplicate":
        item.insert(index, json.loads(json.dumps(item[index], default=str)))
    elif op in ("rename", "wrap"):
        item.reverse()
    elif op == "add":
        item.insert(index, _odd_value(rng, data))
    else:
        item[index] = _odd_value(rng, data)
    return f"{op} {'/'.join(map(str, where))}[{index}]"[:200]


def _dump(data: Any, as_json: bool) -> str:
    if as_json:
        text = json.dumps(data, default=str)
        return text.replace(f'"{HUGE}"', "9" * 5000)
    text = yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=1_000_000)
    return text.replace(f"'{HUGE}'", "9" * 5000).replace(HUGE, "9" * 5000)


def _mutate_text(rng: random.Random, text: str) -> tuple[str, str]:
    op = rng.choice(["truncate", "cut", "insert", "insert", "line", "indent"])
    n = len(text)
    if n == 0:
        return "x", "empty"
    at = rng.randrange(n)
    if op == "truncate":
        return text[:at], f"truncate at {at}"
    if op == "cut":
        end = min(n, at + rng.randint(1, 40))
        return text[:at] + text[end:], f"cut {at}:{end}"
    if op == "insert":
        piece = "".join(rng.choice(SYNTAX) for _ in range(rng.randint(1, 4)))
        return text[:at] + piece + text[at:], f"insert {piece!r} at {at}"
    lines = text.split("\n")
    i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
    if op == "line":
        if rng.random() < 0.5:
            lines.insert(i, lines[j])
            return "\n".join(lines), f"duplicate line {j + 1} before {i + 1}"
        lines[i], lines[j] = lines[j], lines[i]
        return "\n".join(lines), f"swap lines {i + 1} and {j + 1}"
    lines[i] = rng.choice(["", " ", "   ", "\t"]) + lines[i].lstrip(" ")
    return "\n".join(lines), f"re-indent line {i + 1}"


def mutant(seed: int, index: int) -> Mutant:
    """The `index`-th mutation for `seed`: a pure function of both."""
    rng = random.Random(seed * 1_000_003 + index)
    source = rng.choice(SEEDS)
    original = source.read_text(encoding="utf-8")
    roll = rng.random()
    if roll < 0.6:
        try:
            data = json.loads(original) if source.suffix == ".json" else yaml.safe_load(original)
        except (ValueError, yaml.YAMLError):
            data = None
        if data is not None:
            steps = [_mutate_data(rng, data) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
            as_json = source.suffix == ".json" if rng.random() < 0.9 else source.suffix != ".json"
            return Mutant(source, "; ".join(steps), _dump(data, as_json).encode("utf-8", "replace"))
    if roll < 0.95:
        text, what = _mutate_text(rng, original)
        return Mutant(source, what, text.encode("utf-8", "surrogatepass"))
    data = bytearray(original.encode("utf-8"))
    at = rng.randrange(len(data) or 1)
    junk = rng.choice([b"\xff", b"\xc3", b"\x00", b"\xef\xbb\xbf", b"\xed\xa0\x80"])
    return Mutant(source, f"bytes {junk!r} at {at}", bytes(data[:at] + junk + data[at:]))


# -- in process ---------------------------------------------------------------------------------


def check_in_process(m: Mutant, registry: Any, tmp: Path) -> str | None:
    """None when `m` compiles or is rejected with a DiagramError; otherwise what went wrong."""
    text = m.text()
    try:
        if text is None or "\x00" in text:  # through the file, as `dipeo validate` reads it
            path = tmp / f"mutant{m.source.suffix}"
            path.write_bytes(m.data)
            prepare(str(path))
        else:  # file= the seed's own path, so that sub-diagrams resolve as they did
            diagram = parse_diagram(text, file=str(m.source), strict=False)
            graph = compile_graph(diagram, registry)
            # what compiles can be recorded: the history stores labels and properties as UTF-8
            nodes = [(n.label, n.type, n.props) for n in graph.nodes.values()]
            json.dumps(nodes, ensure_ascii=False, default=str).encode("utf-8")
    except DiagramError as exc:
        if not exc.problems or any(not p.message for p in exc.problems):
            return "DiagramError without a message"
        return None
    except Exception as exc:  # noqa: BLE001 - this is what the fuzzer hunts
        return f"{type(exc).__name__}: {str(exc)[:300]}"
    return None


@pytest.mark.skipif(not SEEDS, reason="no seed diagrams")
def test_in_process_mutations_load_or_raise_diagram_error(tmp_path: Path) -> None:
    registry = load_plugins(())
    failures = []
    for index in range(COUNT):
        m = mutant(SEED, index)
        problem = check_in_process(m, registry, tmp_path)
        if problem is not None:
            rel = m.source.relative_to(m.source.parents[1])
            failures.append(f"seed {SEED} index {index}: {rel}: {m.what}\n    -> {problem}")
    assert not failures, f"{len(failures)} of {COUNT} mutations escaped:\n" + "\n".join(
        failures[:20]
    )


# -- through the real command -------------------------------------------------------------------


def _cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith(("_API_KEY", "_TOKEN"))}
    env["DIPEO_LLM"] = "mock"  # never call a real provider
    return env


@pytest.mark.skipif(not SEEDS, reason="no seed diagrams")
@pytest.mark.parametrize("index", range(CLI_COUNT))
def test_mutants_through_the_cli_exit_cleanly(index: int, tmp_path: Path) -> None:
    m = mutant(SEED + 1, index)
    path = tmp_path / f"mutant{m.source.suffix}"
    path.write_bytes(m.data)
    for args in (
        ["validate", str(path)],
        ["run", str(path), "--json", "--timeout", "3", "--llm", "mock"],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "dipeo_cli", *args],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            env=_cli_env(),
            errors="replace",
        )
        where = f"seed {SEED + 1} index {index}: {m.source.name}: {m.what}: dipeo {args[0]}"
        assert proc.returncode in (0, 1, 2, 124), f"{where}: exit {proc.returncode}\n{proc.stderr}"
        assert "Traceback" not in proc.stderr, f"{where}\n{proc.stderr}"
        if args[0] == "run" and proc.returncode != 2:
            json.loads(proc.stdout)  # --json prints one object, even for a failed run
