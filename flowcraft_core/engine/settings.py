"""Engine tunables, with defaults a production deployment can keep."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any

from flowcraft_core.errors import FlowcraftError

DAY = 86400.0


@dataclass(frozen=True)
class EngineSettings:
    lease_ttl: float = 15.0
    """Seconds a job's lease lasts; renewed every third of it while a node runs. A worker
    that dies holding a lease delays that node's re-execution by at most this long."""
    lease_busy_delay: float = 1.0
    """When a delivery finds its job's lease held, it looks again after this long."""
    run_ttl: float = 30 * DAY
    """Upper bound on how long an unfinished run's bookkeeping is kept."""
    retention: float = 7 * DAY
    """How long a finished run's context, outputs and status are kept."""
    continue_steps: int = 64
    """Nodes a job may continue with inline before handing successors to the queue."""
    continue_seconds: float = 1.0
    """Time a job may spend continuing inline before handing successors to the queue."""
    siblings_per_message: int = 8
    """Most jobs one queue message carries when a completion makes several targets ready at
    once (a fan-out): they are loaded, run and committed together, each still its own job
    with its own commit, so a wide fan-out costs a message per this many nodes, while still
    leaving one message per this many for other workers to take. 1 sends each on its own
    (what a deployment sets while workers that predate sibling messages still run: they
    would handle only a message's first job)."""
    sibling_wait: float = 0.1
    """Seconds a job that came with siblings waits for a free slot (its worker handles no
    more jobs at once than its concurrency) before it goes back to the queue on its own, for
    a worker that is free."""
    missing_retries: int = 8
    """Times a job whose ``uses`` this worker lacks is retried before the run fails."""
    missing_delay: float = 0.5
    """First delay before such a retry; it doubles each time, up to ``missing_delay_max``."""
    missing_delay_max: float = 30.0
    strict: bool = False
    """Fail the run when an edge condition or transform cannot be evaluated. By default, as in
    Flowcraft, such a condition is false and such a transform gives null, and the problem is
    reported through the ``flowcraft_expression_failed`` hook (and logged)."""
    fused_state: bool = True
    """Use a driver's fused run state when it offers one (fewer round trips). False composes
    the steps from the protocols: the reference semantics, to compare a fused state against."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> EngineSettings:
        """Defaults overridden by ``FLOWCRAFT_<FIELD>`` variables (e.g. ``FLOWCRAFT_RETENTION``
        in seconds, ``FLOWCRAFT_MISSING_RETRIES``): how the CLI's workers and clients are
        tuned without code."""
        env = os.environ if environ is None else environ
        changes: dict[str, Any] = {}
        for f in fields(cls):
            name = f"FLOWCRAFT_{f.name.upper()}"
            raw = env.get(name)
            if raw is None:
                continue
            if f.type in ("bool", bool):
                if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise FlowcraftError(f"{name} must be true or false, got {raw!r}")
                changes[f.name] = raw.lower() in ("1", "true", "yes")
                continue
            kind = int if f.type in ("int", int) else float
            try:
                value = kind(raw)
            except ValueError:
                raise FlowcraftError(f"{name} must be a number, got {raw!r}") from None
            if value < 0:
                raise FlowcraftError(f"{name} must not be negative, got {raw!r}")
            changes[f.name] = value
        return replace(cls(), **changes)
