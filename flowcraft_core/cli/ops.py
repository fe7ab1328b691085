"""``flowcraft runs list|show``: the run index and a run's per-node timeline, for operators and
scripts (with ``--json``, one JSON value as the last line of stdout)."""

from __future__ import annotations

import datetime
import json
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import click

from flowcraft_core.builtins import duration_ms
from flowcraft_core.cli.common import (
    backend_option,
    exit_code,
    fail_usage,
    guarded,
    json_option,
    print_result,
)
from flowcraft_core.cli.runs import with_client
from flowcraft_core.client import MAX_LIST, RUN_STATUSES, Client, RunResult, RunTimeout
from flowcraft_core.engine.history import RunHistory, RunSummary


def iso(at: float | None) -> str | None:
    """A Unix time as ISO 8601 in UTC (None stays None)."""
    if at is None:
        return None
    return datetime.datetime.fromtimestamp(at, datetime.UTC).isoformat()


def parse_since(value: str | None) -> float | None:
    """``--since``: an ISO 8601 time (UTC unless it names its offset) or a duration before now
    (``30s``, ``10m``, ``2h``, ``1d``, ``500ms``)."""
    if value is None:
        return None
    ms = duration_ms(value)
    if ms is not None:
        return time.time() - ms / 1000
    try:
        parsed = datetime.datetime.fromisoformat(value)
    except ValueError:
        fail_usage(
            f"--since {value!r} is neither an ISO 8601 time (2026-12-01T18:00:00) nor a "
            "duration (30s, 10m, 2h, 1d)"
        )
        raise  # unreachable: fail_usage exits
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def short(at: float | None) -> str:
    """A Unix time for a table: UTC, to the millisecond."""
    if at is None:
        return ""
    return datetime.datetime.fromtimestamp(at, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def console() -> Any:
    """A console for tables: the terminal's width, or a wide one when piped, so run ids and
    times are never cut."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 240)


def summary_json(run: RunSummary) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "flow": run.flow,
        "status": run.status,
        "started": iso(run.started),
        "finished": iso(run.finished),
    }


def history_json(history: RunHistory) -> dict[str, Any]:
    return {
        "run_id": history.run_id,
        "flow": history.flow,
        "status": history.status,
        "nodes": [
            {
                "node": node.node,
                "instance": node.instance,
                "attempts": [
                    {
                        "attempt": a.attempt,
                        "status": a.status,
                        "started": iso(a.started),
                        "finished": iso(a.finished),
                        "error": a.error,
                    }
                    for a in node.attempts
                ],
            }
            for node in history.nodes
        ],
        "events": [
            {**event, "at": iso(event.get("at"))} if "at" in event else event
            for event in history.events
        ],
    }


STYLE = {"completed": "green", "awaiting": "yellow", "running": "cyan", "pending": "dim"}


def _style(status: str) -> str:
    return STYLE.get(status, "red" if status in ("failed", "timed_out", "cancelled") else "")


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}s"


@click.group()
def runs() -> None:
    """List runs from the run index, or show one run's per-node timeline."""


@runs.command("list")
@click.option("--status", type=click.Choice(RUN_STATUSES), default=None, help="Only this status.")
@click.option("--flow", "flow_id", default=None, metavar="ID", help="Only this blueprint id.")
@click.option(
    "--since", default=None, metavar="ISO|DURATION", help="Started at/after (or 10m, 2h, 1d ago)."
)
@click.option(
    "--limit",
    type=click.IntRange(1, MAX_LIST),
    default=50,
    show_default=True,
    help="At most this many runs, newest first.",
)
@json_option
@backend_option
@guarded
def list_runs(
    status: str | None,
    flow_id: str | None,
    since: str | None,
    limit: int,
    as_json: bool,
    backend: str | None,
) -> None:
    """Runs newest first (a table; --json: one JSON array as the last line)."""
    start = parse_since(since)
    page = with_client(
        backend, lambda c: c.runs(status=status, flow=flow_id, since=start, limit=limit)
    )
    if as_json:
        click.echo(json.dumps([summary_json(r) for r in page.runs]))
        return
    from rich.table import Table

    table = Table("run", "flow", "status", "started (UTC)", "finished", "duration")
    for run in page.runs:
        duration = None if run.finished is None else run.finished - run.started
        style = _style(run.status)
        table.add_row(
            run.run_id,
            run.flow,
            f"[{style}]{run.status}[/]" if style else run.status,
            short(run.started),
            short(run.finished),
            _seconds(duration),
        )
    console().print(table)
    if page.cursor is not None:
        click.echo("(more: raise --limit, or narrow with --since/--status/--flow)", err=True)


@runs.command("show")
@click.argument("run_id")
@json_option
@backend_option
@guarded
def show_run(run_id: str, as_json: bool, backend: str | None) -> None:
    """RUN_ID and its per-node timeline (a table; --json: one JSON object as the last line)."""
    history = with_client(backend, lambda c: c.history(run_id))
    if as_json:
        click.echo(json.dumps(history_json(history), default=str))
        return
    from rich.table import Table

    out = console()
    style = _style(history.status)
    out.print(
        f"run [bold]{history.run_id}[/] of [bold]{history.flow}[/] "
        f"[bold {style}]{history.status}[/]  started {short(history.started)} UTC"
        + (f"  finished {short(history.finished)}" if history.finished else "")
    )
    table = Table("node", "instance", "attempt", "status", "started", "duration", "worker", "error")
    for node in history.nodes:
        if not node.attempts:
            st = _style(node.status)
            table.add_row(
                node.node, node.instance, "", f"[{st}]{node.status}[/]" if st else node.status
            )
        for a in node.attempts:
            st = _style(a.status)
            error = f"{a.error.get('type')}: {a.error.get('message')}" if a.error else ""
            table.add_row(
                node.node,
                node.instance,
                str(a.attempt)
                + ("" if a.superseded is None else f" (before retry {a.superseded})"),
                f"[{st}]{a.status}[/]" if st else a.status,
                short(a.started),
                _seconds(a.duration),
                a.worker or "",
                error,
            )
    out.print(table)
    for event in history.events:
        out.print(f"  {short(event.get('at'))}  {event.get('event')}")
    if history.error:
        err = history.error
        out.print(
            f"[red]node {err.get('node')!r} failed: {err.get('type')}: {err.get('message')}[/]"
        )


@click.command()
@click.argument("run_id")
@click.option("--from", "from_node", default=None, metavar="NODE", help="Re-run from NODE on.")
@click.option("--wait", "wait_", is_flag=True, help="Wait for the run's result (exit as `run`).")
@click.option("--timeout", default=None, type=float, metavar="SECONDS", help="With --wait.")
@json_option
@backend_option
@guarded
def retry(
    run_id: str,
    from_node: str | None,
    wait_: bool,
    timeout: float | None,
    as_json: bool,
    backend: str | None,
) -> None:
    """Re-run failed or cancelled RUN_ID in place: its nodes that did not complete (or NODE
    and all after it), keeping every other committed output. Prints the run id as the last
    line; with --wait, its result as `run` does."""

    _then_wait(backend, lambda client: client.retry(run_id, from_node), wait_, timeout, as_json)


def _then_wait(
    backend: str | None,
    call: Callable[[Client], Awaitable[str]],
    wait_: bool,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Run ``call`` (a retry or fork, giving the run id to follow); print that id as the last
    line, or with ``wait_`` wait for the run and print and exit as `run` does."""

    async def action(client: Client) -> RunResult | str:
        started = await call(client)
        if not wait_:
            return started
        try:
            return await client.result(started, timeout)
        except RunTimeout as exc:
            click.echo(f"error: {exc}", err=True)
            exc.snapshot.error = {"type": "Timeout", "message": str(exc)}
            return exc.snapshot

    outcome = with_client(backend, action)
    if isinstance(outcome, str):
        click.echo(outcome)
        return
    print_result(outcome, as_json)
    sys.exit(exit_code(outcome))


@click.command()
@click.argument("run_id")
@click.option(
    "--from", "from_node", required=True, metavar="NODE", help="Re-run from NODE on (required)."
)
@click.option(
    "--wait", "wait_", is_flag=True, help="Wait for the new run's result (exit as `run`)."
)
@click.option("--timeout", default=None, type=float, metavar="SECONDS", help="With --wait.")
@json_option
@backend_option
@guarded
def fork(
    run_id: str,
    from_node: str,
    wait_: bool,
    timeout: float | None,
    as_json: bool,
    backend: str | None,
) -> None:
    """Re-run finished RUN_ID from NODE in a new run: the new run keeps every committed output
    of the nodes before NODE (they do not run again) and runs NODE and all after it; RUN_ID
    is left as it was. Prints the new run's id as the last line; with --wait, its result as
    `run` does. A running or awaiting run is refused (wait for it, or cancel it first)."""
    _then_wait(backend, lambda client: client.fork(run_id, from_node), wait_, timeout, as_json)
