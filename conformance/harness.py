"""The per-test harness: what every conformance test receives as its ``conformance`` fixture.

A :class:`Harness` owns one event loop thread (see :mod:`flowcraft_conformance.facade`) and the
components it opened on it, all closed when the test ends. Tests are plain sync functions: they
run their async bodies with :meth:`Harness.run`, so the suite needs no pytest-asyncio and no loop
configuration from the project that adopts it.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Awaitable, Iterable
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test

from flowcraft_core.drivers import Backends
from flowcraft_core.protocols import ContextStore, CoordinationStore, Queue

from .capabilities import COMPONENTS, missing_reason, present, value_of
from .facade import DEFAULT_TIMEOUT, LoopThread
from .target import Clock, DriverParts, Target

T = TypeVar("T")

ENV_MAX_EXAMPLES = "FLOWCRAFT_CONFORMANCE_MAX_EXAMPLES"
ENV_PROFILE = "HYPOTHESIS_PROFILE"
DEFAULT_MAX_EXAMPLES = 50
#: Hypothesis examples per state machine under each ``HYPOTHESIS_PROFILE``: ``dev`` is a quick
#: loop while editing; ``ci``, any other profile and none get :data:`DEFAULT_MAX_EXAMPLES`.
MACHINE_EXAMPLES = {"ci": DEFAULT_MAX_EXAMPLES, "dev": 10}
DEFAULT_STEPS = 30


class Harness:
    """The driver under test, for one test: fresh isolated components, an event loop to run
    them on, its capabilities, and Hypothesis settings."""

    def __init__(
        self, target: Target, *, max_examples: int | None = None, shrink: bool = True
    ) -> None:
        self.target = target
        self.max_examples = max_examples or _env_max_examples() or _profile_max_examples()
        self.shrink = shrink
        self.loop = LoopThread()
        self._opened: list[DriverParts] = []
        self._extra: list[CoordinationStore] = []
        self._namespaces: dict[str, None] = {}  # opened, in order, to discard at close
        self._backends: Backends | None = None

    # -- identity and capabilities ------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.target.name

    @property
    def capabilities(self) -> dict[str, Any]:
        return dict(self.target.capabilities)

    def capability(self, name: str) -> Any:
        """The declared value of ``name`` (or its default)."""
        return value_of(self.target.capabilities, name)

    def has(self, name: str) -> bool:
        return self.missing(name) is None

    def missing(self, name: str) -> str | None:
        """Why ``name`` is unavailable, or None."""
        return missing_reason(
            name,
            driver=self.target.name,
            capabilities=self.target.capabilities,
            provides=self.target.provides,
            harness={
                "clock": self.target.clocked_coordination is not None,
                "url": self.target.url is not None,
            },
        )

    def require(self, *names: str) -> None:
        """Skip the current test, with the reason, unless every name in ``names`` is available.
        A missing component is reason enough: then the other reasons are left out."""
        missing = {n: r for n in dict.fromkeys(names) if (r := self.missing(n)) is not None}
        components = [r for n, r in missing.items() if n in COMPONENTS]
        if missing:
            pytest.skip("; ".join(components or missing.values()))

    @property
    def delay_tolerance(self) -> float:
        """Seconds a delayed or redelivered job may arrive late."""
        value = self.capability("delay_tolerance_s")
        return float(value) if present(value) else 1.0

    # -- running ------------------------------------------------------------------------------

    def run(self, awaitable: Awaitable[T], timeout: float | None = DEFAULT_TIMEOUT) -> T:
        """Run ``awaitable`` on the harness loop (where every opened component lives)."""
        return self.loop.run(awaitable, timeout)

    @staticmethod
    def new_id(prefix: str = "fc-conformance") -> str:
        """A fresh unique token, used as namespace, key prefix and run id."""
        return f"{prefix}-{uuid.uuid4().hex[:12]}"

    # -- components ---------------------------------------------------------------------------

    def open(
        self, namespace: str | None = None, components: Iterable[str] = COMPONENTS
    ) -> DriverParts:
        """Fresh components for ``namespace`` (a new one by default), closed after the test or
        by :meth:`release`. Opening one namespace twice gives two clients of the same state
        when the driver is shared (URL drivers); a factory decides for itself. ``components``
        limits what a URL target builds. The namespace's data is discarded at close when the
        driver can (see :meth:`close`)."""
        namespace = namespace or self.new_id()
        self._namespaces[namespace] = None
        parts = self.run(self.target.open(namespace, components))
        self._opened.append(parts)
        return parts

    def release(self, parts: DriverParts) -> None:
        """Close ``parts`` now rather than at the end of the test."""
        if parts in self._opened:
            self._opened.remove(parts)
            self.run(parts.close(), timeout=10)

    def queue(self) -> Queue:
        self.require("queue")
        queue = self.open(components=["queue"]).queue
        assert queue is not None
        return queue

    def context(self) -> ContextStore:
        self.require("context")
        context = self.open(components=["context"]).context
        assert context is not None
        return context

    def coordination(self) -> CoordinationStore:
        self.require("coordination")
        coordination = self.open(components=["coordination"]).coordination
        assert coordination is not None
        return coordination

    def clocked_coordination(self, clock: Clock) -> CoordinationStore:
        """A coordination store whose TTLs follow ``clock`` (requires ``clock``)."""
        self.require("coordination", "clock")
        store = self.run(self.target.open_clocked(clock))
        self._extra.append(store)
        return store

    @property
    def backends(self) -> Backends:
        """Fresh :class:`Backends` (all three components) for this test, opened once."""
        if self._backends is None:
            self.require("queue", "context", "coordination")
            self._backends = self.open().backends()
        return self._backends

    # -- hypothesis ---------------------------------------------------------------------------

    def machine_settings(self, **overrides: Any) -> settings:
        """Settings for a stateful machine: ``max_examples`` (50 unless changed), 30 steps, no
        deadline, shrinking unless disabled. The example database is Hypothesis's default."""
        values: dict[str, Any] = {
            "max_examples": self.max_examples,
            "stateful_step_count": DEFAULT_STEPS,
            "deadline": None,
            "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
        }
        if not self.shrink:
            values["phases"] = [p for p in Phase if p is not Phase.shrink]
        values.update(overrides)
        return settings(**values)

    # -- teardown -----------------------------------------------------------------------------

    def close(self) -> None:
        """Close every opened component, discard every opened namespace (when the target can:
        a suite run on a shared server would otherwise leave every test's keys or rows behind
        until their TTLs end), then stop the loop. A failed discard is raised, after the
        others were tried: it is the driver's bug, and its data would stay."""
        failed: list[Exception] = []
        try:
            for parts in reversed(self._opened):
                with contextlib.suppress(Exception):
                    self.run(parts.close(), timeout=10)
            for store in self._extra:
                with contextlib.suppress(Exception):
                    self.run(store.close(), timeout=10)
            for namespace in self._namespaces:
                try:
                    self.run(self.target.discard_namespace(namespace), timeout=30)
                except Exception as exc:
                    failed.append(exc)
        finally:
            self.loop.stop()
        if failed:
            raise failed[0]


class BoundMachine(RuleBasedStateMachine):
    """A state machine reaching the driver through ``harness`` (bound by :func:`run_machine`)."""

    harness: ClassVar[Harness]


def run_machine(machine: type[BoundMachine], harness: Harness, **overrides: Any) -> None:
    """Run ``machine`` as a Hypothesis test against ``harness``'s driver. The machine is bound
    through a subclass with the same name and source, so the example database keys stay stable."""
    bound = type(
        machine.__name__,
        (machine,),
        {
            "harness": harness,
            "__module__": machine.__module__,
            "__qualname__": machine.__qualname__,
        },
    )
    run_state_machine_as_test(bound, settings=harness.machine_settings(**overrides))


def _env_max_examples() -> int | None:
    raw = os.environ.get(ENV_MAX_EXAMPLES)
    return int(raw) if raw else None


def _profile_max_examples() -> int:
    return MACHINE_EXAMPLES.get(os.environ.get(ENV_PROFILE, ""), DEFAULT_MAX_EXAMPLES)
