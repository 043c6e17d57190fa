"""Assemble the gateway from settings and run it under uvicorn."""

from __future__ import annotations

import logging

import uvicorn

from bastion.config import ModelSettings, Settings
from bastion.errors import ConfigError
from bastion.keys import KeyStore
from bastion.serve.app import Gateway, build_app
from bastion.serve.backends import Backend
from bastion.serve.backends.llama_cpp import LlamaCppBackend
from bastion.serve.backends.upstream import UpstreamBackend, upstream_host
from bastion.serve.egress import install_egress_guard
from bastion.serve.router import Router

log = logging.getLogger("bastion.serve")


def make_backend(model: ModelSettings) -> Backend:
    """The backend a model's settings call for."""
    if model.backend == "llama_cpp":
        return LlamaCppBackend(model)
    if model.backend == "openai":
        return UpstreamBackend(model)
    if model.backend == "minilm":
        from bastion.serve.backends.minilm import MiniLMBackend

        return MiniLMBackend(model)
    raise ConfigError(f"model {model.name!r}: unknown backend {model.backend!r}")


def build_gateway(settings: Settings) -> Gateway:
    """A gateway with one backend per configured model (not started yet)."""
    if not settings.models:
        raise ConfigError(
            "no models are configured", hint="Add a [[models]] table; see bastion.example.toml."
        )
    backends = {m.name: make_backend(m) for m in settings.models}
    router = Router(backends, {m.name: m.fallbacks for m in settings.models})
    return Gateway(settings, KeyStore(settings.store.path), router)


def serve(settings: Settings) -> None:
    """Run the gateway until SIGINT/SIGTERM; shuts backends down cleanly."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.egress.guard:
        hosts = [*settings.egress.allow, *(upstream_host(m.url) for m in settings.models if m.url)]
        install_egress_guard(hosts)
        log.info("egress guard on: loopback and %s", ", ".join(sorted(set(hosts))) or "nothing else")
    gateway = build_gateway(settings)
    config = uvicorn.Config(
        build_app(gateway),
        host=settings.server.host,
        port=settings.server.port,
        loop="asyncio",  # not uvloop: the egress guard must see every connect (see serve/egress.py)
        http="httptools",
        access_log=settings.server.access_log,
        log_level="info",
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    uvicorn.Server(config).run()
