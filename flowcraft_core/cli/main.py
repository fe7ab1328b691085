"""The ``flowcraft`` command group."""

from __future__ import annotations

import logging
import os
from typing import Any

import click

from flowcraft_core.cli.run import drivers, graph, run, validate_command


class LazyGroup(click.Group):
    """Commands that need heavy or optional imports are loaded only when called."""

    lazy = {
        "conformance": ("flowcraft_conformance.runner", "conformance_command"),
        "start": ("flowcraft_core.cli.runs", "start"),
        "wait": ("flowcraft_core.cli.runs", "wait"),
        "status": ("flowcraft_core.cli.runs", "status"),
        "resume": ("flowcraft_core.cli.runs", "resume"),
        "cancel": ("flowcraft_core.cli.runs", "cancel"),
        "worker": ("flowcraft_core.cli.worker", "worker"),
        "reconcile": ("flowcraft_core.cli.worker", "reconcile_command"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, attr = self.lazy[name]
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, name)


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
    import sys

    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    cli.main(args=argv, prog_name="flowcraft")
