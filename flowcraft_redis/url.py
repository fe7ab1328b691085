"""Redis driver settings, parsed from a ``redis://`` or ``rediss://`` URL.

``redis://[[user]:password@]host[:port][/db][?prefix=..&heartbeat=..&maintenance=..&poll=..]``;
``rediss://`` is the same over TLS. Durations are seconds, or a number with a
unit (``250ms``, ``5s``, ``2m``, ``1h``, ``7d``). A few redis-py connection options may be given
in the query too (see :data:`CONNECTION_OPTIONS`); anything else is an error that names the URL.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from flowcraft_core.drivers import mask
from flowcraft_core.errors import DriverError

SCHEMES = ("redis", "rediss")
DAY = 86400.0

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": DAY}
_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|m|h|d)?\s*")


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _count(low: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if value < low:
            raise ValueError(f"expected a whole number >= {low}, got {text!r}")
        return value

    return parse


def _positive(text: str) -> float:
    value = float(text)
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"expected a positive number of seconds, got {text!r}")
    return value


#: redis-py connection options accepted in the query string, with their parsers. Retry options
#: are deliberately absent: see :mod:`flowcraft_redis.connection`.
CONNECTION_OPTIONS: dict[str, Callable[[str], Any]] = {
    "socket_timeout": _positive,
    "socket_connect_timeout": _positive,
    "health_check_interval": _count(0),
    "max_connections": _count(1),
    "client_name": str,
    "ssl_cert_reqs": str,
    "ssl_ca_certs": str,
    "ssl_certfile": str,
    "ssl_keyfile": str,
    "ssl_check_hostname": _bool,
}


@dataclass(frozen=True, slots=True)
class RedisSettings:
    """Everything the Redis driver needs to know about one deployment.

    Every process of a deployment should use the same tunables: a dead worker is judged by the
    heartbeat timeout of whichever process notices it.
    """

    url: str = "redis://localhost:6379/0"
    """The connection URL for redis-py: scheme, credentials, host, port and db only."""
    prefix: str = "flowcraft"
    """Every key the driver writes starts with ``{prefix}:``."""
    heartbeat: float = 5.0
    """Seconds without a heartbeat after which a worker counts as dead and its unacknowledged
    jobs are handed to others (Dramatiq's ``heartbeat_timeout``)."""
    maintenance: float = 1.0
    """Fraction of broker calls that also look for dead workers (Dramatiq's
    ``maintenance_chance``, as a fraction). 1.0 makes recovery deterministic; the check is two
    sorted-set range queries, cheap enough to run on every call."""
    poll: float = 0.1
    """Longest sleep of an idle consumer between fetches (Dramatiq's ``worker_timeout``). It
    bounds the pickup latency of new jobs, the lateness of delayed ones and crash detection."""
    options: tuple[tuple[str, Any], ...] = ()
    """Extra redis-py connection options from the query string."""

    @property
    def tls(self) -> bool:
        return self.url.startswith("rediss://")

    @property
    def masked(self) -> str:
        """The URL with its password hidden, for messages and logs."""
        return mask(self.url)

    @property
    def heartbeat_interval(self) -> float:
        """How often a consumer proves it is alive: five beats per heartbeat timeout, so a busy
        or briefly stalled process is not declared dead."""
        return self.heartbeat / 5

    @property
    def redelivery_bound(self) -> float:
        """Seconds within which a job held by a worker that died is delivered to another
        consumer (when one is polling): the heartbeat timeout, plus the time until a surviving
        consumer's next maintenance (``poll / maintenance`` on average, doubled for margin),
        plus half a second for the fetch and the handler to start."""
        return self.heartbeat + 2 * self.poll / self.maintenance + 0.5

    def connection_kwargs(self) -> dict[str, Any]:
        return dict(self.options)


def parse_duration(text: str) -> float:
    """Seconds from ``"1.5"``, ``"250ms"``, ``"5s"``, ``"2m"``, ``"1h"`` or ``"7d"``."""
    match = _DURATION.fullmatch(text)
    if match is None:
        raise ValueError(f"expected a duration such as 5, 250ms, 5s, 2m, 1h or 7d, got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


def parse_url(url: str) -> RedisSettings:
    """Settings from a ``redis://`` or ``rediss://`` URL; :class:`DriverError` (naming the URL,
    password masked) if anything in it is wrong."""
    shown = mask(url)

    def bad(problem: str) -> DriverError:
        return DriverError(f"invalid Redis URL {shown!r}: {problem}")

    try:
        parts = urlsplit(url)
        port = parts.port or 6379
        host = parts.hostname or "localhost"
    except ValueError as exc:
        raise bad(str(exc)) from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise bad("the scheme must be redis:// or rediss://")
    if parts.fragment:
        raise bad("a URL fragment (#...) is not allowed")

    path = unquote(parts.path).strip("/")
    try:
        db = int(path) if path else 0
    except ValueError:
        raise bad(f"the path must be a database number, got {path!r}") from None
    if db < 0:
        raise bad(f"the database number must not be negative, got {db}")

    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError as exc:
        raise bad(f"malformed query string: {exc}") from None
    values: dict[str, str] = {}
    for name, given in query.items():
        if len(given) > 1:
            raise bad(f"{name!r} is given {len(given)} times")
        values[name] = given[0]

    fields: dict[str, Any] = {}
    flowcraft_params = {
        "heartbeat": (1.0, 3600.0),
        "poll": (0.005, 60.0),
    }
    if "retention" in values:
        # Retention is the engine's (EngineSettings.retention), the same for every backend;
        # accepting it here and ignoring it would keep runs for a time the URL does not say.
        raise bad(
            "retention is not a URL parameter: set FLOWCRAFT_RETENTION (seconds) for workers "
            "and clients, or EngineSettings(retention=...)"
        )
    for name, (low, high) in flowcraft_params.items():
        if name in values:
            text = values.pop(name)
            try:
                seconds = parse_duration(text)
            except ValueError as exc:
                raise bad(f"{name}: {exc}") from None
            if not low <= seconds <= high:
                raise bad(f"{name} must be between {low:g} s and {high:g} s, got {text!r}")
            fields[name] = seconds
    if "maintenance" in values:
        text = values.pop("maintenance")
        try:
            chance = float(text)
        except ValueError:
            raise bad(f"maintenance must be a fraction in (0, 1], got {text!r}") from None
        if not 0 < chance <= 1:
            raise bad(f"maintenance must be a fraction in (0, 1], got {text!r}")
        fields["maintenance"] = chance
    if "prefix" in values:
        prefix = values.pop("prefix")
        if not prefix or any(c.isspace() for c in prefix):
            raise bad(f"prefix must be non-empty and without spaces, got {prefix!r}")
        fields["prefix"] = prefix

    options: list[tuple[str, Any]] = []
    for name, text in sorted(values.items()):
        parser = CONNECTION_OPTIONS.get(name)
        if parser is None:
            known = ", ".join(["heartbeat", "maintenance", "poll", "prefix"])
            extra = ", ".join(sorted(CONNECTION_OPTIONS))
            raise bad(f"unknown parameter {name!r} (known: {known}; redis-py: {extra})")
        try:
            options.append((name, parser(text)))
        except ValueError as exc:
            raise bad(f"{name}: {exc}") from None

    userinfo = parts.netloc.rpartition("@")[0]
    auth = f"{userinfo}@" if userinfo else ""
    host_text = f"[{host}]" if ":" in host else quote(host, safe="")
    return RedisSettings(
        url=f"{scheme}://{auth}{host_text}:{port}/{db}",
        options=tuple(options),
        **fields,
    )


def settings_of(url: str | RedisSettings) -> RedisSettings:
    return url if isinstance(url, RedisSettings) else parse_url(url)
