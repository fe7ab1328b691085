"""The run-state rules that the engine's Python and a driver's Lua must both apply, written once.

A fused run state in another language (the Redis driver's Lua scripts) decides the same things
as the reference in :mod:`flowcraft_core.engine.state`: when an arrival makes its target ready,
and when a run is done. Each rule is written here once, as expressions in the syntax Python and
Lua share, and both languages' code is generated from that text: :func:`decide` and
:func:`run_done` here (compiled at import), the Lua by :func:`lua_decide` and :data:`RUN_DONE`,
which the Redis driver renders into its scripts at load. Nothing else may restate them.

The shared syntax: names, integer literals, parentheses, ``and``, ``or``, ``not``, ``-``,
``>=``, ``>``, ``<=``, ``<``, ``==``. It is checked at import, with the two places where
Python and Lua read the same text differently refused: ``not`` binds looser than a comparison
in Python and tighter in Lua, so it may only precede a bare name or a parenthesised group
followed by ``and``, ``or``, ``)`` or the end; and chained comparisons (``a < b < c``) mean a
conjunction in Python only. Boolean inputs must be booleans in Lua too (its ``0`` is true).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, cast

from flowcraft_core.engine.keys import JOIN_ALL, JOIN_ANY

#: The names a join decision reads, for one arrival at its target: whether the arrival's edge
#: was taken (``is_live``), whether it was recorded by this call (``added``, False for a repeat),
#: whether it won the target's "first taken edge" slot (``first``, ``any`` joins only), the
#: arrivals recorded at the target (``total``), its incoming edges (``expected``) and the
#: taken edges recorded there (``live``).
DECIDE_INPUTS = ("join", "is_live", "added", "first", "total", "expected", "live")

#: The join decision. For an arrival at a target of join kind ``kind``, the first row of that
#: kind whose condition holds gives the verdict: True, ready to run; False, ready to be skipped
#: (every incoming edge is dead). No row holds: not ready, or another arrival is responsible.
#: A repeated arrival (``not added``) reports readiness again, so a job that crashed between
#: recording an arrival and enqueueing the target still enqueues it on redelivery; enqueueing
#: twice is harmless because the target's commit is first-wins.
JOIN_DECISION: tuple[tuple[str, str, bool], ...] = (
    (JOIN_ANY, "is_live and (first or not added)", True),
    (JOIN_ANY, "total >= expected and live == 0", False),
    (JOIN_ALL, "total >= expected and live > 0", True),
    (JOIN_ALL, "total >= expected and live == 0", False),
)

#: A run is done when no activated job is unfinished (whether or not it is finalized yet): the
#: step that finds it so finalizes it. Over the run's counts of activated and finished jobs.
RUN_DONE_INPUTS = ("activated", "finished")
RUN_DONE = "activated - finished <= 0"

_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_]\w*)|(?P<int>\d+)|(?P<op>>=|<=|==|>|<|-|\(|\)))")
_COMPARISONS = {">=", "<=", "==", ">", "<"}
_KEYWORDS = {"and", "or", "not"}


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    at = 0
    while at < len(text.rstrip()):
        match = _TOKEN.match(text, at)
        if match is None:
            raise ValueError(f"rule {text!r}: {text[at:]!r} is outside the Python/Lua subset")
        out.append(match.group(match.lastgroup or "op"))
        at = match.end()
    return out


def check(text: str, names: Sequence[str]) -> str:
    """``text`` if it is an expression of the shared syntax over ``names``, else ValueError
    naming the rule and what is wrong."""
    tokens = _tokens(text)
    depth, comparisons = 0, [0]
    for i, token in enumerate(tokens):
        if token == "(":
            depth += 1
            comparisons.append(0)
        elif token == ")":
            depth -= 1
            comparisons.pop()
            if depth < 0:
                raise ValueError(f"rule {text!r}: unbalanced ')'")
        elif token in ("and", "or"):
            comparisons[-1] = 0
        elif token in _COMPARISONS:
            comparisons[-1] += 1
            if comparisons[-1] > 1:
                raise ValueError(f"rule {text!r}: chained comparisons read differently in Lua")
        elif token == "not":
            after = _operand_end(tokens, i + 1, text)
            if after < len(tokens) and tokens[after] not in ("and", "or", ")"):
                raise ValueError(
                    f"rule {text!r}: 'not' binds differently in Python and Lua; "
                    "put its operand in parentheses"
                )
        elif token[0].isalpha() or token[0] == "_":
            _known(token, names, text)
    if depth != 0:
        raise ValueError(f"rule {text!r}: unbalanced '('")
    return text


def _known(name: str, names: Sequence[str], text: str) -> None:
    if name not in _KEYWORDS and name not in names:
        raise ValueError(f"rule {text!r}: unknown name {name!r} (known: {names})")


def _operand_end(tokens: list[str], at: int, text: str) -> int:
    """The index just past the operand of a ``not`` starting at ``at``: a name, or a group."""
    if at >= len(tokens):
        raise ValueError(f"rule {text!r}: 'not' without an operand")
    if tokens[at] != "(":
        if not (tokens[at][0].isalpha() or tokens[at][0] == "_") or tokens[at] in _KEYWORDS:
            raise ValueError(f"rule {text!r}: 'not' must precede a name or a parenthesised group")
        return at + 1
    depth = 0
    for j in range(at, len(tokens)):
        depth += tokens[j] == "("
        depth -= tokens[j] == ")"
        if depth == 0:
            return j + 1
    raise ValueError(f"rule {text!r}: unbalanced '('")


def _kinds() -> list[str]:
    return list(dict.fromkeys(kind for kind, _, _ in JOIN_DECISION))


def _decide_lines(*, lua: bool) -> list[str]:
    """The join decision as a function ``decide(join, is_live, ...)`` in Python or Lua."""
    then, end = (" then", "end") if lua else (":", "")
    lines = [
        f"local function decide({', '.join(DECIDE_INPUTS)})"
        if lua
        else f"def decide({', '.join(DECIDE_INPUTS)}):"
    ]
    for n, kind in enumerate(_kinds()):
        if not kind.isidentifier():
            raise ValueError(f"join kind {kind!r} must be an identifier to be quoted alike")
        keyword = "if" if n == 0 else ("elseif" if lua else "elif")
        lines.append(f"    {keyword} join == '{kind}'{then}")
        for row_kind, when, verdict in JOIN_DECISION:
            if row_kind == kind:
                lines.append(f"        if {check(when, DECIDE_INPUTS)}{then}")
                lines.append(f"            return {str(verdict).lower() if lua else verdict}")
                if lua:
                    lines.append(f"        {end}")
        lines.append("        return nil" if lua else "        return None")
    if lua:
        lines += ["    end", "    error('unknown join kind ' .. tostring(join))", "end"]
    else:
        lines.append("    raise ValueError(f'unknown join kind {join!r}')")
    return lines


def lua_decide() -> str:
    """The Lua ``local function decide(join, is_live, added, first, total, expected, live)``
    returning true, false or nil, as :func:`decide` does."""
    return "\n".join(_decide_lines(lua=True))


def _compiled(source: str, name: str) -> Callable[..., Any]:
    namespace: dict[str, Any] = {}
    exec(compile(source, f"<flowcraft_core.engine.rules.{name}>", "exec"), namespace)
    return cast(Callable[..., Any], namespace[name])


# The compiled rules are the functions themselves, not wrapped: the engine decides once per
# arrival and per step, and a wrapper was two more Python calls each time.
decide = cast(
    "Callable[[str, bool, bool, bool, int, int, int], bool | None]",
    _compiled("\n".join(_decide_lines(lua=False)), "decide"),
)
""":data:`JOIN_DECISION` for one arrival: ``decide(join, is_live, added, first, total, expected,
live)`` (ValueError for a join kind it has no rows for)."""

run_done = cast(
    "Callable[[int, int], bool]",
    _compiled(
        f"def run_done({', '.join(RUN_DONE_INPUTS)}):\n"
        f"    return {check(RUN_DONE, RUN_DONE_INPUTS)}\n",
        "run_done",
    ),
)
""":data:`RUN_DONE`: ``run_done(activated, finished)``."""
