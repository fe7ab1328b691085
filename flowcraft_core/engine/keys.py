"""Names of the per-run state, shared by the engine and any driver that fuses its steps.

Context keys (the run's JSON map) hold what users may read: the run input, node outputs and
actions. Coordination keys hold the engine's bookkeeping. A job key is ``node#instance``.

Instances (``"0"``, ``"0/3/1"``...) and job keys are defined in :mod:`flowcraft_core.instance`.

A node id may be any non-empty string (``#``, ``.``, ``/``, unicode), so no key may be parsed by
splitting at a character an id can hold: a job key is split at its *last* ``#`` (an instance has
none), and an output key of the root instance is exactly ``_outputs.<id>`` (as in Flowcraft),
while other instances live under a different prefix (``_outputs#<instance>.<id>``, the instance
ending at the first ``.``, which it never holds), so no two (node, instance) pairs share a key.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math

from flowcraft_core import instance

INPUT = "_input"
RUN = "_run"
OUTPUT_PREFIX = "_outputs."
ACTION_PREFIX = "_actions."
FALLBACK_PREFIX = "_fallback."

ACTIVE_RUNS = "runs:active"
RUN_HEADERS = "headers"  # the field of a run's metadata (RUN) with its jobs' headers

# The layout below is also what the Redis driver's Lua scripts use: they get these names
# rendered in at load (flowcraft_redis.connection.SCRIPT_CONSTANTS), never spelled by hand.
RUN_BASE = "run:{run_id}:"
# Run-wide keys, each at RUN_BASE + name (see RunKeys).
ACTIVATED = "act"  # the run's activated job keys
FINISHED = "fin"
WAITING = "wait"
RESUMED = "resumed"
PROGRESS = "progress"
CHILDREN = "children"
EVENTS = "events"
FINAL = "final"
ENDED = "ended"
SIGNAL_DONE = "sig:done"
#: The run-wide bookkeeping keys that finalization keeps for the run's retention, with its
#: context (FINAL and ENDED are written with it; so are the per-job keys below). Every run
#: state expires exactly these.
RUN_WIDE = (ACTIVATED, FINISHED, WAITING, RESUMED, PROGRESS, CHILDREN, EVENTS)
# The kinds of per-job keys, each at RUN_BASE + kind + ":" + job key. A run's are expired
# with it, found through its activated set: every kind must be listed in JOB_KEY_KINDS.
LEASE = "lease"
ARRIVED = "in"
LIVE = "live"
FIRST = "first"
SLEEP = "sleep"
FAILURES = "fails"
MISSING = "missing"
HISTORY = "hist"  # the job's attempt records (a set of JSON members, see engine.history)
JOB_KEY_KINDS = (LEASE, ARRIVED, LIVE, FIRST, SLEEP, FAILURES, MISSING, HISTORY)
JOIN_ANY = "any"  # a join that fires on its first taken edge
JOIN_ALL = "all"  # a join that waits for every incoming edge

ROOT = instance.ROOT


def output_key(node_id: str, instance: str = ROOT) -> str:
    return f"{OUTPUT_PREFIX}{node_id}" if instance == ROOT else f"_outputs#{instance}.{node_id}"


def action_key(node_id: str, instance: str = ROOT) -> str:
    return f"{ACTION_PREFIX}{node_id}" if instance == ROOT else f"_actions#{instance}.{node_id}"


def fallback_key(node_id: str, instance: str = ROOT) -> str:
    """Set (to the fallback's id) when ``node_id`` failed and its fallback ran in its place."""
    return f"{FALLBACK_PREFIX}{node_id}" if instance == ROOT else f"_fallback#{instance}.{node_id}"


def route_key(node_id: str, instance: str = ROOT) -> str:
    """The edges (indices) a node instance took, when its routing reads the context."""
    return f"_route.{node_id}" if instance == ROOT else f"_route#{instance}.{node_id}"


def item_key(scatter_id: str, instance: str) -> str:
    """Where a batch scatter stores the item of the worker at ``instance``."""
    return f"_item#{instance}.{scatter_id}"


def run_headers(meta: object) -> dict[str, str]:
    """The headers every job of a run carries, from its metadata (``RUN``): none if unset."""
    if isinstance(meta, dict):
        headers = meta.get(RUN_HEADERS)
        if isinstance(headers, dict):
            return {str(k): str(v) for k, v in headers.items()}
    return {}


BLUEPRINT_BASE = "bp:"


def blueprint_key(digest: str) -> str:
    return BLUEPRINT_BASE + digest


# The run index: sets of members ``index_member(started, run_id)``, one set per hour of start
# time (a *bucket*) and per dimension: every run, per blueprint id, per status. A listing reads
# the buckets of the hours it covers, newest first; nothing scans the keyspace.
INDEX_BUCKET_SECONDS = 3600
INDEX_BASE = "runs:idx:"
INDEX_ALL = "all"
INDEX_FLOW = "flow"
INDEX_STATUS = "status"
RUNNING = "running"  # the status of an indexed run not yet finalized (running or awaiting)


def index_bucket(started: float) -> int:
    # floor(x / w), not x // w: the same double arithmetic as Lua's math.floor(x / w).
    return math.floor(started / INDEX_BUCKET_SECONDS)


def index_key(kind: str, bucket: int, value: str = "") -> str:
    """The index set of ``kind`` (all, flow, status) for one bucket; ``value`` (a blueprint id
    or a status, any string) comes last, so no two (kind, bucket, value) share a key."""
    return f"{INDEX_BASE}{kind}:{bucket}:{value}"


def index_member(started: float, run_id: str) -> str:
    """A run's member in the index sets: its start time, fixed width so that members sort as
    start times do, then its id (split at the first ``|``: the time holds none)."""
    return f"{started:017.6f}|{run_id}"


def parse_index_member(member: str) -> tuple[float, str]:
    started, _, run_id = member.partition("|")
    return float(started), run_id


class RunKeys:
    """Coordination keys of one run. Per-job keys are ``run:<id>:<kind>:<job key>`` (a fused
    run state that expires a finished run's keys relies on that form, see above)."""

    __slots__ = (
        "activated",
        "base",
        "children",
        "ended",
        "events",
        "final",
        "finished",
        "progress",
        "reopening",
        "resumed",
        "run_id",
        "run_wide",
        "signal_done",
        "waiting",
    )

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.base = base = RUN_BASE.format(run_id=run_id)
        self.final = base + FINAL  # JSON {status, error}; written once (set-if-absent)
        self.activated = base + ACTIVATED  # job keys activated (token counting)
        self.finished = base + FINISHED  # job keys finished
        self.waiting = base + WAITING  # wait nodes parked
        self.resumed = base + RESUMED  # wait nodes resumed
        self.progress = base + PROGRESS  # last progress time (reconcile)
        self.signal_done = base + SIGNAL_DONE
        self.children = base + CHILDREN  # run ids of the subflow runs this run started
        self.reopening = base + "reopening"  # held while a retry reopens the run
        self.ended = base + ENDED  # JSON {status, at}: written with final, first-wins too
        self.events = base + EVENTS  # run events other than start and end (JSON members)
        self.run_wide = tuple(base + name for name in RUN_WIDE)

    def signal_idle(self, generation: int) -> str:
        return f"{self.base}sig:idle:{generation}"

    def job(self, kind: str, job_key: str) -> str:
        """The key of ``kind`` (one of :data:`JOB_KEY_KINDS`) for ``job_key``."""
        return f"{self.base}{kind}:{job_key}"

    def lease(self, job_key: str) -> str:
        return self.job(LEASE, job_key)

    def arrived(self, job_key: str) -> str:
        return self.job(ARRIVED, job_key)

    def live(self, job_key: str) -> str:
        return self.job(LIVE, job_key)

    def first(self, job_key: str) -> str:
        return self.job(FIRST, job_key)

    def sleep(self, job_key: str) -> str:
        return self.job(SLEEP, job_key)

    def failures(self, job_key: str) -> str:
        return self.job(FAILURES, job_key)

    def missing(self, job_key: str) -> str:
        return self.job(MISSING, job_key)

    def history(self, job_key: str) -> str:
        return self.job(HISTORY, job_key)


CHILD_MARK = "~sub-"
"""In every subflow run's id (and in no id the engine makes otherwise): only the finalizer of a
run whose id has it reads the run's metadata to find a parent to continue."""


def child_run_id(run_id: str, job_key: str, attempt: int) -> str:
    """The id of the subflow run that attempt ``attempt`` of job ``job_key`` of ``run_id``
    starts: derived from the job's identity, so a redelivered job names the same child (and
    its second start is refused), while a retry (a new attempt) starts a fresh child."""
    digest = hashlib.sha256(json.dumps([job_key, attempt]).encode()).hexdigest()[:20]
    return f"{run_id}{CHILD_MARK}{digest}"


def may_be_child(run_id: str) -> bool:
    return CHILD_MARK in run_id


def subflow_member(job_key: str, attempt: int, generation: int) -> str:
    """The member a subflow job parks under (in the run's waiting set) while its child awaits
    a resume at ``generation`` (the child's resumes so far): each time the child awaits is a
    new member, so the parent parks once per time, and is unparked by marking it resumed. An
    instance never holds ``@`` (nor ``#``), so the member's tail tells it from a job key."""
    return f"{job_key}@{attempt}@{generation}"


def parse_subflow_member(member: str) -> tuple[str, int, int] | None:
    """(job key, attempt, generation) of a :func:`subflow_member`; None for a wait node's
    member (a plain job key: its instance, after its last ``#``, has no ``@``)."""
    node_id, tail = instance.split_job_key(member)
    if "@" not in tail:
        return None
    inst, attempt, generation = tail.split("@", 2)
    return instance.job_key(node_id, inst), int(attempt), int(generation)


@functools.lru_cache(maxsize=4096)
def run_keys(run_id: str) -> RunKeys:
    """The (cached) :class:`RunKeys` of ``run_id``: every step of every job needs them."""
    return RunKeys(run_id)
