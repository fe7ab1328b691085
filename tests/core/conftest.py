from __future__ import annotations

from collections.abc import Iterator

import pytest

from flowcraft_memory import driver as memory_driver


@pytest.fixture(autouse=True)
def fresh_memory_backends() -> Iterator[None]:
    """Every test starts (and ends) with no named in-memory backend left over."""
    memory_driver.reset()
    yield
    memory_driver.reset()
