"""What the commands share: exit codes, argument parsing, result printing, error handling."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Container, Coroutine
from typing import Any, NoReturn, TypeVar

import click

from flowcraft_core.blueprint import Blueprint
from flowcraft_core.client import RunResult
from flowcraft_core.drivers import Backends, mask, open_backends
from flowcraft_core.errors import BlueprintError, DriverError, FlowcraftError, RegistryError
from flowcraft_core.protocols import Op
from flowcraft_core.threads import NodeThreads

EXIT_OK = 0
EXIT_RUN_NOT_COMPLETED = 1
EXIT_USAGE = 2

T = TypeVar("T")

backend_option = click.option(
    "--backend",
    envvar="FLOWCRAFT_BACKEND",
    default=None,
    metavar="URL",
    help="Backend URL for all components (env FLOWCRAFT_BACKEND), e.g. redis://localhost:6379/0.",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout."
)


def fail_usage(message: str) -> None:
    """Print ``message`` on stderr and exit 2 (usage error / invalid blueprint)."""
    click.echo(f"error: {message}", err=True)
    sys.exit(EXIT_USAGE)


def guarded(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn flowcraft's errors into one clear message and the contract's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (BlueprintError, RegistryError, DriverError) as exc:
            fail_usage(str(exc))
        except FlowcraftError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(EXIT_RUN_NOT_COMPLETED)
        except (KeyboardInterrupt, SystemExit, click.exceptions.Exit, click.ClickException):
            raise
        except Exception as exc:
            # A backend failure mid-command (Redis gone, say): one line, not a traceback,
            # unless -v asked for details.
            if logging.getLogger().isEnabledFor(logging.INFO):
                raise
            click.echo(f"error: {type(exc).__name__}: {exc} (run with -v for details)", err=True)
            sys.exit(EXIT_RUN_NOT_COMPLETED)

    return wrapper


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def load_blueprint(path: str, known_uses: Container[str] | None = None) -> Blueprint:
    """The blueprint in ``path``; if it cannot be read whole, the error lists every problem
    (an unknown ``uses`` too, given the registry's ``known_uses``)."""
    return Blueprint.load(path, known_uses=known_uses)


blueprints_option = click.option(
    "--blueprints",
    "blueprints_dir",
    default=None,
    metavar="DIR",
    help="A catalog: every *.json/*.yaml blueprint in DIR, by id, for the subflows to name.",
)


def load_blueprints(directory: str | None) -> dict[str, Blueprint]:
    """The ``--blueprints DIR`` catalog (empty without one); errors name the file."""
    if directory is None:
        return {}
    from flowcraft_core.catalog import load_catalog

    return load_catalog(directory)


def parse_json(value: str | None, what: str) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        fail_usage(f"{what} is not valid JSON: {exc.msg} at position {exc.pos}: {value[:200]!r}")
    except RecursionError:
        fail_usage(f"{what} is nested too deeply")
    except ValueError as exc:  # an integer literal longer than Python converts
        fail_usage(f"{what} is not valid JSON: {exc}")
    return None


context_option = click.option(
    "--context",
    "context_json",
    default=None,
    metavar="JSON",
    help="The run's initial context, a JSON object (Flowcraft's initial state).",
)


def parse_context(value: str | None) -> dict[str, Any] | None:
    context = parse_json(value, "--context")
    if context is None:
        return None
    if not isinstance(context, dict):
        fail_usage(f"--context must be a JSON object, got {type(context).__name__}")
    return dict(context)


async def connect(backend: str | None) -> Backends:
    """Open backends and prove they answer, with a one-line error naming the URL if not."""
    backends = open_backends(backend)
    try:
        await backends.coordination.batch([Op.get("ping")])
        await backends.context.has("ping", "ping")
    except Exception as exc:
        await _close_quietly(backends)
        urls = ", ".join(sorted(set(backends.urls.values())))
        raise DriverError(
            mask(f"cannot reach backend {urls}: {type(exc).__name__}: {exc}")
        ) from None
    return backends


async def _close_quietly(backends: Backends) -> None:
    with contextlib.suppress(Exception):
        await backends.close()


def leave(code: int) -> NoReturn:
    """Exit with ``code`` now, even if sync node code abandoned in a thread (timed out or
    cancelled: Python cannot stop it) is still running, which a normal exit would wait for."""
    # Only abandoned attempts can still be running: every other attempt has returned, and the
    # pools' idle threads end as the interpreter exits.
    abandoned = NodeThreads.abandoned_in_process()
    if not abandoned:
        sys.exit(code)
    logging.getLogger(__name__).warning(
        "leaving %d thread(s) of sync node code still running (abandoned)", abandoned
    )
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def exit_code(result: RunResult) -> int:
    return EXIT_OK if result.status == "completed" else EXIT_RUN_NOT_COMPLETED


def print_result(result: RunResult, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(result.to_dict(), default=str))
        return
    from rich.console import Console
    from rich.pretty import Pretty

    console = Console()
    style = {"completed": "green", "awaiting": "yellow"}.get(result.status, "red")
    console.print(f"run [bold]{result.run_id}[/] [bold {style}]{result.status}[/]")
    if result.outputs:
        console.print(Pretty(result.outputs))
    if result.error:
        err = result.error
        console.print(
            f"[red]node {err.get('node')!r} failed: {err.get('type')}: {err.get('message')}[/]"
        )
    if result.status == "awaiting":
        console.print(
            f"resume it with: flowcraft resume {result.run_id} --action ACTION --output JSON "
            "(on a shared backend; an in-process memory:// run ends with this process)"
        )
