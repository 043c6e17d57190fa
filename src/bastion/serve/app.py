"""The OpenAI-compatible gateway as an ASGI application: routes, error envelope, start-up, shutdown.

The request flow itself is in :mod:`bastion.serve.gateway`; streaming in :mod:`bastion.serve.sse`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bastion.errors import NotFound, UsageError, internal_error
from bastion.serve import admin, openapi
from bastion.serve.backends import Endpoint
from bastion.serve.gateway import AdmissionCheck, Gateway
from bastion.serve.http_errors import error_response
from bastion.serve.reloads import listen_for_changes, reload_pending
from bastion.serve.retrieval import RetrievalApi

log = logging.getLogger("bastion.serve")
JSON = "application/json"

__all__ = ["AdmissionCheck", "Gateway", "build_app"]


def build_app(gateway: Gateway, retrieval: RetrievalApi | None = None) -> Starlette:
    """The Starlette application for ``gateway``: routes, error envelope, start-up and shutdown.

    With ``retrieval``, the OpenAI-shaped retrieval endpoints too (files, vector stores, responses).
    """

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
        return error_response(internal_error())

    def on_sighup() -> None:
        task = asyncio.get_running_loop().create_task(gateway.reload())
        reloads.add(task)  # keep a reference until it finishes
        task.add_done_callback(reloads.discard)

    reloads: set[asyncio.Task[object]] = set()

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        started, missed = False, False

        def announced() -> None:  # another gateway's POST /admin/reload, heard in the listener's thread
            with contextlib.suppress(RuntimeError):  # the loop closed: this gateway is stopping anyway
                loop.call_soon_threadsafe(reload_announced)

        def reload_announced() -> None:
            nonlocal missed
            if started:
                on_sighup()  # the same path as SIGHUP
            else:
                missed = True

        # Listening before the models load, so a reload announced meanwhile is not lost (it runs once
        # started, as a SIGHUP does); and from here keys, revocations and withdrawals are notified.
        listener = listen_for_changes(gateway.settings.store.target(), announced)
        try:
            await gateway.start()
            started = True
            with contextlib.suppress(NotImplementedError, RuntimeError):  # no signals off the main thread
                loop.add_signal_handler(signal.SIGHUP, on_sighup)
                missed = reload_pending() or missed  # signalled while the models loaded (serve/reloads.py)
            if missed:
                on_sighup()
            try:
                yield
            finally:
                await gateway.stop()
                if retrieval is not None:
                    retrieval.close()
        finally:
            if listener is not None:
                await asyncio.to_thread(listener.release, announced)

    async def openapi_document(request: Request) -> Response:
        return Response(orjson.dumps(openapi.document()), media_type=JSON)

    routes = [
        Route("/v1/chat/completions", infer("chat"), methods=["POST"]),
        Route("/v1/completions", infer("completion"), methods=["POST"]),
        Route("/v1/embeddings", infer("embedding"), methods=["POST"]),
        Route("/v1/models", gateway.list_models, methods=["GET"]),
        Route("/healthz", functools.partial(admin.healthz, gateway), methods=["GET"]),
        Route("/metrics", functools.partial(admin.prometheus, gateway), methods=["GET"]),
        Route("/openapi.json", openapi_document, methods=["GET"]),
        Route("/admin/reload", functools.partial(admin.admin_reload, gateway), methods=["POST"]),
        Route("/admin/routes", functools.partial(admin.admin_routes, gateway), methods=["GET"]),
        Route("/admin/drill", functools.partial(admin.admin_drill, gateway), methods=["POST"]),
    ]
    if retrieval is not None:
        routes += retrieval_routes(retrieval)
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={404: not_found, 405: method_not_allowed, Exception: unexpected},
    )


def retrieval_routes(api: RetrievalApi) -> list[Route]:
    """``/v1/files``, ``/v1/vector_stores`` and ``/v1/responses`` over ``api``."""
    from bastion.serve import file_routes, responses, vector_stores

    Bound = Callable[[Request], Awaitable[Response]]

    def bind(fn: Callable[[RetrievalApi, Request], Awaitable[Response]]) -> Bound:
        async def handler(request: Request) -> Response:
            return await fn(api, request)

        return handler

    stores = "/v1/vector_stores/{store}"
    return [
        Route("/v1/files", bind(file_routes.upload), methods=["POST"]),
        Route("/v1/files", bind(file_routes.list_files), methods=["GET"]),
        Route("/v1/files/{file_id}", bind(file_routes.retrieve), methods=["GET"]),
        Route("/v1/files/{file_id}", bind(file_routes.delete), methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", bind(file_routes.content), methods=["GET"]),
        Route("/v1/vector_stores", bind(vector_stores.create), methods=["POST"]),
        Route("/v1/vector_stores", bind(vector_stores.list_stores), methods=["GET"]),
        Route(stores, bind(vector_stores.retrieve), methods=["GET"]),
        Route(stores, bind(vector_stores.delete), methods=["DELETE"]),
        Route(stores + "/files", bind(vector_stores.attach), methods=["POST"]),
        Route(stores + "/files", bind(vector_stores.list_files), methods=["GET"]),
        Route(stores + "/files/{file_id}", bind(vector_stores.retrieve_file), methods=["GET"]),
        Route(stores + "/files/{file_id}", bind(vector_stores.detach), methods=["DELETE"]),
        Route(stores + "/search", bind(vector_stores.search), methods=["POST"]),
        Route("/v1/responses", bind(responses.respond), methods=["POST"]),
    ]
