"""RabbitMQ queue settings, parsed from an ``amqp://`` or ``amqps://`` URL.

``amqp://[user[:password]@]host[:port][/vhost][?queue=..&poll=..&expires=..&<pika options>]``;
``amqps://`` is the same over TLS. ``queue`` names the deployment's Dramatiq queue (default
``flowcraft``): deployments on one virtual host are kept apart by it. ``poll`` (seconds, default
0.1) is the longest an idle consumer waits before looking at its delayed jobs, so it bounds how
late a delayed job can be. ``max_hold`` (seconds, default 900) is the longest a consumer holds a
delayed job: a longer delay travels in legs, so RabbitMQ's ``consumer_timeout`` (30 minutes by
default) never takes one back. ``expires`` (seconds) lets RabbitMQ delete the deployment's queues,
and every job still in them, once nobody has consumed or declared them for that long: for
throwaway deployments and tests only. Any other query parameter is passed to pika's
``URLParameters`` (``heartbeat``, ``connection_attempts``, ``socket_timeout``, ...), which checks
it; anything wrong is a :class:`DriverError` naming the URL, password masked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from flowcraft_core.drivers import mask
from flowcraft_core.errors import DriverError

SCHEMES = ("amqp", "amqps")
#: The longest backoff (ms) before a job whose handler raised is delivered again.
MAX_BACKOFF_MS = 5000


@dataclass(frozen=True, slots=True)
class AmqpSettings:
    """Everything the RabbitMQ queue needs to know about one deployment."""

    url: str = "amqp://guest:guest@localhost:5672/%2F"
    """The connection URL for pika: scheme, credentials, host, port, vhost and pika options."""
    queue: str = "flowcraft"
    """The Dramatiq queue of this deployment (RabbitMQ also gets ``queue.DQ`` and ``queue.XQ``)."""
    poll: float = 0.1
    """Longest wait of an idle consumer (Dramatiq's ``worker_timeout``), in seconds."""
    expires: float | None = None
    """Seconds after which RabbitMQ deletes the queues if unused (``x-expires``); None: never."""
    max_hold: float = 900.0
    """Longest a consumer holds a delayed job unacknowledged (seconds); keep it well under the
    server's ``consumer_timeout``."""

    @property
    def masked(self) -> str:
        """The URL with its password hidden, for messages and logs."""
        return mask(self.url)

    @property
    def redelivery_after_error(self) -> float:
        """Seconds within which a job whose handler raised is delivered again: the longest
        backoff, plus two polls for the delay queue to release it."""
        return MAX_BACKOFF_MS / 1000 + 2 * self.poll

    @property
    def redelivery_bound(self) -> float:
        """Seconds within which a job is delivered again after its handler was cancelled or
        its worker process died. RabbitMQ requeues a dead connection's unacknowledged messages
        as soon as the connection closes (immediately when the process dies); a cancelled
        handler is redelivered like one that raised, so that bound is the larger."""
        return self.redelivery_after_error


def _seconds(name: str, text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, got {text!r}") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} s and {high:g} s, got {text!r}")
    return value


def parse_url(url: str) -> AmqpSettings:
    """Settings from an ``amqp://`` or ``amqps://`` URL; :class:`DriverError` naming the URL
    (password masked) if anything in it is wrong."""
    shown = mask(url)

    def bad(problem: str) -> DriverError:
        return DriverError(f"invalid RabbitMQ URL {shown!r}: {problem}")

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise bad(str(exc)) from None
    if parts.scheme.lower() not in SCHEMES:
        raise bad("the scheme must be amqp:// or amqps://")
    if parts.fragment:
        raise bad("a URL fragment (#...) is not allowed")
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise bad(f"malformed query string: {exc}") from None
    seen: set[str] = set()
    ours: dict[str, str] = {}
    theirs: list[tuple[str, str]] = []
    for name, value in pairs:
        if name in seen:
            raise bad(f"{name!r} is given more than once")
        seen.add(name)
        if name in ("queue", "poll", "expires", "max_hold"):
            ours[name] = value
        else:
            theirs.append((name, value))

    defaults = AmqpSettings()
    poll, expires, queue = defaults.poll, defaults.expires, ours.get("queue", defaults.queue)
    max_hold = defaults.max_hold
    try:
        if "poll" in ours:
            poll = _seconds("poll", ours["poll"], 0.005, 60.0)
        if "max_hold" in ours:
            max_hold = _seconds("max_hold", ours["max_hold"], 1.0, 86400.0)
        if "expires" in ours:
            expires = _seconds("expires", ours["expires"], 1.0, 365 * 86400.0)
    except ValueError as exc:
        raise bad(str(exc)) from None
    if not queue or len(queue) > 200 or not queue.isprintable() or " " in queue:
        raise bad(f"queue must be 1 to 200 printable characters without spaces, got {queue!r}")
    if queue.startswith("amq."):
        raise bad(f"queue names starting with 'amq.' are reserved by RabbitMQ, got {queue!r}")

    pika_url = parts._replace(query=urlencode(theirs)).geturl()
    pika = require_pika()
    try:
        pika.URLParameters(pika_url)
    except Exception as exc:  # pika raises ValueError, TypeError, KeyError for bad options
        raise bad(str(exc)) from None
    return AmqpSettings(url=pika_url, queue=queue, poll=poll, expires=expires, max_hold=max_hold)


def require_pika() -> Any:
    """The ``pika`` module, or a :class:`DriverError` saying how to install it."""
    try:
        import pika
    except ImportError:
        # Worded as core words a driver whose import fails (flowcraft_core.plugins).
        raise DriverError(
            "the amqp driver needs the 'amqp' extra: pip install 'flowcraft[amqp]'"
        ) from None
    return pika


def settings_of(url: str | AmqpSettings) -> AmqpSettings:
    return url if isinstance(url, AmqpSettings) else parse_url(url)
