"""The Dramatiq consumer on dramatiq-postgres, with a stop that hands claimed jobs back at once."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from flowcraft_dramatiq import DramatiqConsumer

if TYPE_CHECKING:
    from flowcraft_dramatiq_postgres.queue import PostgresDramatiqQueue

log = logging.getLogger(__name__)


class PostgresConsumer(DramatiqConsumer):
    """A :class:`~flowcraft_dramatiq.DramatiqConsumer` whose clean stop requeues at once every
    row this worker claimed and never started.

    dramatiq-postgres claims rows in batches into its consumer's buffer, which Dramatiq's stop
    does not know of (it requeues only its own work queue, and logs and goes on when that
    fails). Left claimed, such rows would come back only once this worker's heartbeat row is
    ``heartbeat_ttl`` old, at a surviving consumer's maintenance: seconds during which a
    stopped consumer holds jobs nobody runs.
    """

    queue: PostgresDramatiqQueue
    broker: Any  # dramatiq_postgres.PostgresBroker, untyped

    def _on_stop(self, idle: bool) -> None:
        if idle:
            self._hand_back()

    def _hand_back(self) -> None:
        """Every handler has returned, so whatever rows this worker still holds claimed were
        never started: put them back in the queue."""
        from dramatiq_postgres.utils import transaction
        from psycopg import sql

        query = sql.SQL(
            "UPDATE {}.queue SET state = 'queued', worker_id = NULL, consumed_at = NULL, "
            "mtime = NOW() WHERE worker_id = %s AND state = 'consumed'"
        ).format(sql.Identifier(self.queue.settings.schema))
        try:
            with transaction(self.queue.pool) as curs:
                curs.execute(query, (self.broker.worker_id,))
        except Exception:
            # Not lost: the heartbeat stopped, so maintenance will requeue them anyway.
            log.warning("could not hand back claimed jobs at once", exc_info=True)
