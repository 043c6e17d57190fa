"""Assemble the gateway from settings and run it under uvicorn."""

from __future__ import annotations

import logging
import os

import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.audit import AuditLog, require_audit
from bastion.bundled import data_home
from bastion.config import ModelSettings, Settings
from bastion.errors import ConfigError
from bastion.keys import KeyStore
from bastion.policy import LEVELS, AccessPolicy, CedarAuthorizer
from bastion.quota.quotas import Quotas
from bastion.registry import open_registry
from bastion.serve.app import AdmissionCheck, Gateway, build_app
from bastion.serve.backends import Backend
from bastion.serve.backends.llama_cpp import LlamaCppBackend
from bastion.serve.backends.upstream import UpstreamBackend, upstream_host
from bastion.serve.egress import install_egress_guard
from bastion.serve.router import Router
from bastion.signing import load_public_key
from bastion.withdrawal import WithdrawalStore

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


def build_authorizer(settings: Settings) -> CedarAuthorizer:
    """Per-request access by Cedar: the configured policy and group clearances (models carry ceilings)."""
    policy = AccessPolicy(
        settings.policy.access, {group: LEVELS[level] for group, level in settings.policy.clearance.items()}
    )
    return CedarAuthorizer(policy)


def build_admission_check(settings: Settings) -> AdmissionCheck | None:
    """When the registry is enforced: the check that a local model is admitted and unchanged."""
    local = any(m.local for m in settings.models) or settings.registry.serve_admitted
    if not settings.registry.enforce or not local:
        return None  # nothing local to admit: upstream weights are not on this host
    key_file = settings.registry.public_key
    if not key_file.exists():
        raise ConfigError(
            f"registry.enforce is on but the organisation public key {key_file} does not exist",
            hint="Set registry.public_key to the .pub.pem of the key models are admitted with"
            " ('bastion signing-key generate'), or set registry.enforce = false.",
        )
    return AdmissionCheck(open_registry(settings), load_public_key(key_file))


def build_gateway(settings: Settings) -> Gateway:
    """A gateway with one backend per configured model (not started yet)."""
    if not settings.models:
        raise ConfigError(
            "no models are configured", hint="Add a [[models]] table; see bastion.example.toml."
        )
    admission = build_admission_check(settings)
    authorizer = build_authorizer(settings)
    audit = None
    if settings.audit.enabled:
        require_audit(settings.audit)
        audit = AuditLog.open(settings.audit)
    backends = {m.name: make_backend(m) for m in settings.models}
    router = Router(backends, {m.name: m.fallbacks for m in settings.models})
    return Gateway(
        settings,
        KeyStore(settings.store.path),
        router,
        authorizer=authorizer,
        audit=audit,
        admission=admission,
        backend_factory=make_backend,
        quotas=Quotas.open(settings.quotas, settings.store.path),
        withdrawals=WithdrawalStore(
            settings.store.path, admission.public_key if admission is not None else _org_key(settings)
        ),
    )


def _org_key(settings: Settings) -> ec.EllipticCurvePublicKey | None:
    """The organisation public key, when there is one, to check signed restorations against."""
    key_file = settings.registry.public_key
    return load_public_key(key_file) if key_file.exists() else None


def serve(settings: Settings) -> None:
    """Run the gateway until SIGINT/SIGTERM; shuts backends down cleanly."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.egress.guard:
        hosts = [*settings.egress.allow, *(upstream_host(m.url) for m in settings.models if m.url)]
        install_egress_guard(hosts)
        log.info("egress guard on: loopback and %s", ", ".join(sorted(set(hosts))) or "nothing else")
    gateway = build_gateway(settings)
    pid_file = data_home() / "serve.pid"
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(str(os.getpid()))  # for 'bastion policy reload' (SIGHUP)
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
    try:
        uvicorn.Server(config).run()
    finally:
        pid_file.unlink(missing_ok=True)
