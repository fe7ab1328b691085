"""The Lua scripts: each names its KEYS and ARGV at the top, and what they must agree on with
Python is rendered in from flowcraft_core.engine.keys, never spelled twice."""

from __future__ import annotations

from importlib import resources

import pytest

from flowcraft_core.engine import keys
from flowcraft_redis import connection

SCRIPTS = sorted(
    p.name for p in resources.files("flowcraft_redis").iterdir() if p.name.endswith(".lua")
)


def header(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_names_its_keys_and_argv_at_the_top(name: str) -> None:
    top = header(connection.load_script(name))
    assert "KEYS" in top and "ARGV" in top, f"{name} does not name KEYS and ARGV at its top"


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_placeholder_is_rendered(name: str) -> None:
    text = connection.load_script(name)
    assert connection._PLACEHOLDER.search(text) is None, name


def test_the_scripts_get_the_kinds_of_job_keys_from_python() -> None:
    rendered = connection.load_script("run_finalize.lua")
    assert connection.SCRIPT_CONSTANTS["JOB_KEY_KINDS"] in rendered
    for kind in keys.JOB_KEY_KINDS:
        assert f"'{kind}'" in rendered


def test_every_per_job_key_is_of_a_listed_kind() -> None:
    # A kind missing from JOB_KEY_KINDS would outlive its finished run in Redis.
    rk = keys.RunKeys("r")
    made = [
        getattr(rk, name)("j#0")
        for name in ("lease", "arrived", "live", "first", "sleep", "failures", "missing", "history")
    ]
    assert [key.split(":")[2] for key in made] == list(keys.JOB_KEY_KINDS)
    assert all(key == rk.job(key.split(":")[2], "j#0") for key in made)


def test_an_unknown_placeholder_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(connection, "SCRIPT_CONSTANTS", {})
    with pytest.raises(KeyError, match="ACTIVATED"):
        connection.load_script("run_finalize.lua")
