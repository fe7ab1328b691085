"""The Redis driver: a Dramatiq queue on Redis, one hash per run for context, and Lua scripts
for coordination. Selected by ``redis://`` and ``rediss://`` URLs (see :mod:`.url`)."""

from flowcraft_redis.connection import Connections, check_connection
from flowcraft_redis.consumer import RedisConsumer
from flowcraft_redis.context import RedisContextStore
from flowcraft_redis.coordination import RedisCoordinationStore
from flowcraft_redis.queue import RedisQueue
from flowcraft_redis.url import RedisSettings, parse_url

__all__ = [
    "Connections",
    "RedisConsumer",
    "RedisContextStore",
    "RedisCoordinationStore",
    "RedisQueue",
    "RedisSettings",
    "check_connection",
    "parse_url",
]
