"""Finding the test RabbitMQ and cleaning up after it (used by conftest and test modules)."""

from __future__ import annotations

import contextlib
import os
from urllib.parse import urlencode

import pika
import pika.exceptions
import pytest
from dramatiq.common import dq_name, xq_name

from flowcraft_amqp.url import parse_url

LOCAL = "amqp://guest:guest@127.0.0.1:5672/"
#: Seconds after which RabbitMQ deletes a test's queues if the test could not.
EXPIRES = 600
HOW_TO = (
    "the RabbitMQ driver tests need a RabbitMQ server: set FLOWCRAFT_TEST_AMQP_URL="
    "amqp://user:password@host:port/vhost, or start one on 127.0.0.1:5672 with the guest "
    "user (e.g. apt-get install rabbitmq-server && service rabbitmq-server start)"
)


def answers(url: str) -> bool:
    try:
        connection = pika.BlockingConnection(pika.URLParameters(parse_url(url).url))
    except pika.exceptions.AMQPError:
        return False
    connection.close()
    return True


def server_url() -> str:
    """The base URL of the test RabbitMQ, or a test failure saying how to get one."""
    given = os.environ.get("FLOWCRAFT_TEST_AMQP_URL")
    if given:
        if not answers(given):
            pytest.fail(f"FLOWCRAFT_TEST_AMQP_URL={given} does not accept a connection")
        return given
    if answers(LOCAL):
        return LOCAL
    pytest.fail(HOW_TO)


def with_query(server: str, **params: object) -> str:
    joiner = "&" if "?" in server else "?"
    return f"{server}{joiner}{urlencode(params)}"


def delete_queues(server: str, names: list[str]) -> None:
    """Delete each deployment queue in ``names`` with its delay and dead-letter queues."""
    connection = pika.BlockingConnection(pika.URLParameters(parse_url(server).url))
    try:
        channel = connection.channel()
        for name in names:
            for queue in (name, dq_name(name), xq_name(name)):
                channel.queue_delete(queue)
    finally:
        with contextlib.suppress(pika.exceptions.AMQPError):
            connection.close()
