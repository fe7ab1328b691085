"""What the dashboard shows, read through the public client and run-state steps.

Where the client has the run index and history (``Client.runs`` / ``Client.history``) the
dashboard uses them; on a client without them it lists the runs still active on the backend
plus those this dashboard has seen, and draws node status from the run's outputs, error and
parked nodes (no timeline then)."""

from __future__ import annotations

import collections
import json
import time
from dataclasses import dataclass, field
from typing import Any

from flowcraft_core import Blueprint, Client
from flowcraft_core.engine import keys
from flowcraft_core.engine.state import RunState, run_state_for
from flowcraft_core.errors import RunNotFound
from flowcraft_core.instance import split_job_key

STATUSES = ("running", "awaiting", "completed", "failed", "cancelled")
PAGE = 25
SEEN_LIMIT = 1000


@dataclass
class RunRow:
    run_id: str
    flow: str
    status: str
    started: float | None
    finished: float | None = None


@dataclass
class Bar:
    """One attempt on the timeline."""

    node: str
    instance: str
    attempt: int
    status: str
    started: float
    finished: float | None
    worker: str | None = None
    error: dict[str, Any] | None = None


@dataclass
class RunView:
    run_id: str
    flow: str
    status: str
    started: float | None
    blueprint: Blueprint | None
    node_status: dict[str, str]
    outputs: dict[str, Any]
    error: dict[str, Any] | None
    parked: list[str]
    children: dict[str, dict[str, Any]]
    bars: list[Bar] = field(default_factory=list)
    has_history: bool = False
    finished: float | None = None

    def fingerprint(self) -> str:
        """Changes whenever anything the page shows changes."""
        return json.dumps(
            [
                self.status,
                self.node_status,
                self.outputs,
                self.error,
                self.parked,
                self.children,
                [(b.node, b.instance, b.attempt, b.status, b.finished) for b in self.bars],
            ],
            sort_keys=True,
            default=str,
        )


class Source:
    """Reads runs for the dashboard from one client."""

    def __init__(self, client: Client) -> None:
        self.client = client
        settings = client.settings
        self.state: RunState = run_state_for(
            client.backends.context,
            client.backends.coordination,
            ttl=settings.run_ttl,
            fused=settings.fused_state,
            hook=client.hook,
        )
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._blueprints: dict[str, Blueprint] = {}

    @property
    def indexed(self) -> bool:
        return hasattr(self.client, "runs")

    def seen(self, run_id: str) -> None:
        self._seen[run_id] = None
        self._seen.move_to_end(run_id)
        while len(self._seen) > SEEN_LIMIT:
            self._seen.popitem(last=False)

    async def runs(
        self, *, status: str | None, flow: str | None, cursor: str | None, limit: int = PAGE
    ) -> tuple[list[RunRow], str | None]:
        """A page of runs, newest first, and the cursor of the next page (None: last)."""
        if self.indexed:
            page = await self.client.runs(status=status, flow=flow, cursor=cursor, limit=limit)
            rows = [
                RunRow(r.run_id, r.flow, r.status, r.started, getattr(r, "finished", None))
                for r in page.runs
            ]
            return rows, page.cursor
        ids = set(await self.state.active_runs()) | set(self._seen)
        rows = []
        for run_id in ids:
            row = await self._row(run_id)
            if row is None:
                continue
            if (status and row.status != status) or (flow and row.flow != flow):
                continue
            rows.append(row)
        rows.sort(key=lambda r: (-(r.started or 0), r.run_id))
        start = int(cursor) if cursor and cursor.isdigit() else 0
        more = start + limit < len(rows)
        return rows[start : start + limit], str(start + limit) if more else None

    async def _row(self, run_id: str) -> RunRow | None:
        meta = await self.client.backends.context.get(run_id, keys.RUN)
        if not isinstance(meta, dict):
            return None
        census = await self.state.census(run_id)
        return RunRow(run_id, str(meta.get("flow", "")), census.status, meta.get("started"))

    async def blueprint(self, digest: str) -> Blueprint | None:
        found = self._blueprints.get(digest)
        if found is None:
            raw = await self.state.blueprint(digest)
            if raw is None:
                return None
            found = self._blueprints[digest] = Blueprint.from_json(raw)
        return found

    async def run(self, run_id: str) -> RunView:
        """Everything the run page shows. Raises :class:`RunNotFound`."""
        meta = await self.client.backends.context.get(run_id, keys.RUN)
        if not isinstance(meta, dict):
            raise RunNotFound(f"no run {run_id!r} (never started, or expired after retention)")
        self.seen(run_id)
        snapshot = await self.client.snapshot(run_id)
        blueprint = await self.blueprint(str(meta.get("digest", "")))
        parked = [split_job_key(key)[0] for key in await self.state.parked(run_id)]
        node_status: dict[str, str] = {}
        if blueprint is not None:
            node_status = {n.id: "pending" for n in blueprint.nodes}
        for node_id in snapshot.outputs:
            node_status[node_id] = "completed"
        for node_id in parked:
            node_status[node_id] = "awaiting"
        error = snapshot.error
        if error and error.get("node"):
            node_status[str(error["node"])] = "failed"
        view = RunView(
            run_id=run_id,
            flow=str(meta.get("flow", "")),
            status=snapshot.status,
            started=meta.get("started"),
            blueprint=blueprint,
            node_status=node_status,
            outputs=snapshot.outputs,
            error=error,
            parked=parked,
            children=await self.client.children(run_id),
        )
        if hasattr(self.client, "history"):
            await self._add_history(view)
        return view

    async def _add_history(self, view: RunView) -> None:
        try:
            history = await self.client.history(view.run_id)
        except RunNotFound:
            return
        view.has_history = True
        view.finished = getattr(history, "finished", None)
        for node in history.nodes:
            status = str(node.status)
            current = view.node_status.get(node.node)
            if current in (None, "pending") or status in ("running", "retrying"):
                view.node_status[node.node] = status
            for attempt in node.attempts:
                if attempt.started is None:
                    continue
                view.bars.append(
                    Bar(
                        node=node.node,
                        instance=str(node.instance),
                        attempt=attempt.attempt,
                        status=attempt.status,
                        started=attempt.started,
                        finished=attempt.finished,
                        worker=attempt.worker,
                        error=attempt.error,
                    )
                )
        view.bars.sort(key=lambda b: (b.started, b.node, b.attempt))


def timeline(bars: list[Bar], now: float | None = None) -> list[dict[str, Any]]:
    """Each bar's left offset and width in percent of the run's span (a Gantt chart)."""
    if not bars:
        return []
    now = now or time.time()
    start = min(b.started for b in bars)
    end = max((b.finished or now) for b in bars)
    span = max(end - start, 1e-6)
    out = []
    for b in bars:
        stop = b.finished or now
        out.append(
            {
                "bar": b,
                "left": round((b.started - start) / span * 100, 2),
                "width": max(round((stop - b.started) / span * 100, 2), 0.5),
                "seconds": round(stop - b.started, 3),
            }
        )
    return out
