"""Names of the per-run state, shared by the engine and any driver that fuses its steps.

Context keys (the run's JSON map) hold what users may read: the run input, node outputs and
actions. Coordination keys hold the engine's bookkeeping. A job key is ``node#instance``.

A node id may be any non-empty string (``#``, ``.``, ``/``, unicode), so no key may be parsed by
splitting at a character an id can hold: a job key is split at its *last* ``#`` (an instance is
digits), and an output key of instance 0 is exactly ``_outputs.<id>`` (as in Flowcraft), while
other instances live under a different prefix (``_outputs#<n>.<id>``), so no two (node,
instance) pairs share a key.
"""

from __future__ import annotations

import functools

INPUT = "_input"
RUN = "_run"
OUTPUT_PREFIX = "_outputs."
ACTION_PREFIX = "_actions."
FALLBACK_PREFIX = "_fallback."

ACTIVE_RUNS = "runs:active"


def output_key(node_id: str, instance: int = 0) -> str:
    return f"{OUTPUT_PREFIX}{node_id}" if instance == 0 else f"_outputs#{instance}.{node_id}"


def action_key(node_id: str, instance: int = 0) -> str:
    return f"{ACTION_PREFIX}{node_id}" if instance == 0 else f"_actions#{instance}.{node_id}"


def fallback_key(node_id: str, instance: int = 0) -> str:
    """Set (to the fallback's id) when ``node_id`` failed and its fallback ran in its place."""
    return f"{FALLBACK_PREFIX}{node_id}" if instance == 0 else f"_fallback#{instance}.{node_id}"


def blueprint_key(digest: str) -> str:
    return f"bp:{digest}"


class RunKeys:
    """Coordination keys of one run. Per-job keys are ``run:<id>:<kind>:<job key>`` (a fused
    run state that expires a finished run's keys relies on that form)."""

    __slots__ = (
        "activated",
        "final",
        "finished",
        "progress",
        "resumed",
        "run_id",
        "signal_done",
        "waiting",
    )

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        base = f"run:{run_id}:"
        self.final = base + "final"  # JSON {status, error}; written once (set-if-absent)
        self.activated = base + "act"  # job keys activated (token counting)
        self.finished = base + "fin"  # job keys finished
        self.waiting = base + "wait"  # wait nodes parked
        self.resumed = base + "resumed"  # wait nodes resumed
        self.progress = base + "progress"  # last progress time (reconcile)
        self.signal_done = base + "sig:done"

    def signal_idle(self, generation: int) -> str:
        return f"run:{self.run_id}:sig:idle:{generation}"

    def lease(self, job_key: str) -> str:
        return f"run:{self.run_id}:lease:{job_key}"

    def arrived(self, job_key: str) -> str:
        return f"run:{self.run_id}:in:{job_key}"

    def live(self, job_key: str) -> str:
        return f"run:{self.run_id}:live:{job_key}"

    def first(self, job_key: str) -> str:
        return f"run:{self.run_id}:first:{job_key}"

    def sleep(self, job_key: str) -> str:
        return f"run:{self.run_id}:sleep:{job_key}"

    def failures(self, job_key: str) -> str:
        return f"run:{self.run_id}:fails:{job_key}"

    def missing(self, job_key: str) -> str:
        return f"run:{self.run_id}:missing:{job_key}"


@functools.lru_cache(maxsize=4096)
def run_keys(run_id: str) -> RunKeys:
    """The (cached) :class:`RunKeys` of ``run_id``: every step of every job needs them."""
    return RunKeys(run_id)
