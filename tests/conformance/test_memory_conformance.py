"""The whole conformance suite on the in-memory driver, adopted as a third party would."""

from __future__ import annotations

from flowcraft_conformance.harness import Harness
from flowcraft_conformance.suite import DriverConformance
from flowcraft_conformance.target import Clock, Target

from flowcraft_core.drivers import open_backends
from flowcraft_memory import MemoryCoordinationStore
from flowcraft_memory import driver as memory_driver


class TestMemoryDriver(DriverConformance):
    """``memory://`` through the installed driver plugin; TTLs also on an injected clock."""

    backend_url = "memory://"

    def make_clocked_coordination(self, clock: Clock) -> MemoryCoordinationStore:
        return MemoryCoordinationStore(clock=clock)


def test_a_conformance_test_forgets_its_backends() -> None:
    """The harness discards the namespaces it opened: a worker process running the suite would
    otherwise keep every test's in-memory state (payloads up to 2 MiB) until it exits."""
    harness = Harness(Target.from_url("memory://"))
    namespace = harness.new_id()
    parts = harness.open(namespace)
    assert parts.context is not None
    harness.run(parts.context.set("run", "k", {"v": 1}))
    assert namespace in memory_driver._contexts
    harness.close()
    assert namespace not in memory_driver._contexts
    assert namespace not in memory_driver._queues
    assert namespace not in memory_driver._coordinations


def test_a_factory_target_without_discard_keeps_working() -> None:
    """Third-party drivers built in code need not offer a discard: closing still works."""
    target = Target.from_factory(lambda namespace: open_backends(f"memory://{namespace}"))
    assert target.discard is None
    harness = Harness(target)
    namespace = harness.new_id()
    harness.open(namespace)
    harness.close()
    assert namespace in memory_driver._contexts  # left as it was
    memory_driver._contexts.pop(namespace)
    memory_driver._queues.pop(namespace, None)
    memory_driver._coordinations.pop(namespace, None)
