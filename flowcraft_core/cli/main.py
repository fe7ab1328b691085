"""The ``flowcraft`` command group."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

import click

from flowcraft_core.cli.common import EXIT_USAGE
from flowcraft_core.cli.run import drivers, graph, run, validate_command

DISTRIBUTION = "flowcraft"
"""The distribution this command ships in: its extras say what a missing module needs."""


class LazyGroup(click.Group):
    """Commands that need heavy or optional imports are loaded only when called."""

    lazy = {
        "conformance": ("flowcraft_conformance.runner", "conformance_command"),
        "start": ("flowcraft_core.cli.runs", "start"),
        "wait": ("flowcraft_core.cli.runs", "wait"),
        "status": ("flowcraft_core.cli.runs", "status"),
        "resume": ("flowcraft_core.cli.runs", "resume"),
        "cancel": ("flowcraft_core.cli.runs", "cancel"),
        "runs": ("flowcraft_core.cli.ops", "runs"),
        "retry": ("flowcraft_core.cli.ops", "retry"),
        "fork": ("flowcraft_core.cli.ops", "fork"),
        "worker": ("flowcraft_core.cli.worker", "worker"),
        "reconcile": ("flowcraft_core.cli.worker", "reconcile_command"),
        "ui": ("flowcraft_ui.cli", "ui"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, attr = self.lazy[name]
            try:
                command: click.Command = getattr(importlib.import_module(module), attr)
            except ModuleNotFoundError as exc:
                return _needs_extra(name, exc)
            return command
        return super().get_command(ctx, name)


def _needs_extra(name: str, exc: ModuleNotFoundError) -> click.Command:
    """A stand-in for command ``name`` whose module lacks ``exc.name``: listed in ``--help``,
    and when run, one line naming the extra that brings it (read from the package's metadata,
    the extra named like the command preferred)."""
    from importlib.metadata import PackageNotFoundError, distribution

    from flowcraft_core.plugins import install_line, missing_requirement

    try:
        requirement, extra = missing_requirement(
            distribution(DISTRIBUTION), exc.name or "", prefer=name
        )
    except PackageNotFoundError:
        requirement, extra = None, None
    if requirement is None:
        raise exc
    line = install_line(f"flowcraft {name}", requirement, extra, str(exc))

    def explain() -> None:
        click.echo(f"error: {line}", err=True)
        sys.exit(EXIT_USAGE)

    return click.Command(
        name,
        callback=explain,
        help=f"(not installed: pip install '{requirement}')",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    )


@click.group(cls=LazyGroup)
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """flowcraft: run workflows on pluggable backends."""
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


cli.add_command(run)
cli.add_command(validate_command)
cli.add_command(graph)
cli.add_command(drivers)


def main(argv: Any = None) -> None:
    # The current directory is importable, as for `python -m`: --registry names user modules.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    cli.main(args=argv, prog_name="flowcraft")
