"""One ``mask`` hides the password of every URL it is given, however many there are."""

from __future__ import annotations

import pytest

from flowcraft_core.cli.common import connect
from flowcraft_core.drivers import mask
from flowcraft_core.errors import DriverError


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://alice:pw@[::1]:7000/2", "rediss://alice:***@[::1]:7000/2"),
        ("postgresql+asyncpg://bob:p%40ss@db/app", "postgresql+asyncpg://bob:***@db/app"),
        ("redis://:p@ss@host/0", "redis://:***@host/0"),  # an unescaped @ in the password
        ("redis://alice@host/0", "redis://alice@host/0"),  # a user, no password
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),  # a port is no password
        ("memory://", "memory://"),
        (
            "redis://:first@h1:6379/0, redis://:second@h2:6379/0",
            "redis://:***@h1:6379/0, redis://:***@h2:6379/0",
        ),
        ("redis://:a@h1/0,redis://:b@h2/0", "redis://:***@h1/0,redis://:***@h2/0"),
        (
            "{'queue': 'redis://:one@q/0', 'context': 'sqlite:///x.db', "
            "'coordination': 'amqp://guest:two@mq:5672/'}",
            "{'queue': 'redis://:***@q/0', 'context': 'sqlite:///x.db', "
            "'coordination': 'amqp://guest:***@mq:5672/'}",
        ),
    ],
)
def test_mask(text: str, masked: str) -> None:
    assert mask(text) == masked


async def test_unreachable_per_component_urls_show_no_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Two different Redis URLs (ports nothing listens on), one per component, as `flowcraft`
    # commands take them from the environment.
    queue, context = "redis://:first@127.0.0.1:9/0", "redis://:second@127.0.0.1:7/0"
    monkeypatch.setenv("FLOWCRAFT_QUEUE", queue)
    monkeypatch.setenv("FLOWCRAFT_CONTEXT", context)
    with pytest.raises(DriverError) as info:
        await connect(context)
    message = str(info.value)
    assert "first" not in message and "second" not in message, message
    assert "redis://:***@127.0.0.1:9/0" in message
    assert "redis://:***@127.0.0.1:7/0" in message
