"""Reading and writing blueprints: round trips, problem reports, files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from flowcraft_core.blueprint import Blueprint, EdgeDef, NodeConfig, NodeDef
from flowcraft_core.errors import BlueprintError, Problem

json_values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=3)
ids = st.text(min_size=1, max_size=8)
ms = st.integers(0, 10**6) | st.floats(0, 1e6, allow_nan=False)

configs = st.builds(
    NodeConfig,
    max_retries=st.integers(1, 10),
    retry_delay=ms,
    timeout=st.none() | st.integers(1, 10**6) | st.floats(0.001, 1e6),
    fallback=st.none() | ids,
    join_strategy=st.sampled_from([None, "all", "any"]),
)
nodes = st.builds(
    NodeDef,
    id=ids,
    uses=st.text(min_size=1, max_size=10),
    params=json_objects,
    inputs=st.none() | st.text(max_size=8) | st.dictionaries(st.text(max_size=5), st.text()),
    config=configs,
)
edges = st.builds(
    EdgeDef,
    source=ids,
    target=ids,
    action=st.none() | st.text(max_size=5),
    condition=st.none() | st.text(max_size=20),
    transform=st.none() | st.text(max_size=20),
)
blueprints = st.builds(
    Blueprint,
    id=ids,
    nodes=st.lists(nodes, max_size=5).map(tuple),
    edges=st.lists(edges, max_size=5).map(tuple),
    metadata=json_objects,
)


@given(blueprints)
def test_dict_round_trip(bp: Blueprint) -> None:
    assert Blueprint.from_dict(bp.to_dict()) == bp


@given(blueprints)
def test_json_round_trip_and_stable_digest(bp: Blueprint) -> None:
    again = Blueprint.from_json(bp.to_json())
    assert again == bp
    assert again.digest() == bp.digest()


@given(blueprints)
def test_json_form_is_camel_case(bp: Blueprint) -> None:
    for node in bp.to_dict()["nodes"]:
        assert set(node.get("config", {})) <= {
            "maxRetries",
            "retryDelay",
            "timeout",
            "fallback",
            "joinStrategy",
        }


def test_wire_form_from_typescript() -> None:
    data = {
        "id": "order",
        "nodes": [
            {"id": "a", "uses": "fetch", "params": {"url": "x"}, "config": {"maxRetries": 3}},
            {
                "id": "b",
                "uses": "charge",
                "inputs": {"order": "_outputs.a"},
                "config": {"retryDelay": 100, "timeout": 5000, "fallback": "c"},
            },
            {"id": "c", "uses": "refund", "config": {"joinStrategy": "any"}},
        ],
        "edges": [{"source": "a", "target": "b", "action": "ok", "condition": "result.x"}],
        "metadata": {"version": "2"},
    }
    bp = Blueprint.from_dict(data)
    assert bp.node("a").config.max_retries == 3
    assert bp.node("b").config == NodeConfig(retry_delay=100, timeout=5000, fallback="c")
    assert bp.node("b").inputs == {"order": "_outputs.a"}
    assert bp.node("c").config.join_strategy == "any"
    assert bp.edges[0] == EdgeDef("a", "b", action="ok", condition="result.x")
    assert bp.metadata["version"] == "2"
    assert bp.to_dict() == data
    with pytest.raises(KeyError):
        bp.node("zzz")


def _problems(data: Any) -> list[Problem]:
    with pytest.raises(BlueprintError) as info:
        Blueprint.from_dict(data)
    return info.value.problems


def test_reader_reports_every_problem_with_its_place() -> None:
    data = {
        "id": "broken",
        "extra": 1,
        "nodes": [
            {"id": "a", "uses": "x", "config": {"maxRetries": 0, "joinStrategy": "some"}},
            {"id": "b", "uses": 5, "params": [], "colour": "red"},
            {"uses": "y"},
            "not a node",
            {"id": "c", "uses": "z", "config": {"retryDelay": -1, "timeout": 0, "fallback": 3}},
            {"id": "d", "uses": "z", "inputs": {"k": 1}, "config": {"speed": 1}},
        ],
        "edges": [
            {"source": "a"},
            {"source": "a", "target": "b", "condition": 1, "weight": 2},
            7,
        ],
    }
    problems = _problems(data)
    got = {(p.where, p.message.split(" ")[0]) for p in problems}
    expected_places = {
        "node 'a'",
        "node 'b'",
        "nodes[2]",
        "nodes[3]",
        "node 'c'",
        "node 'd'",
        "edges[0]",
        "edges[1]",
        "edges[2]",
    }
    assert {where for where, _ in got} == expected_places
    messages = [str(p) for p in problems]

    def has(where: str, fragment: str) -> bool:
        return any(m.startswith(f"{where}: ") and fragment in m for m in messages)

    assert has("node 'a'", "maxRetries must be an integer >= 1")
    assert has("node 'a'", "joinStrategy must be 'all' or 'any'")
    assert has("node 'b'", "'uses' must be a non-empty string")
    assert has("node 'b'", "'params' must be an object")
    assert has("nodes[2]", "'id' must be a non-empty string")
    assert has("nodes[3]", "a node must be an object")
    assert has("node 'c'", "retryDelay must be a number of ms >= 0")
    assert has("node 'c'", "timeout must be a number of ms > 0")
    assert has("node 'c'", "fallback must be a node id")
    assert has("node 'd'", "'inputs' must be a string or an object of strings")
    assert has("edges[0]", "'target' must be a non-empty string")
    assert has("edges[1]", "'condition' must be a string")
    assert has("edges[2]", "an edge must be an object")
    assert not any("unknown" in m for m in messages)  # unknown fields are kept, not refused
    assert len(problems) >= 13


def test_unknown_fields_are_kept_and_ignored() -> None:
    """Fields from Flowcraft's compiler and from UIs make no blueprint invalid and survive a
    round trip (so the pinned blueprint is the one the user wrote)."""
    data = {
        "id": "ui",
        "version": 2,
        "nodes": [
            {
                "id": "a",
                "uses": "x",
                "_sourceLocation": {"file": "flow.ts", "line": 3},
                "position": {"x": 10, "y": 20},
                "data": {"label": "A"},
                "config": {"maxRetries": 2, "fancy": True},
            },
            {"id": "b", "uses": "x"},
        ],
        "edges": [{"source": "a", "target": "b", "id": "e1", "animated": True}],
    }
    bp = Blueprint.from_dict(data)
    assert bp.nodes[0].extra == {
        "_sourceLocation": {"file": "flow.ts", "line": 3},
        "position": {"x": 10, "y": 20},
        "data": {"label": "A"},
    }
    assert bp.nodes[0].config.max_retries == 2
    assert bp.edges[0].extra == {"id": "e1", "animated": True}
    assert Blueprint.from_dict(bp.to_dict()) == bp
    assert bp.to_dict() == data


def test_reader_error_names_the_blueprint() -> None:
    with pytest.raises(BlueprintError) as info:
        Blueprint.from_dict({"id": "flow-1", "nodes": 3, "edges": {}, "metadata": []})
    assert info.value.blueprint_id == "flow-1"
    assert "blueprint 'flow-1' is invalid (3 problem(s))" in str(info.value)
    assert [p.message for p in info.value.problems] == [
        "'nodes' must be a list",
        "'edges' must be a list",
        "'metadata' must be an object",
    ]


@pytest.mark.parametrize("data", [None, [], "x", 3])
def test_reader_rejects_non_objects(data: Any) -> None:
    assert len(_problems(data)) == 1


@given(json_values)
def test_reader_raises_only_blueprint_error(data: Any) -> None:
    try:
        Blueprint.from_dict(data)
    except BlueprintError as exc:
        assert exc.problems


def test_from_json_rejects_bad_json() -> None:
    with pytest.raises(BlueprintError, match="not valid JSON"):
        Blueprint.from_json("{nope")


def test_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        """
id: order
metadata: {version: "1"}
nodes:
  - id: fetch
    uses: fetch_order
    params: {retries: 2}
    config: {maxRetries: 3, retryDelay: 250}
  - id: approve
    uses: wait
edges:
  - source: fetch
    target: approve
    condition: result.output.total > 100
""",
        encoding="utf-8",
    )
    bp = Blueprint.load(path)
    assert bp.id == "order"
    assert bp.node("fetch").config.max_retries == 3
    assert bp.node("fetch").params == {"retries": 2}
    assert bp.edges[0].condition == "result.output.total > 100"
    assert Blueprint.load(str(path)) == bp


def test_json_file_and_load_errors(tmp_path: Path) -> None:
    bp = Blueprint("f", nodes=(NodeDef("a", "x"),))
    (tmp_path / "f.json").write_text(bp.to_json(), encoding="utf-8")
    assert Blueprint.load(tmp_path / "f.json") == bp

    (tmp_path / "bad.yml").write_text("id: [unclosed", encoding="utf-8")
    with pytest.raises(BlueprintError, match="not valid YAML"):
        Blueprint.load(tmp_path / "bad.yml")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(BlueprintError, match="not valid JSON"):
        Blueprint.load(tmp_path / "bad.json")
    with pytest.raises(BlueprintError, match="cannot read file"):
        Blueprint.load(tmp_path / "missing.yaml")
    (tmp_path / "wrong.yaml").write_text(yaml.safe_dump({"id": "w", "nodes": [{}]}))
    with pytest.raises(BlueprintError) as info:
        Blueprint.load(tmp_path / "wrong.yaml")
    assert {p.where for p in info.value.problems} == {"nodes[0]"}


def test_digest_identifies_content() -> None:
    a = Blueprint("f", nodes=(NodeDef("a", "x"),))
    b = Blueprint("f", nodes=(NodeDef("a", "y"),))
    assert a.digest() != b.digest()
    assert a.digest() == Blueprint.from_json(a.to_json(indent=2)).digest()


def test_null_means_absent_but_falsy_wrong_types_are_reported() -> None:
    bp = Blueprint.from_dict(
        {"id": "f", "nodes": [{"id": "a", "uses": "x", "params": None, "config": None}]}
    )
    assert bp.node("a").params == {}
    problems = _problems(
        {"id": "f", "metadata": [], "nodes": [{"id": "a", "uses": "x", "params": 0, "config": ""}]}
    )
    assert [str(p) for p in problems] == [
        "blueprint: 'metadata' must be an object",
        "node 'a': 'params' must be an object",
        "node 'a': 'config' must be an object",
    ]
