from __future__ import annotations

import time

import pytest

from dipeo_cli import expression
from dipeo_cli.errors import NodeError
from dipeo_cli.expression import UndefinedNameError, evaluate
from dipeo_cli.expression_syntax import ExpressionError, parse_expression


@pytest.mark.parametrize(
    ("text", "namespace", "expected"),
    [
        ("a > 10", {"a": 11}, True),
        (
            "state['counter'] >= len(state['items'])",
            {"state": {"counter": 2, "items": [1, 2]}},
            True,
        ),
        ("xs[0] + xs[-1]", {"xs": [1, 2, 5]}, 6),
        ("xs[1:3]", {"xs": [1, 2, 3, 4]}, [2, 3]),
        ("text[::-1]", {"text": "abc"}, "cba"),
        ("state.n >= 3", {"state": {"n": 3}}, True),
        ("checked.ready_for_production == True", {"checked": {"ready_for_production": True}}, True),
        ("(n + 1) * 2 - 4 / 2", {"n": 2}, 4.0),
        ("7 // 2 + 7 % 2 + 2 ** 3", {}, 12),
        ("-x + +x", {"x": 3}, 0),
        ("1 < x <= 3 < 4", {"x": 3}, True),
        ("'a' in xs and 'z' not in xs", {"xs": ["a"]}, True),
        ("x is None and y is not None", {"x": None, "y": 1}, True),
        ("not done or count > 2", {"done": True, "count": 3}, True),
        ("'yes' if ok else 'no'", {"ok": False}, "no"),
        ("[1, 2][1] + (3, 4)[0] + {'k': 5}['k'] + len({1, 1, 2})", {}, 12),
        ("true and not false and null is None", {}, True),
        ("max(xs, key=len)", {"xs": ["a", "bbb", "cc"]}, "bbb"),
        ("sorted(xs, reverse=True)", {"xs": [2, 3, 1]}, [3, 2, 1]),
        ("round(x, 1)", {"x": 2.345}, 2.3),
        ("sum(xs) / len(xs)", {"xs": [1, 2, 3]}, 2.0),
        ("all(x > 0 for x in xs) and any(x > 2 for x in xs)", {"xs": [1, 3]}, True),
        ("[k for k, v in d.items() if v]", {"d": {"a": 1, "b": 0}}, ["a"]),
        ("{k: v * 2 for k, v in d.items()}", {"d": {"a": 1}}, {"a": 2}),
        ("d.get('missing', 7)", {"d": {}}, 7),
        ("sorted(d.keys())", {"d": {"b": 1, "a": 2}}, ["a", "b"]),
        ("name.lower().strip().startswith('al')", {"name": "  ALICE "}, True),
        ("s.split(',')[1]", {"s": "a,b"}, "b"),
        ("f'{n} items, {ratio:.1f}'", {"n": 3, "ratio": 0.25}, "3 items, 0.2"),
        ("int('4') + float('0.5') + bool(1) + abs(-1)", {}, 6.5),
        ("str(5) + str(list((1,)))", {}, "5[1]"),
        ("dict(a=1)['a'] + len(tuple([1])) + len(set([1, 2]))", {}, 4),
        ("len(default) > 0 and y == 7", {"default": {"a": 1}, "y": 7}, True),
        ("len(input_data.get('invalid', [])) == 0", {"input_data": {"invalid": []}}, True),
    ],
)
def test_evaluates_what_users_write(text: str, namespace: dict, expected: object) -> None:
    assert evaluate(text, namespace) == expected


def test_a_dict_key_beats_a_method_of_the_same_name_for_attribute_reads() -> None:
    assert evaluate("d.items", {"d": {"items": [1]}}) == [1]


def test_undefined_name_raises_a_clear_error() -> None:
    with pytest.raises(UndefinedNameError, match="name 'missing' is not defined"):
        evaluate("missing > 1", {"a": 1})


def test_expression_error_is_a_node_error() -> None:
    assert issubclass(ExpressionError, NodeError)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("'abc' > 10", "TypeError"),
        ("1 / 0", "ZeroDivisionError"),
        ("d['nope']", "key 'nope' not found"),
        ("xs[5]", "index 5 out of range"),
        ("d.nope", "key 'nope' not found"),
        ("s.nope", "has no attribute 'nope'"),
    ],
)
def test_failures_raise_expression_error(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        evaluate(text, {"d": {}, "xs": [1], "s": "x"})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("__import__('os').system('true')", "cannot be called"),
        ("open('/etc/passwd')", "cannot be called"),
        ("eval('1')", "cannot be called"),
        ("x.__class__", "not allowed"),
        ("x.__class__.__mro__", "not allowed"),
        ("s._private", "not allowed"),
        ("s.format(1)", "method 'format' of a str value is not allowed"),
        ("d.update({})", "method 'update' of a dict value is not allowed"),
        ("(lambda: 1)()", "lambda is not allowed"),
        ("(y := 1)", "not allowed"),
        ("[len][0]('a')", "only the allowed builtins"),
        ("'%s' % s", "string formatting is not allowed"),
    ],
)
def test_unsafe_constructs_are_rejected(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        evaluate(text, {"x": 1, "s": "abc", "d": {}})


@pytest.mark.parametrize(
    "text",
    [
        "2 ** 10000000",
        "10 ** 10 ** 10",
        "9 ** 999999",
        "'a' * 10 ** 8",
        "[0] * 10 ** 8",
        "1 << 10 ** 9",
        "f'{1:999999999}'",
        "sum([[1] * 1000] * 1000, [])",
        "[y * y for x in [2 ** 60000] for y in [x * x]]",
    ],
)
def test_expensive_expressions_are_refused_quickly(text: str) -> None:
    started = time.perf_counter()
    with pytest.raises(ExpressionError):
        evaluate(text, {"big": list(range(5000))})
    assert time.perf_counter() - started < 2


def test_work_is_capped_by_a_step_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(expression, "MAX_STEPS", 10_000)
    with pytest.raises(ExpressionError, match="too much work"):
        evaluate("[[x, y] for x in big for y in big]", {"big": list(range(5000))})


def test_small_powers_still_work() -> None:
    assert evaluate("2 ** 100", {}) == 2**100
    assert evaluate("1 ** 10 ** 8", {}) == 1


def test_parse_expression_reports_syntax_errors_with_a_column() -> None:
    with pytest.raises(ExpressionError, match=r"syntax error at column 5: invalid syntax"):
        parse_expression("a + * b")
    with pytest.raises(ExpressionError, match="empty"):
        parse_expression("   ")


def test_parse_expression_accepts_valid_text() -> None:
    parse_expression("count >= 3 and state['done']")


def test_builtins_can_be_passed_as_key_functions_but_nothing_else() -> None:
    assert evaluate("sorted(xs, key=len)", {"xs": ["bb", "a"]}) == ["a", "bb"]


def test_namespace_wins_over_json_constants() -> None:
    assert evaluate("true", {"true": "mine"}) == "mine"
