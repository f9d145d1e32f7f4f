"""diff_patch on real files: apply, reverse, dry run, backups, creation, fuzz, force, and a
failing hunk that leaves every file byte-identical."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from dipeo_cli.cli import app
from dipeo_cli.errors import NodeError
from tests.test_handlers_props import compile_problem, run_one

ORIGINAL = "one\ntwo\nthree\nfour\nfive\nsix\nseven\neight\nnine\nten\n"
DIFF = """\
--- a/numbers.txt
+++ b/numbers.txt
@@ -2,3 +2,3 @@
 two
-three
+THREE
 four
@@ -8,3 +8,4 @@
 eight
 nine
 ten
+eleven
"""
PATCHED = ORIGINAL.replace("three", "THREE") + "eleven\n"


def patch(props: dict, base: Path, **kwargs):
    return run_one("diff_patch", props, base_dir=base, **kwargs)


@pytest.fixture
def numbers(tmp_path: Path) -> Path:
    path = tmp_path / "numbers.txt"
    path.write_text(ORIGINAL)
    return path


def test_applies_every_hunk_and_keeps_a_backup(tmp_path: Path, numbers: Path) -> None:
    out = patch({"target_path": "numbers.txt", "diff": DIFF}, tmp_path)
    assert numbers.read_text() == PATCHED
    assert (tmp_path / "numbers.txt.bak").read_text() == ORIGINAL
    value = out.value["default"]
    assert value["applied"] is True and value["hunks"] == 2 and value["path"] == "numbers.txt"
    assert value["backups"] == ["numbers.txt.bak"] and value["rejected"] == []


def test_reverse_undoes_the_diff(tmp_path: Path, numbers: Path) -> None:
    numbers.write_text(PATCHED)
    patch({"target_path": "numbers.txt", "diff": DIFF, "apply_mode": "reverse"}, tmp_path)
    assert numbers.read_text() == ORIGINAL


def test_dry_run_checks_but_writes_nothing(tmp_path: Path, numbers: Path) -> None:
    out = patch({"target_path": "numbers.txt", "diff": DIFF, "apply_mode": "dry_run"}, tmp_path)
    assert numbers.read_text() == ORIGINAL
    assert not (tmp_path / "numbers.txt.bak").exists()
    assert out.value["default"]["applied"] is False and out.value["default"]["hunks"] == 2
    bad = DIFF.replace(" four", " FOUR")
    with pytest.raises(NodeError, match="hunk 1 of 2"):
        patch({"target_path": "numbers.txt", "diff": bad, "apply_mode": "dry_run"}, tmp_path)


def test_a_failing_hunk_leaves_the_file_byte_identical(tmp_path: Path, numbers: Path) -> None:
    numbers.write_bytes(ORIGINAL.replace("nine", "NINE").encode())
    before = numbers.read_bytes()
    with pytest.raises(NodeError) as caught:
        patch({"target_path": "numbers.txt", "diff": DIFF}, tmp_path)
    assert str(caught.value) == (
        "hunk 2 of 2 (@@ -8,3 +8,4 @@) does not apply to numbers.txt: "
        "line 9 is 'NINE', the diff expects 'nine'; no file was changed"
    )
    assert numbers.read_bytes() == before
    files = sorted(p.name for p in tmp_path.iterdir() if p.is_file())
    assert files == ["numbers.txt"]  # no backup, no temporary file


def test_an_applied_diff_is_recognised(tmp_path: Path, numbers: Path) -> None:
    numbers.write_text(PATCHED)
    with pytest.raises(NodeError, match=r"it is already applied \(apply_mode: reverse undoes it\)"):
        patch({"target_path": "numbers.txt", "diff": DIFF}, tmp_path)


def test_backup_dir_and_no_backup(tmp_path: Path, numbers: Path) -> None:
    patch({"target_path": "numbers.txt", "diff": DIFF, "backup_dir": "saved"}, tmp_path)
    assert (tmp_path / "saved" / "numbers.txt").read_text() == ORIGINAL
    numbers.write_text(ORIGINAL)
    patch({"target_path": "numbers.txt", "diff": DIFF, "backup": False}, tmp_path)
    assert not (tmp_path / "numbers.txt.bak").exists()


def test_create_missing_and_dev_null_diffs(tmp_path: Path) -> None:
    creating = "--- /dev/null\n+++ b/new/hello.txt\n@@ -0,0 +1,2 @@\n+hello\n+world\n"
    out = patch({"diff": creating}, tmp_path)  # a /dev/null diff creates the file it names
    assert (tmp_path / "new" / "hello.txt").read_text() == "hello\nworld\n"
    assert out.value["default"]["created"] == ["new/hello.txt"]
    adding = "@@ -0,0 +1 @@\n+first line\n"
    with pytest.raises(NodeError, match=r"file not found: todo.txt \(set create_missing"):
        patch({"target_path": "todo.txt", "diff": adding}, tmp_path)
    patch({"target_path": "todo.txt", "diff": adding, "create_missing": True}, tmp_path)
    assert (tmp_path / "todo.txt").read_text() == "first line\n"
    # Reversing the creation deletes the file again (after a backup).
    patch({"diff": creating, "apply_mode": "reverse"}, tmp_path)
    assert not (tmp_path / "new" / "hello.txt").exists()
    assert (tmp_path / "new" / "hello.txt.bak").read_text() == "hello\nworld\n"


def test_fuzz_factor_bounds_how_far_a_hunk_may_have_moved(tmp_path: Path, numbers: Path) -> None:
    shifted = "zero\nzero\n" + ORIGINAL  # every line two further down
    numbers.write_text(shifted)
    patch({"target_path": "numbers.txt", "diff": DIFF, "backup": False}, tmp_path)
    assert numbers.read_text() == "zero\nzero\n" + PATCHED
    numbers.write_text("0\n0\n0\n" + ORIGINAL)  # three lines: beyond the default fuzz of 2
    with pytest.raises(NodeError, match="hunk 1 of 2"):
        patch({"target_path": "numbers.txt", "diff": DIFF}, tmp_path)
    patch({"target_path": "numbers.txt", "diff": DIFF, "fuzz_factor": 3}, tmp_path)
    assert numbers.read_text() == "0\n0\n0\n" + PATCHED


def test_force_applies_what_it_can_and_reports_the_rest(tmp_path: Path, numbers: Path) -> None:
    numbers.write_text(ORIGINAL.replace("ten", "TEN"))
    out = patch(
        {"target_path": "numbers.txt", "diff": DIFF, "apply_mode": "force", "reject_file": "r.rej"},
        tmp_path,
    )
    assert numbers.read_text() == ORIGINAL.replace("three", "THREE").replace("ten", "TEN")
    [rejected] = out.value["default"]["rejected"]
    assert rejected["hunk"] == 2 and "line 10 is 'TEN'" in rejected["reason"]
    assert "+eleven" in (tmp_path / "r.rej").read_text()


def test_ignore_whitespace_and_crlf_files(tmp_path: Path) -> None:
    path = tmp_path / "w.txt"
    path.write_bytes(b"a  b\r\nc\r\n")
    diff = "@@ -1,2 +1,2 @@\n a b\n-c\n+d\n"
    with pytest.raises(NodeError, match="line 1 is 'a  b', the diff expects 'a b'"):
        patch({"target_path": "w.txt", "diff": diff}, tmp_path)
    patch({"target_path": "w.txt", "diff": diff, "ignore_whitespace": True}, tmp_path)
    assert path.read_bytes() == b"a  b\r\nd\r\n"  # context kept as it was, CRLF kept


def test_no_newline_at_end_of_file(tmp_path: Path) -> None:
    path = tmp_path / "n.txt"
    path.write_text("a\nb")
    diff = (
        "--- a/n.txt\n+++ b/n.txt\n@@ -1,2 +1,3 @@\n a\n-b\n\\ No newline at end of file\n"
        "+b\n+c\n\\ No newline at end of file\n"
    )
    patch({"target_path": "n.txt", "diff": diff}, tmp_path)
    assert path.read_text() == "a\nb\nc"


def test_headers_name_the_files_with_strip_level(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 1\n")
    diff = (
        "diff --git a/src/a.py b/src/a.py\nindex 1..2 100644\n"
        "--- a/src/a.py\n+++ b/src/a.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n"
        "--- a/b.py\n+++ b/b.py\n@@ -1 +1 @@\n-y = 1\n+y = 2\n"
    )
    out = patch({"diff": diff}, tmp_path)
    assert (tmp_path / "src" / "a.py").read_text() == "x = 2\n"
    assert (tmp_path / "b.py").read_text() == "y = 2\n"
    assert out.value["default"]["paths"] == ["src/a.py", "b.py"]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b.py").write_text("y = 2\n")
    one = "--- a/b.py\n+++ a/b.py\n@@ -1 +1 @@\n-y = 2\n+y = 3\n"
    patch({"diff": one, "strip_level": 0}, tmp_path)
    assert (tmp_path / "a" / "b.py").read_text() == "y = 3\n"
    with pytest.raises(NodeError, match="target_path names one"):
        patch({"diff": diff, "target_path": "b.py"}, tmp_path)


def test_header_paths_outside_the_base_directory_are_refused(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (tmp_path / "secret.txt").write_text("x\n")
    diff = "--- a/../secret.txt\n+++ b/../secret.txt\n@@ -1 +1 @@\n-x\n+y\n"
    with pytest.raises(NodeError, match="outside the base directory"):
        patch({"diff": diff}, base)
    assert (tmp_path / "secret.txt").read_text() == "x\n"


def test_diff_from_inputs(tmp_path: Path, numbers: Path) -> None:
    patch({"target_path": "numbers.txt"}, tmp_path, inputs={"diff": DIFF, "default": {"x": 1}})
    assert numbers.read_text() == PATCHED
    numbers.write_text(ORIGINAL)
    patch({"target_path": "numbers.txt"}, tmp_path, inputs={"default": DIFF})
    assert numbers.read_text() == PATCHED
    with pytest.raises(NodeError, match="no diff"):
        patch({"target_path": "numbers.txt"}, tmp_path, inputs={"default": {"x": 1}})


def test_the_file_mode_is_kept(tmp_path: Path, numbers: Path) -> None:
    os.chmod(numbers, 0o750)
    patch({"target_path": "numbers.txt", "diff": DIFF}, tmp_path)
    assert stat.S_IMODE(numbers.stat().st_mode) == 0o750


def test_validation_time_errors() -> None:
    assert "not a unified diff: no hunks" in compile_problem("diff_patch", {"diff": "hello"})
    assert "format 'context' is not supported" in compile_problem(
        "diff_patch", {"diff": DIFF, "format": "context"}
    )
    assert "apply_mode 'sideways' is not supported" in compile_problem(
        "diff_patch", {"diff": DIFF, "apply_mode": "sideways"}
    )
    assert "ends early" in compile_problem("diff_patch", {"diff": "@@ -1,3 +1,3 @@\n a\n"})


def test_the_patch_example_runs() -> None:
    diagram = str(Path(__file__).resolve().parents[1] / "diagrams" / "patch.light.yaml")
    for _ in range(2):  # runs again and again: the template rewrites the file first
        out = CliRunner().invoke(app, ["run", diagram, "--json"], catch_exceptions=False)
        assert out.exit_code == 0, out.output
        assert json.loads(out.stdout)["result"].endswith("and patches apply true.\n")
    assert Path("results/poem.txt.bak").read_text().endswith("and so are you.\n")
