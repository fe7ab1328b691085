"""A real RabbitMQ for the RabbitMQ driver's tests, and a queue name of its own per test.

Where RabbitMQ comes from: ``FLOWCRAFT_TEST_AMQP_URL``, else a server answering on
127.0.0.1:5672 as guest/guest. Every test gets its own ``?queue=test-...`` (with ``expires``, so
RabbitMQ drops what a killed test run leaves behind), and its queues are deleted afterwards.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import pytest
from amqp_servers import EXPIRES, delete_queues, server_url, with_query

from flowcraft_amqp.queue import AmqpQueue


@pytest.fixture(scope="session")
def amqp_server() -> str:
    """The base URL of a RabbitMQ server for this test session."""
    return server_url()


@pytest.fixture
def make_url(amqp_server: str) -> Iterator[Callable[..., str]]:
    """Builds URLs with a queue of their own (and any other query parameters); those queues
    are deleted after the test."""
    names: list[str] = []

    def make(**params: object) -> str:
        names.append(f"test-{uuid.uuid4().hex[:12]}")
        return with_query(amqp_server, queue=names[-1], **{"expires": EXPIRES, **params})

    yield make
    delete_queues(amqp_server, names)


@pytest.fixture
def amqp_url(make_url: Callable[..., str]) -> str:
    return make_url()


@pytest.fixture
async def queue(amqp_url: str) -> AsyncIterator[AmqpQueue]:
    q = AmqpQueue(amqp_url)
    yield q
    await q.close()
