"""``flowcraft ui``: serve the dashboard."""

from __future__ import annotations

import asyncio
import os
import secrets

import click

from flowcraft_core.cli.common import backend_option, guarded

TOKEN_ENV = "FLOWCRAFT_UI_TOKEN"


@click.command()
@backend_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535))
@guarded
def ui(backend: str | None, host: str, port: int) -> None:
    """Serve the web dashboard: runs, their graphs and timelines, live; resume, cancel, retry
    and fork with the token (FLOWCRAFT_UI_TOKEN, or a fresh one printed here)."""
    import uvicorn

    from flowcraft_core import Client
    from flowcraft_core.cli.common import connect
    from flowcraft_ui.app import create_app

    token = os.environ.get(TOKEN_ENV) or secrets.token_urlsafe(18)

    async def main() -> None:
        backends = await connect(backend)
        client = Client(backends)
        app = create_app(client, token, own_client=True)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        server = uvicorn.Server(config)
        shown = "(from FLOWCRAFT_UI_TOKEN)" if os.environ.get(TOKEN_ENV) else token
        click.echo(f"flowcraft ui on http://{host}:{port}/ ; action token: {shown}", err=True)
        await server.serve()

    asyncio.run(main())
