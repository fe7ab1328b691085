"""Dramatiq queues on PostgreSQL: dramatiq-postgres's broker through the shared Dramatiq glue.

An option for ``postgresql://`` deployments beside the SQL driver's own jobs table (see
docs/queues.md for how it was evaluated). Needs the ``dramatiq-postgres`` extra (psycopg 3).
"""

from flowcraft_dramatiq_postgres.queue import (
    PostgresDramatiqQueue,
    PostgresQueueSettings,
    libpq_url,
    queue_name,
)

__all__ = ["PostgresDramatiqQueue", "PostgresQueueSettings", "libpq_url", "queue_name"]
