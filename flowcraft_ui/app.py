"""The dashboard's ASGI application (Starlette), over one :class:`flowcraft_core.Client`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from flowcraft_core import Client
from flowcraft_core.errors import FlowcraftError, RunNotFound
from flowcraft_ui import graph
from flowcraft_ui.data import STATUSES, RunView, Source, timeline
from flowcraft_ui.security import COOKIE, Guard

HERE = Path(__file__).resolve().parent
FINAL = ("completed", "failed", "cancelled")
POLL = 0.4
"""Seconds between the server's looks at a run it streams (the browser is pushed to)."""
HEARTBEAT = 15.0


def _when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _pretty(value: Any) -> str:
    text = json.dumps(value, indent=2, default=str, ensure_ascii=False)
    return text if len(text) <= 20_000 else text[:20_000] + "\n… (cut at 20,000 characters)"


def create_app(client: Client, token: str, *, own_client: bool = False) -> Starlette:
    """The dashboard over ``client``; actions need ``token``. With ``own_client``, the client
    is closed when the application shuts down."""
    source = Source(client)
    guard = Guard(token)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.filters["when"] = _when
    templates.env.filters["pretty"] = _pretty

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        session = guard.session(request)
        return templates.TemplateResponse(
            request,
            name,
            {
                "logged_in": session is not None,
                "csrf": guard.csrf(session),
                "statuses": STATUSES,
                **context,
            },
            status_code=status_code,
        )

    async def runs_page(request: Request) -> Response:
        q = request.query_params
        status = q.get("status") or None
        flow = q.get("blueprint") or None
        problem = None
        if status is not None and status not in STATUSES:
            problem, status = f"unknown status {status!r}", None
        try:
            rows, cursor = await source.runs(status=status, flow=flow, cursor=q.get("cursor"))
        except FlowcraftError as exc:
            rows, cursor, problem = [], None, str(exc)
        keep = {k: v for k, v in (("status", status), ("blueprint", flow)) if v}
        return page(
            request,
            "runs.html",
            rows=rows,
            status=status or "",
            blueprint=flow or "",
            next_url=f"/?{urlencode({**keep, 'cursor': cursor})}" if cursor else None,
            first_url=f"/?{urlencode(keep)}" if q.get("cursor") else None,
            problem=problem,
            indexed=source.indexed,
        )

    def detail(view: RunView) -> str:
        svg = graph.render(view.blueprint, view.node_status) if view.blueprint else ""
        template = templates.env.get_template("_detail.html")
        return template.render(
            view=view, svg=Markup(svg), bars=timeline(view.bars), final=view.status in FINAL
        )

    async def run_page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        try:
            view = await source.run(run_id)
        except RunNotFound as exc:
            return page(request, "error.html", 404, message=str(exc))
        return page(
            request,
            "run.html",
            view=view,
            detail=Markup(detail(view)),
            message=request.query_params.get("msg"),
            can_retry=hasattr(client, "retry"),
            can_fork=hasattr(client, "fork"),
            node_ids=[n.id for n in view.blueprint.nodes] if view.blueprint else [],
        )

    async def events(request: Request) -> Response:
        run_id = request.path_params["run_id"]

        async def stream() -> AsyncIterator[str]:
            last = None
            quiet_since = time.monotonic()
            yield "retry: 1000\n\n"
            while not await request.is_disconnected():
                try:
                    view = await source.run(run_id)
                except RunNotFound as exc:
                    yield f"event: gone\ndata: {json.dumps(str(exc))}\n\n"
                    return
                fingerprint = view.fingerprint()
                if fingerprint != last:
                    last = fingerprint
                    quiet_since = time.monotonic()
                    payload = {
                        "status": view.status,
                        "nodes": view.node_status,
                        "parked": view.parked,
                        "html": detail(view),
                    }
                    yield f"event: update\ndata: {json.dumps(payload)}\n\n"
                elif time.monotonic() - quiet_since > HEARTBEAT:
                    quiet_since = time.monotonic()
                    yield ": still here\n\n"
                await asyncio.sleep(POLL)

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    async def login(request: Request) -> Response:
        form = await request.form()
        session = guard.login(str(form.get("token", "")))
        back = str(form.get("next", "/"))
        if not back.startswith("/") or back.startswith("//"):
            back = "/"
        if session is None:
            return page(request, "error.html", 403, message="wrong token")
        response = RedirectResponse(back, status_code=303)
        response.set_cookie(COOKIE, session, httponly=True, samesite="strict")
        return response

    async def logout(request: Request) -> Response:
        form = await request.form()
        refused = guard.refusal(request, str(form.get("csrf", "")))
        if refused is None:
            guard.logout(request)
        response = RedirectResponse("/", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    async def act(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        verb = request.path_params["verb"]
        form = await request.form()
        refused = guard.refusal(request, str(form.get("csrf", "")) or None)
        if refused is not None:
            return page(request, "error.html", 403, message=f"{verb} refused: {refused}")
        field = {k: str(v).strip() for k, v in form.items() if isinstance(v, str)}
        target = run_id
        try:
            if verb == "resume":
                raw = field.get("output", "")
                try:
                    output = json.loads(raw) if raw else None
                except json.JSONDecodeError as exc:
                    raise FlowcraftError(f"the output is not JSON: {exc}") from None
                resumed = await client.resume(
                    run_id,
                    field.get("action") or None,
                    output,
                    node_id=field.get("node") or None,
                )
                message = f"resumed node {resumed}"
            elif verb == "cancel":
                won = await client.cancel(run_id)
                message = "cancelled" if won else "the run had already finished"
            elif verb in ("retry", "fork") and hasattr(client, verb):
                call = getattr(client, verb)
                node = field.get("node") or None
                result = await call(run_id, from_node=node) if node else await call(run_id)
                if isinstance(result, str) and result:
                    target = result
                message = f"{verb} started" + (f" as run {result}" if verb == "fork" else "")
            else:
                return page(request, "error.html", 404, message=f"no action {verb!r}")
        except FlowcraftError as exc:
            return page(request, "error.html", 409, message=f"{verb} failed: {exc}")
        source.seen(target)
        return RedirectResponse(f"/runs/{target}?{urlencode({'msg': message})}", status_code=303)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if own_client:
                await client.close()

    async def health(request: Request) -> Response:
        return HTMLResponse("ok")

    return Starlette(
        routes=[
            Route("/", runs_page),
            Route("/healthz", health),
            Route("/runs/{run_id}", run_page),
            Route("/runs/{run_id}/events", events),
            Route("/runs/{run_id}/{verb}", act, methods=["POST"]),
            Route("/login", login, methods=["POST"]),
            Route("/logout", logout, methods=["POST"]),
            Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
        ],
        lifespan=lifespan,
    )
