"""The whole conformance suite on SQLite, PostgreSQL and MariaDB, adopted as a third party
would: through the installed driver plugins, TTLs also on an injected clock."""

from __future__ import annotations

import os
import uuid
from typing import ClassVar

import pytest
import services
from flowcraft_conformance.harness import ENV_PROFILE, MACHINE_EXAMPLES
from flowcraft_conformance.suite import DriverConformance
from flowcraft_conformance.target import Clock

from flowcraft_sql import SQLCoordinationStore
from flowcraft_sql.url import parse_url


@pytest.mark.slow
class SQLConformance(DriverConformance):
    """Fewer Hypothesis examples than the suite's default (50, what `flowcraft conformance`
    runs): every step of the state machines is a database transaction, and ``make test`` runs
    three databases."""

    family: ClassVar[str]
    # 3/10 of the profile's examples per machine (15 under ``ci``'s 50).
    max_examples = max(3, MACHINE_EXAMPLES.get(os.environ.get(ENV_PROFILE, ""), 50) * 3 // 10)

    @pytest.fixture(autouse=True)
    def _database(self) -> None:
        services.require(self.family)

    def make_clocked_coordination(self, clock: Clock) -> SQLCoordinationStore:
        assert self.backend_url is not None
        url = services.with_query(self.backend_url, ns=f"clock-{uuid.uuid4().hex[:12]}")
        return SQLCoordinationStore(parse_url(url), clock=clock)


class TestSQLite(SQLConformance):
    family = "sqlite"
    backend_url = services.sqlite_url()


class TestPostgreSQL(SQLConformance):
    family = "postgresql"
    backend_url = services.server_url("postgresql")


class TestMariaDB(SQLConformance):
    family = "mysql"
    backend_url = services.server_url("mysql")
