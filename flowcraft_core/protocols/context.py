"""The context store protocol: one key/value map of JSON values per run.

Contract every implementation keeps:

* Values are any JSON value (``null`` included); a stored ``None`` is distinct from a missing key,
  which reads as :data:`MISSING`.
* Runs are isolated: nothing written for one run is visible from another.
* :meth:`patch` is atomic: a reader sees all of it or none of it.
* :meth:`commit` is atomic and first-wins: it applies its writes only if ``guard`` is absent,
  and a repeated commit with the same guard changes nothing.
* Reads fetch only the keys asked for; their cost does not grow with the size of the run.
"""

from __future__ import annotations

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
