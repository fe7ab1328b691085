"""The conformance suite on RabbitMQ: the queue contracts on ``amqp://`` (what
``flowcraft conformance amqp://…`` runs; the rest skips, the driver provides a queue only), and
every workflow scenario with the queue on RabbitMQ and context + coordination in memory."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from amqp_servers import EXPIRES, LOCAL, delete_queues, with_query
from flowcraft_conformance.capabilities import COMPONENTS
from flowcraft_conformance.harness import Harness
from flowcraft_conformance.scenarios import WorkflowScenarios
from flowcraft_conformance.suite import DriverConformance
from flowcraft_conformance.target import DriverParts, Target

from flowcraft_amqp.driver import flowcraft_driver_info
from flowcraft_amqp.queue import AmqpQueue
from flowcraft_memory import MemoryContextStore, MemoryCoordinationStore

SERVER = os.environ.get("FLOWCRAFT_TEST_AMQP_URL", LOCAL)
#: Queues of this test run start with it, so concurrent runs on one server never share one.
RUN = f"conformance-{uuid.uuid4().hex[:8]}"


def _url(server: str, queue: str) -> str:
    return with_query(server, queue=queue, expires=EXPIRES)


class TestAmqpDriver(DriverConformance):
    """``amqp://`` through the installed driver plugin; the suite gives each test a queue of
    its own (``isolation: query:queue``), which RabbitMQ drops once unused (``expires``)."""

    backend_url = _url(SERVER, RUN)

    @pytest.fixture(autouse=True)
    def _server(self, amqp_server: str) -> None:
        """Fail with the how-to message, not a connection error, when RabbitMQ is absent."""


@pytest.mark.slow
class TestWorkflowsOnAmqpQueue(WorkflowScenarios):
    """Every scenario, under every fault, with jobs on RabbitMQ: what a mixed deployment runs."""

    # The composed run state is the stores' business, checked with the memory driver's own
    # suite; with jobs on RabbitMQ the fused runs under every fault are what is new.
    test_scenario_composed = None

    @pytest.fixture
    def conformance(self, amqp_server: str) -> Iterator[Harness]:
        queues: list[str] = []

        def build(namespace: str) -> DriverParts:
            queues.append(f"{RUN}-{namespace}")
            return DriverParts(
                queue=AmqpQueue(_url(amqp_server, queues[-1])),
                context=MemoryContextStore(),
                coordination=MemoryCoordinationStore(),
            )

        target = Target.from_factory(
            build,
            name="amqp queue + memory state",
            capabilities=flowcraft_driver_info().capabilities,
            provides=COMPONENTS,
        )
        harness = Harness(target)
        try:
            yield harness
        finally:
            harness.close()
            delete_queues(amqp_server, queues)
