"""The queue protocol: delivers jobs to workers, at least once, with delays.

Contract every implementation keeps:

* **At least once.** Every enqueued job is delivered to a handler at least once, as long as some
  consumer runs. A delivery is *acknowledged* only when the handler returns normally; if the
  handler raises, or the process dies before the handler returns, the job is delivered again
  (after a driver-specific redelivery delay, declared as a capability).
* **Nothing invented.** A handler only ever receives jobs that were enqueued (duplicates allowed).
* **Delays.** A job enqueued with ``delay`` seconds is not delivered before that delay has passed.
* **Concurrency.** A consumer never runs more than ``concurrency`` handlers at once.
* **JSON only.** Jobs travel as JSON; nothing is pickled.

A queue may declare ``sibling_messages = False`` (a class attribute; True when absent): its
messages cost less than running siblings together would save (an in-process queue), so the
engine sends every job on its own there (``EngineSettings.siblings_per_message``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from flowcraft_core.instance import ROOT, job_key

MAX_HEADER_BYTES = 4096
"""The most a job's headers may take (keys and values, UTF-8): they travel in every message."""


@dataclass(frozen=True, slots=True)
class Job:
    """One unit of work: execute (or route) one node of one run.

    ``(run_id, node_id, instance)`` is the job's identity, the key of every idempotent step.
    ``instance`` names the loop iteration or batch item as a path (``"0"`` outside them, see
    :mod:`flowcraft_core.engine.keys`). ``attempt`` is
    1-based and ``digest`` names the run's pinned blueprint (its content digest), so a worker
    never re-reads the run to find it.

    ``headers`` (str → str) are what lifecycle plugins asked every job of the run to carry
    (a trace context, say: :func:`flowcraft_core.hookspecs.flowcraft_run_headers`). They are
    not part of the identity: two jobs that differ only in headers are equal. Every job the
    engine derives from a job (its retry, its successors) carries the same headers.

    ``siblings`` makes one message carry several jobs: the node ids of more jobs of the same
    run, digest, instance and attempt, ready at the same time (targets of one completion, see
    ``EngineSettings.siblings_per_message``). A handler that gets such a job handles each of
    :meth:`members` as it would a job of its own; a queue need not know, since the siblings
    travel inside the message. A job with siblings is not equal to its first member.

    The wire form (:meth:`to_dict`) keeps its short field names, ``"f"`` for the digest
    included, so jobs queued by an earlier version are read unchanged; headers travel as
    ``"h"``, only when there are any, the due time as ``"t"`` (milliseconds kept) and the
    siblings as ``"s"``, only when there are any.
    """

    run_id: str
    node_id: str
    digest: str
    instance: str = ROOT
    attempt: int = 1
    headers: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    due: float | None = field(default=None, compare=False, repr=False)
    """When the job was due, in epoch seconds: the time it was enqueued plus its delay, set by
    whoever enqueued it (:meth:`stamped`); None for a job continued inline, which never
    waited in a queue. Its start minus this is the job's queue lag (clocks of two machines
    permitting). Not part of the identity."""
    siblings: tuple[str, ...] = ()
    """Node ids of more jobs this message carries (see above): empty for a job on its own."""

    def stamped(self, delay: float = 0.0) -> Job:
        """This job, due ``delay`` seconds from now: what every enqueue sends."""
        # The constructor, not dataclasses.replace: this runs for every job enqueued, and
        # replace costs about ten calls more (test_job_headers pins that no field is dropped).
        return Job(
            run_id=self.run_id,
            node_id=self.node_id,
            digest=self.digest,
            instance=self.instance,
            attempt=self.attempt,
            headers=self.headers,
            due=time.time() + delay,
            siblings=self.siblings,
        )

    def members(self) -> list[Job]:
        """The jobs this message carries: this one on its own, then one per sibling, each with
        this one's run, digest, instance, attempt, headers and due time."""
        return [
            Job(
                self.run_id,
                node_id,
                self.digest,
                self.instance,
                self.attempt,
                self.headers,
                self.due,
            )
            for node_id in (self.node_id, *self.siblings)
        ]

    @property
    def key(self) -> str:
        """The identity as one string, used in coordination keys."""
        return job_key(self.node_id, self.instance)

    def to_dict(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "r": self.run_id,
            "n": self.node_id,
            "f": self.digest,
            "i": self.instance,
            "a": self.attempt,
        }
        if self.headers:
            wire["h"] = dict(self.headers)
        if self.due is not None:
            wire["t"] = round(self.due, 3)
        if self.siblings:
            wire["s"] = list(self.siblings)
        return wire

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Job:
        headers = data.get("h")
        siblings = data.get("s")
        return cls(
            run_id=str(data["r"]),
            node_id=str(data["n"]),
            digest=str(data["f"]),
            # An integer 0 is how versions before loops wrote the root instance.
            instance=str(data.get("i", ROOT)),
            attempt=int(data.get("a", 1)),
            headers=check_headers(headers, "a job's headers") if headers else {},
            due=float(data["t"]) if data.get("t") is not None else None,
            siblings=_siblings(siblings) if siblings else (),
        )


def _siblings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(n, str) and n for n in value):
        raise ValueError(f"a job's siblings must be a list of node ids, got {value!r}")
    return tuple(value)


def check_headers(headers: Any, where: str) -> dict[str, str]:
    """``headers`` as a plain dict, or a :class:`ValueError` naming ``where`` and the problem:
    they must map non-empty strings to strings and take at most :data:`MAX_HEADER_BYTES`."""
    if not isinstance(headers, Mapping):
        raise ValueError(f"{where} must be an object of strings, got {type(headers).__name__}")
    size = 0
    for key, value in headers.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise ValueError(
                f"{where} must map non-empty strings to strings; got {key!r}: {value!r}"
            )
        size += len(key.encode()) + len(value.encode())
    if size > MAX_HEADER_BYTES:
        raise ValueError(f"{where} take {size} bytes; at most {MAX_HEADER_BYTES} are allowed")
    return dict(headers)


Handler = Callable[[Job], Awaitable[None]]


@runtime_checkable
class Consumer(Protocol):
    """A running consumption of a queue, returned by :meth:`Queue.consume`."""

    async def stop(self, *, drain: bool = True) -> None:
        """Stop taking jobs. With ``drain``, wait for in-flight handlers; prefetched but unstarted
        jobs are handed back to the queue, never lost."""
        ...


@runtime_checkable
class Queue(Protocol):
    """Delivers jobs to handlers, at least once, with delays (see the module docstring)."""

    async def enqueue(self, job: Job, *, delay: float = 0.0) -> None:
        """Enqueue one job, delivered no earlier than ``delay`` seconds from now."""
        ...

    async def enqueue_many(self, jobs: Sequence[Job], *, delay: float = 0.0) -> None:
        """Enqueue several jobs, in as few round trips as the backend allows."""
        ...

    async def consume(self, handler: Handler, *, concurrency: int = 1) -> Consumer:
        """Start delivering jobs to ``handler`` in this process; at most ``concurrency`` at once."""
        ...

    async def close(self) -> None:
        """Release connections. Consumers must have been stopped first."""
        ...
