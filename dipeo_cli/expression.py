"""A safe evaluator for condition expressions: Python expression syntax, no arbitrary code.

    evaluate("state['n'] >= len(items) and not done", {"state": {"n": 3}, "items": [1, 2], ...})

Supported: constants (also JSON's `true`, `false`, `null`), names, subscripts and slices,
`a.b` (reads the dict key "b"), a whitelist of str/list/dict methods (`.get`, `.keys`,
`.lower`, `.startswith`, `.split`, ...), arithmetic, comparisons (chained, `in`, `is`),
`and`/`or`/`not`, `x if c else y`, list/tuple/dict/set literals, comprehensions, f-strings and
calls to a few builtins (`len abs min max sum all any bool int float str list dict tuple set
round sorted`) with positional and keyword arguments.

Never: dunder or private attributes, arbitrary calls, lambdas, assignments, imports. Sizes are
capped (exponents, repetition, total work), so an expression cannot hang or exhaust the runner.
Every failure raises ExpressionError (a NodeError) with a one-line message.

The syntax allowed, and its check at parse time, are expression_syntax.py; this module
evaluates a parsed expression.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable, Mapping
from typing import Any

from dipeo_cli.expression_syntax import (
    _BINARY,
    _COMPARE,
    _DICT_METHODS,
    _LIST_METHODS,
    _STR_METHODS,
    _UNARY,
    JSON_CONSTANTS,
    SAFE_BUILTINS,
    ExpressionError,
    _parse,
)

MAX_SIZE = 1_000_000  # longest str/list an expression may build
MAX_INT_BITS = 100_000  # largest integer `**`, `*` and `<<` may produce, in bits
MAX_STEPS = 1_000_000  # evaluation steps, counting comprehension iterations and built items


class UndefinedNameError(ExpressionError):
    """A name used by the expression is neither in the namespace nor a known builtin."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"name '{name}' is not defined")


def evaluate(text: str, namespace: Mapping[str, Any]) -> Any:
    """Evaluate `text` against `namespace`; raises ExpressionError on any failure."""
    tree = _parse(text)
    try:
        return _Evaluator(namespace).run(tree.body)
    except ExpressionError:
        raise
    except RecursionError:
        raise ExpressionError("the expression is nested too deeply") from None
    except MemoryError:
        raise ExpressionError("the expression needs too much memory") from None
    except Exception as exc:  # TypeError, ZeroDivisionError, ... from an operation on data
        raise ExpressionError(f"{type(exc).__name__}: {exc}") from None


class _Evaluator:
    __slots__ = ("scopes", "steps")

    def __init__(self, namespace: Mapping[str, Any]) -> None:
        self.scopes: list[Mapping[str, Any]] = [namespace]
        self.steps = 0

    def charge(self, amount: int) -> None:
        self.steps += amount
        if self.steps > MAX_STEPS:
            raise ExpressionError(f"the expression does too much work (over {MAX_STEPS} steps)")

    def run(self, node: ast.AST) -> Any:
        self.charge(1)
        method = getattr(self, "eval_" + type(node).__name__, None)
        if method is None:  # parse() already rejects these; defence in depth
            raise ExpressionError(f"{type(node).__name__} is not allowed in an expression")
        return method(node)

    # -- leaves --------------------------------------------------------------------------------

    def eval_Constant(self, node: ast.Constant) -> Any:
        return node.value

    def eval_Name(self, node: ast.Name) -> Any:
        name = node.id
        for scope in reversed(self.scopes):
            if name in scope:
                return scope[name]
        if name in JSON_CONSTANTS:
            return JSON_CONSTANTS[name]
        if name in SAFE_BUILTINS:
            return SAFE_BUILTINS[name]
        raise UndefinedNameError(name)

    # -- access --------------------------------------------------------------------------------

    def eval_Subscript(self, node: ast.Subscript) -> Any:
        container = self.run(node.value)
        if isinstance(node.slice, ast.Slice):
            key: Any = slice(
                self.run(node.slice.lower) if node.slice.lower else None,
                self.run(node.slice.upper) if node.slice.upper else None,
                self.run(node.slice.step) if node.slice.step else None,
            )
        else:
            key = self.run(node.slice)
        if not isinstance(container, (dict, list, tuple, str)):
            raise ExpressionError(f"a {_kind(container)} value cannot be subscripted")
        try:
            return container[key]
        except KeyError:
            raise ExpressionError(f"key {key!r} not found (keys: {_keys(container)})") from None
        except IndexError:
            raise ExpressionError(f"index {key!r} out of range (length {len(container)})") from None

    def eval_Attribute(self, node: ast.Attribute) -> Any:
        target = self.run(node.value)
        name = node.attr
        if isinstance(target, dict):
            if name in target:
                return target[name]
            raise ExpressionError(f"key '{name}' not found (keys: {_keys(target)})")
        raise ExpressionError(
            f"a {_kind(target)} value has no attribute '{name}' "
            f"(only dict keys can be read with '.')"
        )

    # -- operators -----------------------------------------------------------------------------

    def eval_BinOp(self, node: ast.BinOp) -> Any:
        left = self.run(node.left)
        right = self.run(node.right)
        op_type = type(node.op)
        both_int = isinstance(left, int) and isinstance(right, int)
        if op_type is ast.Pow:
            if both_int and right > 0 and abs(left) > 1:
                _check_bits(abs(left).bit_length() * right, "**")
        elif op_type is ast.LShift:
            if both_int and right > 0:
                _check_bits(left.bit_length() + right, "<<")
        elif op_type is ast.Mult:
            if both_int:
                _check_bits(left.bit_length() + right.bit_length(), "*")
            else:
                self._check_repeat(left, right)
        elif op_type is ast.Add and isinstance(left, (str, list, tuple)):
            if isinstance(right, type(left)):
                self._check_size(len(left) + len(right))
        elif op_type is ast.Mod and isinstance(left, (str, bytes)):
            raise ExpressionError("'%' string formatting is not allowed; use an f-string")
        return _BINARY[op_type](left, right)

    def _check_repeat(self, left: Any, right: Any) -> None:
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(count, int):
                self._check_size(len(seq) * max(count, 0))

    def _check_size(self, size: int) -> None:
        if size > MAX_SIZE:
            raise ExpressionError(f"result would be longer than {MAX_SIZE} items")
        self.charge(size // 64)

    def eval_UnaryOp(self, node: ast.UnaryOp) -> Any:
        return _UNARY[type(node.op)](self.run(node.operand))

    def eval_BoolOp(self, node: ast.BoolOp) -> Any:
        is_and = isinstance(node.op, ast.And)
        value: Any = None
        for item in node.values:
            value = self.run(item)
            if is_and and not value:
                return value
            if not is_and and value:
                return value
        return value

    def eval_Compare(self, node: ast.Compare) -> Any:
        left = self.run(node.left)
        for op, right_node in zip(node.ops, node.comparators, strict=True):
            right = self.run(right_node)
            if not _COMPARE[type(op)](left, right):
                return False
            left = right
        return True

    def eval_IfExp(self, node: ast.IfExp) -> Any:
        return self.run(node.body) if self.run(node.test) else self.run(node.orelse)

    # -- literals ------------------------------------------------------------------------------

    def eval_List(self, node: ast.List) -> Any:
        return [self.run(item) for item in node.elts]

    def eval_Tuple(self, node: ast.Tuple) -> Any:
        return tuple(self.run(item) for item in node.elts)

    def eval_Set(self, node: ast.Set) -> Any:
        return {self.run(item) for item in node.elts}

    def eval_Dict(self, node: ast.Dict) -> Any:
        result: dict[Any, Any] = {}
        for key_node, value_node in zip(node.keys, node.values, strict=True):
            if key_node is None:  # {**other}
                other = self.run(value_node)
                if not isinstance(other, dict):
                    raise ExpressionError(f"cannot unpack a {_kind(other)} value with **")
                result.update(other)
            else:
                result[self.run(key_node)] = self.run(value_node)
        return result

    def eval_JoinedStr(self, node: ast.JoinedStr) -> Any:
        parts = [str(self.run(item)) for item in node.values]
        text = "".join(parts)
        self._check_size(len(text))
        return text

    def eval_FormattedValue(self, node: ast.FormattedValue) -> Any:
        value = self.run(node.value)
        if node.conversion == 114:
            value = repr(value)
        elif node.conversion == 115:
            value = str(value)
        spec = self.run(node.format_spec) if node.format_spec is not None else ""
        if not isinstance(value, (str, int, float, bool, type(None), list, dict, tuple)):
            raise ExpressionError(f"cannot format a {_kind(value)} value")
        if spec and (len(spec) > 20 or any(int(n) > 1000 for n in re.findall(r"\d+", spec))):
            raise ExpressionError(f"format spec {spec!r} is not allowed")
        text = format(value, spec)
        self._check_size(len(text))
        return text

    # -- comprehensions ------------------------------------------------------------------------

    def eval_ListComp(self, node: ast.ListComp) -> Any:
        return self._comprehend(node.generators, lambda: self.run(node.elt))

    def eval_GeneratorExp(self, node: ast.GeneratorExp) -> Any:
        # Evaluated eagerly (inside the work budget), so errors surface here, clearly.
        return self._comprehend(node.generators, lambda: self.run(node.elt))

    def eval_SetComp(self, node: ast.SetComp) -> Any:
        return set(self._comprehend(node.generators, lambda: self.run(node.elt)))

    def eval_DictComp(self, node: ast.DictComp) -> Any:
        return dict(
            self._comprehend(node.generators, lambda: (self.run(node.key), self.run(node.value)))
        )

    def _comprehend(
        self, generators: list[ast.comprehension], produce: Callable[[], Any]
    ) -> list[Any]:
        scope: dict[str, Any] = {}
        out: list[Any] = []
        self.scopes.append(scope)
        try:
            self._loop(generators, 0, scope, produce, out)
        finally:
            self.scopes.pop()
        return out

    def _loop(
        self,
        generators: list[ast.comprehension],
        index: int,
        scope: dict[str, Any],
        produce: Callable[[], Any],
        out: list[Any],
    ) -> None:
        generator = generators[index]
        iterable = self.run(generator.iter)
        if not isinstance(iterable, (list, tuple, dict, str, set, frozenset)):
            raise ExpressionError(f"cannot iterate over a {_kind(iterable)} value")
        for item in iterable:
            self.charge(1)
            _bind(generator.target, item, scope)
            if all(self.run(test) for test in generator.ifs):
                if index + 1 == len(generators):
                    out.append(produce())
                else:
                    self._loop(generators, index + 1, scope, produce, out)

    # -- calls ---------------------------------------------------------------------------------

    def eval_Call(self, node: ast.Call) -> Any:
        func = node.func
        args = [self.run(arg) for arg in node.args]
        kwargs = {kw.arg: self.run(kw.value) for kw in node.keywords if kw.arg is not None}
        if any(kw.arg is None for kw in node.keywords):
            raise ExpressionError("** unpacking in calls is not allowed in an expression")
        if isinstance(func, ast.Name) and func.id in SAFE_BUILTINS:
            function = SAFE_BUILTINS[func.id]
            for value in (*args, *kwargs.values()):
                if callable(value) and value not in SAFE_BUILTINS.values():
                    raise ExpressionError(
                        f"{func.id}() got a function argument that is not allowed"
                    )
            if function is sum and (len(args) > 1 or "start" in kwargs):
                start = args[1] if len(args) > 1 else kwargs["start"]
                if not isinstance(start, (int, float)):
                    raise ExpressionError("sum() only adds numbers")
            result = function(*args, **kwargs)
            if isinstance(result, (str, list, tuple, set, dict)):
                self._check_size(len(result))
            return result
        if isinstance(func, ast.Attribute):
            target = self.run(func.value)
            name = func.attr
            allowed = (
                _DICT_METHODS
                if isinstance(target, dict)
                else _STR_METHODS
                if isinstance(target, str)
                else _LIST_METHODS
                if isinstance(target, (list, tuple))
                else frozenset()
            )
            if name not in allowed:
                raise ExpressionError(f"method '{name}' of a {_kind(target)} value is not allowed")
            if name == "replace" and len(args) >= 2 and isinstance(args[1], str):
                count = target.count(args[0]) if args[0] else len(target) + 1
                self._check_size(len(target) + count * len(args[1]))
            result = getattr(target, name)(*args, **kwargs)
            if isinstance(result, (str, list)):
                self._check_size(len(result))
            elif name in ("keys", "values", "items"):
                result = list(result)
            return result
        if isinstance(func, ast.Name):
            raise ExpressionError(
                f"'{func.id}' cannot be called (allowed functions: {', '.join(SAFE_BUILTINS)})"
            )
        raise ExpressionError("only the allowed builtins and methods can be called")


def _bind(target: ast.AST, value: Any, scope: dict[str, Any]) -> None:
    if isinstance(target, ast.Name):
        scope[target.id] = value
    elif isinstance(target, (ast.Tuple, ast.List)):
        items = list(value) if isinstance(value, (list, tuple, str, dict)) else None
        if items is None or len(items) != len(target.elts):
            raise ExpressionError(f"cannot unpack {_kind(value)} into {len(target.elts)} names")
        for sub_target, item in zip(target.elts, items, strict=True):
            _bind(sub_target, item, scope)
    else:
        raise ExpressionError("comprehension targets must be names")


def _check_bits(bits: int, symbol: str) -> None:
    if bits > MAX_INT_BITS:
        raise ExpressionError(f"the result of {symbol} would exceed {MAX_INT_BITS} bits")


def _kind(value: Any) -> str:
    return {
        type(None): "null",
        bool: "bool",
        int: "int",
        float: "float",
        str: "str",
        list: "list",
        tuple: "tuple",
        dict: "dict",
        set: "set",
    }.get(type(value), type(value).__name__)


def _keys(container: Any) -> str:
    if isinstance(container, dict):
        keys = list(container)[:10]
        more = ", ..." if len(container) > 10 else ""
        return ", ".join(repr(k) for k in keys) + more if keys else "none"
    return f"{_kind(container)} of length {len(container)}"
