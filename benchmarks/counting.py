"""Counting wrappers: every call to a context or coordination store is one round trip."""

from __future__ import annotations

from typing import Any


class Counting:
    """Forwards every method of ``inner`` and counts the calls (``close`` excluded)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr) or name.startswith("_") or name == "close":
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return attr(*args, **kwargs)

        # Later lookups skip __getattr__: the instrument must not cost the engine a closure
        # per call (it did, and showed in the memory driver's nodes/s).
        setattr(self, name, counted)
        return counted
