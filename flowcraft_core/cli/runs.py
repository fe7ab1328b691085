"""``flowcraft start``, ``wait``, ``status``, ``resume`` and ``cancel``: a client of runs that
workers execute elsewhere."""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from flowcraft_core.blueprint import Blueprint
from flowcraft_core.cli.common import (
    EXIT_RUN_NOT_COMPLETED,
    backend_option,
    blueprints_option,
    connect,
    context_option,
    exit_code,
    guarded,
    json_option,
    load_blueprint,
    load_blueprints,
    parse_context,
    parse_json,
    print_result,
    run_async,
)
from flowcraft_core.client import Client, RunResult, RunTimeout
from flowcraft_core.engine import EngineSettings

T = TypeVar("T")


def with_client(
    backend: str | None,
    action: Callable[[Client], Awaitable[T]],
    blueprints: dict[str, Blueprint] | None = None,
) -> T:
    async def go() -> T:
        client = Client(
            await connect(backend), settings=EngineSettings.from_env(), blueprints=blueprints or {}
        )
        try:
            return await action(client)
        finally:
            await client.close()

    return run_async(go())


@click.command()
@click.argument("blueprint", metavar="BLUEPRINT")
@click.option("--input", "input_json", default=None, metavar="JSON", help="The run input.")
@context_option
@click.option("--run-id", default=None, help="Use this run id instead of a random one.")
@click.option(
    "--idempotency-key",
    default=None,
    metavar="KEY",
    help="Start at most one run per KEY: a key seen before prints the first run's id.",
)
@backend_option
@blueprints_option
@guarded
def start(
    blueprint: str,
    input_json: str | None,
    context_json: str | None,
    run_id: str | None,
    idempotency_key: str | None,
    backend: str | None,
    blueprints_dir: str | None,
) -> None:
    """Store BLUEPRINT with a new run and enqueue it; print the run id as the last line.
    BLUEPRINT is a file, or with --blueprints the id of a blueprint in that catalog."""
    catalog = load_blueprints(blueprints_dir)
    bp: Blueprint | str = (
        blueprint if blueprint in catalog and not Path(blueprint).exists() else None
    ) or load_blueprint(blueprint)
    run_input = parse_json(input_json, "--input")
    context = parse_context(context_json)
    click.echo(
        with_client(
            backend,
            lambda c: c.start(
                bp, run_input, context=context, run_id=run_id, idempotency_key=idempotency_key
            ),
            catalog,
        )
    )


@click.command()
@click.argument("run_id")
@backend_option
@click.option(
    "--timeout",
    default=None,
    type=float,
    metavar="SECONDS",
    help="Give up after this long (exit 1).",
)
@json_option
@guarded
def wait(run_id: str, backend: str | None, timeout: float | None, as_json: bool) -> None:
    """Wait until RUN_ID finishes or awaits a resume; print its result (exit codes as `run`)."""

    async def action(client: Client) -> RunResult:
        try:
            return await client.result(run_id, timeout)
        except RunTimeout as exc:
            click.echo(f"error: {exc}", err=True)
            exc.snapshot.error = {"type": "Timeout", "message": str(exc)}
            return exc.snapshot

    result = with_client(backend, action)
    print_result(result, as_json)
    sys.exit(exit_code(result))


@click.command()
@click.argument("run_id")
@backend_option
@json_option
@guarded
def status(run_id: str, backend: str | None, as_json: bool) -> None:
    """Print the status of RUN_ID now (running, awaiting, completed, failed, cancelled), then
    one line per subflow run it started: run id, node, blueprint, status."""

    async def action(client: Client) -> tuple[RunResult, dict[str, dict[str, Any]]]:
        return await client.snapshot(run_id), await client.children(run_id)

    result, children = with_client(backend, action)
    if as_json:
        click.echo(json.dumps({**result.to_dict(), "children": children}, default=str))
    else:
        click.echo(result.status)
        for child, info in children.items():
            click.echo(
                f"  child {child} (node {info['node']!r}, {info['blueprint']}): {info['status']}"
            )


@click.command()
@click.argument("run_id")
@click.option("--action", default=None, help="The action the wait node completes with.")
@click.option(
    "--output", "output_json", default=None, metavar="JSON", help="The wait node's output."
)
@click.option("--node", "node_id", default=None, help="Which wait node, if several wait.")
@backend_option
@guarded
def resume(
    run_id: str,
    action: str | None,
    output_json: str | None,
    node_id: str | None,
    backend: str | None,
) -> None:
    """Resume RUN_ID, parked on a wait node."""
    output: Any = parse_json(output_json, "--output")
    node = with_client(backend, lambda c: c.resume(run_id, action, output, node_id=node_id))
    click.echo(f"resumed {run_id} at node {node}")


@click.command()
@click.argument("run_id")
@backend_option
@guarded
def cancel(run_id: str, backend: str | None) -> None:
    """Cancel RUN_ID: no new node of it starts."""
    won = with_client(backend, lambda c: c.cancel(run_id))
    if won:
        click.echo(f"cancelled {run_id}")
    else:
        click.echo(f"run {run_id} had already finished", err=True)
        sys.exit(EXIT_RUN_NOT_COMPLETED)
