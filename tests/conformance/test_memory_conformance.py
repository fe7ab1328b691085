"""The whole conformance suite on the in-memory driver, adopted as a third party would."""

from __future__ import annotations

from flowcraft_conformance.suite import DriverConformance
from flowcraft_conformance.target import Clock

from flowcraft_memory import MemoryCoordinationStore


class TestMemoryDriver(DriverConformance):
    """``memory://`` through the installed driver plugin; TTLs also on an injected clock."""

    backend_url = "memory://"

    def make_clocked_coordination(self, clock: Clock) -> MemoryCoordinationStore:
        return MemoryCoordinationStore(clock=clock)
