"""Finding the PostgreSQL for the dramatiq-postgres queue's tests: ``FLOWCRAFT_TEST_POSTGRES_URL``,
else the server on 127.0.0.1:5432 (trust auth, database ``test``)."""

from __future__ import annotations

import os

import psycopg
import pytest

LOCAL = "postgresql://postgres@127.0.0.1:5432/test"


def postgres_url() -> str:
    url = os.environ.get("FLOWCRAFT_TEST_POSTGRES_URL", LOCAL)
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.Error as exc:
        pytest.fail(
            f"the dramatiq-postgres queue tests need PostgreSQL at {url} ({exc}); set "
            "FLOWCRAFT_TEST_POSTGRES_URL=postgresql://user@host:port/db, or start one "
            "(e.g. apt-get install postgresql && service postgresql start)"
        )
    return url
