"""In-memory context store: a dict of JSON text per run, so values are isolated from later
mutation by node code and non-JSON values fail at the write, exactly as on a real backend."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

from flowcraft_core.protocols.context import MISSING, Missing, encode


class MemoryContextStore:
    """Per-run maps in this process. Every method completes without awaiting, hence atomic."""

    def __init__(self) -> None:
        self._runs: dict[str, dict[str, str]] = {}
        self._expiry: dict[str, float] = {}

    def _run(self, run_id: str) -> dict[str, str]:
        deadline = self._expiry.get(run_id)
        if deadline is not None and time.monotonic() >= deadline:
            self._runs.pop(run_id, None)
            self._expiry.pop(run_id, None)
        return self._runs.setdefault(run_id, {})

    async def get(self, run_id: str, key: str) -> Any | Missing:
        raw = self._run(run_id).get(key)
        return MISSING if raw is None else _decode(raw)

    def get_many_now(self, run_id: str, keys: Iterable[str]) -> dict[str, Any]:
        data = self._run(run_id)
        return {k: _decode(data[k]) for k in keys if k in data}

    def commit_now(self, run_id: str, guard: str, set: Mapping[str, Any]) -> bool:
        data = self._run(run_id)
        if guard in data:
            return False
        encoded = {k: encode(v) for k, v in set.items()}  # all or nothing
        data.update(encoded)
        data.setdefault(guard, "null")
        return True

    async def get_many(self, run_id: str, keys: Iterable[str]) -> dict[str, Any]:
        return self.get_many_now(run_id, keys)

    async def get_all(self, run_id: str) -> dict[str, Any]:
        return {k: _decode(v) for k, v in self._run(run_id).items()}

    async def set(self, run_id: str, key: str, value: Any) -> None:
        self._run(run_id)[key] = encode(value)

    async def delete(self, run_id: str, key: str) -> None:
        self._run(run_id).pop(key, None)

    async def has(self, run_id: str, key: str) -> bool:
        return key in self._run(run_id)

    async def patch(self, run_id: str, set: Mapping[str, Any], delete: Iterable[str] = ()) -> None:
        encoded = {k: encode(v) for k, v in set.items()}  # encode all first: all or nothing
        data = self._run(run_id)
        data.update(encoded)
        for key in delete:
            data.pop(key, None)

    async def commit(self, run_id: str, guard: str, set: Mapping[str, Any]) -> bool:
        return self.commit_now(run_id, guard, set)

    async def expire(self, run_id: str, seconds: float) -> None:
        if run_id in self._runs:
            self._expiry[run_id] = time.monotonic() + seconds

    async def close(self) -> None:
        return None


# Every stored text is this store's own: :func:`encode`'s output (or the guard's ``null``),
# valid JSON with nothing around it, so raw_decode reads it as it is; ``json.loads`` would add
# two Python calls and two whitespace matches to every value read.
_raw_decode = json.JSONDecoder().raw_decode


def _decode(raw: str) -> Any:
    return _raw_decode(raw)[0]
