"""The shared Dramatiq consumer, plus what the Redis broker needs to keep its guarantees: a
heartbeat that proves a busy worker alive, and a stop that hands prefetched jobs back at once."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from dramatiq.common import dq_name

from flowcraft_dramatiq import DramatiqConsumer
from flowcraft_redis.broker import QUEUE_NAME, FlowcraftBroker, namespace

if TYPE_CHECKING:
    from flowcraft_redis.queue import RedisQueue

log = logging.getLogger(__name__)


class _Heartbeat(threading.Thread):
    """Proves the worker alive every ``interval`` seconds, busy or not, and gives each beat a
    chance to run maintenance (requeueing dead workers' jobs).

    Dramatiq beats only when its consumers call Redis; a worker whose threads and prefetch are
    all taken by long jobs, and whose delay queue is full, stops calling and would be declared
    dead while healthy. Any dispatch call beats, so a queue-size query on both queues does.
    """

    def __init__(self, broker: FlowcraftBroker, interval: float) -> None:
        super().__init__(name="flowcraft-heartbeat", daemon=True)
        self.broker = broker
        self.interval = interval
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval):
            for queue_name in (QUEUE_NAME, dq_name(QUEUE_NAME)):
                try:
                    self.broker.do_qsize(queue_name)
                except Exception:
                    log.warning("heartbeat to Redis failed", exc_info=True)

    def stop(self) -> None:
        self._stopped.set()
        self.join()


class RedisConsumer(DramatiqConsumer):
    """A :class:`~flowcraft_dramatiq.DramatiqConsumer` on Redis: its broker's heartbeat beats
    from a thread of its own, and a clean stop hands prefetched jobs back at once."""

    queue: RedisQueue
    broker: FlowcraftBroker

    def _on_start(self) -> None:
        self._heartbeat = _Heartbeat(self.broker, self.queue.settings.heartbeat_interval)
        self._heartbeat.start()

    def _on_stop(self, idle: bool) -> None:
        self._heartbeat.stop()
        if idle:
            self._hand_back()

    def _hand_back(self) -> None:
        """Requeue what this worker fetched but Dramatiq's stop did not hand back (messages
        still in its consumer's fetch buffer), now rather than after a heartbeat timeout.

        Every handler has returned, so whatever this worker still holds unacknowledged was
        never started. Backdating its heartbeat to 0 makes it dead; the next maintenance,
        forced here through the queue's own broker (a different worker id, so the call does
        not revive it), moves its messages back and forgets it.
        """
        heartbeats = f"{namespace(self.queue.settings)}:__heartbeats__"
        try:
            self.broker.client.zadd(heartbeats, {self.broker.broker_id: 0}, xx=True)
            for queue_name in (QUEUE_NAME, dq_name(QUEUE_NAME)):
                self.queue.broker.do_qsize(queue_name)
        except Exception:
            # Not lost: the heartbeat stopped, so maintenance will requeue them anyway.
            log.warning("could not hand back prefetched jobs at once", exc_info=True)
