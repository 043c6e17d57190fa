"""Assemble the gateway from settings and run it under uvicorn.

Start-up order matters: the pid file is locked and the listening socket bound *before* any model is
loaded, so a second gateway (same home, or same port) fails in milliseconds with a clear error instead
of loading every model and then dying on uvicorn's raw errno.
"""

from __future__ import annotations

import errno
import logging
import resource
import signal
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

import uvicorn
from cryptography.hazmat.primitives.asymmetric import ec

from bastion.audit import AuditLog, require_audit
from bastion.bundled import data_home
from bastion.config import ModelSettings, Settings
from bastion.errors import Busy, ConfigError
from bastion.keys import KeyStore
from bastion.policy import CedarAuthorizer
from bastion.quota.quotas import Quotas
from bastion.registry import open_registry
from bastion.serve.app import AdmissionCheck, Gateway, build_app
from bastion.serve.backends import Backend
from bastion.serve.backends.llama_cpp import LlamaCppBackend
from bastion.serve.backends.upstream import UpstreamBackend, upstream_host
from bastion.serve.dlp_guard import DlpGuard
from bastion.serve.egress import install_egress_guard
from bastion.serve.files import FileStore
from bastion.serve.limits import HeadLimits, limited_protocol
from bastion.serve.pidfile import PidFile
from bastion.serve.preflight import build_authorizer, registry_enforced, require_models, require_public_key
from bastion.serve.reloads import defer_reloads
from bastion.serve.retrieval import GatewayAudit, RetrievalApi
from bastion.serve.router import Router
from bastion.serve.workers import supervise
from bastion.signing import load_public_key
from bastion.withdrawal import WithdrawalStore

log = logging.getLogger("bastion.serve")


def make_backend(model: ModelSettings) -> Backend:
    """The backend a model's settings call for."""
    if model.backend == "llama_cpp" and model.engine == "xllamacpp":
        from bastion.serve.backends.xllama import XllamaBackend

        return XllamaBackend(model)
    if model.backend == "llama_cpp":
        return LlamaCppBackend(model)
    if model.backend == "openai":
        return UpstreamBackend(model)
    if model.backend == "minilm":
        from bastion.serve.backends.minilm import MiniLMBackend

        return MiniLMBackend(model)
    raise ConfigError(f"model {model.name!r}: unknown backend {model.backend!r}")


def build_admission_check(settings: Settings) -> AdmissionCheck | None:
    """When the registry is enforced: the check that a local model is admitted and unchanged."""
    if not registry_enforced(settings):
        return None  # nothing local to admit: upstream weights are not on this host
    require_public_key(settings)
    return AdmissionCheck(open_registry(settings), load_public_key(settings.registry.public_key))


def build_gateway(settings: Settings) -> Gateway:
    """A gateway with one backend per configured model (not started yet)."""
    require_models(settings)
    admission = build_admission_check(settings)
    authorizer = build_authorizer(settings)
    audit = None
    if settings.audit.enabled:
        require_audit(settings.audit)
        audit = AuditLog.open(settings.audit)
    backends = {m.name: make_backend(m) for m in settings.models}
    router = Router.from_settings(backends, settings.models)
    return Gateway(
        settings,
        KeyStore(settings.store.target()),
        router,
        authorizer=authorizer,
        audit=audit,
        admission=admission,
        backend_factory=make_backend,
        quotas=Quotas.open(settings.quotas, settings.store.target()),
        withdrawals=WithdrawalStore(
            settings.store.target(), admission.public_key if admission is not None else _org_key(settings)
        ),
        dlp=DlpGuard.from_settings(settings.dlp, authorizer) if settings.dlp.enabled else None,
    )


def build_retrieval(settings: Settings, gateway: Gateway) -> RetrievalApi:
    """The retrieval endpoints' shared state: uploads beside the store, the gateway's own access policy
    (one decision cache for models and documents; a policy reload reaches both) and the retrieval core,
    opened on first use."""
    from bastion.rag import RagStore

    authorizer = gateway.authorizer
    assert isinstance(authorizer, CedarAuthorizer)  # build_gateway made it
    policy = authorizer.policy
    files = FileStore(settings.store.target(), settings.store.path.parent / "files")
    audit = GatewayAudit(gateway.audit) if gateway.audit is not None else None
    return RetrievalApi(gateway, files, policy, lambda: RagStore.open(settings, policy=policy, audit=audit))


def _org_key(settings: Settings) -> ec.EllipticCurvePublicKey | None:
    """The organisation public key, when there is one, to check signed restorations against."""
    key_file = settings.registry.public_key
    return load_public_key(key_file) if key_file.exists() else None


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port``; Busy if the port is taken, ConfigError if unusable."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {host}:{port}: {exc}", hint="Check server.host.") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        # as uvicorn does: a port in TIME_WAIT is free, a port with a listener is not
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise Busy(
                f"cannot listen on {host}:{port}: the address is already in use; no model was loaded",
                hint="Another process (perhaps a running gateway) listens there: stop it, or choose another"
                " port (--port or server.port).",
            ) from exc
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="Check server.host and server.port (ports below 1024 need privileges).",
        ) from exc
    return sock


class _Stopped(BaseException):
    """A stop signal arrived while uvicorn was not handling signals (before it started, or after)."""

    def __init__(self, sig: int) -> None:
        super().__init__(sig)
        self.sig = sig


@contextmanager
def _stop_signals_unwind() -> Iterator[None]:
    """Turn SIGINT/SIGTERM into an exception while uvicorn is not handling them, then die by the signal.

    uvicorn handles the signal gracefully and then re-raises it with the previous handlers restored, so
    under the default handler the process died before any ``finally`` of ours ran (the pid file was
    never removed). Unwinding first, then dying by the same signal, keeps the exit status and cleans up.
    """

    def stop(sig: int, frame: FrameType | None) -> None:
        raise _Stopped(sig)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    except _Stopped as exc:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(exc.sig, signal.SIG_DFL)
        signal.raise_signal(exc.sig)
        raise  # unreachable for SIGINT/SIGTERM under SIG_DFL; kept so nothing is swallowed
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def serve(settings: Settings) -> None:
    """Run the gateway until SIGINT/SIGTERM; shuts backends down cleanly."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    raise_open_file_limit()
    if settings.egress.guard:
        hosts = [*settings.egress.allow, *(upstream_host(m.url) for m in settings.models if m.url)]
        install_egress_guard(hosts)
        log.info("egress guard on: loopback and %s", ", ".join(sorted(set(hosts))) or "nothing else")
    with _stop_signals_unwind():
        _serve_locked(settings)


#: the open files a gateway asks for: each stream holds a client and an upstream socket
WANTED_OPEN_FILES = 65536


def raise_open_file_limit(wanted: int = WANTED_OPEN_FILES) -> int:
    """Raise this process's soft limit on open files towards ``wanted`` (never above the hard limit);
    returns the soft limit now in force.

    Shells commonly start with a soft limit of 1024, which a gateway holding ~500 streams exhausts
    (accept() then fails with EMFILE); the hard limit is usually far higher and ours to take.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as exc:  # a sandbox may forbid it: serve anyway, say so
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, target, exc)
            return soft
        log.info("open-file limit raised from %d to %d", soft, target)
        return target
    return soft


def _serve_locked(settings: Settings) -> None:
    defer_reloads()  # a reload signalled while starting must not end the process (serve/reloads.py)
    pid_file = PidFile.acquire(data_home() / "serve.pid")  # for 'bastion policy reload' (SIGHUP)
    try:
        listener = bind_listener(settings.server.host, settings.server.port)
        try:
            workers = settings.server.workers
            if workers == 1:
                _run_gateway(settings, listener)
                return
            _preflight_workers(settings)
            code = supervise(workers, lambda: _run_gateway(settings, listener))
            if code:
                raise SystemExit(code)  # the failing worker has said why
        finally:
            listener.close()
    finally:
        pid_file.release()


def _preflight_workers(settings: Settings) -> None:
    """What would stop every worker, checked once in the parent before forking (nothing loaded yet)."""
    require_models(settings)
    if settings.audit.enabled:
        require_audit(settings.audit)
    require_public_key(settings)
    build_authorizer(settings)  # the policy parses


def _run_gateway(settings: Settings, listener: socket.socket) -> None:
    """Build the gateway and run it under uvicorn on ``listener`` until stopped."""
    gateway = build_gateway(settings)
    server = settings.server
    config = uvicorn.Config(
        build_app(gateway, build_retrieval(settings, gateway)),
        loop="asyncio",  # not uvloop: the egress guard must see every connect (see serve/egress.py)
        http=limited_protocol(
            HeadLimits(server.max_header_bytes, server.max_headers, server.header_timeout_s)
        ),
        access_log=server.access_log,
        log_level="info",
        timeout_graceful_shutdown=10,
        lifespan="on",
    )
    uvicorn.Server(config).run(sockets=[listener])
