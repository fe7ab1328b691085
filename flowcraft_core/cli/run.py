"""``flowcraft run``, ``validate``, ``graph`` and ``drivers``: commands that need no workers."""

from __future__ import annotations

import sys

import click

from flowcraft_core.cli.common import (
    EXIT_USAGE,
    backend_option,
    blueprints_option,
    connect,
    context_option,
    exit_code,
    guarded,
    json_option,
    leave,
    load_blueprint,
    load_blueprints,
    parse_context,
    parse_json,
    print_result,
    run_async,
)
from flowcraft_core.client import RunResult, RunTimeout
from flowcraft_core.drivers import installed_drivers, unavailable_drivers
from flowcraft_core.engine import EngineSettings
from flowcraft_core.errors import BlueprintError
from flowcraft_core.graph import to_mermaid
from flowcraft_core.plugins import default_manager
from flowcraft_core.registry import load_registry
from flowcraft_core.validation import validate


@click.command()
@click.argument("blueprint", metavar="BLUEPRINT")
@click.option(
    "--registry",
    "registry_spec",
    required=True,
    metavar="MODULE:ATTR",
    help="A dict of callables or a Registry, e.g. examples.orders:registry.",
)
@click.option("--input", "input_json", default=None, metavar="JSON", help="The run input.")
@context_option
@backend_option
@blueprints_option
@click.option("--concurrency", default=8, show_default=True, help="Jobs at a time.")
@click.option(
    "--timeout",
    default=None,
    type=float,
    metavar="SECONDS",
    help="Give up waiting after this long (exit 1).",
)
@json_option
@guarded
def run(
    blueprint: str,
    registry_spec: str,
    input_json: str | None,
    context_json: str | None,
    backend: str | None,
    blueprints_dir: str | None,
    concurrency: int,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Run a whole workflow in this process (default backend memory://).

    Exit 0 when the run completed, 1 when it failed, was cancelled or awaits a resume, 2 for
    usage errors and invalid blueprints."""
    from flowcraft_core.local import run_workflow
    from flowcraft_core.validation import check

    registry = load_registry(registry_spec)
    bp = load_blueprint(blueprint, known_uses=registry)
    catalog = load_blueprints(blueprints_dir)
    check(bp, known_uses=registry)
    run_input = parse_json(input_json, "--input")
    context = parse_context(context_json)

    async def go() -> RunResult:
        backends = await connect(backend or "memory://")
        try:
            return await run_workflow(
                bp,
                registry,
                run_input,
                context=context,
                backend=backends,
                concurrency=concurrency,
                timeout=timeout,
                settings=EngineSettings.from_env(),
                blueprints=catalog,
            )
        except RunTimeout as exc:
            click.echo(
                f"error: {exc}; nodes still running were cancelled, uncommitted, and their "
                "jobs handed back to the queue",
                err=True,
            )
            snapshot = exc.snapshot
            snapshot.error = {"type": "Timeout", "message": str(exc)}
            return snapshot
        finally:
            await backends.close()

    from rich.console import Console

    console = Console(stderr=True)
    if console.is_terminal:
        from flowcraft_core.cli.progress import ProgressDisplay

        display = ProgressDisplay(len(bp.nodes), console)
        pm = default_manager()
        pm.register(display, name="flowcraft-progress")
        try:
            with display:
                result = run_async(go())
        finally:
            pm.unregister(display)
    else:
        result = run_async(go())
    print_result(result, as_json)
    leave(exit_code(result))


@click.command(name="validate")
@click.argument("file", metavar="FILE")
@click.option(
    "--registry",
    "registry_spec",
    default=None,
    metavar="MODULE:ATTR",
    help="Also check that every `uses` is registered.",
)
@blueprints_option
def validate_command(file: str, registry_spec: str | None, blueprints_dir: str | None) -> None:
    """Check a blueprint; list every problem (exit 2 if there is any). With --blueprints, also
    that every subflow names a blueprint in that catalog and none includes itself."""
    from flowcraft_core.catalog import closure

    try:
        known = load_registry(registry_spec) if registry_spec else None
        bp = load_blueprint(file, known_uses=known)
        catalog = load_blueprints(blueprints_dir)
    except BlueprintError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_USAGE)
    problems = validate(bp, known_uses=known)
    if blueprints_dir is not None and not problems:
        try:
            closure(bp, catalog)
        except BlueprintError as exc:
            problems = exc.problems
    if problems:
        click.echo(str(BlueprintError(problems, bp.id)), err=True)
        sys.exit(EXIT_USAGE)
    click.echo(
        f"{file}: blueprint {bp.id!r} is valid ({len(bp.nodes)} nodes, {len(bp.edges)} edges)"
    )


@click.command()
@click.argument("file", metavar="FILE")
@guarded
def graph(file: str) -> None:
    """Print the blueprint as a Mermaid flowchart."""
    click.echo(to_mermaid(load_blueprint(file)))


@click.command()
@json_option
def drivers(as_json: bool) -> None:
    """List installed drivers, their URL schemes and capabilities."""
    import json

    infos = installed_drivers()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "name": i.name,
                        "schemes": list(i.schemes),
                        "provides": list(i.provides),
                        "capabilities": i.capabilities,
                        "description": i.description,
                    }
                    for i in infos
                ]
            )
        )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table("driver", "schemes", "provides", "capabilities")
    for i in infos:
        caps = ", ".join(f"{k}={v}" for k, v in sorted(i.capabilities.items()))
        table.add_row(i.name, " ".join(s + "://" for s in i.schemes), ", ".join(i.provides), caps)
    Console().print(table)
    for missing in unavailable_drivers():
        schemes = " ".join(s + "://" for s in missing.schemes)
        click.echo(f"not available: {missing.name} ({schemes}): {missing.reason}")
