"""Parsing redis:// URLs into settings (no server needed)."""

from __future__ import annotations

import pytest

from flowcraft_core.drivers import mask
from flowcraft_core.errors import DriverError
from flowcraft_redis.url import DAY, RedisSettings, parse_duration, parse_url


def test_defaults() -> None:
    s = parse_url("redis://")
    assert s == RedisSettings(url="redis://localhost:6379/0")
    assert s.prefix == "flowcraft"
    assert not s.tls


def test_full_url() -> None:
    s = parse_url(
        "rediss://:s3cret@cache.example:6380/4?prefix=app&heartbeat=3&maintenance=0.25"
        "&poll=50ms&socket_timeout=2.5&ssl_cert_reqs=none"
    )
    assert s.url == "rediss://:s3cret@cache.example:6380/4"
    assert s.tls
    assert (s.prefix, s.heartbeat, s.maintenance, s.poll) == ("app", 3.0, 0.25, 0.05)
    assert dict(s.options) == {"socket_timeout": 2.5, "ssl_cert_reqs": "none"}
    assert s.masked == "rediss://:***@cache.example:6380/4"


def test_username_and_ipv6() -> None:
    s = parse_url("redis://alice:pw@[::1]:7000/2")
    assert s.url == "redis://alice:pw@[::1]:7000/2"
    assert s.masked == "redis://alice:***@[::1]:7000/2"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5", 5.0), ("1.5", 1.5), ("250ms", 0.25), ("2m", 120.0), ("1h", 3600.0), ("7d", 7 * DAY)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://localhost", "scheme"),
        ("redis://localhost:notaport", "port"),
        ("redis://localhost/abc", "database number"),
        ("redis://localhost?heartbeat=soon", "heartbeat"),
        ("redis://localhost?heartbeat=0.1", "heartbeat must be between"),
        ("redis://localhost?maintenance=2", "maintenance"),
        ("redis://localhost?maintenance=0", "maintenance"),
        ("redis://localhost?prefix=", "prefix"),
        ("redis://localhost?prefix=a&prefix=b", "given 2 times"),
        ("redis://localhost?retry_on_timeout=true", "unknown parameter 'retry_on_timeout'"),
        ("redis://localhost?socket_timeout=-1", "socket_timeout"),
    ],
)
def test_bad_urls_name_the_url(url: str, problem: str) -> None:
    with pytest.raises(DriverError) as info:
        parse_url(url)
    message = str(info.value)
    assert problem in message
    assert "invalid Redis URL" in message


def test_errors_mask_the_password() -> None:
    with pytest.raises(DriverError) as info:
        parse_url("redis://:hunter2@localhost/x")
    assert "hunter2" not in str(info.value)
    assert ":***@localhost" in str(info.value)


def test_mask_leaves_passwordless_urls_alone() -> None:
    assert mask("redis://localhost:6379/0") == "redis://localhost:6379/0"


def test_redelivery_bound_follows_the_tunables() -> None:
    assert parse_url("redis://").redelivery_bound == pytest.approx(5.0 + 0.2 + 0.5)
    assert parse_url("redis://?heartbeat=2&poll=0.05").redelivery_bound == pytest.approx(2.6)


def test_retention_in_the_url_is_refused_naming_the_setting_that_works() -> None:
    # It used to be parsed and then ignored: runs were kept for the engine's retention.
    with pytest.raises(DriverError, match="FLOWCRAFT_RETENTION"):
        parse_url("redis://localhost/0?retention=5s")


@pytest.mark.parametrize(
    "query", ["max_connections=-5", "max_connections=0", "health_check_interval=-1"]
)
def test_connection_counts_must_be_in_range(query: str) -> None:
    with pytest.raises(DriverError, match=query.split("=")[0]):
        parse_url(f"redis://localhost/0?{query}")
