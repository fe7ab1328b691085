"""Built-in node kinds, handled by the engine itself rather than the registry."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

WAIT = "wait"
SLEEP = "sleep"
SUBFLOW = "subflow"

# The ``uses`` keys of Flowcraft's loop and batch built-ins, as its builder emits them (``.loop``,
# ``.batch``) and as hand-written blueprints name them.
LOOP_CONTROLLER = "loop-controller"
BATCH_SCATTER = "batch-scatter"
BATCH_GATHER = "batch-gather"
BUILTIN_USES: frozenset[str] = frozenset(
    {WAIT, SLEEP, SUBFLOW, LOOP_CONTROLLER, BATCH_SCATTER, BATCH_GATHER}
)

#: Other names of the built-ins, as a blueprint saved from Flowcraft's builder holds them: its
#: ``.node(id, SubflowNode, ...)`` writes the class's name as ``uses`` (flowcraft@2.10.1
#: packages/core/src/flow.ts ``node``; the classes in packages/core/src/nodes/). Its
#: ``loop-controller`` is a function (the builder would write ``fn_<hash>``), so it has none;
#: ``WebhookNode`` is missing because ``webhook`` is not a built-in here.
BUILTIN_ALIASES: dict[str, str] = {
    "WaitNode": WAIT,
    "SleepNode": SLEEP,
    "SubflowNode": SUBFLOW,
    "BatchScatterNode": BATCH_SCATTER,
    "BatchGatherNode": BATCH_GATHER,
}


def canonical_uses(uses: str) -> str:
    """The built-in ``uses`` names (:data:`BUILTIN_USES`) for one of its other names
    (:data:`BUILTIN_ALIASES`); any other key unchanged."""
    return BUILTIN_ALIASES.get(uses, uses)


#: Iterations a loop may run unless its ``params.maxIterations`` says otherwise: one more
#: fails the run, naming the loop (Flowcraft stops a runaway traversal at a similar bound).
MAX_ITERATIONS = 1000

#: Most items one batch may have: a scatter over more fails the run, naming the node, the key
#: and the count. The scatter stores one context key per item in its commit and the gather
#: reads them all once, so this bounds the memory of those two steps.
MAX_BATCH_ITEMS = 10_000

#: Longest ``sleep`` (ms): seven days, well inside the lifetime of an unfinished run's
#: bookkeeping (``EngineSettings.run_ttl``, 30 days), so a sleeping run is never forgotten.
MAX_SLEEP_MS = 7 * 86_400_000

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def duration_ms(value: Any) -> float | None:
    """A ``sleep`` duration in ms: a number of ms, or a string as Flowcraft writes them
    (``"5s"``, ``"1m"``, ``"2h"``, ``"1d"``, and ``"500ms"``); None if it is neither."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and len(value) <= 32:
        match = _DURATION.fullmatch(value.strip())
        if match:
            return float(int(match.group(1)) * _UNIT_MS[match.group(2)])
    return None


def subflow_call(uses: str, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The ``blueprintId``/``inputs``/``outputs`` params of the subflows a node starts: a
    ``subflow`` node's own params; a ``batch-scatter``'s ``params.workerParams`` when its
    worker (``params.workerUsesKey``) is the ``subflow`` built-in (an extension: Flowcraft
    gives its dynamic workers no params, so it cannot run a subflow per item); else None."""
    if uses == SUBFLOW:
        return params
    worker = params.get("workerUsesKey")
    if uses == BATCH_SCATTER and isinstance(worker, str) and canonical_uses(worker) == SUBFLOW:
        found = params.get("workerParams")
        return found if isinstance(found, Mapping) else {}
    return None
