"""The middleware that brings a job back when its handler raised."""

from __future__ import annotations

import logging
import time
from typing import Any

from dramatiq.broker import Broker
from dramatiq.common import compute_backoff
from dramatiq.middleware import Middleware

log = logging.getLogger(__name__)


class Redeliver(Middleware):
    """A message whose actor raised is enqueued again, after an exponential backoff between
    ``min_backoff`` and ``max_backoff`` milliseconds (with jitter), however many times it fails.

    This is Dramatiq's ``Retries`` without a retry limit and without its one gap: ``Retries``
    re-enqueues from ``after_process_message``, whose exceptions Dramatiq logs and swallows
    before acknowledging the original, so a re-enqueue that fails (Redis briefly unreachable)
    would drop the job. Here the re-enqueue is repeated until it succeeds; only then is the
    original acknowledged. A process that dies meanwhile leaves the original unacknowledged,
    to be recovered from its heartbeat like any other.
    """

    @property
    def actor_options(self) -> set[str]:
        # Dramatiq's own option (exceptions logged without a traceback), declared by its
        # ``Retries`` middleware, which is not used here.
        return {"throws"}

    def __init__(self, *, min_backoff: int = 100, max_backoff: int = 5000) -> None:
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff

    def after_process_message(
        self,
        broker: Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if exception is None:
            return
        retries = int(message.options.get("retries", 0))
        message.options["retries"] = retries + 1
        _, delay = compute_backoff(retries, factor=self.min_backoff, max_backoff=self.max_backoff)
        failures = 0
        while True:
            try:
                broker.enqueue(message, delay=delay)
                return
            except Exception:
                failures += 1
                _, pause = compute_backoff(failures, factor=100, max_backoff=5000)
                log.warning(
                    "could not enqueue job %s again (attempt %d); retrying in %d ms",
                    message.message_id,
                    failures,
                    pause,
                    exc_info=True,
                )
                time.sleep(pause / 1000)
