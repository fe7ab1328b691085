"""Hypothesis strategies for JSON values and text, and the exact equality the suite uses.

A stored value must come back as its JSON round trip, ``json.loads(json.dumps(v))``, with the
same types: ``True`` is not ``1``, ``1.0`` is not ``1``, a tuple comes back a list.
"""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import strategies as st

MAX_SAFE_INT = 2**53

# Text without surrogates (not encodable as UTF-8), including control characters, quotes,
# backslashes and non-BMP characters.
text = st.text(st.characters(codec="utf-8"), max_size=12)

json_scalars: st.SearchStrategy[Any] = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-MAX_SAFE_INT, MAX_SAFE_INT),
    st.floats(allow_nan=False, allow_infinity=False),
    text,
)

json_values: st.SearchStrategy[Any] = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(text, children, max_size=4),
    ),
    max_leaves=12,
)


def _sized(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


#: Values of realistic sizes, from 256 B to 2 MiB (sizes spread on a log scale),
#: built by repetition so that generating them costs nothing: strings, and lists and objects
#: holding such strings.
big_values: st.SearchStrategy[Any] = st.builds(
    _sized,
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=4),
    st.integers(9, 21).flatmap(lambda e: st.integers(2 ** (e - 1), 2**e)),
).flatmap(lambda big: st.sampled_from([big, [big, 1], {"blob": big, "n": None}, [[big]]]))

#: JSON values, small and of every shape, or (one in ten) big.
sized_values: st.SearchStrategy[Any] = st.integers(0, 9).flatmap(
    lambda pick: big_values if pick == 0 else json_values
)


def round_trip(value: Any) -> Any:
    """What a store must give back for ``value``."""
    return json.loads(json.dumps(value))


def identical(a: Any, b: Any) -> bool:
    """JSON equality that also compares types (bool vs int vs float) and float signs."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(identical(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(identical(a[k], b[k]) for k in a)
    return bool(a == b)
