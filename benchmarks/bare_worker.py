"""Bare Dramatiq on the same Redis and broker settings: a no-op actor, run as
``python -m benchmarks.bare_worker URL THREADS``. It measures the queue's own ceiling."""

from __future__ import annotations

import signal
import sys
import threading
from typing import Any

from dramatiq.actor import Actor
from dramatiq.worker import Worker

from flowcraft_redis.broker import FlowcraftBroker
from flowcraft_redis.connection import sync_client
from flowcraft_redis.url import settings_of

BARE_QUEUE = "bare"


def noop(*args: Any) -> None:
    return None


def broker_and_actor(url: str) -> tuple[FlowcraftBroker, Actor[Any, None]]:
    settings = settings_of(url)
    broker = FlowcraftBroker(settings, sync_client(settings))
    actor: Actor[Any, None] = Actor(
        noop, broker=broker, actor_name="bare_noop", queue_name=BARE_QUEUE, priority=0, options={}
    )
    return broker, actor


def main(url: str, threads: int) -> None:
    broker, _ = broker_and_actor(url)
    broker.emit_after("process_boot")
    worker = Worker(broker, worker_threads=threads, worker_timeout=100)
    worker.start()
    print("ready", flush=True)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    stopped.wait()
    worker.stop()
    broker.close()


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
