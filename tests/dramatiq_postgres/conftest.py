"""The ``postgres`` fixture: the URL of a real PostgreSQL (see :mod:`dramatiq_postgres_servers`)."""

from __future__ import annotations

import pytest
from dramatiq_postgres_servers import postgres_url


@pytest.fixture(scope="session")
def postgres() -> str:
    return postgres_url()
