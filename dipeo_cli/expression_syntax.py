"""What a condition expression may contain, checked once when it is parsed.

The names it may read without a namespace (JSON's constants, the safe builtins), the methods it
may call on a str, list or dict, the operators (tables that are both what the parse allows and
what the evaluator applies), and `parse_expression`: its cached `_parse`, which `evaluate` in
expression.py shares, rejects before anything runs every node outside the allowed syntax,
private and dunder attributes, async comprehensions and f-string conversions other than !s
and !r.
"""

from __future__ import annotations

import ast
import operator
import warnings
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from dipeo_cli.errors import NodeError

MAX_EXPRESSION_LENGTH = 10_000


class ExpressionError(NodeError):
    """An expression is invalid, or failed to evaluate."""


JSON_CONSTANTS: dict[str, Any] = {"true": True, "false": False, "null": None}

SAFE_BUILTINS: dict[str, Callable[..., Any]] = {
    "len": len,
    "abs": abs,
    "min": min,
    "max": max,
    "sum": sum,
    "all": all,
    "any": any,
    "bool": bool,
    "int": int,
    "float": float,
    "str": str,
    "list": list,
    "dict": dict,
    "tuple": tuple,
    "set": set,
    "round": round,
    "sorted": sorted,
}

_STR_METHODS = frozenset(
    "lower upper strip lstrip rstrip startswith endswith split rsplit splitlines count find "
    "rfind index replace join isdigit isalpha isalnum isspace isnumeric isdecimal islower "
    "isupper title capitalize casefold removeprefix removesuffix partition rpartition".split()
)
_LIST_METHODS = frozenset({"count", "index"})
_DICT_METHODS = frozenset({"get", "keys", "values", "items"})

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
    ast.BitAnd: operator.and_,
    ast.BitOr: operator.or_,
    ast.BitXor: operator.xor,
    ast.LShift: operator.lshift,
    ast.RShift: operator.rshift,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.Not: operator.not_,
    ast.USub: operator.neg,
    ast.UAdd: operator.pos,
    ast.Invert: operator.invert,
}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
}

_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expression,
    ast.Constant,
    ast.Name,
    ast.Load,
    ast.Store,
    ast.Subscript,
    ast.Slice,
    ast.Attribute,
    ast.BinOp,
    ast.UnaryOp,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.Compare,
    ast.IfExp,
    ast.List,
    ast.Tuple,
    ast.Dict,
    ast.Set,
    ast.Call,
    ast.keyword,
    ast.JoinedStr,
    ast.FormattedValue,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.comprehension,
    *_BINARY,
    *_UNARY,
    *_COMPARE,
)

_DESCRIBE: dict[type, str] = {  # looked up with any type (an absent `op` is None)
    ast.Lambda: "lambda",
    ast.NamedExpr: "assignment (:=)",
    ast.Await: "await",
    ast.Yield: "yield",
    ast.YieldFrom: "yield",
    ast.Starred: "* unpacking",
    ast.MatMult: "the @ operator",
}


def parse_expression(text: str) -> ast.Expression:
    """Parse and check an expression without evaluating it (for validation at compile time).

    Raises ExpressionError for a syntax error or for syntax the evaluator does not allow.
    """
    return _parse(text)


@lru_cache(maxsize=1024)
def _parse(text: str) -> ast.Expression:
    if not isinstance(text, str) or not text.strip():
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise ExpressionError(f"the expression is longer than {MAX_EXPRESSION_LENGTH} characters")
    source = text.strip()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. invalid escape sequences in string literals
            tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        column = f" at column {exc.offset}" if exc.offset else ""
        raise ExpressionError(f"syntax error{column}: {exc.msg}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        raise ExpressionError(f"cannot parse the expression: {exc}") from None
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            what = _DESCRIBE.get(type(node)) or _DESCRIBE.get(type(getattr(node, "op", None)))
            raise ExpressionError(f"{what or type(node).__name__} is not allowed in an expression")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise ExpressionError(f"attribute '{node.attr}' is not allowed (private or dunder)")
        if isinstance(node, ast.comprehension) and node.is_async:
            raise ExpressionError("async comprehensions are not allowed in an expression")
        if isinstance(node, ast.FormattedValue) and node.conversion not in (-1, 115, 114):
            raise ExpressionError("only !s and !r conversions are allowed in f-strings")
    return tree
