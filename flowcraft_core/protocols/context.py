"""The context store protocol: one key/value map of JSON values per run.

Contract every implementation keeps:

* Values are any JSON value (``null`` included); a stored ``None`` is distinct from a missing key,
  which reads as :data:`MISSING`. A value :func:`encode` refuses (no JSON form, NaN or an
  infinity, keys that collide as JSON, nesting too deep) raises ``TypeError`` or ``ValueError``
  and writes nothing: every store applies this one rule, by encoding with :func:`encode`.
* Runs are isolated: nothing written for one run is visible from another.
* :meth:`patch` is atomic: a reader sees all of it or none of it.
* :meth:`commit` is atomic and first-wins: it applies its writes only if ``guard`` is absent,
  and a repeated commit with the same guard changes nothing.
* Reads fetch only the keys asked for; their cost does not grow with the size of the run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from enum import Enum
from typing import Any, Final, Literal, Protocol, runtime_checkable


class Missing(Enum):
    """Type of :data:`MISSING`: the marker for an absent key."""

    MISSING = "MISSING"

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> Literal[False]:
        return False


MISSING: Final = Missing.MISSING


# One encoder for every call: json.dumps with any non-default option builds a new encoder each
# time, which costs more than encoding a typical node output.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def encode(value: Any) -> str:
    """``value`` as strict JSON text: the one encoding every context store uses.

    Refused, with ``TypeError`` or ``ValueError`` naming the problem: values with no JSON form;
    NaN and infinities (other readers of a run — the TypeScript side, ``jq`` — cannot parse
    them); an object whose keys collide once made JSON strings (``{1: "a", "1": "b"}`` would
    silently lose one); nesting deeper than the encoder can recurse.
    """
    # The scalars a node returns most (None above all) as the encoder writes them, without
    # the C encoder it builds per call (test_encodings pins them to it).
    kind = type(value)
    if value is None:
        return "null"
    if kind is bool:
        return "true" if value else "false"
    if kind is int:
        return int.__repr__(value)
    if kind is float and math.isfinite(value):
        return float.__repr__(value)
    try:
        text = _ENCODER.encode(value)
    except RecursionError:
        raise ValueError("the value is nested too deeply to encode as JSON") from None
    if not isinstance(value, (str, int, float)):  # only a container can hold an object's keys
        _check_keys(value)
    return text


def _check_keys(value: Any) -> None:
    # json.dumps turns int, float, bool and None keys into strings without a word; only an
    # object with such a key can collide, so only such objects pay for the comparison.
    stack = [value]
    while stack:
        current = stack.pop()
        if isinstance(current, dict):
            if not all(type(k) is str for k in current):
                seen: dict[str, Any] = {}
                for key in current:
                    name = _json_key(key)
                    if name in seen:
                        raise ValueError(
                            f"object keys {seen[name]!r} and {key!r} are the same JSON key "
                            f"{name!r}: one would be lost"
                        )
                    seen[name] = key
            stack.extend(v for v in current.values() if isinstance(v, dict | list | tuple))
        elif isinstance(current, list | tuple):
            stack.extend(v for v in current if isinstance(v, dict | list | tuple))


def _json_key(key: Any) -> str:
    """The string json.dumps writes for an object key it accepted."""
    if isinstance(key, str):
        return key
    if key is True or key is False or key is None:
        return json.dumps(key)
    return float.__repr__(key) if isinstance(key, float) else int.__repr__(key)


@runtime_checkable
class ContextStore(Protocol):
    """Per-run JSON key/value maps (see the module docstring for the contract)."""

    async def get(self, run_id: str, key: str) -> Any | Missing:
        """The value of ``key``, or :data:`MISSING`."""
        ...

    async def get_many(self, run_id: str, keys: Iterable[str]) -> dict[str, Any]:
        """The values of the present keys among ``keys``, in one round trip."""
        ...

    async def get_all(self, run_id: str) -> dict[str, Any]:
        """Every key of the run. For results and inspection only, never per job."""
        ...

    async def set(self, run_id: str, key: str, value: Any) -> None: ...

    async def delete(self, run_id: str, key: str) -> None: ...

    async def has(self, run_id: str, key: str) -> bool: ...

    async def patch(self, run_id: str, set: Mapping[str, Any], delete: Iterable[str] = ()) -> None:
        """Apply several writes and deletes atomically."""
        ...

    async def commit(self, run_id: str, guard: str, set: Mapping[str, Any]) -> bool:
        """If ``guard`` is absent, write ``set`` (which must include ``guard``) atomically and
        return True; otherwise write nothing and return False."""
        ...

    async def expire(self, run_id: str, seconds: float) -> None:
        """Drop the whole run's map ``seconds`` from now (retention of finished runs)."""
        ...

    async def close(self) -> None: ...
