"""The in-memory driver: asyncio queue, dict context, dict coordination with TTLs."""

from flowcraft_memory.context import MemoryContextStore
from flowcraft_memory.coordination import MemoryCoordinationStore
from flowcraft_memory.faults import Faults
from flowcraft_memory.queue import MemoryQueue

__all__ = ["Faults", "MemoryContextStore", "MemoryCoordinationStore", "MemoryQueue"]
