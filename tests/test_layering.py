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
    code = (
        "import sys\n"
        f"sys.argv = ['dipeo', 'run', {str(diagram)!r}, '--quiet']\n"
        "from dipeo_cli.launch import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        f"loaded = [m for m in {NOT_FOR_AN_OFFLINE_RUN!r} if m in sys.modules]\n"
        "print('loaded:' + ','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "loaded:"


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
