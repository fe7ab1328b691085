"""``postgresql://…?queue=dramatiq``: the SQL driver hands its queue to dramatiq-postgres's
broker through the shared Dramatiq glue, and the suite's queue contracts hold on it."""

from __future__ import annotations

import uuid

import pytest
from dramatiq_postgres_servers import postgres_url
from flowcraft_conformance.suite import DriverConformance
from flowcraft_conformance.target import DriverParts

from flowcraft_core.drivers import driver_for
from flowcraft_core.errors import DriverError
from flowcraft_core.plugins import default_manager
from flowcraft_dramatiq_postgres import PostgresDramatiqQueue

RUN = uuid.uuid4().hex[:6]


def _url(ns: str) -> str:
    return f"{postgres_url()}?queue=dramatiq&prefix=dq{RUN}&ns={ns}"


class TestSQLDriverDramatiqQueue(DriverConformance):
    """The queue the installed postgresql:// plugin builds, under its own declared bounds."""

    provides = ("queue",)
    capabilities = driver_for("postgresql://h/db").capabilities

    def make_backends(self, namespace: str) -> DriverParts:
        queue = default_manager().hook.flowcraft_make_queue(url=_url(namespace[-12:]))
        assert isinstance(queue, PostgresDramatiqQueue)
        return DriverParts(queue=queue)


def test_the_queue_name_comes_from_prefix_and_namespace() -> None:
    queue = default_manager().hook.flowcraft_make_queue(url=_url("abc"))
    assert isinstance(queue, PostgresDramatiqQueue)
    assert queue.queue_name == f"dq{RUN}-abc"
    assert queue.settings.url.startswith("postgresql://") and "?" not in queue.settings.url


def test_queue_dramatiq_is_for_postgresql_only() -> None:
    with pytest.raises(DriverError, match="queue=dramatiq needs postgresql://"):
        default_manager().hook.flowcraft_make_queue(url="sqlite:///x.db?queue=dramatiq")
    with pytest.raises(DriverError, match="expected 'table' or 'dramatiq'"):
        default_manager().hook.flowcraft_make_queue(url="postgresql://h/db?queue=kafka")
