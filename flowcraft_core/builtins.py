"""Built-in node kinds, handled by the engine itself rather than the registry."""

from __future__ import annotations

WAIT = "wait"
SLEEP = "sleep"
BUILTIN_USES: frozenset[str] = frozenset({WAIT, SLEEP})

#: Longest ``sleep`` (ms): seven days, well inside the lifetime of an unfinished run's
#: bookkeeping (``EngineSettings.run_ttl``, 30 days), so a sleeping run is never forgotten.
MAX_SLEEP_MS = 7 * 86_400_000
