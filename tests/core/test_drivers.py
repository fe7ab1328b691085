"""Driver selection by URL: installed drivers, errors that help, per-component URLs."""

from __future__ import annotations

from importlib.metadata import distribution
from typing import Any

import pytest

from flowcraft_core import DriverError, DriverInfo, hookimpl, open_backends
from flowcraft_core import drivers as drivers_module
from flowcraft_core.drivers import driver_for, installed_drivers, resolve_urls, scheme_of
from flowcraft_core.plugins import DRIVER_GROUP, Unavailable, missing_requirement, new_manager
from flowcraft_memory import MemoryContextStore, MemoryCoordinationStore, MemoryQueue

ENV = ("FLOWCRAFT_BACKEND", "FLOWCRAFT_QUEUE", "FLOWCRAFT_CONTEXT", "FLOWCRAFT_COORDINATION")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_installed_drivers_include_memory_and_redis() -> None:
    infos = {info.name: info for info in installed_drivers()}
    assert {"memory", "redis"} <= set(infos)
    assert infos["memory"].schemes == ("memory",)
    assert "redis" in infos["redis"].schemes
    assert set(infos["memory"].provides) == {"queue", "context", "coordination"}
    assert [i.name for i in installed_drivers()] == sorted(infos)  # sorted by name


def test_driver_for_picks_the_owner_of_the_scheme() -> None:
    assert driver_for("memory://").name == "memory"
    assert driver_for("MEMORY://x").name == "memory"
    assert driver_for("redis://localhost:6379/0").name == "redis"


def test_unknown_scheme_lists_installed_drivers_and_suggests_the_closest() -> None:
    with pytest.raises(DriverError) as excinfo:
        open_backends("memroy://")
    message = str(excinfo.value)
    assert "no installed driver handles memroy://" in message
    assert "Did you mean memory://?" in message
    assert "memory (memory://)" in message
    assert "redis (" in message


def test_unknown_scheme_far_from_everything_gets_no_suggestion() -> None:
    with pytest.raises(DriverError) as excinfo:
        driver_for("zzqqxx://host")
    assert "Did you mean" not in str(excinfo.value)
    assert "Installed: " in str(excinfo.value)


def test_url_without_scheme_is_an_error() -> None:
    with pytest.raises(DriverError, match="has no scheme"):
        scheme_of("/just/a/path")


def test_a_driver_that_failed_to_import_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = Unavailable(
        "duckdb",
        DRIVER_GROUP,
        "flowcraft_duckdb.driver",
        "flowcraft_duckdb.driver: ModuleNotFoundError: No module named 'x'",
    )
    monkeypatch.setattr(drivers_module, "unavailable", lambda: {"duckdb": broken})
    with pytest.raises(DriverError) as excinfo:
        open_backends("duckdb:///runs.db")
    message = str(excinfo.value)
    assert message == (
        "the duckdb driver is installed but failed to import: flowcraft_duckdb.driver: "
        "ModuleNotFoundError: No module named 'x'"
    )


def test_a_driver_without_its_extra_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    extra = Unavailable(
        "rediss", DRIVER_GROUP, "flowcraft_redis.driver", "...", "flowcraft[redis]", "redis",
        "redis",
    )  # fmt: skip
    monkeypatch.setattr(drivers_module, "unavailable", lambda: {"rediss": extra})
    pm = new_manager()
    pm.unregister(name="redis")  # as if its import had failed: no plugin serves rediss://
    with pytest.raises(DriverError) as excinfo:
        open_backends("rediss://:pw@host/0", pm=pm)
    assert str(excinfo.value) == (
        "the redis driver needs the 'redis' extra: pip install 'flowcraft[redis]'"
    )
    assert drivers_module.unavailable_drivers() == [
        drivers_module.UnavailableDriver("redis", ("rediss",), str(excinfo.value))
    ]


@pytest.mark.parametrize(
    ("module", "prefer", "expected"),
    [
        ("redis", "redis", ("flowcraft[redis]", "redis")),
        ("redis.asyncio", "", ("flowcraft[redis]", "redis")),
        ("dramatiq", "amqp", ("flowcraft[amqp]", "amqp")),  # both redis and amqp bring it
        ("pika", "amqp", ("flowcraft[amqp]", "amqp")),  # dramatiq[rabbitmq]'s, not ours
        ("pytest", "conformance", ("flowcraft[conformance]", "conformance")),
        ("hypothesis", "", ("flowcraft[conformance]", "conformance")),
        ("sqlalchemy", "sqlite", ("flowcraft[sql]", "sql")),
        ("pluggy", "", ("pluggy", None)),  # a plain dependency
        ("no_such_module", "", (None, None)),
    ],
)
def test_the_extra_comes_from_the_package_metadata(
    module: str, prefer: str, expected: tuple[str | None, str | None]
) -> None:
    assert missing_requirement(distribution("flowcraft"), module, prefer=prefer) == expected


def test_one_url_for_all_three_components() -> None:
    backends = open_backends("memory://one")
    assert isinstance(backends.queue, MemoryQueue)
    assert isinstance(backends.context, MemoryContextStore)
    assert isinstance(backends.coordination, MemoryCoordinationStore)
    assert backends.urls == {
        "queue": "memory://one",
        "context": "memory://one",
        "coordination": "memory://one",
    }
    again = open_backends("memory://one")
    assert again.queue is backends.queue  # named memory backends are shared in a process
    assert open_backends("memory://two").queue is not backends.queue


def test_per_component_urls_by_argument() -> None:
    backends = open_backends("memory://base", queue="memory://q", coordination="memory://co")
    assert backends.urls == {
        "queue": "memory://q",
        "context": "memory://base",
        "coordination": "memory://co",
    }
    assert backends.queue is open_backends("memory://q").queue
    assert backends.queue is not open_backends("memory://base").queue
    assert backends.context is open_backends("memory://base").context
    assert backends.coordination is open_backends("memory://co").coordination


def test_per_component_urls_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWCRAFT_BACKEND", "memory://env-base")
    monkeypatch.setenv("FLOWCRAFT_QUEUE", "memory://env-q")
    monkeypatch.setenv("FLOWCRAFT_CONTEXT", "memory://env-ctx")
    assert resolve_urls() == {
        "queue": "memory://env-q",
        "context": "memory://env-ctx",
        "coordination": "memory://env-base",
    }
    # Explicit arguments beat the environment, for the whole backend and per component.
    assert resolve_urls("memory://arg", context="memory://arg-ctx") == {
        "queue": "memory://env-q",
        "context": "memory://arg-ctx",
        "coordination": "memory://arg",
    }
    monkeypatch.setenv("FLOWCRAFT_COORDINATION", "memory://env-co")
    backends = open_backends()
    assert backends.urls["coordination"] == "memory://env-co"
    assert backends.coordination is open_backends("memory://env-co").coordination


def test_default_backend_is_memory() -> None:
    assert set(resolve_urls().values()) == {"memory://"}
    assert isinstance(open_backends().queue, MemoryQueue)


def test_an_unknown_scheme_in_one_component_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWCRAFT_QUEUE", "memroy://q")
    with pytest.raises(DriverError, match="memroy://"):
        open_backends("memory://")


class QueueOnlyDriver:
    """A third-party driver that provides a queue only."""

    @hookimpl
    def flowcraft_driver_info(self) -> DriverInfo:
        return DriverInfo(name="qonly", schemes=("qonly",), provides=("queue",))

    @hookimpl
    def flowcraft_make_queue(self, url: str) -> Any:
        return MemoryQueue() if url.startswith("qonly:") else None


def test_a_driver_providing_a_subset_can_be_mixed_with_another() -> None:
    pm = new_manager(load_entry_points=True)
    pm.register(QueueOnlyDriver())
    assert "qonly" in {i.name for i in installed_drivers(pm)}
    with pytest.raises(DriverError, match="'qonly' does not provide a context"):
        open_backends("qonly://x", pm=pm)
    backends = open_backends("memory://mixed", queue="qonly://x", pm=pm)
    assert isinstance(backends.queue, MemoryQueue)
    assert backends.queue is not open_backends("memory://mixed").queue
    assert isinstance(backends.context, MemoryContextStore)


def test_a_fresh_manager_without_entry_points_knows_no_driver() -> None:
    pm = new_manager(load_entry_points=False)
    assert installed_drivers(pm) == []
    with pytest.raises(DriverError, match="no installed driver handles memory://"):
        open_backends("memory://", pm=pm)
