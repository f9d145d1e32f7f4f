"""Each dependency has one owner, a module or a package (STYLE.md habit 5); the executor imports
none of them."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "dipeo_cli"
OWNERS = {
    "rich": {"render/"},  # a folder: every module in it
    "typer": {"cli/"},
    "aiosqlite": {"store/sqlite.py"},
    "asyncpg": {"store/postgres.py"},
    "openai": {"llm/openai_service.py"},
    "anthropic": {"llm/anthropic_service.py"},
    "strawberry": {"server/"},
    "uvicorn": {"server/"},
}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_only_the_owner_module_imports_each_dependency():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE).as_posix()
        for dependency in imported_roots(path) & set(OWNERS):
            owners = OWNERS[dependency]
            if rel not in owners and not any(rel.startswith(o) for o in owners if o.endswith("/")):
                offenders.append(f"{rel} imports {dependency}")
    assert offenders == []


def test_help_does_not_import_the_heavy_modules():
    code = (
        "import sys\n"
        "from dipeo_cli import cli\n"
        "heavy = [m for m in ('pydantic', 'aiosqlite', 'sqlite3', 'asyncio', 'rich.live', 'yaml', 'jinja2',"
        " 'openai', 'anthropic', 'httpx', 'jsonschema', 'asyncpg', 'dipeo_cli.render.graph',"
        " 'dipeo_cli.diagram.write', 'dipeo_cli.documents', 'dipeo_cli.testing',"
        " 'strawberry', 'uvicorn', 'starlette', 'graphql', 'websockets',"
        " 'dipeo_cli.worker', 'dipeo_cli.store.queue', 'dipeo_cli.runner')"
        " if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_a_sqlite_run_does_not_import_the_postgresql_driver(tmp_path: Path) -> None:
    """asyncpg is loaded only when a postgresql:// history is opened."""
    code = (
        "import asyncio, sys\n"
        "from dipeo_cli.store import open_store\n"
        "async def main():\n"
        f"    async with await open_store({str(tmp_path / 'h.db')!r}):\n"
        "        pass\n"
        "asyncio.run(main())\n"
        "print('asyncpg' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_ruff_finds_nothing():
    """The lint rules in pyproject.toml, including the import bans above, hold for the tree."""
    repo = PACKAGE.parent
    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "dipeo_cli", "tests", "benchmarks"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


NOT_FOR_AN_OFFLINE_RUN = (
    "rich",
    "openai",
    "anthropic",
    "httpx",
    "jsonschema",
    "asyncpg",
    "strawberry",
    "uvicorn",
    "websockets",
    "dipeo_cli.llm.services",
    "dipeo_cli.llm.base",
    "dipeo_cli.handlers.user_response",
    "dipeo_cli.handlers.person_job",
    "dipeo_cli.prompt",  # the {{ }} prompts of persons and llm_decision conditions
    "dipeo_cli.render.graph",
    "dipeo_cli.diagram.write",
)


def test_an_offline_run_loads_only_what_its_nodes_use():
    """`dipeo run --quiet` of templates, a condition and an endpoint: no LLM services, no
    Rich, no HTTP client, no handlers of node types the diagram does not have."""
    diagram = PACKAGE.parent / "benchmarks" / "twenty_nodes.light.yaml"
    printed = _run_then(
        diagram,
        f"loaded = [m for m in {NOT_FOR_AN_OFFLINE_RUN!r} if m in sys.modules]\n"
        "print('loaded:' + ','.join(loaded))\n",
    )
    assert printed[-1] == "loaded:"


def _run_then(diagram: Path, report: str) -> list[str]:
    """`dipeo run DIAGRAM --quiet` through the entry point in a fresh python, then the python
    code `report` (which prints what the test checks); the lines printed."""
    code = (
        "import importlib, sys\n"
        f"sys.argv = ['dipeo', 'run', {str(diagram)!r}, '--quiet']\n"
        "from dipeo_cli.launch import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
    ) + report
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()


# What `dipeo run` of a diagram without templates, persons or HTTP calls has no use for: the
# template engine, the other command families (Typer builds every command it knows on each
# call), Rich (--quiet).
NOT_FOR_A_PLAIN_RUN = (
    "jinja2",
    "dipeo_cli.sandbox",
    "dipeo_cli.template_budget",
    "dipeo_cli.template_environment",
    "dipeo_cli.handlers.template_job",
    "rich",
    "httpx",
    "openai",
    "anthropic",
    *(f"dipeo_cli.cli.{name}" for name in ("history", "retention", "retry", "control")),
    *(f"dipeo_cli.cli.{name}" for name in ("convert", "queue", "serve")),
)
# Models a run of a light diagram makes with `prebuilt` only: their validators stay unbuilt.
UNBUILT_IN_A_RUN = (
    ("dipeo_cli.diagram.model", "Diagram"),
    ("dipeo_cli.diagram.model", "DiagramNode"),
    ("dipeo_cli.diagram.model", "DiagramArrow"),
    ("dipeo_cli.diagram.model", "Position"),
    ("dipeo_cli.state", "ExecutionState"),
    ("dipeo_cli.state", "NodeState"),
    ("dipeo_cli.state", "NodeOutput"),
)


def test_a_run_without_templates_loads_no_template_engine_and_no_other_command(
    tmp_path: Path,
) -> None:
    """`dipeo run --quiet` (through the entry point, in a real process) of start -> condition
    -> endpoint: no Jinja2, no Rich, no HTTP or LLM client, only the `run` command family,
    and the diagram and state models never build their validators."""
    diagram = tmp_path / "plain.light.yaml"
    diagram.write_text(
        "version: light\n"
        "nodes:\n"
        "  - {label: Start, type: start, custom_data: {n: 3}}\n"
        "  - {label: Big, type: condition, condition_type: custom, expression: 'n > 2'}\n"
        "  - {label: End, type: endpoint}\n"
        "connections:\n"
        "  - {from: Start, to: Big}\n"
        "  - {from: 'Big[condtrue]', to: End}\n",
        encoding="utf-8",
    )
    printed = _run_then(
        diagram,
        f"loaded = [m for m in {NOT_FOR_A_PLAIN_RUN!r} if m in sys.modules]\n"
        "built = [name for module, name in "
        f"{UNBUILT_IN_A_RUN!r} "
        "if getattr(importlib.import_module(module), name).__pydantic_complete__]\n"
        "print('loaded:' + ','.join(loaded))\n"
        "print('built:' + ','.join(built))\n",
    )
    assert printed[-2:] == ["loaded:", "built:"]


def test_each_command_is_registered_by_the_family_main_loads_for_it():
    """`main` loads only the family (modules) that FAMILIES names for the command it runs."""
    from dipeo_cli.cli import FAMILIES, FAMILY_MODULES, app

    def family(module: str) -> str:
        return module.rpartition(".")[2]

    registered: dict[str, set[str]] = {}
    for command in app.registered_commands:
        assert command.callback is not None
        name = command.name or command.callback.__name__
        registered.setdefault(name, set()).add(family(command.callback.__module__))
    for group in app.registered_groups:
        assert group.name is not None
        sub = group.typer_instance
        modules = registered.setdefault(group.name, set())
        if sub.registered_callback is not None and sub.registered_callback.callback is not None:
            modules.add(family(sub.registered_callback.callback.__module__))
        for command in sub.registered_commands:
            assert command.callback is not None
            modules.add(family(command.callback.__module__))
    assert {name: set(modules) for name, modules in FAMILIES.items()} == registered
    assert set(FAMILY_MODULES) == set().union(*registered.values())


def test_the_entry_point_runs_a_command_of_another_family_and_suggests_unknown_ones():
    """`dipeo history` (its family alone) works; `dipeo rn` (every family) suggests `run`."""
    history = subprocess.run(
        [sys.executable, "-m", "dipeo_cli", "history", "path"], capture_output=True, text=True
    )
    assert history.returncode == 0, history.stderr
    assert history.stdout.strip().endswith("history.db")
    typo = subprocess.run([sys.executable, "-m", "dipeo_cli", "rn"], capture_output=True, text=True)
    assert typo.returncode == 2
    assert "Did you mean 'run'?" in typo.stderr


def test_the_entry_point_answers_help_without_typer_or_the_heavy_modules():
    code = (
        "import sys\n"
        "from dipeo_cli import launch\n"
        "assert launch.fast_answer(['--help']) and launch.fast_answer(['--version'])\n"
        "heavy = [m for m in ('typer', 'click', 'pydantic', 'asyncio', 'yaml', 'rich',"
        " 'dipeo_cli.cli', 'dipeo_cli.heap') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "COLUMNS": "100"},
    )
    assert out.stdout.strip() == ""
