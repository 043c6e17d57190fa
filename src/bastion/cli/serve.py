"""``bastion serve``: run the gateway."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.cli.options import ConfigOpt
from bastion.config import load_settings


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to ``app``."""

    @app.command("serve")
    def serve_cmd(
        config: ConfigOpt = None,
        host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")] = None,
        port: Annotated[int | None, typer.Option(help="Port to listen on (default 8080).")] = None,
        workers: Annotated[
            int | None, typer.Option(help="Gateway processes sharing the port (default 1; server.workers).")
        ] = None,
    ) -> None:
        """Serve the configured models behind an OpenAI-compatible API (Ctrl-C or SIGTERM to stop)."""
        from bastion.serve import serve

        env = {}
        if host is not None:
            env["BASTION_SERVER__HOST"] = host
        if port is not None:
            env["BASTION_SERVER__PORT"] = str(port)
        if workers is not None:
            env["BASTION_SERVER__WORKERS"] = str(workers)
        import os

        serve(load_settings(config, {**os.environ, **env}))
