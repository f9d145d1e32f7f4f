"""The error tree drawn in errors.py's docstring is the whole tree (STYLE.md habit 1): every
exception class the package defines is drawn there, under the class it really derives from,
and the drawing names no class that does not exist.

Every module of dipeo_cli is imported to find the classes (all of its dependencies are
required ones, so none is skipped), except `__main__`, which runs the CLI when imported.
Private classes (a leading underscore) never leave their module and are not drawn.
"""

from __future__ import annotations

import builtins
import importlib
import inspect
import pkgutil
import re

import dipeo_cli
from dipeo_cli import errors

NOT_IMPORTED = {"dipeo_cli.__main__"}  # importing it runs the CLI

# One drawn line: the branches ("│   " or "    " per level above, then "├── " or "└── "),
# the class name, then at least two spaces and what it is for.
CONTINUATION = re.compile(r"(?:│   |    )*│?\s{8,}\S.*")
TREE_LINE = re.compile(
    r"(?P<levels>(?:│   |    )*)(?P<branch>[├└]── )?(?P<name>\w+)(?P<note>  .*)?"
)


def defined_exceptions() -> dict[str, type[BaseException]]:
    """Every public exception class defined in a dipeo_cli module, by name."""
    found: dict[str, type[BaseException]] = {}
    for info in pkgutil.walk_packages(dipeo_cli.__path__, "dipeo_cli."):
        if info.name in NOT_IMPORTED:
            continue
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
                and not name.startswith("_")
            ):
                other = found.setdefault(name, value)
                assert other is value, f"two error classes named {name}: draw one of them renamed"
    return found


def drawn_tree() -> dict[str, tuple[str | None, str]]:
    """{class name: (parent name or None for a root, its note)} from errors.py's docstring.

    The drawings are the docstring's lines indented by four spaces; a line without a branch
    starts a new tree at its root.
    """
    tree: dict[str, tuple[str | None, str]] = {}
    path: list[str] = []  # the names on the way from the root to the line above
    for line in (errors.__doc__ or "").splitlines():
        if not line.startswith("    ") or not line.strip():
            continue
        if CONTINUATION.fullmatch(line[4:]):
            continue  # a note that goes on over a second line
        match = TREE_LINE.fullmatch(line[4:])
        assert match, f"not a line of the tree drawing: {line!r}"
        depth = len(match["levels"]) // 4 + (1 if match["branch"] else 0)
        assert depth <= len(path), f"{match['name']} is drawn deeper than under a parent: {line!r}"
        del path[depth:]
        name = match["name"]
        assert name not in tree, f"{name} is drawn twice"
        tree[name] = (path[-1] if path else None, (match["note"] or "").strip())
        path.append(name)
    return tree


def test_the_tree_draws_every_error_class_under_its_parent():
    tree = drawn_tree()
    wrong = []
    for name, cls in sorted(defined_exceptions().items()):
        parent = cls.__base__.__name__
        if name not in tree:
            wrong.append(f"{name} ({cls.__module__}) is not drawn; draw it under {parent}")
        elif tree[name][0] is None:  # a root: fine when what it derives from is not ours
            if getattr(builtins, parent, None) is not cls.__base__:
                wrong.append(f"{name} is drawn as a root, but derives from {parent}")
        elif tree[name][0] != parent:
            wrong.append(f"{name} is drawn under {tree[name][0]}, but derives from {parent}")
    assert not wrong, "\n".join(wrong)


def test_the_tree_names_only_real_classes_each_with_a_note():
    defined = defined_exceptions()
    for name, (parent, note) in drawn_tree().items():
        if parent is None and name != "DipeoError":
            # a root other than ours is the builtin exception our classes under it derive from
            assert isinstance(getattr(builtins, name, None), type), f"{name} is no builtin"
            continue
        assert name in defined, f"the tree draws {name}, which dipeo_cli does not define"
        assert note, f"{name} is drawn without saying when it is raised"


def test_the_tree_reader_sees_the_drawing():
    """Guards the two tests above against a reader that finds nothing to check."""
    tree = drawn_tree()
    assert tree["DipeoError"][0] is None
    assert tree["ExecutionNotFoundError"][0] == "HistoryError"
    assert tree["IterationLimitError"][0] == "NodeError"
