"""The pytest adoption point: one umbrella class holding every conformance test.

A driver author writes, in any test module::

    from .suite import DriverConformance

    class TestMyDriver(DriverConformance):
        backend_url = "mydriver://localhost/0"

or, for a driver built in code, overrides :meth:`DriverConformance.make_backends` (and declares
``capabilities``). Every contract mixin is a base of :class:`DriverConformance`, so tests added to
the suite reach every driver without edits on the driver's side.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import pytest

from flowcraft_core.drivers import Backends
from flowcraft_core.protocols import CoordinationStore

from .atomicity import AtomicityContract
from .capabilities import COMPONENTS, REQUIRES_ATTR
from .context import ContextStoreContract
from .coordination import CoordinationContract
from .declaration import DeclarationContract
from .harness import Harness
from .processes import MultiProcessContract
from .queueing import (
    QueueConcurrencyContract,
    QueueDelayContract,
    QueueDeliveryContract,
    QueueRedeliveryContract,
)
from .run_state import RunStateContract
from .signals import SignalContract
from .target import Clock, DriverParts, Target
from .ttl import TTLContract

SCENARIOS_MODULE = "flowcraft_conformance.scenarios"


def _scenarios_mixin() -> type:
    """``WorkflowScenarios`` from :mod:`flowcraft_conformance.scenarios`, or a stand-in whose one
    test skips with the reason while that module or class does not exist yet."""
    try:
        module = importlib.import_module(SCENARIOS_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name != SCENARIOS_MODULE:
            raise
        return _missing_scenarios(f"{SCENARIOS_MODULE} is not installed")
    mixin = getattr(module, "WorkflowScenarios", None)
    if not isinstance(mixin, type):
        return _missing_scenarios(f"{SCENARIOS_MODULE} defines no WorkflowScenarios class")
    return mixin


def _missing_scenarios(reason: str) -> type:
    class WorkflowScenarios:
        contract = "workflow scenarios"

        def test_workflow_scenarios(self, conformance: Harness) -> None:
            pytest.skip(f"workflow scenarios not available: {reason}")

    return WorkflowScenarios


if TYPE_CHECKING:

    class WorkflowScenarios:
        """End-to-end workflow scenarios (provided by :mod:`flowcraft_conformance.scenarios`)."""

else:
    WorkflowScenarios = _scenarios_mixin()


class DriverConformance(
    DeclarationContract,
    ContextStoreContract,
    CoordinationContract,
    AtomicityContract,
    TTLContract,
    SignalContract,
    QueueDeliveryContract,
    QueueRedeliveryContract,
    QueueDelayContract,
    QueueConcurrencyContract,
    MultiProcessContract,
    RunStateContract,
    WorkflowScenarios,
):
    """Every conformance test. Subclass it as ``Test...`` and set :attr:`backend_url`, or
    override :meth:`make_backends`.

    Class attributes a driver may set:

    * ``backend_url``: the URL of the driver under test;
    * ``capabilities``: capabilities to add to (or override in) what the driver declares;
      for a factory driver, its whole declaration;
    * ``provides``: the components a factory driver builds (default: all three);
    * ``max_examples``: Hypothesis examples per state machine (default 50, or the
      ``FLOWCRAFT_CONFORMANCE_MAX_EXAMPLES`` environment variable; 10 under
      ``HYPOTHESIS_PROFILE=dev``);
    * ``expected_failures``: ``{test name: reason}`` for known deviations; they run as strict
      xfails, so a fixed deviation is reported.
    """

    backend_url: ClassVar[str | None] = None
    capabilities: ClassVar[Mapping[str, Any] | None] = None
    provides: ClassVar[tuple[str, ...]] = COMPONENTS
    max_examples: ClassVar[int | None] = None
    expected_failures: ClassVar[Mapping[str, str]] = {}

    def make_backends(self, namespace: str) -> Backends | DriverParts | Awaitable[Any]:
        """Override to build the driver in code: return fresh components for ``namespace``
        (isolated from every other namespace), as :class:`Backends` or :class:`DriverParts`,
        or an awaitable of either. Called on the suite's event loop. By default, the driver of
        :attr:`backend_url` is opened through the installed driver plugins."""
        raise NotImplementedError

    def make_clocked_coordination(
        self, clock: Clock
    ) -> CoordinationStore | Awaitable[CoordinationStore] | None:
        """Override to return a coordination store whose TTLs follow ``clock()`` (seconds): the
        TTL state machine then checks expiry exactly. Without it that machine is skipped and
        TTLs are checked in real time only."""
        return None

    def discard_namespace(self, namespace: str) -> Awaitable[Any] | None:
        """Override, for a driver built in code, to delete what ``namespace``'s components
        stored (called when a test ends, after they are closed; may return an awaitable). A
        URL driver is asked through its ``flowcraft_discard`` hook instead. Without either,
        namespaces are left as they are."""
        return None

    def make_harness(self) -> Harness:
        """The harness each test gets; override to change how it is built."""
        return Harness(self.conformance_target(), max_examples=self.max_examples)

    def conformance_target(self) -> Target:
        """The driver under test, from the attributes and overrides above."""
        cls = type(self)
        clocked: Callable[[Clock], Any] | None = None
        if cls.make_clocked_coordination is not DriverConformance.make_clocked_coordination:
            clocked = self.make_clocked_coordination
        if cls.make_backends is not DriverConformance.make_backends:
            return Target.from_factory(
                self.make_backends,
                name=cls.__name__,
                capabilities=self.capabilities,
                provides=self.provides,
                clocked_coordination=clocked,
                discard=self.discard_namespace
                if cls.discard_namespace is not DriverConformance.discard_namespace
                else None,
            )
        if not self.backend_url:
            raise pytest.UsageError(
                f"{cls.__name__}: set backend_url = 'scheme://...' or override make_backends()"
            )
        return Target.from_url(
            self.backend_url, capabilities=self.capabilities, clocked_coordination=clocked
        )

    @pytest.fixture
    def conformance(self, request: pytest.FixtureRequest) -> Iterator[Harness]:
        """The driver under test, for one test (see :class:`Harness`). Skips the test when a
        capability it requires is missing."""
        name = request.node.originalname if hasattr(request.node, "originalname") else ""
        reason = self.expected_failures.get(name)
        if reason:
            request.node.add_marker(pytest.mark.xfail(reason=reason, strict=True))
        harness = self.make_harness()
        try:
            harness.require(*requirements(type(self), name))
            yield harness
        finally:
            harness.close()


def defining_class(cls: type, name: str) -> type | None:
    """The class in ``cls``'s MRO that defines the test ``name``."""
    return next((c for c in cls.__mro__ if name in vars(c)), None)


def requirements(cls: type, name: str) -> tuple[str, ...]:
    """What the test ``name`` of ``cls`` requires: its own marks and its mixin's."""
    owner = defining_class(cls, name)
    if owner is None:
        return ()
    function = vars(owner)[name]
    return tuple(vars(owner).get(REQUIRES_ATTR, ())) + tuple(getattr(function, REQUIRES_ATTR, ()))


def contract_of(cls: type, name: str) -> str:
    """The contract a test belongs to: its mixin's ``contract`` attribute (or class name)."""
    owner = defining_class(cls, name)
    if owner is None:
        return cls.__name__
    contract = vars(owner).get("contract")
    return contract if isinstance(contract, str) else owner.__name__


def contracts(cls: type = DriverConformance) -> list[str]:
    """The names of the contracts of ``cls``, in the suite's order."""
    names: list[str] = []
    for owner in cls.__mro__:
        for name in vars(owner):
            if name.startswith("test") and contract_of(cls, name) not in names:
                names.append(contract_of(cls, name))
    return names
