"""The handler API of the execution state model spec, as a plugin author uses it."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dipeo_cli import registry
from dipeo_cli.errors import PluginError


def test_public_names_import_from_the_package():
    from dipeo_cli import (  # noqa: F401
        ExecutionState,
        ExecutionStatus,
        NodeExecutionStatus,
        NodeOutput,
        NodeState,
        TokenUsage,
        create_node_output,
        node_handler,
    )

    out = create_node_output(value={"default": 1}, metadata={"m": 2})
    assert isinstance(out, NodeOutput)
    assert out.value == {"default": 1} and out.metadata == {"m": 2}
    assert create_node_output("text").value == {"default": "text"}
    assert [s.value for s in ExecutionStatus][:3] == ["STARTED", "RUNNING", "PAUSED"]
    assert {"PENDING", "RUNNING", "COMPLETED", "FAILED", "SKIPPED"} <= {
        s.value for s in NodeExecutionStatus
    }
    assert TokenUsage(input=1, output=2, total=3) + TokenUsage(input=1, total=1) == TokenUsage(
        input=2, output=2, total=4
    )


PLUGIN = textwrap.dedent(
    """
    from dipeo_cli import node_handler, create_node_output, NodeExecutionStatus

    @node_handler("shout")
    async def shout(node, ctx):
        # written exactly in the original style: it records its own status changes
        await ctx.state_store.update_node_status(ctx.execution_id, node.id, NodeExecutionStatus.RUNNING)
        text = str(ctx.inputs.get("default", "")).upper()
        output = create_node_output(value={"default": text}, metadata={"chars": len(text)})
        await ctx.state_store.update_node_status(
            ctx.execution_id, node.id, NodeExecutionStatus.COMPLETED, output=output
        )
        return output
    """
)


def test_plugin_file_registers_a_handler(tmp_path: Path):
    plugin = tmp_path / "shout_plugin.py"
    plugin.write_text(PLUGIN)
    loaded = registry.load_plugins([str(plugin)])
    spec = loaded.get("shout")
    assert spec is not None and spec.origin == str(plugin)
    assert registry.REGISTRY.get("shout") is None  # nothing leaks into the default registry
    assert registry.load_plugins().get("shout") is None


def test_broken_plugin_is_a_plugin_error_naming_it(tmp_path: Path):
    plugin = tmp_path / "broken.py"
    plugin.write_text("raise RuntimeError('nope')\n")
    with pytest.raises(PluginError, match="broken.py failed to load: RuntimeError: nope"):
        registry.load_plugin(str(plugin))
    with pytest.raises(PluginError, match="not found"):
        registry.load_plugin(str(tmp_path / "missing.py"))
    with pytest.raises(PluginError, match="no_such_module_xyz"):
        registry.load_plugin("no_such_module_xyz")


def test_entry_point_plugins_are_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    (tmp_path / "ep_plugin_mod.py").write_text(PLUGIN.replace('"shout"', '"whisper"'))
    dist = tmp_path / "ep_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: ep-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[dipeo.handlers]\nwhisper = ep_plugin_mod\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = registry.load_plugins().get("whisper")
    assert spec is not None and spec.origin == "entry point whisper"


def test_builtin_handlers_load_only_when_a_diagram_uses_them():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from dipeo_cli.registry import load_plugins\n"
        "registry = load_plugins()\n"
        "assert 'api_job' in registry.types() and 'person_job' in registry.types()\n"
        "assert registry.get('start').type == 'start'\n"
        "print(','.join(m for m in sys.modules if m.startswith('dipeo_cli.handlers.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "dipeo_cli.handlers.start"


def test_a_plugin_may_replace_a_builtin_handler(tmp_path: Path):
    plugin = tmp_path / "my_start.py"
    plugin.write_text(
        "from dipeo_cli import node_handler, create_node_output\n"
        "@node_handler('start', inputs=())\n"
        "async def start(node, ctx):\n"
        "    return create_node_output({'default': 'mine'})\n"
    )
    loaded = registry.load_plugins([str(plugin)])
    assert loaded.get("start").origin == str(plugin)
    assert registry.load_plugins().get("start").origin == "builtin"
