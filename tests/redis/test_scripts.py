"""The Lua scripts: each names its KEYS and ARGV at the top, and what they must agree on with
Python is rendered in from flowcraft_core.engine.keys, never spelled twice."""

from __future__ import annotations

import itertools
from importlib import resources
from typing import Any

import pytest
import redis
import redis.asyncio as aredis

from flowcraft_core.engine import keys, rules
from flowcraft_redis import connection

SCRIPTS = sorted(
    p.name for p in resources.files("flowcraft_redis").iterdir() if p.name.endswith(".lua")
)


KEYSPACE = {"CTX": "p:ctx:", "CO": "p:co:", "SIG": "p:sig:"}


def render(name: str) -> str:
    return connection.load_script(name, KEYSPACE)


def header(text: str) -> str:
    lines = []
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        lines.append(line)
    return "\n".join(lines)


def _own(name: str) -> str:
    """The script's own text (a snippet inlined elsewhere names no KEYS/ARGV of its own)."""
    return resources.files("flowcraft_redis").joinpath(name).read_text(encoding="utf-8")


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_script_names_its_keys_and_argv_at_the_top(name: str) -> None:
    top = header(_own(name))
    assert "KEYS" in top and "ARGV" in top, f"{name} does not name KEYS and ARGV at its top"


@pytest.mark.parametrize("name", SCRIPTS)
def test_every_placeholder_is_rendered(name: str) -> None:
    text = render(name)
    assert connection._PLACEHOLDER.search(text) is None, name


def test_the_scripts_get_the_kinds_of_job_keys_from_python() -> None:
    rendered = render("run_finalize.lua")
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
    with pytest.raises(KeyError, match="RUN_KEYS"):
        render("run_finalize.lua")


def test_the_lua_join_decision_is_the_python_one(raw: redis.Redis) -> None:
    """The rule is written once (rules.JOIN_DECISION); the Lua generated from it gives the
    verdict Python's gives, for every combination of its inputs."""
    script = (
        connection.SCRIPT_CONSTANTS["DECIDE"]
        + "\nlocal out = {}\n"
        + "for i = 1, #ARGV, 7 do\n"
        + "    local v = decide(ARGV[i], ARGV[i + 1] == '1', ARGV[i + 2] == '1',"
        + " ARGV[i + 3] == '1', tonumber(ARGV[i + 4]), tonumber(ARGV[i + 5]),"
        + " tonumber(ARGV[i + 6]))\n"
        + "    out[#out + 1] = v == nil and 'none' or (v and 'run' or 'skip')\n"
        + "end\nreturn out"
    )
    cases = [
        (join, is_live, added, first, total, 2, live)
        for join in (keys.JOIN_ANY, keys.JOIN_ALL)
        for is_live, added, first in itertools.product((True, False), repeat=3)
        for total in range(4)
        for live in range(3)
    ]
    args = [str(int(v)) if isinstance(v, bool) else str(v) for case in cases for v in case]
    lua = raw.eval(script, 0, *args)
    python = [{None: "none", True: "run", False: "skip"}[rules.decide(*case)] for case in cases]
    assert lua == python
    assert {"none", "run", "skip"} <= set(python)


def test_the_lua_done_test_is_the_python_one(raw: redis.Redis) -> None:
    script = "local activated, finished = tonumber(ARGV[1]), tonumber(ARGV[2])\n"
    script += f"return ({connection.SCRIPT_CONSTANTS['RUN_DONE']}) and 1 or 0"
    for activated, finished in itertools.product(range(3), repeat=2):
        assert raw.eval(script, 0, activated, finished) == int(rules.run_done(activated, finished))


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ("not total >= expected", "binds differently"),
        ("total >= expected >= live", "chained"),
        ("total != expected", "outside"),
        ("total >= wanted", "unknown name"),
        ("(total >= expected", "unbalanced"),
    ],
)
def test_a_rule_outside_the_shared_syntax_is_refused(rule: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        rules.check(rule, rules.DECIDE_INPUTS)


def test_the_scripts_derive_the_key_names_python_makes(raw: redis.Redis) -> None:
    """run_keys.lua's names, for a run id and a job key that hold ':' and '#', are
    RunKeys' and the stores' (a mismatch would leave keys nobody expires or reads)."""
    run_id, job = "r:1#x", "n:1#0/2"
    script = (
        connection.load_script("run_keys.lua", KEYSPACE)
        + "\nlocal base = run_base(ARGV[1])\n"
        + "return {context_key(ARGV[1]), base .. "
        + connection.SCRIPT_CONSTANTS["FINISHED"]
        + ", base .. "
        + connection.SCRIPT_CONSTANTS["LEASE"]
        + " .. ':' .. ARGV[2], signal_key(base)}"
    )
    rk = keys.RunKeys(run_id)
    assert raw.eval(script, 0, run_id, job) == [
        KEYSPACE["CTX"] + run_id,
        KEYSPACE["CO"] + rk.finished,
        KEYSPACE["CO"] + rk.lease(job),
        KEYSPACE["SIG"] + rk.signal_done,
    ]


@pytest.mark.parametrize(
    "args",
    [
        ("EVALSHA", "ab" * 20, 0, "run-1", "n#0", "1733112345.123456", 86400000, 1.5, 0.1, -7),
        ("HSET", "k", "ünïcødé ✓", b"\x00\xffraw", bytearray(b"ba"), memoryview(b"mv")),
        ("CONFIG GET", "maxmemory"),
        (b"CONFIG GET", b"maxmemory"),
        ("SET", "k", "x" * 100_000),
    ],
)
def test_commands_are_packed_as_redis_py_packs_them(args: tuple[Any, ...]) -> None:
    """The async connections pack with hiredis (one C call) the bytes redis-py would send."""
    ours = b"".join(connection._Connection().pack_command(*args))
    theirs = b"".join(bytes(c) for c in aredis.Connection().pack_command(*args))
    assert ours == theirs


def test_an_argument_redis_py_refuses_is_refused() -> None:
    with pytest.raises(redis.DataError):
        connection._Connection().pack_command("SET", "k", True)
    with pytest.raises(redis.DataError):
        aredis.Connection().pack_command("SET", "k", True)
