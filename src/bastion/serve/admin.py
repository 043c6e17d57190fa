"""The gateway's operational endpoints: health, metrics, reload, routes and drills.

``/healthz`` answers anyone (details only for administrators); the others are for administrators only
(``Gateway.admin_only``: loopback callers or the admin group), and a drill's every change is an audited
admin action.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from bastion import __version__
from bastion.errors import NotFound, UsageError
from bastion.serve.gateway import Gateway
from bastion.serve.http_errors import error_response
from bastion.serve.reloads import announce_reload
from bastion.serve.workers import reload_siblings

JSON = "application/json"


async def healthz(gateway: Gateway, request: Request) -> Response:
    """``GET /healthz``: up or down for anyone; per-model health and load errors for administrators only."""
    models = {}
    for name, backend in gateway.router.backends.items():
        up = backend.healthy() and name not in gateway.refused
        gateway.metrics.model_up.labels(name).set(1 if up else 0)
        models[name] = {"healthy": up, "error": gateway.load_errors.get(name)}
    ok = any(m["healthy"] for m in models.values())
    body: dict[str, Any] = {"status": "ok" if ok else "unavailable"}
    if gateway.is_admin(request):
        body.update(version=__version__, models=models)
    return Response(orjson.dumps(body), 200 if ok else 503, media_type=JSON)


async def prometheus(gateway: Gateway, request: Request) -> Response:
    """``GET /metrics``: the Prometheus text exposition, for administrators."""
    refused = await gateway.admin_only(request, "GET /metrics")
    if refused is not None:
        return refused
    return Response(gateway.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def admin_reload(gateway: Gateway, request: Request) -> Response:
    """``POST /admin/reload``: re-read the access policy and the admissions."""
    refused = await gateway.admin_only(request, "POST /admin/reload")
    if refused is not None:
        return refused
    # Announced first, so that every replica (and this one, just after) reads what is there from now on.
    announced = await announce_reload(gateway.settings.store.target())
    outcome = await gateway.reload()
    outcome["replicas_notified"] = announced
    # Under `serve --workers N` this worker alone got the request. Sibling workers heard the announcement
    # like any replica; without one (SQLite) the parent passes them SIGHUP.
    outcome["workers_signalled"] = False if announced else reload_siblings()
    return Response(orjson.dumps(outcome), media_type=JSON)


def routes(gateway: Gateway) -> dict[str, Any]:
    """Each served model's route (tiers, and every other deployment as ``fallbacks``) and state."""
    out = {}
    for name, model in gateway.models.items():
        tiers = gateway.router.tiers(name)
        out[name] = {
            "backend": model.backend,
            "local": model.local,
            "tiers": tiers,
            "fallbacks": [n for tier in tiers for n in tier if n != name],
            "balance": model.settings.balance,
            "healthy": gateway.router.backends[name].healthy() and name not in gateway.refused,
            "breaker": gateway.breakers[name].state,
            "outstanding": gateway.router.outstanding.get(name, 0),
            "drilled": name in gateway.drilled,
            "withdrawn": gateway.withdrawn(model) is not None,
        }
    return out


async def admin_routes(gateway: Gateway, request: Request) -> Response:
    """``GET /admin/routes``: each served model's route and state (for ``bastion drill``)."""
    refused = await gateway.admin_only(request, "GET /admin/routes")
    if refused is not None:
        return refused
    return Response(orjson.dumps(routes(gateway)), media_type=JSON)


async def admin_drill(gateway: Gateway, request: Request) -> Response:
    """``POST /admin/drill``: take a deployment away (``{"model": M, "down": true}``) or give it back."""
    refused = await gateway.admin_only(request, "POST /admin/drill")
    if refused is not None:
        return refused
    try:
        body = orjson.loads(await request.body())
        name, down = body["model"], bool(body["down"])
        if name not in gateway.models:
            raise NotFound(f"model {name!r} is not served here", param="model")
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        return error_response(UsageError(f'body must be {{"model": NAME, "down": true|false}}: {exc}'))
    except NotFound as exc:
        return error_response(exc)
    (gateway.drilled.add if down else gateway.drilled.discard)(name)
    await gateway.admin_action("drill.down" if down else "drill.up", {"name": name})
    return Response(orjson.dumps({"model": name, "down": down}), media_type=JSON)
