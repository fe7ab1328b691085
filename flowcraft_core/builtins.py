"""Built-in node kinds, handled by the engine itself rather than the registry."""

from __future__ import annotations

WAIT = "wait"
SLEEP = "sleep"
BUILTIN_USES: frozenset[str] = frozenset({WAIT, SLEEP})
