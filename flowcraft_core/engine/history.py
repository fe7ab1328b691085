"""A run's index entry and its history: the typed answers of :meth:`Client.runs` and
:meth:`Client.history`, the attempt records the engine hands to the run state, and the one
function that assembles a history from what the run state stored.

What is stored (every implementation the same, see :mod:`flowcraft_core.engine.keys`):

* per job, a set of attempt records (JSON, :func:`attempt_record`), each added in the run-state
  step that already ends the attempt: the commit that won (``completed``), a failed attempt
  (``retried``, ``timed_out``), the failure that failed the run (``failed``), a park
  (``awaiting``) and a resume (``resumed``). A redelivery of a committed node adds nothing:
  the record goes with the commit, and only the winning commit writes it.
* per run, its ``ended`` record (status and time, written first-wins with the final status)
  and its other events (a retry reopening it, with the end it reopened).

What is *derived* on reading, never stored: a job finished without a record of its own was
skipped; an unfinished one is running (its lease is held), awaiting, pending, or cancelled
with its run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

#: Attempt statuses as stored and reported.
COMPLETED, FAILED, RETRIED, TIMED_OUT = "completed", "failed", "retried", "timed_out"
AWAITING, RESUMED, SKIPPED, CANCELLED = "awaiting", "resumed", "skipped", "cancelled"
RUNNING, PENDING = "running", "pending"

#: Error types that mean the attempt ran out of time.
TIMEOUT_TYPES = frozenset({"NodeTimeout"})


def attempt_record(
    attempt: int,
    status: str,
    *,
    started: float | None,
    finished: float | None,
    worker: str | None,
    error: Mapping[str, Any] | None = None,
) -> str:
    """The stored form of one attempt (a member of the job's history set): the JSON object
    ``json.dumps(..., sort_keys=True)`` writes for its fields."""
    start, finish = _time_text(started), _time_text(finished)
    if error is None and start is not None and finish is not None and type(attempt) is int:
        # Every attempt of every node makes a record, and nearly all are this case: written
        # directly, it skips building a C encoder per call (the most of the record's cost).
        # test_attempt_record pins it to json.dumps for every input.
        return (
            f'{{"attempt": {attempt}, "error": null, "finished": {finish}, '
            f'"started": {start}, "status": {_RECORD(status)}, "worker": {_RECORD(worker)}}}'
        )
    return _RECORD(
        {
            "attempt": attempt,
            "status": status,
            "started": started,
            "finished": finished,
            "worker": worker,
            "error": (
                {"type": error.get("type"), "message": error.get("message")}
                if error is not None
                else None
            ),
        }
    )


# One encoder for every record: json.dumps with an option builds a new encoder per call.
_RECORD = json.JSONEncoder(sort_keys=True).encode


def _time_text(t: float | None) -> str | None:
    """``t`` as json.dumps writes it when it is None or a finite float (else None)."""
    if t is None:
        return "null"
    if type(t) is float and math.isfinite(t):
        return float.__repr__(t)
    return None


def failure_status(error: Mapping[str, Any], *, retried: bool) -> str:
    if error.get("type") in TIMEOUT_TYPES:
        return TIMED_OUT
    return RETRIED if retried else FAILED


@dataclass(frozen=True, slots=True)
class RunSummary:
    """One run of a listing: ``started``/``finished`` are Unix times (``finished`` None while
    it runs); ``status`` completed, failed, cancelled, awaiting or running."""

    run_id: str
    flow: str
    status: str
    started: float
    finished: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RunPage:
    """A page of runs, newest first; ``cursor`` fetches the next page (None: no more)."""

    runs: list[RunSummary]
    cursor: str | None


@dataclass(frozen=True, slots=True)
class Attempt:
    attempt: int
    status: str
    started: float | None
    finished: float | None
    worker: str | None = None
    error: dict[str, Any] | None = None
    superseded: int | None = None
    """Set on an attempt made before a retry from an earlier node ran this node afresh: the
    number of that retry (attempts then start at 1 again)."""

    @property
    def duration(self) -> float | None:
        if self.started is None or self.finished is None:
            return None
        return self.finished - self.started

    def to_dict(self) -> dict[str, Any]:
        return {
            "attempt": self.attempt,
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "worker": self.worker,
            "error": self.error,
            "superseded": self.superseded,
        }


@dataclass(frozen=True, slots=True)
class NodeHistory:
    """One node instance: its status now and each attempt, in order."""

    node: str
    instance: Any
    status: str
    attempts: list[Attempt] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "instance": self.instance,
            "status": self.status,
            "attempts": [a.to_dict() for a in self.attempts],
        }


@dataclass(frozen=True, slots=True)
class RunHistory:
    """A run's timeline: its nodes (in the order they started) and its events."""

    run_id: str
    flow: str
    status: str
    started: float
    finished: float | None
    nodes: list[NodeHistory]
    events: list[dict[str, Any]]
    error: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "flow": self.flow,
            "status": self.status,
            "started": self.started,
            "finished": self.finished,
            "nodes": [n.to_dict() for n in self.nodes],
            "events": self.events,
            "error": self.error,
        }


@dataclass(slots=True)
class StoredJob:
    """What the run state read of one job for its history."""

    node: str
    instance: Any
    records: Iterable[str]
    finished: bool
    committed: bool
    leased: bool
    parked: bool


# Of two records of one attempt, the one kept: a terminal outcome beats a park, a commit beats
# everything (a failed duplicate of an attempt that also committed did not decide it).
_RANK = {COMPLETED: 5, RESUMED: 4, FAILED: 3, TIMED_OUT: 3, RETRIED: 2, AWAITING: 1}


def node_history(job: StoredJob, *, run_status: str) -> NodeHistory:
    """Assemble one job's :class:`NodeHistory` from its stored records."""
    by_attempt: dict[tuple[float, int], Attempt] = {}
    for raw in job.records:
        data = json.loads(raw)
        attempt = Attempt(
            int(data["attempt"]),
            str(data["status"]),
            data.get("started"),
            data.get("finished"),
            data.get("worker"),
            data.get("error"),
            data.get("superseded"),
        )
        slot = (float("inf") if attempt.superseded is None else attempt.superseded, attempt.attempt)
        kept = by_attempt.get(slot)
        if kept is None or _better(attempt, kept):
            by_attempt[slot] = attempt
    attempts = [by_attempt[n] for n in sorted(by_attempt)]
    current = [a for a in attempts if a.superseded is None]
    last = current[-1].status if current else None
    if job.committed or last in (COMPLETED, RESUMED):
        status = COMPLETED
    elif job.finished:
        status = SKIPPED
    elif last == FAILED or (last == TIMED_OUT and run_status == FAILED):
        status = FAILED
    elif job.parked:
        status = AWAITING
    elif run_status in (CANCELLED, FAILED, COMPLETED):
        status = CANCELLED  # activated, never finished: the run ended around it
    elif job.leased:
        status = RUNNING
    else:
        status = PENDING
    return NodeHistory(job.node, job.instance, status, attempts)


def _better(new: Attempt, kept: Attempt) -> bool:
    a, b = _RANK.get(new.status, 0), _RANK.get(kept.status, 0)
    if a != b:
        return a > b
    # Equal outcomes (a repeated park): the earliest is when it happened.
    return (new.started or new.finished or 0.0) < (kept.started or kept.finished or 0.0)


def started_at(node: NodeHistory) -> float:
    times = [t for a in node.attempts if (t := a.started or a.finished) is not None]
    return min(times) if times else float("inf")
