"""Progress on a terminal for ``flowcraft run``: a lifecycle plugin drawing with rich."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from flowcraft_core.hookspecs import hookimpl
from flowcraft_core.protocols import Job


class ProgressDisplay:
    """Counts nodes committed out of the blueprint's nodes (skipped ones never count)."""

    def __init__(self, total: int, console: Console) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[last]}"),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.task = self.progress.add_task("nodes", total=total, last="")

    def __enter__(self) -> ProgressDisplay:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    @hookimpl
    def flowcraft_node_finished(self, job: Job, output: Any, action: str | None) -> None:
        self.progress.update(self.task, advance=1, last=job.node_id)

    @hookimpl
    def flowcraft_node_retried(self, job: Job, error: dict[str, Any], delay: float) -> None:
        self.progress.console.print(
            f"[yellow]retrying {job.node_id} (attempt {job.attempt} failed: {error['message']})"
        )
