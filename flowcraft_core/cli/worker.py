"""``flowcraft worker`` and ``flowcraft reconcile``."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
from typing import Any

import click

from flowcraft_core.cli.common import (
    backend_option,
    blueprints_option,
    connect,
    guarded,
    load_blueprints,
    run_async,
)
from flowcraft_core.drivers import mask
from flowcraft_core.engine import EngineSettings
from flowcraft_core.engine.reconcile import orphans, reconcile
from flowcraft_core.registry import load_registry
from flowcraft_core.worker import Worker

log = logging.getLogger("flowcraft.worker")

Metrics = tuple[int | None, str] | None
"""Where a worker process serves its metrics (port, host); port None: it only records them."""


def _metrics() -> Any:
    """The metrics package, or a clear error naming the extra that brings it."""
    try:
        import flowcraft_metrics
    except ModuleNotFoundError as exc:
        raise click.ClickException(
            f"--metrics-port needs the 'metrics' extra ({exc.name} is not installed): "
            "pip install 'flowcraft[metrics]'"
        ) from None
    return flowcraft_metrics


async def serve(
    registry_spec: str,
    backend: str | None,
    concurrency: int,
    reconcile_every: float | None,
    stale_after: float,
    blueprints_dir: str | None = None,
    metrics: Metrics = None,
) -> bool:
    """One worker process: run until SIGTERM/SIGINT, then finish in-flight jobs and hand
    back prefetched ones. A second signal stops at once: in-flight jobs are cancelled and
    handed back, to be redelivered. Returns whether threads of abandoned sync node code are
    still running (then the process must exit without waiting for them). With ``metrics``
    (port, host), it serves Prometheus metrics there; with ``(None, "")``, it records them
    for its parent to serve (multiprocess mode)."""
    if metrics is not None:
        port, host = metrics
        if port is None:
            _metrics().enable()
        else:
            _metrics().serve(port, host)
    registry = load_registry(registry_spec)
    catalog = load_blueprints(blueprints_dir)
    backends = await connect(backend)
    stop = asyncio.Event()
    now = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        (now if stop.is_set() else stop).set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    worker = Worker(
        registry,
        backends,
        concurrency=concurrency,
        settings=EngineSettings.from_env(),
        reconcile_every=reconcile_every,
        stale_after=stale_after,
        blueprints=catalog,
    )
    await worker.start()
    log.info(
        "worker %d ready (%d at a time) on %s", os.getpid(), concurrency, mask(str(backends.urls))
    )
    click.echo(f"flowcraft worker {os.getpid()} ready", err=True)
    try:
        await stop.wait()
    finally:
        pid = os.getpid()
        click.echo(
            f"flowcraft worker {pid} stopping: finishing in-flight jobs "
            "(signal again to stop now; they will be redelivered)",
            err=True,
        )
        draining = asyncio.create_task(worker.stop(drain=True))
        impatient = asyncio.create_task(now.wait())
        await asyncio.wait({draining, impatient}, return_when=asyncio.FIRST_COMPLETED)
        if not draining.done():
            click.echo(f"flowcraft worker {pid} stopping now: in-flight jobs handed back", err=True)
            await worker.stop(drain=False)
            await draining
        impatient.cancel()
        await backends.close()
    return worker.engine.threads.abandoned > 0


def _exit_past_threads(stuck: bool) -> None:
    """Exit now if node threads that cannot be stopped still run: the interpreter would wait
    for them forever at exit. Their jobs were handed back, so nothing is lost."""
    if stuck:
        click.echo(
            f"flowcraft worker {os.getpid()} exits leaving sync node code running in threads",
            err=True,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)


def _child(
    registry_spec: str,
    backend: str | None,
    concurrency: int,
    reconcile_every: float | None,
    stale_after: float,
    blueprints_dir: str | None = None,
    metrics: Metrics = None,
) -> None:
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    _exit_past_threads(
        asyncio.run(
            serve(
                registry_spec,
                backend,
                concurrency,
                reconcile_every,
                stale_after,
                blueprints_dir,
                metrics,
            )
        )
    )


@click.command()
@click.option(
    "--registry",
    "registry_spec",
    required=True,
    metavar="MODULE:ATTR",
    help="A dict of callables or a Registry.",
)
@backend_option
@blueprints_option
@click.option("--processes", default=1, show_default=True, help="Worker processes.")
@click.option("--concurrency", default=8, show_default=True, help="Jobs at a time per process.")
@click.option(
    "--reconcile-every",
    default=60.0,
    show_default=True,
    type=float,
    help="Seconds between sweeps for stalled runs (0 disables).",
)
@click.option(
    "--stale-after",
    default=300.0,
    show_default=True,
    type=float,
    help="A run with no progress for this long is reconciled.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=None,
    metavar="PORT",
    help="Serve Prometheus metrics at http://HOST:PORT/metrics (the 'metrics' extra); with "
    "--processes N, one port for the sum of all N.",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics endpoint binds (0.0.0.0 for a remote Prometheus).",
)
@guarded
def worker(
    registry_spec: str,
    backend: str | None,
    blueprints_dir: str | None,
    processes: int,
    concurrency: int,
    reconcile_every: float,
    stale_after: float,
    metrics_port: int | None,
    metrics_host: str,
) -> None:
    """Execute jobs until SIGTERM/SIGINT; then finish in-flight jobs and hand back the rest.
    A second SIGTERM/SIGINT stops at once, handing in-flight jobs back to be redelivered.

    Engine tunables come from FLOWCRAFT_<SETTING> variables, e.g. FLOWCRAFT_RETENTION (seconds a
    finished run is kept), FLOWCRAFT_LEASE_TTL, FLOWCRAFT_MISSING_RETRIES."""
    load_registry(registry_spec)  # fail fast, in the parent, on a bad --registry
    load_blueprints(blueprints_dir)  # and on a bad --blueprints
    run_async(_probe(backend))
    every = reconcile_every or None
    if processes <= 1:
        metrics = None if metrics_port is None else (metrics_port, metrics_host)
        _exit_past_threads(
            run_async(
                serve(
                    registry_spec, backend, concurrency, every, stale_after, blueprints_dir, metrics
                )
            )
        )
        return
    child_metrics: Metrics = None
    made_dir = None
    if metrics_port is not None:
        # prometheus_client's multiprocess mode: the children (spawned, so they read the
        # variable as they import it) write their values to files there, and this process
        # serves their sum on the one port.
        if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            made_dir = tempfile.mkdtemp(prefix="flowcraft-metrics-")
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = made_dir
        _metrics().serve_multiprocess(metrics_port, metrics_host)
        child_metrics = (None, "")
    ctx = multiprocessing.get_context("spawn")
    children = [
        ctx.Process(
            target=_child,
            args=(
                registry_spec,
                backend,
                concurrency,
                every,
                stale_after,
                blueprints_dir,
                child_metrics,
            ),
            name=f"flowcraft-worker-{i}",
        )
        for i in range(processes)
    ]
    for child in children:
        child.start()

    def forward(signum: int, _frame: object) -> None:
        for child in children:
            if child.is_alive() and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    for child in children:
        child.join()
    if made_dir is not None:
        shutil.rmtree(made_dir, ignore_errors=True)
    codes = [c.exitcode for c in children]
    if any(code not in (0, None, -signal.SIGTERM) for code in codes):
        sys.exit(1)


async def _probe(backend: str | None) -> None:
    backends = await connect(backend)
    await backends.close()


@click.command(name="reconcile")
@backend_option
@click.option(
    "--older-than",
    default=300.0,
    show_default=True,
    type=float,
    metavar="S",
    help="Only runs without progress for this many seconds.",
)
@guarded
def reconcile_command(backend: str | None, older_than: float) -> None:
    """Re-enqueue the ready frontier of runs without progress (always safe)."""

    async def go() -> tuple[list[str], list[str]]:
        backends = await connect(backend)
        try:
            return await reconcile(backends, older_than=older_than), await orphans(backends)
        finally:
            await backends.close()

    touched, lost = run_async(go())
    for run_id in touched:
        click.echo(run_id)
    click.echo(f"reconciled {len(touched)} run(s)", err=True)
    if lost:
        click.echo(
            f"{len(lost)} unfinished run(s) have no bookkeeping left (expired after run_ttl, or "
            "a start that died half way); reconcile cannot revive them and their context is "
            "kept until they are cancelled (flowcraft cancel RUN):",
            err=True,
        )
        for run_id in lost:
            click.echo(f"  {run_id}", err=True)
