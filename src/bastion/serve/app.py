"""The OpenAI-compatible gateway as an ASGI application.

The request flow reads top to bottom in :meth:`Gateway.infer`:

    authenticate (API key -> principal) -> read + validate body -> resolve model -> authorise
    -> route (backend, fallbacks) -> backend -> metrics -> response / SSE stream

Everything a request needs (keys, backends, digests) is in memory from start-up; the hot path does
no disk hashing and no configuration parsing.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import signal
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bastion import __version__
from bastion.audit import AuditLog, RequestRecord, os_actor
from bastion.bundled import resolve
from bastion.config import Settings
from bastion.errors import (
    BackendUnavailable,
    BastionError,
    NotFound,
    PayloadTooLarge,
    PolicyDenied,
    UsageError,
)
from bastion.keys import KeyStore
from bastion.registry import Registry, verify_for_serving
from bastion.serve import openapi
from bastion.serve.auth import Authorizer, bearer_token
from bastion.serve.backends import Backend, Cancel, Endpoint, Usage
from bastion.serve.http_errors import error_response, sse_error, validation_error
from bastion.serve.metrics import Metrics
from bastion.serve.router import Router
from bastion.serve.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

log = logging.getLogger("bastion.serve")
JSON = "application/json"
SCHEMAS: dict[Endpoint, type[BaseModel]] = {
    "chat": ChatCompletionRequest,
    "completion": CompletionRequest,
    "embedding": EmbeddingRequest,
}


@dataclass
class _Trace:
    """What the audit record of one request needs, filled in as the request moves along the flow."""

    request_id: str
    started: float
    endpoint: Endpoint
    principal: str = "-"
    model: str = "-"
    raw: bytes = b""
    authorised: bool = False

    def decision(self, error: BastionError | None) -> str:
        if self.authorised:
            return "allow"
        return f"deny:{error.code}" if error is not None else "deny"


@dataclass(frozen=True)
class AdmissionCheck:
    """The registry and the organisation key: serve a local model only while it is admitted."""

    registry: Registry
    public_key: ec.EllipticCurvePublicKey


class Gateway:
    """Holds what requests share: settings, key store, authoriser, router, metrics and audit log."""

    def __init__(
        self,
        settings: Settings,
        keys: KeyStore,
        router: Router,
        authorizer: Authorizer,
        audit: AuditLog | None = None,
        admission: AdmissionCheck | None = None,
    ) -> None:
        self.settings = settings
        self.admission = admission
        #: local models refused at start-up (not admitted, or changed since), with the reason
        self.refused: dict[str, BastionError] = {}
        self.keys = keys
        self.router = router
        self.authorizer = authorizer
        self.audit = audit
        self.metrics = Metrics()
        self.load_errors: dict[str, str] = {}
        self._upstreams = {m.name for m in settings.models if m.backend == "openai"}

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every backend; one that fails is reported and the others still serve.

        With the registry enforced, a local model is loaded only after its admission signature is
        verified and its files re-hashed against the signed manifest.
        """
        if self.audit is not None:
            # The configuration in force is part of the record: who started what, with which policy.
            config = self.settings.model_dump_json().encode()
            await asyncio.to_thread(
                self.audit.append_admin,
                "gateway.start",
                os_actor(),
                None,
                "sha256:" + hashlib.sha256(config).hexdigest(),
                {
                    "config": self.settings.source,
                    "models": [m.name for m in self.settings.models],
                    "access_policy": self.settings.policy.access,
                    "registry_enforced": self.admission is not None,
                },
            )
        for name, backend in self.router.backends.items():
            try:
                await self._check_admitted(name)
                await backend.start()
            except BastionError as exc:
                self.load_errors[name] = exc.message
                log.error("model %s unavailable: %s", name, exc.message)
            self.metrics.model_up.labels(name).set(1 if backend.healthy() else 0)

    async def _check_admitted(self, name: str) -> None:
        model = self.settings.model(name)
        if self.admission is None or model is None or model.backend == "openai":
            return  # an upstream's weights are not on this host: nothing to admit or re-hash
        path = resolve(model.path or "")
        try:
            await asyncio.to_thread(
                verify_for_serving, self.admission.registry, name, path, self.admission.public_key
            )
        except BastionError as exc:
            self.refused[name] = exc
            log.error("model %s REFUSED: %s", name, exc.message)
            if self.audit is not None:
                await asyncio.to_thread(
                    self.audit.append_admin,
                    "model.refused",
                    "gateway",
                    None,
                    None,
                    {"name": name, "path": str(path), "error": exc.message},
                )
            raise

    def _servable(self, name: str) -> None:
        """Raise unless ``name`` may be served now (not refused at start-up, not revoked since)."""
        if name in self.refused:
            exc = self.refused[name]
            raise PolicyDenied(f"model {name!r} is refused: {exc.message}", hint=exc.hint, param="model")
        if (
            self.admission is not None
            and name not in self._upstreams
            and not self.admission.registry.is_active(name)
        ):
            raise PolicyDenied(
                f"model {name!r} is no longer admitted (revoked)",
                hint="Ask the administrator; 'bastion models list --all' shows the revocation.",
                param="model",
            )

    def reload_policy(self) -> None:
        """Re-read the access policy (SIGHUP / 'bastion policy reload'); a bad file keeps the old one."""
        policy = getattr(self.authorizer, "policy", None)
        if policy is None:
            return
        try:
            policy.reload()
        except BastionError as exc:
            log.error("policy reload failed, keeping the previous policy: %s", exc.message)
            return
        log.info("access policy reloaded from %s", policy.origin)
        if self.audit is not None:
            self.audit.append_admin("policy.reload", "gateway", None, None, {"policy": policy.origin})

    async def stop(self) -> None:
        for backend in self.router.backends.values():
            await backend.aclose()
        self.keys.close()
        if self.admission is not None:
            self.admission.registry.close()
        if self.audit is not None:
            self.audit.close()  # flushes and signs a final tree head

    # -- the request flow ---------------------------------------------------------------------------

    async def infer(self, request: Request, endpoint: Endpoint) -> Response:
        trace = _Trace(uuid.uuid4().hex, time.perf_counter(), endpoint)
        try:
            principal = self.keys.authenticate(bearer_token(request.headers.get("authorization")))
            trace.principal = principal.key_id
            trace.raw, body = await self._read_json(request)
            try:
                SCHEMAS[endpoint].model_validate(body)
            except ValidationError as exc:
                raise validation_error(exc) from exc
            trace.model = body["model"]
            self.router.get(trace.model)
            self.authorizer.authorize(principal, endpoint, trace.model)
            self._servable(trace.model)
            trace.authorised = True
            if body.get("stream"):
                return await self._stream(request, body, trace)
            cancel = Cancel()
            async with _watch_disconnect(request, cancel):
                backend, reply = await self._run(endpoint, body, cancel)
        except BastionError as exc:
            response = error_response(exc, {"x-request-id": trace.request_id})
            return await self._finish(trace, None, exc.http_status, Usage(), response, error=exc)
        response = Response(reply.body, media_type=JSON, headers=self._headers(trace.request_id, backend))
        return await self._finish(trace, backend, 200, reply.usage, response)

    async def _finish(
        self,
        trace: _Trace,
        backend: Backend | None,
        status: int,
        usage: Usage,
        response: Response,
        error: BastionError | None = None,
    ) -> Response:
        """Count the request and make its audit entry durable before the response leaves."""
        model = backend.info.name if backend else trace.model
        self.metrics.observe(
            model,
            trace.endpoint,
            status,
            time.perf_counter() - trace.started,
            usage.prompt_tokens,
            usage.completion_tokens,
        )
        try:
            await self._record(trace, backend, status, usage, response_body=bytes(response.body), error=error)
        except BastionError as exc:
            return error_response(exc, {"x-request-id": trace.request_id})
        return response

    async def _record(
        self,
        trace: _Trace,
        backend: Backend | None,
        status: int,
        usage: Usage,
        *,
        response_body: bytes | None = None,
        response_sha256: str | None = None,
        partial: bool = False,
        error: BastionError | None = None,
    ) -> None:
        if self.audit is None:
            return
        record = RequestRecord(
            request_id=trace.request_id,
            principal=trace.principal,
            model=backend.info.name if backend else trace.model,
            weights_digest=(backend.info.digest or "") if backend else "",
            backend=backend.info.kind if backend else "",
            decision=trace.decision(error),
            status=status,
            tokens_in=usage.prompt_tokens,
            tokens_out=usage.completion_tokens,
            latency_ms=round((time.perf_counter() - trace.started) * 1000, 3),
            request_body=trace.raw,
            response_body=response_body,
            response_sha256=response_sha256,
            partial=partial,
        )
        try:
            await self.audit.append_request(record)
        except BastionError as exc:
            # Fail closed: an answer that cannot be recorded is not delivered.
            log.error("audit append failed for request %s: %s", trace.request_id, exc.message)
            raise BackendUnavailable(
                "the audit log could not record this request, so it is refused",
                hint="Check the gateway log and the audit database's disk.",
            ) from exc

    def _chain(self, name: str) -> list[Backend]:
        """The model's backends to try, leaving out fallbacks that are refused or revoked.

        The requested model itself was checked by ``infer`` just before; only fallbacks are checked here.
        """
        chain = []
        for backend in self.router.chain(name):
            if backend.info.name != name:
                try:
                    self._servable(backend.info.name)
                except PolicyDenied:
                    continue
            chain.append(backend)
        if not chain:
            raise BackendUnavailable(f"model {name!r} and its fallbacks cannot be served now")
        return chain

    async def _run(self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel) -> tuple[Backend, Any]:
        last: BastionError | None = None
        for backend in self._chain(body["model"]):
            try:
                return backend, await backend.run(endpoint, body, cancel)
            except BackendUnavailable as exc:
                if cancel.is_set():
                    raise
                last = exc
                log.warning("model %s failed: %s", backend.info.name, exc.message)
        assert last is not None
        raise last

    async def _stream(self, request: Request, body: dict[str, Any], trace: _Trace) -> Response:
        cancel = Cancel()
        usage = Usage()
        last: BastionError | None = None
        for backend in self._chain(body["model"]):
            chunks = backend.stream(trace.endpoint, body, cancel, usage).__aiter__()
            try:
                # Pull the first chunk before answering 200, so that a backend that fails at once
                # gets a proper status code (and a fallback) instead of a broken stream.
                first = await chunks.__anext__()
            except StopAsyncIteration:
                first = None
            except BackendUnavailable as exc:
                last = exc
                await chunks.aclose()  # type: ignore[attr-defined]
                continue
            except BastionError:
                await chunks.aclose()  # type: ignore[attr-defined]
                raise

            async def finish(status: int, partial: bool, sha256: str, b: Backend = backend) -> None:
                self.metrics.observe(
                    b.info.name,
                    trace.endpoint,
                    status,
                    time.perf_counter() - trace.started,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                )
                await self._record(trace, b, status, usage, response_sha256=sha256, partial=partial)

            return _SSE(first, chunks, cancel, self._headers(trace.request_id, backend), finish)
        assert last is not None
        raise last

    async def _read_json(self, request: Request) -> tuple[bytes, dict[str, Any]]:
        limit = self.settings.server.max_body_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise PayloadTooLarge(f"request body of {declared} bytes exceeds the limit of {limit} bytes")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise UsageError(f"request body is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise UsageError("request body must be a JSON object")
        return bytes(raw), body

    @staticmethod
    def _headers(request_id: str, backend: Backend) -> dict[str, str]:
        headers = {"x-request-id": request_id, "x-bastion-model": backend.info.name}
        if backend.info.digest:
            headers["x-bastion-model-digest"] = backend.info.digest
        return headers

    # -- other endpoints ----------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        try:
            principal = self.keys.authenticate(bearer_token(request.headers.get("authorization")))
        except BastionError as exc:
            return error_response(exc)
        data = []
        for name, backend in self.router.backends.items():
            if "*" not in principal.models and name not in principal.models:
                continue
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "bastion",
                    "bastion": {**backend.info.to_json(), "healthy": backend.healthy()},
                }
            )
        return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON)

    async def healthz(self, request: Request) -> Response:
        models = {}
        for name, backend in self.router.backends.items():
            up = backend.healthy()
            self.metrics.model_up.labels(name).set(1 if up else 0)
            models[name] = {"healthy": up, "error": self.load_errors.get(name)}
        ok = any(m["healthy"] for m in models.values())
        body = {"status": "ok" if ok else "unavailable", "version": __version__, "models": models}
        return Response(orjson.dumps(body), 200 if ok else 503, media_type=JSON)

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def openapi_document(self, request: Request) -> Response:
        return Response(orjson.dumps(openapi.document()), media_type=JSON)


class _SSE(Response):
    """A server-sent-events response that stops the backend as soon as the client goes away.

    Its audit entry (with the SHA-256 of every byte sent, and ``partial`` when cut off) is made
    durable before the final event, so a client that saw ``[DONE]`` can count on the record.
    """

    def __init__(
        self,
        first: bytes | None,
        chunks: AsyncIterator[bytes],
        cancel: Cancel,
        headers: dict[str, str],
        finish: Callable[[int, bool, str], Awaitable[None]],
    ) -> None:
        self.first = first
        self.chunks = chunks
        self.cancel = cancel
        self.extra_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        self.finish = finish

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = False
        sent = hashlib.sha256()

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            self.cancel.set()

        async def body(data: bytes, more: bool = True) -> None:
            sent.update(data)
            await send({"type": "http.response.body", "body": data, "more_body": more})

        watcher = asyncio.create_task(watch())
        status = 200
        finished = False
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-type", b"text/event-stream"),
                        (b"cache-control", b"no-cache"),
                        *self.extra_headers,
                    ],
                }
            )
            if self.first is not None:
                await body(b"data: " + self.first + b"\n\n")
            try:
                async for chunk in self.chunks:
                    if gone:
                        break
                    await body(b"data: " + chunk + b"\n\n")
            except BastionError as exc:
                status = exc.http_status
                await body(sse_error(exc))
            if gone:
                status = 499  # client closed the connection (nginx's convention)
            else:
                finished = True
                try:
                    await self.finish(status, status != 200, sent.hexdigest())
                except BastionError as exc:
                    await body(sse_error(exc), more=False)
                else:
                    await body(b"data: [DONE]\n\n", more=False)
        except OSError:
            status = 499
        finally:
            watcher.cancel()
            self.cancel.set()
            await self.chunks.aclose()  # type: ignore[attr-defined]
            if not finished:
                await self.finish(status, True, sent.hexdigest())


@contextlib.asynccontextmanager
async def _watch_disconnect(request: Request, cancel: Cancel) -> AsyncIterator[None]:
    """While the body of the ``with`` runs, set ``cancel`` if the client disconnects."""

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass
        cancel.set()

    task = asyncio.create_task(watch())
    try:
        yield
    finally:
        task.cancel()


def build_app(gateway: Gateway) -> Starlette:
    """The Starlette application for ``gateway``: routes, error envelope, start-up and shutdown."""

    def infer(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return await gateway.infer(request, endpoint)

        return handler

    async def not_found(request: Request, exc: Exception) -> Response:
        return error_response(NotFound(f"no route {request.method} {request.url.path}"))

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        err = UsageError(f"method {request.method} is not allowed on {request.url.path}")
        return Response(
            orjson.dumps(
                {
                    "error": {
                        "message": err.message,
                        "type": err.error_type,
                        "param": None,
                        "code": "method_not_allowed",
                    }
                }
            ),
            405,
            media_type=JSON,
        )

    async def unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(BastionError("internal error; the gateway log has the details"))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await gateway.start()
        with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, gateway.reload_policy)
        try:
            yield
        finally:
            await gateway.stop()

    routes = [
        Route("/v1/chat/completions", infer("chat"), methods=["POST"]),
        Route("/v1/completions", infer("completion"), methods=["POST"]),
        Route("/v1/embeddings", infer("embedding"), methods=["POST"]),
        Route("/v1/models", gateway.list_models, methods=["GET"]),
        Route("/healthz", gateway.healthz, methods=["GET"]),
        Route("/metrics", gateway.prometheus, methods=["GET"]),
        Route("/openapi.json", gateway.openapi_document, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: method_not_allowed, Exception: unexpected},
    )
