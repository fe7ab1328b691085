"""The safe expression language of edge ``condition`` and ``transform``.

An expression is parsed once with :func:`ast.parse`, checked against a whitelist, and compiled to
a tree of Python closures; user text is never passed to ``eval`` or ``exec``. The language has:

- literals: numbers, strings, ``True``/``False``/``None`` (also ``true``/``false``/``null``/
  ``undefined``), list, tuple and dict displays;
- the names the caller allows (``names=None``: any name, read from the scope; a name the scope
  lacks reads as null, as a context key that was never set does in Flowcraft);
- lookup: ``a.b`` and ``a["b"]`` on dicts, ``a[0]`` and slices on lists, tuples and strings; a
  missing key or index, or any lookup on null, reads as null (JavaScript's ``undefined``);
  ``.length`` of a list, tuple or string is its length; ``.in``, ``.class``, ``.from`` (any
  Python keyword after a dot) are plain keys;
- arithmetic ``+ - * / // % **`` and unary ``- +``; comparisons (chained), ``in``/``not in``,
  ``is``/``is not``; ``and``/``or``/``not``; ``x if c else y``;
- Flowcraft's JavaScript spellings beside these: ``===`` ``!==`` ``&&`` ``||`` ``!`` (rewritten
  token by token before parsing, never inside string literals);
- the pure functions in :data:`FUNCTIONS` (``len``, ``min``, ``max``, ..., and JavaScript's
  ``Math.round``, ``Math.floor``, ...).

Guarantees: compiling raises only :class:`ExpressionError`, and so does evaluating. Evaluation
works on JSON-like values only (None, bool, int, float, str, list, tuple, dict): it never reads an
attribute of, calls, compares, hashes or stringifies any other object it meets, and it refuses
work whose cost is not bounded by the size of its inputs (huge powers, huge repetitions).
"""

from __future__ import annotations

import ast
import difflib
import keyword
import math
import operator
import re
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeAlias

from flowcraft_core.errors import ExpressionError

__all__ = [
    "CONDITION_NAMES",
    "FUNCTIONS",
    "MAX_NODES",
    "MAX_SOURCE_CHARS",
    "TRANSFORM_NAMES",
    "Expression",
    "compile_expression",
    "evaluate_condition",
]

#: Names an edge ``condition`` may use: any (an open scope, as in Flowcraft): ``result`` is
#: ``{"output": ..., "action": ...}``, every other name a context key or a node's output.
CONDITION_NAMES: Final[None] = None
#: Names an edge ``transform`` may use: ``input`` is the source node's output, ``context`` the
#: run's context (read by literal key: ``context.k``, ``context["k"]``).
TRANSFORM_NAMES: Final[tuple[str, ...]] = ("input", "context")

MAX_SOURCE_CHARS: Final = 1000
MAX_NODES: Final = 200
#: Largest integer (in bits) arithmetic may produce: about 2,466 decimal digits.
MAX_INT_BITS: Final = 8192
#: Largest result of a repetition (``"ab" * n``, ``[x] * n``), counted by :func:`_weigh`.
MAX_REPEAT_WEIGHT: Final = 100_000
#: Most elements a deep check of one value may visit.
MAX_WALK: Final = 10_000_000
#: Longest string ``int()`` converts; parsing decimal strings is quadratic in CPython.
MAX_INT_STR: Final = 5000
MAX_ROUND_DIGITS: Final = 400

_JS_LITERALS: Final[dict[str, Any]] = {
    "true": True,
    "false": False,
    "null": None,
    "undefined": None,
}
_SCALARS: Final = (type(None), bool, int, float, str)
_CONTAINERS: Final = (list, tuple, dict)
_PLAIN: Final = _SCALARS + _CONTAINERS
_NUMBERS: Final = (int, float)  # bool is an int, as in Python
_SEQUENCES: Final = (list, tuple, str)

Scope: TypeAlias = Mapping[str, Any]
Fn: TypeAlias = Callable[[Scope], Any]
_MISSING: Final = object()
_EXIT: Final = object()  # marks the end of a container's elements in _weigh's stack
_dict_get = dict.get  # unbound: a dict subclass's own get/__getitem__/__missing__ is never run


class _Fail(Exception):
    """Raised inside evaluation; :meth:`Expression.evaluate` turns it into ExpressionError."""


# --- value checks -------------------------------------------------------------------------
# ``issubclass(type(v), T)`` rather than ``isinstance(v, T)``: isinstance falls back to reading
# ``v.__class__`` for foreign objects, which would run their ``__getattribute__``.


def _is(value: Any, types: type | tuple[type, ...]) -> bool:
    return issubclass(type(value), types)


def _kind(value: Any) -> str:
    t = type(value)
    return t.__name__ if issubclass(t, _PLAIN) else "a non-JSON object"


def _show(value: Any) -> str:
    """A short description of ``value`` for messages; never runs a foreign object's repr."""
    if not issubclass(type(value), _SCALARS):
        return _kind(value)
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _plain(value: Any, what: str) -> Any:
    """Return ``value`` if it is a JSON-like value at the top level, else fail."""
    if not issubclass(type(value), _PLAIN):
        raise _Fail(f"{what} is {_kind(value)} ({type(value).__name__}); only JSON values allowed")
    return value


def _weigh(value: Any, limit: int, what: str) -> int:
    """Size of ``value``: one per element, a string's length for a string; stops once above
    ``limit``. Shared parts count each time they occur, as that is what comparing or printing
    costs.

    Fails on any non-JSON value inside and on cyclic data, so a value that passes can be
    compared, sorted or stringified without running foreign code.
    """
    total = 0
    stack: list[Any] = [value]
    path: set[int] = set()  # ids of the containers being expanded: a repeat is a cycle
    while stack:
        v = stack.pop()
        if v is _EXIT:
            path.discard(stack.pop())
            continue
        t = type(v)
        total += (len(v) or 1) if issubclass(t, str) else 1
        if issubclass(t, _CONTAINERS):
            ident = id(v)
            if ident in path:
                raise _Fail(f"{what} is cyclic")
            path.add(ident)
            stack.append(ident)
            stack.append(_EXIT)
            if issubclass(t, dict):
                # dict.keys/values read the storage, bypassing a subclass's own __iter__.
                for k in dict.keys(v):
                    if not issubclass(type(k), _SCALARS):
                        raise _Fail(f"{what} contains a non-JSON dict key")
                stack.extend(dict.values(v))
            else:
                stack.extend(v)
        elif not issubclass(t, _SCALARS):
            raise _Fail(f"{what} contains {_kind(v)} ({t.__name__}); only JSON values allowed")
        if total > limit:
            return total
    return total


def _deep(value: Any, what: str) -> Any:
    """Return ``value`` if it is JSON-like all the way down (and of bounded size)."""
    if issubclass(type(value), _SCALARS):
        return value
    if _weigh(value, MAX_WALK, what) > MAX_WALK:
        raise _Fail(f"{what} is too large to inspect")
    return value


def _truth(value: Any, what: str) -> bool:
    # bool() of a list/dict/str looks only at its length, so a top-level check suffices.
    return bool(_plain(value, what))


def _check_int(value: Any, what: str) -> Any:
    if type(value) is int and value.bit_length() > MAX_INT_BITS:
        raise _Fail(f"{what}: integer result larger than {MAX_INT_BITS} bits")
    return value


# --- operators ------------------------------------------------------------------------------


def _add(a: Any, b: Any, what: str) -> Any:
    if _is(a, _NUMBERS) and _is(b, _NUMBERS):
        return _check_int(a + b, what)
    if (_is(a, str) and _is(b, str)) or (_is(a, list) and _is(b, list)):
        return a + b
    if _is(a, tuple) and _is(b, tuple):
        return a + b
    raise _Fail(f"{what}: cannot add {_kind(a)} and {_kind(b)}")


def _arith_failure(exc: Exception, what: str) -> _Fail:
    # Uniform wording: Python's differs by type ("integer division or modulo by zero",
    # "(34, 'Numerical result out of range')").
    if isinstance(exc, ZeroDivisionError):
        return _Fail(f"{what}: division by zero")
    if isinstance(exc, OverflowError):
        return _Fail(f"{what}: result too large")
    return _Fail(f"{what}: {exc}")


def _arith(op: Callable[[Any, Any], Any], symbol: str) -> Callable[[Any, Any, str], Any]:
    def apply(a: Any, b: Any, what: str) -> Any:
        if not (_is(a, _NUMBERS) and _is(b, _NUMBERS)):
            # Numbers only: in particular ``str % x`` is printf formatting, which can be made
            # to allocate without bound ("%999999999d").
            raise _Fail(f"{what}: {symbol} needs numbers, got {_kind(a)} and {_kind(b)}")
        try:
            return _check_int(op(a, b), what)
        except (ArithmeticError, ValueError) as exc:
            raise _arith_failure(exc, what) from None

    return apply


def _mul(a: Any, b: Any, what: str) -> Any:
    if _is(a, _NUMBERS) and _is(b, _NUMBERS):
        if _is(a, int) and _is(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
            raise _Fail(f"{what}: integer result larger than {MAX_INT_BITS} bits")
        return a * b
    seq, n = (a, b) if _is(b, int) else (b, a)
    if _is(seq, _SEQUENCES) and _is(n, int):
        # The whole result is bounded, including nested values the repetition would share:
        # ``[[0]*1000]*1000`` is cheap to build but costs a million steps to compare or print.
        if n > 0 and _weigh(seq, MAX_REPEAT_WEIGHT, what) * n > MAX_REPEAT_WEIGHT:
            raise _Fail(f"{what}: repetition result larger than {MAX_REPEAT_WEIGHT}")
        return seq * n
    raise _Fail(f"{what}: cannot multiply {_kind(a)} and {_kind(b)}")


def _pow(a: Any, b: Any, what: str) -> Any:
    if not (_is(a, _NUMBERS) and _is(b, _NUMBERS)):
        raise _Fail(f"{what}: ** needs numbers, got {_kind(a)} and {_kind(b)}")
    # Checked before computing: 10 ** 10 ** 9 would otherwise run for minutes.
    if _is(a, int) and _is(b, int) and b > 0 and (abs(a).bit_length() - 1) * b > MAX_INT_BITS:
        raise _Fail(f"{what}: integer result larger than {MAX_INT_BITS} bits")
    try:
        result = a**b
    except (ArithmeticError, ValueError) as exc:
        raise _arith_failure(exc, what) from None
    if _is(result, complex):
        raise _Fail(f"{what}: result is a complex number")
    return _check_int(result, what)


_BINOPS: Final[dict[type[ast.operator], tuple[str, Callable[[Any, Any, str], Any]]]] = {
    ast.Add: ("+", _add),
    ast.Sub: ("-", _arith(operator.sub, "-")),
    ast.Mult: ("*", _mul),
    ast.Div: ("/", _arith(operator.truediv, "/")),
    ast.FloorDiv: ("//", _arith(operator.floordiv, "//")),
    ast.Mod: ("%", _arith(operator.mod, "%")),
    ast.Pow: ("**", _pow),
}


def _comparison(op: Callable[[Any, Any], Any], symbol: str) -> Callable[[Any, Any, str], bool]:
    def compare(a: Any, b: Any, what: str) -> bool:
        # Scalars are the common case and need no walk; containers are compared element-wise by
        # Python, so they are checked to hold only JSON values first.
        if not issubclass(type(a), _SCALARS):
            _deep(a, what)
        if not issubclass(type(b), _SCALARS):
            _deep(b, what)
        try:
            return bool(op(a, b))
        except TypeError:
            raise _Fail(f"{what}: cannot compare {_kind(a)} {symbol} {_kind(b)}") from None

    return compare


def _contains(item: Any, container: Any, what: str) -> bool:
    if _is(container, dict):
        if not issubclass(type(item), _SCALARS):
            raise _Fail(f"{what}: a dict key must be a string, number, boolean or null")
        return _dict_get(container, item, _MISSING) is not _MISSING
    if _is(container, str):
        if not _is(item, str):
            raise _Fail(f"{what}: 'in <string>' needs a string on the left, got {_kind(item)}")
        return item in container
    if _is(container, (list, tuple)):
        _deep(container, what)
        _deep(item, what)
        return item in container
    raise _Fail(f"{what}: 'in' needs a list, tuple, dict or string, got {_kind(container)}")


_CMPOPS: Final[dict[type[ast.cmpop], tuple[str, Callable[[Any, Any, str], bool]]]] = {
    ast.Eq: ("==", _comparison(operator.eq, "==")),
    ast.NotEq: ("!=", _comparison(operator.ne, "!=")),
    ast.Lt: ("<", _comparison(operator.lt, "<")),
    ast.LtE: ("<=", _comparison(operator.le, "<=")),
    ast.Gt: (">", _comparison(operator.gt, ">")),
    ast.GtE: (">=", _comparison(operator.ge, ">=")),
    # Identity never runs code of either operand.
    ast.Is: ("is", lambda a, b, what: a is b),
    ast.IsNot: ("is not", lambda a, b, what: a is not b),
    ast.In: ("in", _contains),
    ast.NotIn: ("not in", lambda a, b, what: not _contains(a, b, what)),
}


def _lookup(container: Any, key: Any, what: str) -> Any:
    """``container[key]`` for dicts (any scalar key) and sequences (int index), nothing else.

    As in Flowcraft (JavaScript), a missing key or index and any lookup on null give null."""
    if container is None:
        return None
    if _is(container, dict):
        if not issubclass(type(key), _SCALARS):
            raise _Fail(f"{what}: a dict key must be a string, number, boolean or null")
        return _dict_get(container, key, None)
    if _is(container, _SEQUENCES):
        if _is(key, str) and key == "length":
            return len(container)
        if not issubclass(type(key), _SCALARS):
            raise _Fail(f"{what}: an index must be a number or a string, got {_kind(key)}")
        if not _is(key, int):
            return None
        try:
            return container[key]
        except IndexError:
            return None
    if issubclass(type(container), _SCALARS):
        return None
    raise _Fail(f"{what}: cannot look up {_show(key)} in {_kind(container)}")


# --- functions ----------------------------------------------------------------------------


def _number(value: Any, what: str) -> Any:
    if not _is(value, _NUMBERS):
        raise _Fail(f"{what}: expected a number, got {_kind(value)}")
    return value


def _iterable(value: Any, what: str) -> Any:
    if not _is(value, (*_SEQUENCES, dict)):
        raise _Fail(f"{what}: expected a list, tuple, dict or string, got {_kind(value)}")
    return _deep(value, what)


def _fn_len(what: str, x: Any) -> int:
    if not _is(x, (*_SEQUENCES, dict)):
        raise _Fail(f"{what}: len() needs a list, tuple, dict or string, got {_kind(x)}")
    return len(x)


def _fn_minmax(pick: Callable[..., Any], name: str) -> Callable[..., Any]:
    def fn(what: str, *args: Any) -> Any:
        items = _iterable(args[0], what) if len(args) == 1 else _deep(args, what)
        if not items:
            raise _Fail(f"{what}: {name}() of an empty sequence")
        try:
            return pick(items)
        except TypeError:
            raise _Fail(f"{what}: {name}() of values that cannot be compared") from None

    return fn


def _fn_abs(what: str, x: Any) -> Any:
    return abs(_number(x, what))


def _fn_round(what: str, x: Any, ndigits: Any = None) -> Any:
    _number(x, what)
    if ndigits is None:
        try:
            return round(x)
        except (OverflowError, ValueError) as exc:
            raise _Fail(f"{what}: {exc}") from None
    if not _is(ndigits, int) or abs(ndigits) > MAX_ROUND_DIGITS:
        # round(n, -10**9) on an int computes 10**(10**9).
        raise _Fail(f"{what}: round() digits must be an integer within ±{MAX_ROUND_DIGITS}")
    return round(x, ndigits)


def _fn_math(name: str, to_int: Callable[[float], int]) -> Callable[[str, Any], int]:
    """JavaScript's ``Math.<name>`` of one number: an integer (an int argument is itself)."""

    def fn(what: str, x: Any) -> int:
        _number(x, what)
        if _is(x, int):
            return int(x)
        try:
            return to_int(x)
        except (OverflowError, ValueError) as exc:  # inf, nan
            raise _Fail(f"{what}: Math.{name}() of {x!r}: {exc}") from None

    return fn


def _fn_math_pick(pick: Callable[..., Any]) -> Callable[..., Any]:
    """JavaScript's ``Math.min`` / ``Math.max``: of its number arguments (not of a list)."""

    def fn(what: str, *args: Any) -> Any:
        return pick(_number(x, what) for x in args)

    return fn


def _fn_str(what: str, x: Any) -> str:
    if _is(x, str):
        return str.__str__(x)
    _deep(x, what)
    try:
        return str(x)
    except ValueError as exc:  # an int beyond sys.get_int_max_str_digits()
        raise _Fail(f"{what}: {exc}") from None


def _fn_int(what: str, x: Any) -> int:
    if _is(x, str):
        if len(x) > MAX_INT_STR:
            raise _Fail(f"{what}: int() of a string longer than {MAX_INT_STR} characters")
    elif not _is(x, _NUMBERS):
        raise _Fail(f"{what}: int() needs a number or a string, got {_kind(x)}")
    try:
        result = int(x)
    except (ValueError, OverflowError) as exc:
        raise _Fail(f"{what}: {exc}") from None
    _check_int(result, what)
    return result


def _fn_float(what: str, x: Any) -> float:
    if not _is(x, (*_NUMBERS, str)):
        raise _Fail(f"{what}: float() needs a number or a string, got {_kind(x)}")
    try:
        return float(x)
    except (ValueError, OverflowError) as exc:
        raise _Fail(f"{what}: {exc}") from None


def _fn_bool(what: str, x: Any) -> bool:
    return _truth(x, what)


def _fn_sum(what: str, items: Any, start: Any = 0) -> Any:
    # Numbers only: summing lists or strings is quadratic.
    total = _number(start, what)
    for item in _iterable(items, what):
        total = _add(total, _number(item, what), what)
    return total


def _fn_sorted(what: str, items: Any) -> list[Any]:
    try:
        return sorted(_iterable(items, what))
    except TypeError:
        raise _Fail(f"{what}: sorted() of values that cannot be compared") from None


def _fn_any(what: str, items: Any) -> bool:
    return any(_truth(v, what) for v in _iterable(items, what))


def _fn_all(what: str, items: Any) -> bool:
    return all(_truth(v, what) for v in _iterable(items, what))


#: The functions expressions may call: name -> (implementation, min args, max args or None).
FUNCTIONS: Final[dict[str, tuple[Callable[..., Any], int, int | None]]] = {
    "len": (_fn_len, 1, 1),
    "min": (_fn_minmax(min, "min"), 1, None),
    "max": (_fn_minmax(max, "max"), 1, None),
    "abs": (_fn_abs, 1, 1),
    "round": (_fn_round, 1, 2),
    "str": (_fn_str, 1, 1),
    "int": (_fn_int, 1, 1),
    "float": (_fn_float, 1, 1),
    "bool": (_fn_bool, 1, 1),
    "sum": (_fn_sum, 1, 2),
    "sorted": (_fn_sorted, 1, 1),
    "any": (_fn_any, 1, 1),
    "all": (_fn_all, 1, 1),
    # JavaScript's Math functions, as Flowcraft's UnsafeEvaluator offers them (its examples
    # round with them); Math.round rounds half up, not to even.
    "Math.round": (_fn_math("round", lambda x: math.floor(x + 0.5)), 1, 1),
    "Math.floor": (_fn_math("floor", math.floor), 1, 1),
    "Math.ceil": (_fn_math("ceil", math.ceil), 1, 1),
    "Math.trunc": (_fn_math("trunc", math.trunc), 1, 1),
    "Math.abs": (_fn_abs, 1, 1),
    "Math.min": (_fn_math_pick(min), 1, None),
    "Math.max": (_fn_math_pick(max), 1, None),
}

# --- compiler -----------------------------------------------------------------------------

_KEYWORDS: Final = frozenset(keyword.kwlist)
_TOKEN = re.compile(
    r"""(?P<str>'(?:[^'\\\n]|\\.)*'?|"(?:[^"\\\n]|\\.)*"?)"""
    r"|(?P<name>[^\W\d]\w*)"
    r"|(?P<num>\d[\w.]*)"
    r"|(?P<op>===|!==|&&|\|\||!=|==|\*\*|//|<=|>=|\S)"
    r"|(?P<space>\s+)"
)
_OPEN = {"(": ")", "[": "]", "{": "}"}


def _tokens(text: str) -> list[tuple[str, str]]:
    return [(m.lastgroup or "op", m.group()) for m in _TOKEN.finditer(text)]


def _javascript_to_python(text: str) -> str:
    """Rewrite Flowcraft's JavaScript spellings into the Python this module parses: ``===``,
    ``!==``, ``&&``, ``||``, prefix ``!`` (bound to its operand, as in JavaScript), and a
    keyword after a dot (``a.in`` → ``a["in"]``). String literals are left alone. Linear in the
    length of ``text`` (bounded by :data:`MAX_SOURCE_CHARS`)."""
    toks = _tokens(text)
    if not any(t in ("===", "!==", "&&", "||", "!", ".") for _, t in toks):
        return text
    out, _ = _rewrite(toks, 0, len(toks))
    return "".join(out)


_HYPHENATED: Final = re.compile(r"[A-Za-z0-9_]+(?:-[A-Za-z0-9_]+)+")
_WORD: Final = re.compile(r"[\w$-]")


def _hyphenated_to_context(text: str, hyphenated: Iterable[str]) -> str:
    """Flowcraft's ``rewriteHyphenatedIdentifiers``: a key such as a node id ``check-stock``
    written as a name (``check-stock.ok``) reads ``context["check-stock"]``, not a
    subtraction. Only whole names outside string literals and not after a dot are rewritten
    (Flowcraft's regular expression also rewrites inside strings); longer keys first."""
    keys = sorted({k for k in hyphenated if _HYPHENATED.fullmatch(k)}, key=len, reverse=True)
    if not keys or "-" not in text:
        return text
    toks = _tokens(text)
    out: list[str] = []
    pos = 0
    i = 0
    while i < len(toks):
        kind, tok = toks[i]
        previous = toks[i - 1][1] if i else ""
        if kind in ("name", "num") and previous != ".":
            key = next(
                (
                    k
                    for k in keys
                    if text.startswith(k, pos)
                    and not _WORD.match(text, pos + len(k))
                    and "-" in text[pos : pos + len(k)]
                ),
                None,
            )
            if key is not None:
                out.append(f'context["{key}"]')
                end = pos + len(key)
                while pos < end:
                    pos += len(toks[i][1])
                    i += 1
                out.append(text[end:pos])  # the rest of a number token (`a-1.ok`: `.ok`)
                continue
        out.append(tok)
        pos += len(tok)
        i += 1
    return "".join(out)


def _rewrite(toks: list[tuple[str, str]], i: int, end: int) -> tuple[list[str], int]:
    out: list[str] = []
    while i < end:
        _, tok = toks[i]
        if tok == "!":
            j = _operand_end(toks, i + 1, end)
            inner, _ = _rewrite(toks, i + 1, j)
            out.append("(not " + "".join(inner) + ")")
            i = j
            continue
        if tok == ".":
            k = i + 1
            while k < end and toks[k][0] == "space":
                k += 1
            if k < end and toks[k][0] == "name" and toks[k][1] in _KEYWORDS:
                out.append(f'["{toks[k][1]}"]')
                i = k + 1
                continue
        out.append({"===": "==", "!==": "!=", "&&": " and ", "||": " or "}.get(tok, tok))
        i += 1
    return out, i


def _operand_end(toks: list[tuple[str, str]], i: int, end: int) -> int:
    """The end of the unary operand starting at ``i``: a primary with its trailers."""
    while i < end and (toks[i][0] == "space" or toks[i][1] in ("!", "-", "+")):
        i += 1
    if i >= end:
        return end
    if toks[i][1] in _OPEN:
        i = _group_end(toks, i, end)
    else:
        i += 1
    while i < end:
        k = i
        while k < end and toks[k][0] == "space":
            k += 1
        if k < end and toks[k][1] == "." and k + 1 < end:
            i = k + 2
        elif k < end and toks[k][1] in ("[", "("):
            i = _group_end(toks, k, end)
        else:
            break
    return i


def _group_end(toks: list[tuple[str, str]], i: int, end: int) -> int:
    """Index after the bracket group opening at ``i`` (or ``end`` if it is not closed)."""
    depth = 0
    while i < end:
        tok = toks[i][1]
        if tok in _OPEN:
            depth += 1
        elif tok in (")", "]", "}"):
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return end


class Expression:
    """A compiled expression: check once, evaluate many times.

    ``evaluate`` raises only :class:`ExpressionError`, whatever the scope holds.
    """

    __slots__ = ("_fn", "_label", "context_keys", "names_used", "source", "where")

    def __init__(
        self,
        source: str,
        names_used: frozenset[str],
        where: str,
        fn: Fn,
        context_keys: frozenset[str] | None = frozenset(),
    ) -> None:
        self.source = source
        self.names_used = names_used
        #: Keys read as ``context.k`` / ``context["k"]``; None if ``context`` is used otherwise.
        self.context_keys = context_keys
        self.where = where
        self._fn = fn
        self._label = where or "expression"

    def evaluate(self, scope: Scope) -> Any:
        """The value of the expression for ``scope`` (name -> value)."""
        try:
            return self._fn(scope)
        except _Fail as exc:
            raise ExpressionError(f"{self._label}: {exc} (in {self.source!r})") from None
        except Exception as exc:
            # A safety net: every failure the language knows of is a _Fail already, but the
            # promise to callers is "only ExpressionError", so nothing else may escape.
            raise ExpressionError(
                f"{self._label}: {type(exc).__name__}: {exc} (in {self.source!r})"
            ) from None

    def __repr__(self) -> str:
        return f"Expression({self.source!r})"


def evaluate_condition(expr: Expression, scope: Scope) -> bool:
    """The truth of ``expr`` in ``scope``, Python-style (empty and zero are false)."""
    value = expr.evaluate(scope)
    if not issubclass(type(value), _PLAIN):
        raise ExpressionError(f"{expr._label}: condition produced a non-JSON value")
    return bool(value)


def compile_expression(
    source: str,
    *,
    names: Iterable[str] | None = ("result", "input", "context"),
    where: str = "",
    hyphenated: Iterable[str] = (),
) -> Expression:
    """Parse and check ``source``; raise :class:`ExpressionError` naming ``where`` and the
    offending construct if it is not in the language or too large. ``names=None`` opens the
    scope: any name is allowed (see :attr:`Expression.names_used`). ``hyphenated``: keys (a
    blueprint's node ids) that, written as a name with hyphens, read ``context["key"]``."""
    label = where or "expression"

    def fail(message: str) -> ExpressionError:
        return ExpressionError(f"{label}: {message} (in {source!r})")

    if not isinstance(source, str):
        raise ExpressionError(f"{label}: an expression must be a string, got {type(source)}")
    if len(source) > MAX_SOURCE_CHARS:
        raise ExpressionError(
            f"{label}: expression is {len(source)} characters long; the limit is {MAX_SOURCE_CHARS}"
        )
    text = source.strip()
    if not text:
        raise fail("expression is empty")
    python = _javascript_to_python(_hyphenated_to_context(text, hyphenated))
    rewritten, text = python != text, python
    try:
        # Warnings ("is" with a literal, invalid escapes) must not turn into errors under -W error.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(text, mode="eval")
    except SyntaxError as exc:
        # A column is only meaningful in the user's own text, not in a rewritten one.
        indent = len(source) - len(source.lstrip())
        at = f" at column {exc.offset + indent}" if exc.offset and not rewritten else ""
        raise fail(f"invalid syntax{at}: {exc.msg}") from None
    except (ValueError, MemoryError, RecursionError) as exc:
        raise fail(f"cannot parse: {exc}") from None
    count = sum(1 for node in ast.walk(tree) if isinstance(node, ast.expr))
    if count > MAX_NODES:
        raise fail(f"expression has {count} parts; the limit is {MAX_NODES}")
    compiler = _Compiler(text, None if names is None else frozenset(names), fail)
    fn = compiler.expr(tree.body)
    return Expression(source, frozenset(compiler.used), where, fn, _context_keys(tree))


def _context_keys(tree: ast.Expression) -> frozenset[str] | None:
    """The literal keys read from the name ``context`` (``context.k``, ``context["k"]``), or
    None if ``context`` is also used some other way (then its keys are not known in advance)."""
    keys: set[str] = set()
    covered: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute | ast.Subscript):
            base = node.value
            if isinstance(base, ast.Name) and base.id == "context":
                if isinstance(node, ast.Attribute):
                    keys.add(node.attr)
                elif isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
                    keys.add(node.slice.value)
                else:
                    continue
                covered.add(id(base))
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "context" and id(node) not in covered:
            return None
    return frozenset(keys)


class _Compiler:
    """Turns a whitelisted AST into closures. Anything not handled here is rejected."""

    def __init__(
        self, text: str, names: frozenset[str] | None, fail: Callable[[str], ExpressionError]
    ) -> None:
        self.text = text
        self.names = names
        self.fail = fail
        self.used: set[str] = set()

    def segment(self, node: ast.AST) -> str:
        seg = ast.get_source_segment(self.text, node) or type(node).__name__
        return f"`{seg}`"

    def expr(self, node: ast.expr) -> Fn:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise self.fail(f"{_describe(node)} is not allowed: {self.segment(node)}")
        fn: Fn = method(node)
        return fn

    # Each handler below returns the closure for one node type.

    def _Constant(self, node: ast.Constant) -> Fn:
        value = node.value
        if not _is(value, _SCALARS):
            raise self.fail(f"{type(value).__name__} literals are not allowed: {value!r}")
        return lambda scope: value

    def _Name(self, node: ast.Name) -> Fn:
        name = node.id
        if name.startswith("__"):
            raise self.fail(f"name {name!r} is not allowed (dunder names are rejected)")
        if self.names is not None and name in self.names:
            self.used.add(name)

            def load(scope: Scope) -> Any:
                try:
                    return scope[name]
                except KeyError:
                    raise _Fail(f"name {name!r} is not available here") from None

            return load
        if name in _JS_LITERALS:
            value = _JS_LITERALS[name]
            return lambda scope: value
        if name in FUNCTIONS:
            raise self.fail(f"function {name!r} must be called, as in {name}(...)")
        if self.names is None:
            # Open scope (conditions): any other name is a context key, null when unset.
            self.used.add(name)

            def load_open(scope: Scope) -> Any:
                try:
                    return scope[name]
                except KeyError:
                    return None

            return load_open
        allowed = ", ".join(sorted(self.names)) or "none"
        close = difflib.get_close_matches(name, sorted(self.names), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise self.fail(f"unknown name {name!r} (allowed names: {allowed}){hint}")

    def _Attribute(self, node: ast.Attribute) -> Fn:
        key = node.attr
        if key.startswith("__"):
            raise self.fail(f"attribute {key!r} is not allowed (dunder names are rejected)")
        base = self.expr(node.value)
        what = self.segment(node.value)

        def attr(scope: Scope) -> Any:
            value = base(scope)
            # `.` is key access on dicts, never getattr. As in JavaScript (and Flowcraft's
            # path evaluator) anything else reads as null: a missing key, a property of null
            # or of a number; `.length` is the length of a list, tuple or string.
            t = type(value)
            if issubclass(t, dict):
                return _dict_get(value, key, None)
            if issubclass(t, _SEQUENCES):
                return len(value) if key == "length" else None
            if issubclass(t, _SCALARS):
                return None
            raise _Fail(f"{what} is {_kind(value)}, not an object: cannot read .{key}")

        return attr

    def _Subscript(self, node: ast.Subscript) -> Fn:
        base = self.expr(node.value)
        what = self.segment(node.value)
        if isinstance(node.slice, ast.Slice):
            return self._slice(base, node.slice, what)
        index = self.expr(node.slice)

        def subscript(scope: Scope) -> Any:
            return _lookup(base(scope), index(scope), what)

        return subscript

    def _slice(self, base: Fn, node: ast.Slice, what: str) -> Fn:
        parts = [None if p is None else self.expr(p) for p in (node.lower, node.upper, node.step)]

        def part(fn: Fn | None, scope: Scope) -> int | None:
            if fn is None:
                return None
            value = fn(scope)
            if value is not None and not _is(value, int):
                raise _Fail(f"{what}: slice bounds must be integers, got {_kind(value)}")
            return int(value) if value is not None else None

        def sliced(scope: Scope) -> Any:
            value = base(scope)
            if not _is(value, _SEQUENCES):
                raise _Fail(f"{what}: cannot slice {_kind(value)}")
            lo, hi, step = (part(p, scope) for p in parts)
            if step == 0:
                raise _Fail(f"{what}: slice step cannot be zero")
            return value[lo:hi:step]

        return sliced

    def _BinOp(self, node: ast.BinOp) -> Fn:
        entry = _BINOPS.get(type(node.op))
        if entry is None:
            raise self.fail(f"operator {_describe(node.op)} is not allowed: {self.segment(node)}")
        _, op = entry
        left, right = self.expr(node.left), self.expr(node.right)
        what = self.segment(node)
        return lambda scope: op(left(scope), right(scope), what)

    def _UnaryOp(self, node: ast.UnaryOp) -> Fn:
        operand = self.expr(node.operand)
        what = self.segment(node)
        if isinstance(node.op, ast.Not):
            return lambda scope: not _truth(operand(scope), what)
        if isinstance(node.op, ast.USub):
            return lambda scope: -_number(operand(scope), what)
        if isinstance(node.op, ast.UAdd):
            return lambda scope: +_number(operand(scope), what)
        raise self.fail(f"operator {_describe(node.op)} is not allowed: {what}")

    def _BoolOp(self, node: ast.BoolOp) -> Fn:
        values = [self.expr(v) for v in node.values]
        what = self.segment(node)
        is_and = isinstance(node.op, ast.And)

        # Python semantics: short-circuit, and the result is the deciding operand.
        def boolop(scope: Scope) -> Any:
            value: Any = None
            for fn in values:
                value = fn(scope)
                if _truth(value, what) is not is_and:
                    return value
            return value

        return boolop

    def _Compare(self, node: ast.Compare) -> Fn:
        ops: list[Callable[[Any, Any, str], bool]] = []
        for cmpop in node.ops:
            entry = _CMPOPS.get(type(cmpop))
            if entry is None:  # pragma: no cover - every Python comparison is listed
                raise self.fail(f"comparison {_describe(cmpop)} is not allowed")
            ops.append(entry[1])
        first = self.expr(node.left)
        rest = [self.expr(c) for c in node.comparators]
        what = self.segment(node)
        pairs = list(zip(ops, rest, strict=True))

        def compare(scope: Scope) -> bool:
            left = first(scope)
            for op, fn in pairs:  # chained: a < b < c is a < b and b < c
                right = fn(scope)
                if not op(left, right, what):
                    return False
                left = right
            return True

        return compare

    def _IfExp(self, node: ast.IfExp) -> Fn:
        test, body, orelse = self.expr(node.test), self.expr(node.body), self.expr(node.orelse)
        what = self.segment(node.test)
        return lambda scope: body(scope) if _truth(test(scope), what) else orelse(scope)

    def _List(self, node: ast.List) -> Fn:
        items = self._items(node.elts)
        return lambda scope: [fn(scope) for fn in items]

    def _Tuple(self, node: ast.Tuple) -> Fn:
        items = self._items(node.elts)
        return lambda scope: tuple(fn(scope) for fn in items)

    def _items(self, elts: list[ast.expr]) -> list[Fn]:
        for elt in elts:
            if isinstance(elt, ast.Starred):
                raise self.fail(f"unpacking is not allowed: {self.segment(elt)}")
        return [self.expr(e) for e in elts]

    def _Dict(self, node: ast.Dict) -> Fn:
        keys: list[Fn] = []
        for key in node.keys:
            if key is None:
                raise self.fail(f"unpacking is not allowed: {self.segment(node)}")
            keys.append(self.expr(key))
        values = [self.expr(v) for v in node.values]
        pairs = list(zip(keys, values, strict=True))
        what = self.segment(node)

        def build(scope: Scope) -> dict[Any, Any]:
            out: dict[Any, Any] = {}
            for kfn, vfn in pairs:
                key = kfn(scope)
                if not issubclass(type(key), _SCALARS):  # hashing runs the key's own code
                    raise _Fail(f"{what}: a dict key must be a string, number, boolean or null")
                out[key] = vfn(scope)
            return out

        return build

    def _Call(self, node: ast.Call) -> Fn:
        func = node.func
        name = _function_name(func)
        if name not in FUNCTIONS:
            allowed = ", ".join(sorted(FUNCTIONS))
            raise self.fail(
                f"calling {self.segment(func)} is not allowed (callable functions: {allowed})"
            )
        if node.keywords:
            raise self.fail(f"keyword arguments are not allowed: {self.segment(node)}")
        impl, lo, hi = FUNCTIONS[name]
        nargs = len(node.args)
        if nargs < lo or (hi is not None and nargs > hi):
            expected = f"{lo}" if lo == hi else f"{lo} to {hi}" if hi else f"at least {lo}"
            raise self.fail(f"{name}() takes {expected} argument(s), got {nargs}")
        args = self._items(node.args)
        what = self.segment(node)
        if len(args) == 1:
            (arg,) = args
            return lambda scope: impl(what, arg(scope))
        return lambda scope: impl(what, *[fn(scope) for fn in args])


def _function_name(func: ast.expr) -> str | None:
    """``f`` for ``f(...)``, ``Math.f`` for ``Math.f(...)``; None for anything else called."""
    if isinstance(func, ast.Name):
        return func.id
    base = func.value if isinstance(func, ast.Attribute) else None
    if isinstance(func, ast.Attribute) and isinstance(base, ast.Name) and base.id == "Math":
        return f"Math.{func.attr}"
    return None


def _describe(node: ast.AST) -> str:
    """A readable name for a rejected construct."""
    names: dict[type[ast.AST], str] = {
        ast.Lambda: "lambda",
        ast.ListComp: "a list comprehension",
        ast.SetComp: "a set comprehension",
        ast.DictComp: "a dict comprehension",
        ast.GeneratorExp: "a generator expression",
        ast.NamedExpr: "assignment (:=)",
        ast.JoinedStr: "an f-string",
        ast.FormattedValue: "an f-string",
        ast.Starred: "unpacking (*)",
        ast.Set: "a set literal",
        ast.Await: "await",
        ast.Yield: "yield",
        ast.YieldFrom: "yield",
        ast.BitAnd: "&",
        ast.BitOr: "|",
        ast.BitXor: "^",
        ast.LShift: "<<",
        ast.RShift: ">>",
        ast.MatMult: "@",
        ast.Invert: "~",
    }
    return names.get(type(node), type(node).__name__)
