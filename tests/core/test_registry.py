"""The node registry and ``load_registry`` (the CLI's ``--registry MODULE:ATTR``)."""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from flowcraft_core import NodeContext, Registry, RegistryError
from flowcraft_core.registry import load_registry


def _module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> str:
    """Write an importable module under a unique name; return the name."""
    name = f"fc_registry_{uuid.uuid4().hex[:10]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


def node(ctx: NodeContext) -> Any:
    return ctx.input


def test_load_registry_from_a_dict_a_registry_and_a_dotted_attribute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(
        tmp_path,
        monkeypatch,
        """
        from flowcraft_core import Registry

        def one(ctx):
            return 1

        nodes = {"one": one}
        registry = Registry({"one": one, "two": lambda ctx: 2})

        class Namespace:
            inner = {"one": one}
        """,
    )
    from_dict = load_registry(f"{name}:nodes")
    assert isinstance(from_dict, Registry)
    assert list(from_dict) == ["one"]
    from_registry = load_registry(f"{name}:registry")
    assert sorted(from_registry) == ["one", "two"]
    assert load_registry(f"{name}:registry") is from_registry  # a Registry is used as is
    assert list(load_registry(f"{name}:Namespace.inner")) == ["one"]


@pytest.mark.parametrize("spec", ["no_colon", ":registry", "module:", ""])
def test_load_registry_rejects_a_bad_spec(spec: str) -> None:
    with pytest.raises(RegistryError, match="MODULE:ATTR"):
        load_registry(spec)


def test_load_registry_names_a_missing_module() -> None:
    with pytest.raises(RegistryError, match="cannot import registry module 'fc_no_such_mod_x'"):
        load_registry("fc_no_such_mod_x:registry")


def test_load_registry_names_a_missing_dependency_of_the_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(tmp_path, monkeypatch, "import fc_missing_dependency_y\nregistry = {}\n")
    with pytest.raises(RegistryError, match="fc_missing_dependency_y") as excinfo:
        load_registry(f"{name}:registry")
    assert name in str(excinfo.value)


def test_load_registry_names_a_missing_attribute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(tmp_path, monkeypatch, "registry = {}\n")
    with pytest.raises(RegistryError, match=f"module '{name}' has no attribute 'nodes'"):
        load_registry(f"{name}:nodes")
    with pytest.raises(RegistryError, match=r"has no attribute 'registry\.deeper'"):
        load_registry(f"{name}:registry.deeper")


def test_load_registry_rejects_what_is_not_a_dict_or_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(tmp_path, monkeypatch, "registry = ['not', 'a', 'dict']\nnumbers = {'a': 1}\n")
    with pytest.raises(RegistryError, match="expected a Registry or a dict of callables, got list"):
        load_registry(f"{name}:registry")
    with pytest.raises(RegistryError, match="implementation for 'a' is not callable") as excinfo:
        load_registry(f"{name}:numbers")
    assert f"{name}:numbers" in str(excinfo.value)


def test_load_registry_reports_a_module_that_fails_at_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = _module(tmp_path, monkeypatch, "registry = {\n")  # a syntax error
    with pytest.raises(RegistryError, match=name):
        load_registry(f"{name}:registry")


@pytest.mark.parametrize("key", ["wait", "sleep"])
def test_registry_rejects_built_in_names(key: str) -> None:
    with pytest.raises(RegistryError, match=f"'{key}' is a built-in node kind"):
        Registry({key: node})
    registry = Registry()
    with pytest.raises(RegistryError, match="built-in"):
        registry.register(key, node)
    assert key not in registry


@pytest.mark.parametrize("target", [1, "node", None, {"a": 1}])
def test_registry_rejects_non_callables(target: Any) -> None:
    with pytest.raises(RegistryError, match="implementation for 'x' is not callable"):
        Registry({"x": target})


@pytest.mark.parametrize("key", ["", 3, None])
def test_registry_rejects_bad_keys(key: Any) -> None:
    with pytest.raises(RegistryError, match="non-empty strings"):
        Registry().register(key, node)


def test_registry_decorator_mapping_and_of() -> None:
    registry = Registry()

    @registry.node("echo")
    def echo(ctx: NodeContext) -> Any:
        return ctx.input

    assert echo.__name__ == "echo"  # the decorator returns the function unchanged
    assert "echo" in registry
    assert len(registry) == 1
    assert registry["echo"].target is echo
    assert registry["echo"].key == "echo"
    assert Registry.of(registry) is registry
    assert list(Registry.of({"echo": echo})) == ["echo"]
    with pytest.raises(RegistryError, match="got int"):
        Registry.of(3)
    with pytest.raises(KeyError):
        registry["missing"]


def test_engine_settings_from_environment() -> None:
    from flowcraft_core.engine import EngineSettings
    from flowcraft_core.errors import FlowcraftError

    settings = EngineSettings.from_env(
        {"FLOWCRAFT_RETENTION": "60", "FLOWCRAFT_MISSING_RETRIES": "2"}
    )
    assert settings.retention == 60.0
    assert settings.missing_retries == 2
    assert isinstance(settings.missing_retries, int)
    assert settings.lease_ttl == EngineSettings().lease_ttl
    with pytest.raises(FlowcraftError, match="FLOWCRAFT_LEASE_TTL"):
        EngineSettings.from_env({"FLOWCRAFT_LEASE_TTL": "soon"})
    # The expression language's strict setting (docs/flowcraft.md): a bool variable.
    assert EngineSettings().strict is False
    assert EngineSettings.from_env({"FLOWCRAFT_STRICT": "1"}).strict is True
    assert EngineSettings.from_env({"FLOWCRAFT_STRICT": "false"}).strict is False
    with pytest.raises(FlowcraftError, match="FLOWCRAFT_STRICT must be true or false"):
        EngineSettings.from_env({"FLOWCRAFT_STRICT": "sometimes"})
