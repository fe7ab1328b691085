"""The safe expression language: every construct, every rejection, and its safety properties."""

from __future__ import annotations

import contextlib
import time
import warnings
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flowcraft_core.errors import ExpressionError
from flowcraft_core.expressions import (
    CONDITION_NAMES,
    MAX_NODES,
    MAX_SOURCE_CHARS,
    TRANSFORM_NAMES,
    Expression,
    compile_expression,
    evaluate_condition,
)

SCOPE: dict[str, Any] = {
    "result": {"output": {"total": 5, "items": [1, 2, 3], "name": "Ada"}, "action": "ok"},
    "input": {"x": [10, "a", None], "n": 4, "f": 2.5, "s": "hello", "get": "key-named-get"},
    "context": {"tenant": "acme"},
}


def ev(source: str, scope: dict[str, Any] | None = None) -> Any:
    return compile_expression(source).evaluate(SCOPE if scope is None else scope)


def rejects(source: str, *fragments: str, names: tuple[str, ...] | None = None) -> str:
    """Assert compile-time rejection; return the message after checking it names each fragment."""
    with pytest.raises(ExpressionError) as info:
        if names is None:
            compile_expression(source, where="edge a -> b condition")
        else:
            compile_expression(source, names=names, where="edge a -> b condition")
    message = str(info.value)
    assert message.startswith("edge a -> b condition: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


def fails(source: str, *fragments: str, scope: dict[str, Any] | None = None) -> str:
    """Assert the expression compiles but evaluation raises ExpressionError."""
    expr = compile_expression(source, where="edge a -> b transform")
    with pytest.raises(ExpressionError) as info:
        expr.evaluate(SCOPE if scope is None else scope)
    message = str(info.value)
    assert message.startswith("edge a -> b transform: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# --- constructs ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1", 1),
        ("-2.5", -2.5),
        ("+3", 3),
        ("0x10", 16),
        ("1e3", 1000.0),
        ("'hi'", "hi"),
        ('"dq"', "dq"),
        ("True", True),
        ("False", False),
        ("None", None),
        ("true", True),
        ("false", False),
        ("null", None),
        ("[1, 'a', None]", [1, "a", None]),
        ("(1, 2)", (1, 2)),
        ("()", ()),
        ("{'a': 1, 'b': [2]}", {"a": 1, "b": [2]}),
        ("{}", {}),
    ],
)
def test_literals(source: str, expected: Any) -> None:
    value = ev(source)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("result.output.total", 5),
        ("result['output']['total']", 5),
        ("result.output['items'][0]", 1),
        ("result.output.items[-1]", 3),
        ("result.action", "ok"),
        ("input.x[1]", "a"),
        ("input.s[0]", "h"),
        ("input.get", "key-named-get"),  # `.` is key access, never a method
        ("input.x[0:2]", [10, "a"]),
        ("input.x[::-1]", [None, "a", 10]),
        ("input.s[1:]", "ello"),
        ("(1, 2, 3)[1]", 2),
        ("{'a': {'b': 7}}.a.b", 7),
        ("{1: 'one'}[1]", "one"),
        ("context.tenant", "acme"),
    ],
)
def test_lookup(source: str, expected: Any) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 + 2", 3),
        ("'a' + 'b'", "ab"),
        ("[1] + [2]", [1, 2]),
        ("(1,) + (2,)", (1, 2)),
        ("7 - 10", -3),
        ("3 * 4", 12),
        ("'ab' * 3", "ababab"),
        ("3 * 'ab'", "ababab"),
        ("[0] * 3", [0, 0, 0]),
        ("'x' * -1", ""),
        ("7 / 2", 3.5),
        ("7 // 2", 3),
        ("-7 // 2", -4),
        ("7 % 3", 1),
        ("-7 % 3", 2),
        ("2 ** 10", 1024),
        ("2 ** -1", 0.5),
        ("2 ** 3 ** 2", 512),
        ("-input.n", -4),
        ("input.f * 2", 5.0),
        ("True + 1", 2),
    ],
)
def test_arithmetic(source: str, expected: Any) -> None:
    value = ev(source)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("1 == 1", True),
        ("1 != 1", False),
        ("1 < 2", True),
        ("2 <= 1", False),
        ("3 > 2", True),
        ("3 >= 4", False),
        ("1 < 2 < 3", True),
        ("1 < 3 < 2", False),
        ("1 == 1.0", True),
        ("'a' < 'b'", True),
        ("[1, 2] == [1, 2]", True),
        ("{'a': 1} == {'a': 1}", True),
        ("'a' in {'a': 1}", True),
        ("'z' not in {'a': 1}", True),
        ("2 in [1, 2]", True),
        ("'ell' in input.s", True),
        ("'q' not in input.s", True),
        ("None is None", True),
        ("result.action is not None", True),
        ("result.output.total > 1", True),
        ("result.action == 'ok' and result.output.total >= 5", True),
    ],
)
def test_comparisons(source: str, expected: bool) -> None:
    assert ev(source) is expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("True and 'x'", "x"),
        ("0 and 1/0", 0),  # short-circuit: the right side is never evaluated
        ("1 or 1/0", 1),
        ("'' or 'default'", "default"),
        ("not []", True),
        ("not 'a'", False),
        ("'big' if result.output.total > 3 else 'small'", "big"),
        ("1 if [] else 2", 2),
        ("1 if 1 else 1/0", 1),
    ],
)
def test_logic(source: str, expected: Any) -> None:
    assert ev(source) == expected


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("len(result.output.items)", 3),
        ("len('abc')", 3),
        ("(len)('ab')", 2),  # parentheses leave the call a plain call of `len`
        ("len({'a': 1})", 1),
        ("min(result.output.items)", 1),
        ("max(3, 9, 4)", 9),
        ("min('ba')", "a"),
        ("abs(-3)", 3),
        ("round(2.567, 2)", 2.57),
        ("round(2.5)", 2),
        ("str(12)", "12"),
        ("str([1, 'a'])", "[1, 'a']"),
        ("int('42')", 42),
        ("int(3.9)", 3),
        ("float('1.5')", 1.5),
        ("float(2)", 2.0),
        ("bool([])", False),
        ("sum([1, 2, 3])", 6),
        ("sum([1, 2], 10)", 13),
        ("sorted([3, 1, 2])", [1, 2, 3]),
        ("sorted({'b': 1, 'a': 2})", ["a", "b"]),
        ("any([0, '', 1])", True),
        ("all([1, 'a'])", True),
        ("all([])", True),
        # JavaScript's Math, as in Flowcraft's edge-transform example (README, UnsafeEvaluator)
        ("Math.round((11.65) * 0.9 * 100) / 100", 10.49),
        ("Math.round(2.5)", 3),  # half up, not Python's half to even
        ("Math.round(-2.5)", -2),
        ("Math.round(7)", 7),
        ("Math.floor(-1.5)", -2),
        ("Math.ceil(1.2)", 2),
        ("Math.trunc(-1.7)", -1),
        ("Math.abs(-3)", 3),
        ("Math.max(1, 3, 2)", 3),
        ("Math.min(4)", 4),
    ],
)
def test_functions(source: str, expected: Any) -> None:
    value = ev(source)
    assert value == expected
    assert type(value) is type(expected)


def test_expression_metadata() -> None:
    expr = compile_expression("result.output.total + len(input.x) > 1", where="w")
    assert isinstance(expr, Expression)
    assert expr.source == "result.output.total + len(input.x) > 1"
    assert expr.names_used == frozenset({"result", "input"})
    assert expr.where == "w"
    assert "result.output" in repr(expr)


def test_surrounding_whitespace_and_newlines_are_accepted() -> None:
    assert ev("  1 + 2\n") == 3
    assert ev("(1 +\n 2)") == 3


def test_evaluate_condition_is_truthiness() -> None:
    assert evaluate_condition(compile_expression("result.output.items"), SCOPE) is True
    assert evaluate_condition(compile_expression("[]"), SCOPE) is False
    assert evaluate_condition(compile_expression("result.output.total - 5"), SCOPE) is False
    with pytest.raises(ExpressionError):
        evaluate_condition(compile_expression("input"), {"input": object()})


def test_names_are_limited_to_the_callers_set() -> None:
    expr = compile_expression("result.action == 'ok'", names=CONDITION_NAMES)
    assert expr.evaluate(SCOPE) is True
    # Conditions see any name (a context key or a node's output); an unset one is null.
    assert compile_expression("counter < 5", names=CONDITION_NAMES).evaluate({"counter": 1})
    assert compile_expression("nope", names=CONDITION_NAMES).evaluate({}) is None
    rejects(
        "result", "unknown name 'result'", "allowed names: context, input", names=TRANSFORM_NAMES
    )
    rejects("inptu.x", "did you mean 'input'", names=TRANSFORM_NAMES)


def test_js_literals_need_not_be_in_names() -> None:
    assert compile_expression("null", names=()).evaluate({}) is None


# --- compile-time rejections --------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("open('/etc/passwd')", "calling `open` is not allowed"),
        ("__import__('os')", "calling `__import__` is not allowed"),
        ("getattr(input, 'x')", "calling `getattr`"),
        ("eval('1')", "calling `eval`"),
        ("input.x.pop()", "calling `input.x.pop`"),
        ("Math.sqrt(2)", "calling `Math.sqrt` is not allowed"),
        ("input.Math.round(2)", "calling `input.Math.round`"),
        ("'a'.upper()", "calling `'a'.upper`"),
        ("len(x=1)", "keyword arguments"),
        ("len(*input)", "unpacking"),
        ("len()", "len() takes 1 argument(s), got 0"),
        ("round(1, 2, 3)", "round() takes 1 to 2"),
        ("min()", "at least 1"),
        ("len", "must be called"),
        ("().__class__.__bases__", "'__bases__' is not allowed"),
        ("input.__class__", "'__class__' is not allowed"),
        ("__builtins__", "'__builtins__' is not allowed"),
        ("lambda: 1", "lambda is not allowed"),
        ("[y for y in input]", "a list comprehension is not allowed"),
        ("{y for y in input}", "a set comprehension is not allowed"),
        ("{y: 1 for y in input}", "a dict comprehension is not allowed"),
        ("sum(y for y in input)", "a generator expression is not allowed"),
        ("(y := 1)", "assignment (:=) is not allowed"),
        ("f'{input}'", "an f-string is not allowed"),
        ("[*input]", "unpacking is not allowed"),
        ("{**input}", "unpacking is not allowed"),
        ("{1, 2}", "a set literal is not allowed"),
        ("b'bytes'", "bytes literals are not allowed"),
        ("1j", "complex literals are not allowed"),
        ("...", "ellipsis literals are not allowed"),
        ("1 << 2", "operator << is not allowed"),
        ("1 & 2", "operator & is not allowed"),
        ("1 | 2", "operator | is not allowed"),
        ("1 ^ 2", "operator ^ is not allowed"),
        ("input @ input", "operator @ is not allowed"),
        ("~1", "operator ~ is not allowed"),
        ("input[1:2, 3]", "Slice is not allowed"),
        ("x", "unknown name 'x'"),
        ("1 +", "invalid syntax"),
        ("a = 1", "invalid syntax"),
        ("import os", "invalid syntax"),
        ("1; 2", "invalid syntax"),
        ("", "empty"),
        ("   ", "empty"),
        ("a\x00", "null bytes"),
        ("input ==== 1", "invalid syntax"),
        ("input &&& 1", "invalid syntax"),
        ("!", "invalid syntax"),
        ("  1 ) 2", "invalid syntax at column 5: unmatched ')'"),
    ],
)
def test_rejected_at_compile_time(source: str, fragment: str) -> None:
    message = rejects(source, fragment)
    assert repr(source) in message  # the offending expression is quoted


def test_size_limits() -> None:
    rejects("1" * (MAX_SOURCE_CHARS + 1), f"the limit is {MAX_SOURCE_CHARS}")
    rejects(" + ".join(["1"] * 150), f"the limit is {MAX_NODES}")
    rejects("-" * 300 + "1", f"the limit is {MAX_NODES}")
    rejects("(" * 300 + "1" + ")" * 300)  # Python's own nesting limit, still an ExpressionError
    # At the limits it is fine.
    assert ev(" + ".join(["1"] * 100)) == 100


def test_non_string_source() -> None:
    with pytest.raises(ExpressionError):
        compile_expression(123)  # type: ignore[arg-type]


# --- evaluation failures ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("input.x[[0]]", "an index must be a number or a string"),
        ("input.n[0:1]", "cannot slice int"),
        ("input.x[0:'a']", "slice bounds must be integers"),
        ("input.x[::0]", "slice step cannot be zero"),
        ("{'a': 1}[[1]]", "a dict key must be"),
        ("{[1]: 2}", "a dict key must be"),
        ("1 / 0", "division by zero"),
        ("1 // 0", "division by zero"),
        ("1 % 0", "division by zero"),
        ("0 ** -1", "division by zero"),
        ("'a' + 1", "cannot add str and int"),
        ("[1] + (1,)", "cannot add list and tuple"),
        ("'a' - 'b'", "- needs numbers"),
        ("'%s' % 1", "% needs numbers"),  # printf formatting is not in the language
        ("'a' * 'b'", "cannot multiply"),
        ("'a' * 1.5", "cannot multiply"),
        ("-'a'", "expected a number"),
        ("1 < 'a'", "cannot compare int < str"),
        ("None < 1", "cannot compare"),
        ("1 in 2", "'in' needs a list"),
        ("1 in 'abc'", "needs a string on the left"),
        ("[1] in {'a': 1}", "a dict key must be"),
        ("len(1)", "len() needs"),
        ("min([])", "min() of an empty sequence"),
        ("max([1, 'a'])", "cannot be compared"),
        ("sorted([1, 'a'])", "cannot be compared"),
        ("sum(['a'])", "expected a number"),
        ("sum(1)", "expected a list"),
        ("abs('a')", "expected a number"),
        ("int('x')", "invalid literal"),
        ("int([])", "int() needs"),
        ("int(float('inf'))", "infinity"),
        ("float('x')", "could not convert"),
        ("float([])", "float() needs"),
        ("round(float('nan'))", "NaN"),
        ("round(1, 'a')", "round() digits"),
        ("Math.round(float('nan'))", "Math.round() of nan"),
        ("Math.floor(1e400)", "Math.floor() of inf"),
        ("Math.max(1, 'a')", "expected a number, got str"),
        ("(-8) ** 0.5", "complex"),
        ("2.0 ** 10000", "result too large"),
        ("10 ** 400 / 1", "too large"),
    ],
)
def test_evaluation_failures(source: str, fragment: str) -> None:
    fails(source, fragment)


def test_missing_name_in_scope() -> None:
    fails("input.x", "name 'input' is not available", scope={"result": {}})


@pytest.mark.parametrize(
    "source",
    [
        "'a' * 10 ** 9",
        "[0] * 10 ** 9",
        "[[0] * 1000] * 1000",  # cheap to build, but a million elements to compare or print
        "('ab' * 50000) * 2",
        "10 ** 10 ** 9",
        "2 ** 100000",
        "(10 ** 2000) * (10 ** 2000)",
        "9 ** 9 ** 9",
        "round(10, -10 ** 9)",
        "int('9' * 4000)",
        "int('9' * 6000)",
    ],
)
def test_resource_exhaustion_is_refused_quickly(source: str) -> None:
    start = time.perf_counter()
    fails(source)
    assert time.perf_counter() - start < 0.5


def test_bounded_results_are_allowed() -> None:
    assert len(ev("'a' * 100000")) == 100000
    assert ev("2 ** 8000") == 2**8000
    assert len(ev("str(10 ** 2000)")) == 2001


def test_cyclic_data_is_refused_not_looped() -> None:
    loop: list[Any] = []
    loop.append(loop)
    fails("input == [1]", "is cyclic", scope={"input": loop})
    knot: dict[str, Any] = {"a": [1]}
    knot["a"].append(knot)
    fails("str(input)", "is cyclic", scope={"input": knot})
    shared = [1, 2]
    assert ev("input == [[1, 2], [1, 2]]", {"input": [shared, shared]}) is True  # not a cycle
    assert ev("len(input)", {"input": loop}) == 1


def test_errors_from_python_never_escape() -> None:
    class Scope(dict[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise RuntimeError("boom")

    with pytest.raises(ExpressionError, match="RuntimeError: boom"):
        compile_expression("input").evaluate(Scope())


# --- properties ---------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["output", "action", "x", "a", "n"]) | st.text(max_size=3),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
scopes = st.fixed_dictionaries(
    {"result": json_values, "input": json_values, "context": json_values}
)

_LEAVES = [
    "result",
    "input",
    "context",
    "x",
    "open",
    "__import__",
    "getattr",
    "eval",
    "exec",
    "type",
    "true",
    "null",
    "None",
    "True",
    "()",
    "''",
    "0",
    "1",
    "2.5",
    "-3",
    "'a'",
    "'__class__'",
    "10**9",
    "[]",
    "{}",
    "len",
    "result.output",
    "input[0]",
    "input.x",
    "result.action",
]
_ATTRS = [
    "output",
    "action",
    "x",
    "a",
    "n",
    "get",
    "keys",
    "__class__",
    "__bases__",
    "__subclasses__",
    "__globals__",
    "__dict__",
    "__init__",
    "mro",
    "real",
    "_private",
]
_FUNCS = [
    "len",
    "str",
    "int",
    "float",
    "bool",
    "sorted",
    "min",
    "max",
    "sum",
    "abs",
    "round",
    "any",
    "all",
    "open",
    "__import__",
    "getattr",
    "eval",
    "exec",
    "type",
    "vars",
    "globals",
    "print",
]
_BINOPS = [
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "<<",
    ">>",
    "&",
    "|",
    "^",
    "@",
    "and",
    "or",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "in",
    "not in",
    "is",
    "is not",
    "&&",
    "||",
    "===",
]


def _composite(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    c = children
    return st.one_of(
        st.tuples(c, st.sampled_from(_BINOPS), c).map(lambda t: f"{t[0]} {t[1]} {t[2]}"),
        st.tuples(c, st.sampled_from(_BINOPS), c).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "+", "not ", "~", "!"]), c).map("".join),
        st.tuples(c, st.sampled_from(_ATTRS)).map(lambda t: f"{t[0]}.{t[1]}"),
        st.tuples(c, c).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(c, c, c).map(lambda t: f"{t[0]}[{t[1]}:{t[2]}]"),
        st.tuples(st.sampled_from(_FUNCS), st.lists(c, max_size=3)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
        st.tuples(c, c).map(lambda t: f"({t[0]})({t[1]})"),
        c.map(lambda s: f"(lambda: {s})"),
        c.map(lambda s: f"(lambda y: y)({s})"),
        c.map(lambda s: f"[y for y in {s}]"),
        c.map(lambda s: f"{{y: 1 for y in {s}}}"),
        c.map(lambda s: f"(y := {s})"),
        c.map(lambda s: f"f'{{{s}}}'"),
        c.map(lambda s: f"[*{s}]"),
        c.map(lambda s: f"{{**{s}}}"),
        st.lists(c, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
        st.lists(c, max_size=3).map(lambda xs: f"({', '.join(xs)},)"),
        st.lists(st.tuples(c, c), max_size=2).map(
            lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
        ),
        st.tuples(c, c, c).map(lambda t: f"{t[0]} if {t[1]} else {t[2]}"),
        c.map(lambda s: f"({s})"),
    )


python_like = st.recursive(
    st.sampled_from(_LEAVES) | st.integers().map(str) | st.text(max_size=6).map(repr),
    _composite,
    max_leaves=12,
)


def _compile_or_none(source: str) -> Expression | None:
    try:
        return compile_expression(source)
    except ExpressionError:
        return None


@given(st.text())
def test_arbitrary_text_compiles_or_raises_expression_error(source: str) -> None:
    _compile_or_none(source)


@given(python_like, scopes)
def test_python_like_text_fails_only_with_expression_error(source: str, scope: Any) -> None:
    expr = _compile_or_none(source)
    if expr is None:
        return
    with contextlib.suppress(ExpressionError):
        expr.evaluate(scope)


_ALLOWED_FUNCS = [f for f in _FUNCS if f.isidentifier() and not f.startswith("_")][:13]
_ALLOWED_OPS = [
    op for op in _BINOPS if op not in ("<<", ">>", "&", "|", "^", "@", "&&", "||", "===")
]


def _language_composite(c: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(c, st.sampled_from(_ALLOWED_OPS), c).map(lambda t: f"({t[0]} {t[1]} {t[2]})"),
        st.tuples(st.sampled_from(["-", "+", "not "]), c).map("".join),
        st.tuples(c, st.sampled_from(["output", "action", "x", "a", "n"])).map(".".join),
        st.tuples(c, c).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(c, c, c).map(lambda t: f"{t[0]}[{t[1]}:{t[2]}]"),
        st.tuples(st.sampled_from(_ALLOWED_FUNCS), st.lists(c, min_size=1, max_size=2)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
        st.lists(c, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
        st.lists(st.tuples(c, c), max_size=2).map(
            lambda kv: "{" + ", ".join(f"{k}: {v}" for k, v in kv) + "}"
        ),
        st.tuples(c, c, c).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
    )


language_like = st.recursive(
    st.sampled_from(["result", "input", "context", "true", "null", "0", "1", "-2", "2.5", "'a'"])
    | st.sampled_from(["'output'", "'x'", "10**6", "1e308", "[]", "{}", "'%s'"])
    | st.integers(-(10**20), 10**20).map(str),
    _language_composite,
    max_leaves=12,
)


@given(language_like, scopes)
def test_language_expressions_over_json_fail_only_with_expression_error(
    source: str, scope: Any
) -> None:
    expr = _compile_or_none(source)
    if expr is None:
        return
    assert expr.names_used <= {"result", "input", "context"}
    with contextlib.suppress(ExpressionError):
        expr.evaluate(scope)


@pytest.mark.parametrize(
    "source",
    [
        "().__class__.__bases__[0].__subclasses__()",
        "''.__class__.__mro__[1].__subclasses__()",
        "input.__init__.__globals__['os']",
        "[c for c in ().__class__.__base__.__subclasses__()]",
        "(lambda: __import__('os').system('true'))()",
        "getattr(input, '__class__')",
        "open('/etc/passwd').read()",
        "__import__('os')",
        "type(input)",
        "input.x.__len__()",
    ],
)
def test_escape_attempts_are_rejected(source: str) -> None:
    rejects(source)


class Spy:
    """A non-JSON object that records every attempt to look at it."""

    def __init__(self, log: list[str]) -> None:
        object.__setattr__(self, "_log", log)

    def __getattribute__(self, name: str) -> Any:
        object.__getattribute__(self, "_log").append(f"getattribute {name}")
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> Any:
        object.__getattribute__(self, "_log").append(f"getattr {name}")
        return 1


def _record(method: str) -> Any:
    def touched(self: Spy, *args: Any) -> Any:
        object.__getattribute__(self, "_log").append(method)
        return NotImplemented if method.startswith("__r") else 1

    return touched


# Every special method Python could use implicitly (type slots bypass __getattribute__).
for _name in [
    "__eq__",
    "__ne__",
    "__lt__",
    "__le__",
    "__gt__",
    "__ge__",
    "__hash__",
    "__bool__",
    "__len__",
    "__str__",
    "__repr__",
    "__format__",
    "__iter__",
    "__getitem__",
    "__contains__",
    "__add__",
    "__radd__",
    "__sub__",
    "__rsub__",
    "__mul__",
    "__rmul__",
    "__truediv__",
    "__rtruediv__",
    "__mod__",
    "__rmod__",
    "__pow__",
    "__rpow__",
    "__neg__",
    "__pos__",
    "__abs__",
    "__index__",
    "__int__",
    "__float__",
    "__round__",
]:
    setattr(Spy, _name, _record(_name))

_SPY_TEMPLATES = [
    "S.x",
    "S.output.total",
    "S.x.y",
    "S['x']",
    "S[0]",
    "S[0:1]",
    "S[S]",
    "{'a': 1}[S]",
    "[1][S]",
    "len(S)",
    "str(S)",
    "int(S)",
    "float(S)",
    "bool(S)",
    "abs(S)",
    "round(S)",
    "min(S)",
    "max(S, 1)",
    "sorted(S)",
    "sorted([S])",
    "sum(S)",
    "sum([S])",
    "any([S])",
    "all(S)",
    "S == 1",
    "1 == S",
    "S != S",
    "S < 1",
    "S in [1]",
    "1 in S",
    "S in {'a': 1}",
    "[S] == [1]",
    "{'k': S} == {'k': 1}",
    "not S",
    "S and 1",
    "S or 1",
    "1 if S else 2",
    "S + 1",
    "1 + S",
    "S * 2",
    "[S] * 2",
    "-S",
    "+S",
    "S ** 2",
    "S % 2",
    "{S: 1}",
    "str([S])",
    "result.output and S.x",
]


@given(
    template=st.sampled_from(_SPY_TEMPLATES),
    placement=st.sampled_from(["input", "input.x", "input[0]", "input.x[1].y"]),
)
def test_evaluation_never_touches_foreign_objects(template: str, placement: str) -> None:
    log: list[str] = []
    spy = Spy(log)
    inputs = {
        "input": spy,
        "input.x": {"x": spy},
        "input[0]": [spy],
        "input.x[1].y": {"x": [0, {"y": spy}]},
    }
    expr = compile_expression(template.replace("S", placement))
    scope = {"input": inputs[placement], "result": {"output": {"total": 1}}, "context": {}}
    with pytest.raises(ExpressionError):
        expr.evaluate(scope)
    assert log == []


def test_dot_lookup_on_an_object_is_refused_untouched() -> None:
    log: list[str] = []
    expr = compile_expression("input.secret", where="edge a -> b transform")
    with pytest.raises(ExpressionError, match=r"not an object: cannot read \.secret"):
        expr.evaluate({"input": Spy(log)})
    assert log == []
    # Passing the object through untouched is fine: evaluation returns it without looking at it.
    spy = Spy(log)
    assert compile_expression("input").evaluate({"input": spy}) is spy
    assert compile_expression("input is None").evaluate({"input": spy}) is False
    assert log == []


def test_dict_subclass_methods_are_not_run() -> None:
    class Sneaky(dict[str, Any]):
        def __getitem__(self, key: str) -> Any:
            raise AssertionError("ran __getitem__")

        def get(self, key: str, default: Any = None) -> Any:
            raise AssertionError("ran get")

        def __missing__(self, key: str) -> Any:
            raise AssertionError("ran __missing__")

    assert ev("input.a", {"input": Sneaky(a=1)}) == 1
    assert ev("input['a']", {"input": Sneaky(a=1)}) == 1
    assert ev("input.b", {"input": Sneaky(a=1)}) is None  # missing: null, still no __missing__


# Differential check against Python itself on the subset where the semantics coincide.

_safe_leaves = st.sampled_from(
    [
        "0",
        "1",
        "2",
        "-1",
        "3",
        "True",
        "False",
        "None",
        "'a'",
        "'bc'",
        "''",
        "[]",
        "[1, 'a']",
        "(1,)",
        "{'a': 1}",
    ]
)
_SAFE_OPS = [
    "+",
    "-",
    "*",
    "//",
    "%",
    "/",
    "==",
    "!=",
    "<",
    "<=",
    ">",
    ">=",
    "and",
    "or",
    "in",
    "not in",
]


def _safe_composite(c: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(
        st.tuples(c, st.sampled_from(_SAFE_OPS), c, st.booleans()).map(
            lambda t: f"({t[0]} {t[1]} {t[2]})" if t[3] else f"{t[0]} {t[1]} {t[2]}"
        ),
        c.map(lambda s: f"not {s}"),
        c.map(lambda s: f"-{s}"),
        c.map(lambda s: f"len({s})"),
        st.tuples(c, c).map(lambda t: f"{t[0]}[{t[1]}]"),
        st.tuples(c, c, c).map(lambda t: f"({t[0]} if {t[1]} else {t[2]})"),
        st.lists(c, max_size=3).map(lambda xs: f"[{', '.join(xs)}]"),
    )


safe_python = st.recursive(_safe_leaves, _safe_composite, max_leaves=10)


@given(safe_python)
def test_agrees_with_python_on_the_common_subset(source: str) -> None:
    try:
        # The test's own generated text, never user input: Python is the reference here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "perhaps you missed a comma?"
            expected = eval(source, {"__builtins__": {"len": len}}, {})
    except SyntaxError:
        rejects(source)
        return
    except (IndexError, KeyError, TypeError) as exc:
        # Python's failed lookups (a missing key or index, a lookup on None) read as null
        # here, as in Flowcraft's JavaScript, and the expression goes on with that null;
        # every other failure is an ExpressionError.
        lookup = not isinstance(exc, TypeError) or any(
            text in str(exc) for text in ("is not subscriptable", "indices must be integers")
        )
        try:
            compile_expression(source).evaluate({})
        except ExpressionError:
            return
        assert lookup, source
        return
    except (ZeroDivisionError, ValueError, OverflowError):
        with pytest.raises(ExpressionError):
            compile_expression(source).evaluate({})
        return
    expr = compile_expression(source)
    try:
        value = expr.evaluate({})
    except ExpressionError as exc:
        # Stricter than Python only by its resource limits and its refusal of printf-style
        # `str % x` (Python: "" % [] == "").
        assert "larger than" in str(exc) or "% needs numbers" in str(exc), (source, str(exc))
        return
    assert value == expected
    assert type(value) is type(expected)


# --- Flowcraft's JavaScript spellings -----------------------------------------------------


@pytest.mark.parametrize(
    ("source", "scope", "expected"),
    [
        ("result.output === 'ok'", {"result": {"output": "ok"}}, True),
        ("result.output !== 'ok'", {"result": {"output": "ok"}}, False),
        ("a > 1 && b < 2", {"a": 2, "b": 1}, True),
        ("a > 1 || b < 2", {"a": 0, "b": 5}, False),
        ("!a", {"a": 0}, True),
        # `!` binds to its operand, as in JavaScript: (!a) === false, not !(a === false).
        ("!a === false", {"a": 1}, True),
        ("!!a.b", {"a": {"b": 3}}, True),
        ("!(a && b)", {"a": 1, "b": 0}, True),
        ("a !== null && a.length > 2", {"a": [1, 2, 3]}, True),
        ("a.length", {"a": "hello"}, 5),
        ("a['length']", {"a": [1]}, 1),
        ("a.length", {"a": {"length": "own key"}}, "own key"),
        ("a === undefined", {}, True),
        ("a.b.c === undefined", {"a": {}}, True),
        (
            "result.output.in + result.output.class",
            {"result": {"output": {"in": 1, "class": 2}}},
            3,
        ),
        ("x.from.if", {"x": {"from": {"if": "kw"}}}, "kw"),
        ("route.total < 500", {"route": {"total": 120}}, True),
        ("counter < 5", {}, False),  # an unset key is null; null < 5 is not an error here...
        ("'a && b' + \"!x\"", {}, "a && b!x"),  # strings are never rewritten
        ("a[9]", {"a": [1]}, None),
        # As in JavaScript, a property of a number, string or list reads as undefined.
        ("a.real", {"a": 5}, None),
        ("a.upper", {"a": "s"}, None),
        ("a['x']", {"a": [1]}, None),
        ("a[0]", {"a": 7}, None),
        ("a.b", {"a": None}, None),
    ],
)
def test_javascript_spellings(source: str, scope: dict[str, Any], expected: Any) -> None:
    if source == "counter < 5":
        # ...it is an ExpressionError (None < 5 has no order), which a condition reads as false.
        with pytest.raises(ExpressionError):
            compile_expression(source, names=None).evaluate(scope)
        return
    assert compile_expression(source, names=None).evaluate(scope) == expected


def test_transform_context_keys_are_known_in_advance() -> None:
    expr = compile_expression("input + context.a + context['b']", names=TRANSFORM_NAMES)
    assert expr.context_keys == {"a", "b"}
    assert expr.evaluate({"input": 1, "context": {"a": 2, "b": 3}}) == 6
    assert compile_expression("context[input]", names=TRANSFORM_NAMES).context_keys is None
    assert compile_expression("context", names=TRANSFORM_NAMES).context_keys is None


@pytest.mark.parametrize(
    ("source", "scope", "expected"),
    [
        # Flowcraft's rewriteHyphenatedIdentifiers: a hyphenated key written as a name.
        ("check-stock.ok === true", {"check-stock": {"ok": True}}, True),
        ("!check-stock.ok", {"check-stock": {"ok": False}}, True),
        ("a-b-c > a-b", {"a-b-c": 3, "a-b": 2}, True),  # the longer key first
        ("v-1.x", {"v-1": {"x": 7}}, 7),  # the rest of a number token is kept
        ("check - stock", {"check": 5, "stock": 2}, 3),  # spaced: a subtraction
        ("x.check-stock", {"x": {"check": 5}, "stock": 2}, 3),  # after a dot: not a name
        ("'check-stock' + ''", {}, "check-stock"),  # never inside a string
        ("check-stocks", {"check": 5, "stocks": 1}, 4),  # not the whole name
    ],
)
def test_hyphenated_names_read_the_context_key(
    source: str, scope: dict[str, Any], expected: Any
) -> None:
    keys = {"check-stock", "a-b", "a-b-c", "v-1", "x"}
    expr = compile_expression(source, names=None, hyphenated=keys)
    context = {k: v for k, v in scope.items() if "-" in k}
    assert expr.evaluate({**scope, "context": context}) == expected
    if "-" in "".join(context):
        assert expr.context_keys == set(context) and "context" in expr.names_used


def test_condition_context_keys_are_known_in_advance() -> None:
    expr = compile_expression("context.counter < 5 && context['_outputs.a'] === 1", names=None)
    assert expr.context_keys == {"counter", "_outputs.a"}
    assert expr.evaluate({"context": {"counter": 3, "_outputs.a": 1}}) is True
    assert compile_expression("context", names=None).context_keys is None


js_like = st.recursive(
    st.sampled_from(["result", "input", "a", "undefined", "null", "true", "0", "1", "'s'", "x"])
    | st.sampled_from(["'&&'", "'!'", "[]", "{}", "10**6"]),
    lambda c: st.one_of(
        st.tuples(c, st.sampled_from(["===", "!==", "&&", "||", "==", "<", "+"]), c).map(
            lambda t: f"{t[0]} {t[1]} {t[2]}"
        ),
        st.tuples(st.sampled_from(["!", "!!", "! ", "-"]), c).map("".join),
        st.tuples(c, st.sampled_from(["length", "in", "class", "from", "output", "is"])).map(
            ".".join
        ),
        st.tuples(c, c).map(lambda t: f"{t[0]}[{t[1]}]"),
        c.map(lambda s: f"({s})"),
        c.map(lambda s: f"len({s})"),
    ),
    max_leaves=10,
)


@given(js_like, scopes)
def test_javascript_spellings_fail_only_with_expression_error(source: str, scope: Any) -> None:
    """With the JavaScript spellings, compiling and evaluating still raise only
    ExpressionError, whatever the scope holds, and names resolve only from the scope."""
    try:
        expr = compile_expression(source, names=None)
    except ExpressionError:
        return
    assert all(name.isidentifier() for name in expr.names_used)
    with contextlib.suppress(ExpressionError):
        expr.evaluate(scope)


@given(st.text(alphabet="!&|=.()[]'\" abcinlengthfrom0123", max_size=40))
def test_javascript_rewrite_of_any_text_raises_only_expression_error(source: str) -> None:
    with contextlib.suppress(ExpressionError):
        compile_expression(source, names=None).evaluate({"a": {"b": [1]}})


@given(st.text(alphabet="!&|=.()[]'\" -abcinlengthfrom0123", max_size=40))
def test_hyphenated_rewrite_of_any_text_raises_only_expression_error(source: str) -> None:
    """The rewrite of hyphenated node ids (``a-b`` reads ``context["a-b"]``) keeps the
    guarantee: any text compiles or raises ExpressionError, names stay identifiers, and the
    context is read by literal key only (or the expression is refused by validation)."""
    keys = {"a-b", "a-b-c", "in-1", "0-a"}
    try:
        expr = compile_expression(source, names=None, hyphenated=keys)
    except ExpressionError:
        return
    assert all(name.isidentifier() for name in expr.names_used)
    with contextlib.suppress(ExpressionError):
        expr.evaluate({"a": {"b": [1]}, "context": {"a-b": [1, {"c": 2}]}})


_JS_SPY_TEMPLATES = [
    "S.length",
    "S.in",
    "S.class.from",
    "!S",
    "!!S.x",
    "S === 1",
    "1 !== S",
    "S && 1",
    "0 || S",
    "!(S === undefined)",
    "S.x.length > 0 && true",
    "[S].length === 1 && S",
]


@given(
    template=st.sampled_from(_JS_SPY_TEMPLATES),
    placement=st.sampled_from(["input", "input.x", "input[0]", "k", "k.x"]),
)
def test_javascript_spellings_never_touch_foreign_objects(template: str, placement: str) -> None:
    """With the JavaScript spellings and an open scope (conditions), a foreign object in the
    scope is never looked at: evaluation raises ExpressionError without touching it."""
    log: list[str] = []
    spy = Spy(log)
    values = {
        "input": {"input": spy},
        "input.x": {"input": {"x": spy}},
        "input[0]": {"input": [spy]},
        "k": {"k": spy},
        "k.x": {"k": {"x": spy}},
    }
    expr = compile_expression(template.replace("S", placement), names=None)
    with pytest.raises(ExpressionError):
        expr.evaluate(values[placement])
    assert log == []
