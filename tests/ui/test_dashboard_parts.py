"""The dashboard's parts without a browser: the server-drawn graph (loops drawn as back arcs,
hostile ids escaped, every node coloured), who may act (token, session, form token, origin),
and the runs list's filters and paging over a real in-memory backend with the run index."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from starlette.requests import Request

from flowcraft_core import Blueprint, Client, NodeContext, Registry, Worker, open_backends
from flowcraft_ui import graph
from flowcraft_ui.data import PAGE, Source
from flowcraft_ui.security import COOKIE, Guard


def test_a_loop_is_drawn_with_its_back_edge_and_every_node_coloured() -> None:
    blueprint = Blueprint.from_dict(
        {
            "id": "looping",
            "nodes": [
                {"id": "start", "uses": "step"},
                {"id": "body", "uses": "step"},
                {"id": "ctl", "uses": "loop-controller", "params": {"condition": "false"}},
                {"id": 'ev<il>&"', "uses": "step"},
            ],
            "edges": [
                {"source": "start", "target": "body"},
                {"source": "body", "target": "ctl"},
                {"source": "ctl", "target": "body", "action": "continue"},
                {"source": "ctl", "target": 'ev<il>&"', "action": "break"},
            ],
        }
    )
    where, back, _, _ = graph.layout(blueprint)
    assert back == {2}  # ctl -> body closes the cycle
    assert where["start"][0] < where["body"][0] < where["ctl"][0] < where['ev<il>&"'][0]
    svg = graph.render(blueprint, {"start": "completed", "body": "running"})
    assert svg.count('class="edge back"') == 1 and svg.count('class="edge"') == 3
    assert 'data-node="start" data-status="completed"' in svg
    assert 'data-node="body" data-status="running"' in svg
    assert 'data-node="ctl" data-status="pending"' in svg and "kind-loop" in svg
    assert "ev&lt;il&gt;&amp;&quot;" in svg and "<il>" not in svg
    assert ">continue<" in svg and ">break<" in svg


def request(
    headers: dict[str, str] | None = None, cookie: str | None = None, host: str = "127.0.0.1:8765"
) -> Request:
    raw = [(b"host", host.encode())]
    for k, v in (headers or {}).items():
        raw.append((k.lower().encode(), v.encode()))
    if cookie is not None:
        raw.append((b"cookie", f"{COOKIE}={cookie}".encode()))
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


def test_who_may_act() -> None:
    guard = Guard("s3cret")
    assert "log in" in str(guard.refusal(request(), None))
    assert guard.refusal(request({"Authorization": "Bearer s3cret"}), None) is None
    assert "wrong" in str(guard.refusal(request({"Authorization": "Bearer nope"}), None))
    assert guard.login("nope") is None
    session = guard.login("s3cret")
    assert session is not None
    csrf = guard.csrf(session)
    assert guard.refusal(request(cookie=session), csrf) is None
    assert "cross-site token" in str(guard.refusal(request(cookie=session), "forged"))
    assert "cross-site token" in str(guard.refusal(request(cookie=session), None))
    other = Guard("s3cret")  # another dashboard's session and form token mean nothing here
    assert "log in" in str(other.refusal(request(cookie=session), csrf))
    evil = {"Origin": "http://evil.example"}
    assert "another site" in str(guard.refusal(request(evil, cookie=session), csrf))
    assert "another site" in str(
        guard.refusal(request({**evil, "Authorization": "Bearer s3cret"}), None)
    )
    same = {"Origin": "http://127.0.0.1:8765"}
    assert guard.refusal(request(same, cookie=session), csrf) is None
    with pytest.raises(ValueError):
        Guard("")


async def test_runs_list_filters_and_pages() -> None:
    async def step(ctx: NodeContext) -> Any:
        if ctx.input == "fail":
            raise ValueError("no")
        return ctx.input

    backends = open_backends(f"memory://{uuid.uuid4().hex}")
    blueprint = Blueprint.from_dict({"id": "paged", "nodes": [{"id": "a", "uses": "step"}]})
    other = Blueprint.from_dict({"id": "other", "nodes": [{"id": "a", "uses": "step"}]})
    async with Worker(Registry.of({"step": step}), backends):
        client = Client(backends)
        ids = [await client.start(blueprint, i) for i in range(PAGE + 5)]
        failed = await client.start(other, "fail")
        for run_id in [*ids, failed]:
            await client.result(run_id, 10)
        source = Source(client)
        assert source.indexed
        first, cursor = await source.runs(status=None, flow="paged", cursor=None)
        assert len(first) == PAGE and cursor is not None
        rest, end = await source.runs(status=None, flow="paged", cursor=cursor)
        assert end is None and len(rest) == 5
        assert {r.run_id for r in first} | {r.run_id for r in rest} == set(ids)
        failures, _ = await source.runs(status="failed", flow=None, cursor=None)
        assert [r.run_id for r in failures] == [failed]
        view = await source.run(failed)
        assert view.node_status["a"] == "failed" and view.error is not None
        assert view.has_history and view.bars and view.bars[0].status == "failed"
        await client.close()


async def _post(app: Any, path: str, form: str, token: str) -> tuple[int, dict[str, str]]:
    """One POST through the ASGI application (no HTTP client needed): status and headers."""
    body = form.encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 8765),
        "client": ("127.0.0.1", 40000),
        "headers": [
            (b"host", b"127.0.0.1:8765"),
            (b"authorization", f"Bearer {token}".encode()),
            (b"content-type", b"application/x-www-form-urlencoded"),
            (b"content-length", str(len(body)).encode()),
        ],
    }
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}


async def test_the_fork_button_forks_into_a_new_run_and_shows_it() -> None:
    from flowcraft_ui.app import create_app

    async def step(ctx: NodeContext) -> Any:
        return {"node": ctx.node_id, "input": ctx.input}

    backends = open_backends(f"memory://{uuid.uuid4().hex}")
    blueprint = Blueprint.from_dict(
        {
            "id": "forked",
            "nodes": [{"id": "a", "uses": "step"}, {"id": "b", "uses": "step"}],
            "edges": [{"source": "a", "target": "b"}],
        }
    )
    async with Worker(Registry.of({"step": step}), backends):
        client = Client(backends)
        run_id = await client.start(blueprint, 1)
        original = await client.result(run_id, 10)
        app = create_app(client, "s3cret")
        status, headers = await _post(app, f"/runs/{run_id}/fork", "node=b", "s3cret")
        assert status == 303, headers
        target = headers["location"].split("?")[0].rsplit("/", 1)[-1]
        assert target != run_id and "fork+started+as+run" in headers["location"]
        forked = await client.result(target, 10)
        assert forked.status == "completed" and forked.outputs["a"] == original.outputs["a"]
        refused, _ = await _post(app, f"/runs/{run_id}/fork", "node=zz", "s3cret")
        assert refused == 409  # the reason is shown on the error page
        assert await client.status(run_id) == "completed"
        await client.close()
