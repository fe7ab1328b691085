"""Engine tunables, with defaults a production deployment can keep."""

from __future__ import annotations

from dataclasses import dataclass

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
    missing_retries: int = 8
    """Times a job whose ``uses`` this worker lacks is retried before the run fails."""
    missing_delay: float = 0.5
    """First delay before such a retry; it doubles each time, up to ``missing_delay_max``."""
    missing_delay_max: float = 30.0
