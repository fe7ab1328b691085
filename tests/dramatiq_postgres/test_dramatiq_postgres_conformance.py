"""dramatiq-postgres's broker, through the shared Dramatiq glue, against the suite's queue
contracts (delivery, redelivery after an error and a cancellation, delays, concurrency)."""

from __future__ import annotations

import uuid

from dramatiq_postgres_servers import LOCAL, postgres_url
from flowcraft_conformance.suite import DriverConformance
from flowcraft_conformance.target import DriverParts

from flowcraft_dramatiq_postgres import PostgresDramatiqQueue, PostgresQueueSettings

DEFAULTS = PostgresQueueSettings(url=LOCAL)
RUN = uuid.uuid4().hex[:6]


class TestDramatiqPostgresQueue(DriverConformance):
    provides = ("queue",)
    capabilities = {
        "delays": True,
        "redelivery_after_crash_s": round(DEFAULTS.redelivery_bound, 3),
        "redelivery_after_error_s": round(DEFAULTS.redelivery_after_error, 3),
        "delay_tolerance_s": 1.0,
    }

    def make_backends(self, namespace: str) -> DriverParts:
        settings = PostgresQueueSettings(url=postgres_url(), queue=f"c-{RUN}-{namespace[-12:]}")
        return DriverParts(queue=PostgresDramatiqQueue(settings))
