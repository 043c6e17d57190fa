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
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from bastion import __version__
from bastion.config import Settings
from bastion.errors import BackendUnavailable, BastionError, NotFound, PayloadTooLarge, UsageError
from bastion.keys import KeyStore, Principal
from bastion.serve import openapi
from bastion.serve.auth import Authorizer, KeyModelListAuthorizer, bearer_token
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


class Gateway:
    """Holds what requests share: settings, key store, authoriser, router and metrics."""

    def __init__(
        self,
        settings: Settings,
        keys: KeyStore,
        router: Router,
        authorizer: Authorizer | None = None,
    ) -> None:
        self.settings = settings
        self.keys = keys
        self.router = router
        self.authorizer: Authorizer = authorizer or KeyModelListAuthorizer()
        self.metrics = Metrics()
        self.load_errors: dict[str, str] = {}

    # -- lifecycle --------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every backend; one that fails is reported and the others still serve."""
        for name, backend in self.router.backends.items():
            try:
                await backend.start()
            except BastionError as exc:
                self.load_errors[name] = exc.message
                log.error("model %s unavailable: %s", name, exc.message)
            self.metrics.model_up.labels(name).set(1 if backend.healthy() else 0)

    async def stop(self) -> None:
        for backend in self.router.backends.values():
            await backend.aclose()
        self.keys.close()

    # -- the request flow ---------------------------------------------------------------------------

    async def infer(self, request: Request, endpoint: Endpoint) -> Response:
        started = time.perf_counter()
        request_id = uuid.uuid4().hex
        model = "-"
        try:
            principal = self.keys.authenticate(bearer_token(request.headers.get("authorization")))
            body = await self._read_json(request)
            try:
                SCHEMAS[endpoint].model_validate(body)
            except ValidationError as exc:
                raise validation_error(exc) from exc
            model = body["model"]
            self.router.get(model)
            self.authorizer.authorize(principal, endpoint, model)
            if body.get("stream"):
                return await self._stream(request, endpoint, body, principal, request_id, started)
            cancel = Cancel()
            async with _watch_disconnect(request, cancel):
                backend, reply = await self._run(endpoint, body, cancel)
        except BastionError as exc:
            self.metrics.observe(model, endpoint, exc.http_status, time.perf_counter() - started, 0, 0)
            return error_response(exc, {"x-request-id": request_id})
        self.metrics.observe(
            model,
            endpoint,
            200,
            time.perf_counter() - started,
            reply.usage.prompt_tokens,
            reply.usage.completion_tokens,
        )
        return Response(reply.body, media_type=JSON, headers=self._headers(request_id, backend))

    async def _run(self, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel) -> tuple[Backend, Any]:
        last: BastionError | None = None
        for backend in self.router.chain(body["model"]):
            try:
                return backend, await backend.run(endpoint, body, cancel)
            except BackendUnavailable as exc:
                if cancel.is_set():
                    raise
                last = exc
                log.warning("model %s failed: %s", backend.info.name, exc.message)
        assert last is not None
        raise last

    async def _stream(
        self,
        request: Request,
        endpoint: Endpoint,
        body: dict[str, Any],
        principal: Principal,
        request_id: str,
        started: float,
    ) -> Response:
        cancel = Cancel()
        usage = Usage()
        last: BastionError | None = None
        for backend in self.router.chain(body["model"]):
            chunks = backend.stream(endpoint, body, cancel, usage).__aiter__()
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

            def done(status: int, b: Backend = backend) -> None:
                self.metrics.observe(
                    b.info.name,
                    endpoint,
                    status,
                    time.perf_counter() - started,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                )

            return _SSE(first, chunks, cancel, self._headers(request_id, backend), done)
        assert last is not None
        raise last

    async def _read_json(self, request: Request) -> dict[str, Any]:
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
        return body

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
    """A server-sent-events response that stops the backend as soon as the client goes away."""

    def __init__(
        self,
        first: bytes | None,
        chunks: AsyncIterator[bytes],
        cancel: Cancel,
        headers: dict[str, str],
        done: Callable[[int], None],
    ) -> None:
        self.first = first
        self.chunks = chunks
        self.cancel = cancel
        self.extra_headers = [(k.encode(), v.encode()) for k, v in headers.items()]
        self.done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gone = False

        async def watch() -> None:
            nonlocal gone
            while (await receive())["type"] != "http.disconnect":
                pass
            gone = True
            self.cancel.set()

        watcher = asyncio.create_task(watch())
        status = 200
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
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + self.first + b"\n\n",
                        "more_body": True,
                    }
                )
            try:
                async for chunk in self.chunks:
                    if gone:
                        break
                    await send(
                        {"type": "http.response.body", "body": b"data: " + chunk + b"\n\n", "more_body": True}
                    )
            except BastionError as exc:
                status = exc.http_status
                await send({"type": "http.response.body", "body": sse_error(exc), "more_body": True})
            if gone:
                status = 499  # client closed the connection (nginx's convention)
            else:
                await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})
        except OSError:
            status = 499
        finally:
            watcher.cancel()
            self.cancel.set()
            await self.chunks.aclose()  # type: ignore[attr-defined]
            self.done(status)


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
