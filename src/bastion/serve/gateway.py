"""The gateway: what requests share, its lifecycle, and the request flow.

The request flow reads top to bottom in :meth:`Gateway.infer`:

    authenticate (API key -> principal) -> read + validate body -> resolve the requested model
    -> authorise it (Cedar) -> admitted now? -> quota -> DLP findings -> for each candidate of its
    route: authorise (Cedar) -> admitted now? -> what DLP lets go to it (Cedar: findings x model)
    -> backend -> audit (durable before the response) -> response / SSE stream (placeholders restored)

Every model that may answer is authorised for the caller: the requested one and each fallback as the
route reaches it. A fallback the caller may not use is skipped and named in the audit entry.
Everything a request needs (keys, backends, digests, :class:`ServedModel` records) is in memory from
start-up; the hot path does no disk hashing and no configuration parsing.
"""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging
import math
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import orjson
from cryptography.hazmat.primitives.asymmetric import ec
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response

from bastion.audit import AuditLog, RequestRecord, os_actor
from bastion.bundled import resolve
from bastion.catalog import reload_catalog
from bastion.config import ModelSettings, Settings, load_settings
from bastion.errors import (
    AuthenticationFailed,
    BackendUnavailable,
    BastionError,
    DataLossBlocked,
    DetectorFailed,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PolicyDenied,
    UpstreamRateLimited,
    UsageError,
    internal_error,
)
from bastion.keys import KeyStore, Principal
from bastion.policy import LEVELS, ModelResource
from bastion.quota import QuotaExceeded
from bastion.quota.cost import load_prices
from bastion.quota.quotas import Held, Quotas
from bastion.registry import Registry, ServedWeights, open_admitted
from bastion.serve.auth import Authorizer, bearer_token
from bastion.serve.backends import Backend, Cancel, Endpoint, Reply, Usage
from bastion.serve.breaker import STATES, Breaker
from bastion.serve.dlp_guard import DlpGuard, Inspection, Outgoing
from bastion.serve.http_errors import error_response, validation_error
from bastion.serve.metrics import Metrics
from bastion.serve.retry import Attempt, RetryPolicy, attempt
from bastion.serve.router import Router
from bastion.serve.schemas import normalise
from bastion.serve.served import ServedModel, admitted_model_settings, served_models
from bastion.serve.sse import SSE, rechecked, watch_disconnect
from bastion.withdrawal import Withdrawal, WithdrawalStore

log = logging.getLogger("bastion.serve")
T = TypeVar("T")
JSON = "application/json"
#: an absolute file system path inside a message (to keep out of what clients are told)
_SERVER_PATH = re.compile(r"(?<![\w.])/[^\s'\",;]+")


@dataclass
class Trace:
    """What the audit record of one request needs, filled in as the request moves along the flow."""

    request_id: str
    started: float
    endpoint: Endpoint | str
    principal: str = "-"
    model: str = "-"
    raw: bytes = b""
    authorised: bool = False
    #: candidates of the route that did not answer, with why: (model, reason code)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: DLP's account of the request (actions per model, finding types and counts), None when DLP is off
    dlp: dict[str, Any] | None = None
    #: the body as sent, when DLP rewrote it (stored encrypted with store_bodies = "full")
    sent: bytes | None = None
    #: the first candidate DLP blocked (the answer when no candidate may receive the request)
    blocked: DataLossBlocked | None = None
    #: every call made to a deployment, retries included (audited when there was more than one)
    attempts: list[Attempt] = field(default_factory=list)
    #: retrieval: the chunks (ids and digests) put in front of the model or returned, None without it
    retrieval: dict[str, Any] | None = None
    #: the caller's ``x-ratelimit-*`` headers, as counted when its quota was reserved
    ratelimit: dict[str, str] = field(default_factory=dict)

    def answered_by(self, name: str) -> None:
        """Note who answered: a requested model passed over as unhealthy is named in ``skipped``."""
        if name != self.model and all(m != self.model for m, _ in self.skipped):
            self.skipped.insert(0, (self.model, "unhealthy"))

    def decision(self, error: BastionError | None) -> str:
        if isinstance(error, DataLossBlocked | DetectorFailed):
            return f"deny:{error.code}"
        if self.authorised:
            return "allow"
        return f"deny:{error.code}" if error is not None else "deny"


class _Refused(Exception):
    """An admission that failed verification (as opposed to a backend that failed to start)."""

    def __init__(self, error: BastionError) -> None:
        super().__init__(error.message)
        self.error = error


@dataclass(frozen=True)
class AdmissionCheck:
    """The registry and the organisation key: serve a local model only while it is admitted."""

    registry: Registry
    public_key: ec.EllipticCurvePublicKey


class Gateway:
    """Holds what requests share: settings, served models, keys, authoriser, router, metrics, audit."""

    def __init__(
        self,
        settings: Settings,
        keys: KeyStore,
        router: Router,
        authorizer: Authorizer,
        audit: AuditLog | None = None,
        admission: AdmissionCheck | None = None,
        backend_factory: Callable[[ModelSettings], Backend] | None = None,
        quotas: Quotas | None = None,
        withdrawals: WithdrawalStore | None = None,
        dlp: DlpGuard | None = None,
    ) -> None:
        self.settings = settings
        self.dlp = dlp
        self.admission = admission
        #: one record per served model; replaced (never mutated) when an admission is verified
        self.models: dict[str, ServedModel] = served_models(settings)
        #: local models refused (not admitted, or changed since), with the reason
        self.refused: dict[str, BastionError] = {}
        self.keys = keys
        self.router = router
        self.authorizer = authorizer
        self.audit = audit
        self.metrics = Metrics(load_prices(settings.cost.prices), settings.cost.hardware_usd_per_hour,
                               lambda name: name in self.models and self.models[name].local)
        self.load_errors: dict[str, str] = {}
        self._backend_factory = backend_factory
        self.quotas = quotas
        self.withdrawals = withdrawals
        self.breakers = {name: self._breaker(m.settings) for name, m in self.models.items()}
        #: each route's retry policy, by served name
        self.retries = {name: RetryPolicy.of(m.settings) for name, m in self.models.items()}
        #: deployments a running drill has taken away (``POST /admin/drill``); in memory, this gateway only
        self.drilled: set[str] = set()

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
                    "models": list(self.models),
                    "access_policy": self.settings.policy.access,
                    "registry_enforced": self.admission is not None,
                },
            )
        for name, backend in self.router.backends.items():
            if hasattr(backend, "on_health"):  # an upstream: its periodic health checks feed its breaker
                backend.on_health = partial(self._health_checked, name)
            await self._load(name, backend)
        await self._serve_new_admissions()
        if self.quotas is not None:
            self.quotas.start()  # renews this process's lease on its reservations

    def _health_checked(self, name: str, ok: bool) -> None:
        """A failed health check counts against a closed circuit (an open one waits for its probe)."""
        breaker = self.breakers[name]
        if not ok and breaker.state == "closed":
            breaker.failure()
            self.metrics.breaker_state.labels(name).set(STATES[breaker.state])

    @staticmethod
    def _breaker(settings: ModelSettings) -> Breaker:
        return Breaker(settings.breaker_failures, settings.breaker_cooldown_s)

    async def _load(self, name: str, backend: Backend) -> bool:
        """Verify and start ``name`` at start-up; a refused admission is remembered and audited."""
        try:
            self.models[name] = await self._prepare(self.models[name], backend)
        except _Refused as refused:
            self.refused[name] = refused.error
            self.load_errors[name] = refused.error.message
            log.error("model %s REFUSED: %s", name, refused.error.message)
            await self.admin_action("model.refused", {"name": name, "error": refused.error.message})
            return False
        except BastionError as exc:
            self.load_errors[name] = exc.message
            log.error("model %s unavailable: %s", name, exc.message)
            return False
        finally:
            self.metrics.model_up.labels(name).set(1 if backend.healthy() else 0)
        self.refused.pop(name, None)
        self.load_errors.pop(name, None)
        return True

    async def _prepare(self, model: ServedModel, backend: Backend) -> ServedModel:
        """Verify ``model``'s admission (local models) and start ``backend`` on the sealed bytes verified.

        Returns the record to serve it under; nothing shared is changed, so the caller swaps the record
        and the backend in together (no request can see a new record with an old backend).
        """
        weights: ServedWeights | None = None
        if self.admission is not None and model.local:
            path = resolve(model.settings.path or "")
            try:
                weights = await asyncio.to_thread(
                    open_admitted, self.admission.registry, model.name, path, self.admission.public_key
                )
            except BastionError as exc:
                raise _Refused(exc) from exc
            assert weights.admission is not None
            model = model.verified(weights.digest, weights.admission.id)
        await backend.start(weights)  # the sealed bytes just verified: nothing re-reads the path
        return model

    def _servable(self, model: ServedModel) -> None:
        """Raise unless ``model`` may be served now (not refused at start-up, not revoked since)."""
        if model.name in self.refused:
            exc = self.refused[model.name]
            # Why, but not where: the reason named the model file's path to every key holder (red
            # team, wave 2). Administrators read the whole message in the log and on /healthz.
            reason = _SERVER_PATH.sub("<server path>", exc.message)
            raise PolicyDenied(
                f"model {model.name!r} is refused: {reason}",
                hint="Ask the administrator: the gateway log says why.",
                param="model",
            )
        if (
            self.admission is not None
            and model.local
            # the admission this gateway verified, by row and by the digest of the bytes it loaded:
            # never the name, which a new admission may carry before it has been verified and loaded
            and not self.admission.registry.still_admitted(model.admission_id, model.admitted_digest)
        ):
            raise PolicyDenied(
                f"model {model.name!r} is no longer admitted (revoked)",
                hint="Ask the administrator; 'bastion models list --all' shows the revocation.",
                param="model",
            )

    async def reload(self) -> dict[str, Any]:
        """Re-read the access policy and the admissions (SIGHUP, ``POST /admin/reload``).

        A policy that fails validation keeps the old one. A local model whose active admission changed
        (a new admission under its name) is verified and loaded as a fresh backend, and swapped in only
        once loaded: a new admission never takes effect by name alone.
        """
        reload_catalog()  # a signed catalog update applied since start-up is read from now on
        outcome: dict[str, Any] = {"policy": self._reload_policy(), "models": {}}
        if self.admission is not None:
            for name, model in list(self.models.items()):
                if model.local:
                    outcome["models"][name] = await self._reload_admission(name, model)
            outcome["models"].update(await self._serve_new_admissions())
        return outcome

    async def _serve_new_admissions(self) -> dict[str, str]:
        """With ``registry.serve_admitted``: serve admitted models that are not served yet."""
        registry = self.settings.registry
        if self.admission is None or not registry.serve_admitted or self._backend_factory is None:
            return {}
        outcome: dict[str, str] = {}
        try:
            admissions = self.admission.registry.list()
        except BastionError as exc:  # a damaged row: serve what is configured, say why nothing more
            log.error("admitted models not served: %s", exc.message)
            return outcome
        for admission in admissions:
            if admission.name in self.models:
                continue
            ceiling = registry.admitted_classification
            try:
                settings = admitted_model_settings(admission.name, admission.path, ceiling)
            except ValidationError:  # a name no configured model could have (a row written by hand)
                outcome[admission.name] = "not servable: not a valid model name"
                continue
            if settings is None:
                outcome[admission.name] = "not servable: no backend runs this kind of artifact"
                continue
            backend = self._backend_factory(settings)
            try:
                verified = await self._prepare(ServedModel.from_settings(settings), backend)
            except (_Refused, BastionError) as exc:
                await backend.aclose()
                error = exc.error if isinstance(exc, _Refused) else exc
                outcome[admission.name] = f"refused: {error.message}"
            else:
                self.breakers[admission.name] = self._breaker(settings)
                self.retries[admission.name] = RetryPolicy.of(settings)
                self.router.add(admission.name, backend)
                self.models[admission.name] = verified
                outcome[admission.name] = "loaded"
            await self.admin_action(
                "model.served", {"name": admission.name, "outcome": outcome[admission.name]}
            )
        return outcome

    def _reload_policy(self) -> str:
        try:
            self.authorizer.reload(self._configured_clearance())
        except BastionError as exc:
            log.error("policy reload failed, keeping the previous policy: %s", exc.message)
            if self.audit is not None:  # a reload another replica announced fails here, not there
                self.audit.append_admin("policy.reload_refused", "gateway", None, None,
                                        {"policy": self.authorizer.origin, "error": exc.message})
            return f"kept (new policy invalid: {exc.message})"
        log.info("access policy reloaded from %s", self.authorizer.origin)
        if self.audit is not None:
            origin = self.authorizer.origin
            self.audit.append_admin("policy.reload", "gateway", None, None, {"policy": origin})
        return "reloaded"

    def _configured_clearance(self) -> dict[str, int] | None:
        """The groups' clearances as the configuration file says now (a compromised group lowered takes
        effect on reload, like the policy); None, keeping those in force, when it cannot be read."""
        if self.settings.source == "defaults":
            return None
        try:
            fresh = load_settings(Path(self.settings.source))
        except BastionError as exc:
            log.error("group clearances kept: the configuration cannot be read again: %s", exc.message)
            return None
        return {group: LEVELS[level] for group, level in fresh.policy.clearance.items()}

    async def _reload_admission(self, name: str, model: ServedModel) -> str:
        assert self.admission is not None
        try:
            active = self.admission.registry.get(name)
        except NotFound:
            return "not admitted"
        if active.id == model.admission_id:
            return "unchanged"
        if self._backend_factory is None:
            return "changed: restart to load it"
        fresh = self._backend_factory(model.settings)
        try:
            verified = await self._prepare(model, fresh)
        except (_Refused, BastionError) as exc:
            await fresh.aclose()
            # The running admission keeps serving (or keeps being refused) as before.
            error = exc.error if isinstance(exc, _Refused) else exc
            await self.admin_action("model.reload_refused", {"name": name, "error": error.message})
            return f"refused: {error.message}"
        # Record and backend change together, with no await between: never a new record on old bytes.
        self.models[name] = verified
        old = self.router.swap(name, fresh)
        self.refused.pop(name, None)
        self.load_errors.pop(name, None)
        await self.admin_action("model.reloaded", {"name": name, "admission": verified.admission_id})
        await old.aclose()
        return "reloaded"

    async def stop(self) -> None:
        for backend in self.router.backends.values():
            await backend.aclose()
        self.keys.close()
        if self.quotas is not None:
            await self.quotas.stop()
            self.quotas.close()
        if self.withdrawals is not None:
            self.withdrawals.close()
        if self.admission is not None:
            self.admission.registry.close()
        if self.audit is not None:
            # Flushes, and signs a final head or (another replica leads) waits a few seconds for the
            # leader's: off the event loop.
            await asyncio.to_thread(self.audit.close)

    async def admin_action(self, action: str, details: dict[str, Any]) -> None:
        if self.audit is not None:
            await asyncio.to_thread(self.audit.append_admin, action, "gateway", None, None, details)

    # -- the request flow ---------------------------------------------------------------------------

    async def infer(self, request: Request, endpoint: Endpoint) -> Response:
        trace = Trace(uuid.uuid4().hex, time.perf_counter(), endpoint)
        try:
            principal = self.authenticate(request, trace)
            trace.raw, body = await self._read_body(request, endpoint)
            answer = await self.answer(request, principal, body, trace)
            if isinstance(answer, Response):
                return answer  # a stream: audited when it ends
        except Exception as exc:  # noqa: BLE001 - every failure is answered and audited in one place
            return await self.refuse_any(trace, exc)
        backend, reply = answer
        return await self.respond(trace, principal, backend, reply.body, reply.usage)

    async def answer(
        self, request: Request, principal: Principal, body: dict[str, Any], trace: Trace
    ) -> Response | tuple[Backend, Reply]:
        """The request flow for an authenticated, validated ``body``: Cedar for the requested model,
        admitted now?, quota, DLP, then each candidate of its route (authorised one by one).

        Returns the SSE response for a stream, else the backend that answered and its reply (quota
        settled, not yet audited: the caller ends with :meth:`respond` or :meth:`refuse`). Every caller
        that puts text in front of a model comes through here (chat completions and ``/v1/responses``).
        """
        trace.model = body["model"]
        requested = self._model(trace.model)
        self.authorizer.authorize(principal, trace.endpoint, self._resource(requested))
        self._servable(requested)
        trace.authorised = True
        held = await self._reserve(principal, body, requested)
        trace.ratelimit = Quotas.headers(held)
        try:
            inspection = await self._inspect(trace.endpoint, body, trace)  # type: ignore[arg-type]
            if body.get("stream"):
                return await self._stream(request, principal, body, trace, held, inspection)
            cancel = Cancel()
            async with watch_disconnect(request, cancel):
                backend, reply = await self._run(principal, body, trace, cancel, inspection)
        except BaseException:
            await self._settle(held, trace.model, Usage(), trace)
            raise
        await self._settle(held, backend.info.name, reply.usage, trace)
        return backend, reply

    async def respond(
        self, trace: Trace, principal: Principal, backend: Backend, body: bytes, usage: Usage
    ) -> Response:
        """The 200 response carrying ``body``, audited (durably) before it leaves."""
        headers = {**self._headers(trace.request_id, backend), **trace.ratelimit}
        response = Response(body, media_type=JSON, headers=headers)
        return await self.finish(trace, backend, 200, usage, response)

    async def _reserve(self, principal: Principal, body: dict[str, Any], model: ServedModel) -> Held | None:
        """Hold this request's worst-case cost against every quota it counts against (429 if none left).

        ``max_tokens`` is made explicit so that whichever candidate answers is bound by what was reserved.
        Both spellings are set to the reserved limit: an upstream reads ``max_completion_tokens`` first
        (OpenAI, vLLM), so ``max_tokens: 1, max_completion_tokens: 3000`` reserved 1 and spent 3000.
        """
        if self.quotas is None:
            return None
        if "messages" in body or "prompt" in body:
            asked = [body[k] for k in ("max_tokens", "max_completion_tokens") if body.get(k)]
            limit = max(asked, default=model.settings.default_max_tokens)
            body["max_tokens"] = limit
            if "max_completion_tokens" in body:
                body["max_completion_tokens"] = limit
        else:
            limit = 0  # embeddings: the input is the whole cost
        return await self.quotas.reserve(principal.key_id, principal.groups, body, limit)

    async def _settle(self, held: Held | None, model: str, usage: Usage, trace: Trace) -> None:
        if held is not None and self.quotas is not None:
            seconds = time.perf_counter() - trace.started  # for throughput and local cost (bastion usage)
            await self.quotas.settle(held, model, usage.prompt_tokens, usage.completion_tokens,
                                     reported=usage.reported, seconds=seconds)

    def authenticate(self, request: Request, trace: Trace) -> Principal:
        """The principal of the request's API key (AuthenticationFailed if none), noted in ``trace``."""
        principal = self.keys.authenticate(bearer_token(request.headers.get("authorization")))
        trace.principal = principal.key_id
        return principal

    def _model(self, name: str) -> ServedModel:
        try:
            return self.models[name]
        except KeyError:
            raise NotFound(
                f"model {name!r} is not served here",
                hint="List the models you may call with GET /v1/models.",
                param="model",
            ) from None

    def _resource(self, model: ServedModel) -> ModelResource:
        """What Cedar sees of ``model``: its ceiling is the highest of every model serving the same bytes.

        A classification is about the weights, not the name they are served under: the same admitted
        bytes under a second name (an admission row copied by a database writer and served with
        ``registry.serve_admitted``, or one file admitted twice) gave an uncleared key the bytes of a
        model configured as secret (red team, wave 2).
        """
        resource = model.resource
        if model.admitted_digest is None:
            return resource
        ceiling = max(m.ceiling for m in self.models.values() if m.admitted_digest == model.admitted_digest)
        return replace(resource, classification_ceiling=max(ceiling, resource.classification_ceiling))

    def _candidates(
        self, principal: Principal, trace: Trace, inspection: Inspection | None = None
    ) -> Iterator[tuple[ServedModel, Backend, Outgoing | None]]:
        """The route's models that may answer for this principal, authorised one by one as reached,
        each with what DLP lets go to it (None when DLP is off); a model DLP refuses is skipped."""
        for name in self.router.route(trace.model):
            model = self.models[name]
            if name != trace.model:  # the requested model was authorised by infer already
                try:
                    self.authorizer.authorize(principal, trace.endpoint, self._resource(model))
                    self._servable(model)
                except (PermissionDenied, PolicyDenied) as exc:
                    trace.skipped.append((name, exc.code))
                    log.info("request %s: fallback %s refused: %s", trace.request_id, name, exc.message)
                    continue
            out = self._outgoing(principal, trace, inspection, model)
            if out is None and inspection is not None:
                continue  # DLP: this model may not receive what the request carries
            if name in self.drilled:
                trace.skipped.append((name, "drill"))
                continue
            withdrawn = self.withdrawn(model)
            if withdrawn is not None:
                trace.skipped.append((name, "withdrawn"))
                log.info("request %s: %s is withdrawn (%s)", trace.request_id, name, withdrawn.reason)
                continue
            if not self.breakers[name].allow():
                trace.skipped.append((name, "circuit_open"))
                continue
            yield model, self.router.backends[name], out

    def withdrawn(self, model: ServedModel) -> Withdrawal | None:
        if self.withdrawals is None:
            return None
        settings = model.settings
        return next((w for w in self.withdrawals.active() if w.matches(model.name, settings.provider,
                                                                       settings.country)), None)

    def _outcome(self, name: str, failed: bool | None, error: BastionError | None = None) -> None:
        """Tell ``name``'s breaker how the attempt went (None: neither, e.g. the request was bad).

        An upstream's 429 opens the circuit for as long as its Retry-After asks: respected, not retried.
        """
        breaker = self.breakers[name]
        if failed is None:
            breaker.release()
        elif isinstance(error, UpstreamRateLimited):
            breaker.open_for(error.retry_after_s)
        elif failed:
            breaker.failure()
        else:
            breaker.success()
        self.metrics.breaker_state.labels(name).set(STATES[breaker.state])

    async def _inspect(self, endpoint: Endpoint, body: dict[str, Any], trace: Trace) -> Inspection | None:
        """DLP's findings for the request (None when DLP is off); a failed scan refuses it (503)."""
        if self.dlp is None:
            return None
        try:
            inspection = await self.dlp.inspect(endpoint, body)
        except DetectorFailed:
            trace.dlp = {"action": "error"}
            raise
        trace.dlp = inspection.record
        return inspection

    def _outgoing(
        self, principal: Principal, trace: Trace, inspection: Inspection | None, model: ServedModel
    ) -> Outgoing | None:
        """What DLP lets go to ``model`` (None when DLP is off); DataLossBlocked: skip this candidate."""
        if self.dlp is None or inspection is None:
            return None
        try:
            out = self.dlp.outgoing(inspection, principal, model.resource)
        except DataLossBlocked as exc:
            trace.blocked = trace.blocked or exc
            trace.skipped.append((model.name, exc.code))
            log.info("request %s: %s blocked by DLP: %s", trace.request_id, model.name, exc.message)
            return None
        trace.sent = orjson.dumps(out.body) if out.rewritten else None
        return out

    def _exhausted(self, trace: Trace, last: BastionError | None) -> BastionError:
        if last is None and trace.blocked is not None:
            return trace.blocked  # every candidate that could answer was refused the data: 403
        if last is not None and [m for m, _ in trace.skipped] in ([], [trace.model]):
            return last  # only the requested model was tried: its own error (e.g. a 502) says it best
        tried = ", ".join(f"{m} ({why})" for m, why in trace.skipped)
        return BackendUnavailable(
            f"model {trace.model!r} cannot answer now and no fallback is available to this key: {tried}",
            hint="Check 'GET /healthz' (details for administrators) and the gateway log.",
        )

    def _attempt(
        self, model: ServedModel, trace: Trace, cancel: Cancel, call: Callable[[], Awaitable[T]]
    ) -> Awaitable[T]:
        """``call`` at ``model``, retried (before any byte reached the client) as the route's policy says."""
        policy, breaker = self.retries[trace.model], self.breakers[model.name]
        failed = partial(self._outcome, model.name, True)
        return attempt(model.name, call, policy, failed=failed, allow=breaker.allow, record=trace.attempts,
                       cancel=cancel, rng=self.router.rng)

    async def _run(
        self,
        principal: Principal,
        body: dict[str, Any],
        trace: Trace,
        cancel: Cancel,
        inspection: Inspection | None = None,
    ) -> tuple[Backend, Any]:
        last: BastionError | None = None
        for model, backend, out in self._candidates(principal, trace, inspection):
            self.router.begin(model.name)
            try:
                call = partial(backend.run, trace.endpoint, out.body if out else body, cancel)  # type: ignore[arg-type]
                reply = await self._attempt(model, trace, cancel, call)
                if out is not None:
                    reply = Reply(out.reply(reply.body), reply.usage)
            except BackendUnavailable as exc:
                if cancel.is_set():
                    self._outcome(model.name, None)
                    raise
                self._outcome(model.name, True, exc)
                last = exc
                trace.skipped.append((model.name, exc.code))
                log.warning("model %s failed: %s", model.name, exc.message)
                continue
            except BaseException:
                self._outcome(model.name, None)
                raise
            finally:
                self.router.end(model.name)
            self._outcome(model.name, False)
            trace.answered_by(model.name)
            return backend, reply
        raise self._exhausted(trace, last)

    async def _stream(
        self,
        request: Request,
        principal: Principal,
        body: dict[str, Any],
        trace: Trace,
        held: Held | None,
        inspection: Inspection | None = None,
    ) -> Response:
        cancel = Cancel()
        last: BastionError | None = None
        for model, backend, out in self._candidates(principal, trace, inspection):
            self.router.begin(model.name)
            try:
                # Pull the first chunk before answering 200, so that a backend that fails at once
                # gets a proper status code (a retry, a fallback) instead of a broken stream.
                call = partial(_first_chunk, backend, trace.endpoint, out.body if out else body, cancel, out)  # type: ignore[arg-type]
                usage, chunks, first = await self._attempt(model, trace, cancel, call)
            except BackendUnavailable as exc:
                self.router.end(model.name)
                self._outcome(model.name, True, exc)
                last = exc
                trace.skipped.append((model.name, exc.code))
                continue
            except BaseException:
                self.router.end(model.name)
                self._outcome(model.name, None)
                raise
            self._outcome(model.name, False)  # it answered; a failure mid-stream reaches the client as such

            trace.answered_by(model.name)

            async def finish(
                status: int, cut: bool, sha256: str, b: Backend = backend, usage: Usage = usage
            ) -> None:
                self.router.end(b.info.name)
                self.metrics.observe(
                    b.info.name,
                    trace.endpoint,
                    status,
                    time.perf_counter() - trace.started,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                )
                await self._settle(held, b.info.name, usage, trace)
                await self._record(trace, b, status, usage, response_sha256=sha256, partial=cut)

            headers = {**self._headers(trace.request_id, backend), **trace.ratelimit}
            token = bearer_token(request.headers.get("authorization"))
            return SSE(first, rechecked(chunks, partial(self._may_go_on, token, model, trace)), cancel,
                       headers, finish)
        raise self._exhausted(trace, last)

    def _may_go_on(self, token: str | None, model: ServedModel, trace: Trace) -> None:
        """Raise when an open stream must end: its key was revoked or expired, or its model revoked."""
        try:
            self.keys.authenticate(token)
            self._servable(model)
        except (AuthenticationFailed, PolicyDenied):
            raise
        except BastionError as exc:  # the store is away: new requests fail; an open stream goes on
            log.warning("stream %s not re-checked: %s", trace.request_id, exc.message)

    async def _read_body(self, request: Request, endpoint: Endpoint) -> tuple[bytes, dict[str, Any]]:
        """The raw body (for the audit digest) and the validated, normalised request."""
        raw, body = await self.read_json(request)
        try:
            return raw, normalise(endpoint, body)
        except ValidationError as exc:
            raise validation_error(exc) from exc

    async def read_json(self, request: Request) -> tuple[bytes, dict[str, Any]]:
        """The raw body (at most ``server.max_body_bytes``) and the JSON object it holds."""
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

    async def refuse_any(self, trace: Trace, exc: Exception) -> Response:
        """:meth:`refuse` for a BastionError; anything else is logged and refused as an audited 500."""
        if isinstance(exc, BastionError):
            return await self.refuse(trace, exc)
        log.error("request %s failed", trace.request_id, exc_info=exc)
        return await self.refuse(trace, internal_error())

    async def refuse(self, trace: Trace, exc: BastionError) -> Response:
        """The error response for ``exc``, audited (a refusal is recorded like an answer)."""
        headers = {"x-request-id": trace.request_id}
        if isinstance(exc, QuotaExceeded):
            headers["retry-after"] = str(max(1, math.ceil(exc.retry_after_s)))
            headers.update(exc.headroom.headers())
        response = error_response(exc, headers)
        return await self.finish(trace, None, exc.http_status, Usage(), response, error=exc)

    async def finish(
        self,
        trace: Trace,
        backend: Backend | None,
        status: int,
        usage: Usage,
        response: Response,
        error: BastionError | None = None,
    ) -> Response:
        """Make the request's audit entry durable before the response leaves, and count it."""
        try:
            await self._record(trace, backend, status, usage, response_body=bytes(response.body), error=error)
        except BastionError as exc:
            response = error_response(exc, {"x-request-id": trace.request_id})
        self.metrics.observe(
            self._metric_label(trace, backend),
            trace.endpoint,
            response.status_code,
            time.perf_counter() - trace.started,
            usage.prompt_tokens,
            usage.completion_tokens,
        )
        return response

    def _metric_label(self, trace: Trace, backend: Backend | None) -> str:
        """The model a metric is labelled with: a served one, never a name a client made up.

        The label was the requested name as sent: every made-up name became new time series in
        /metrics, memory that any key holder could grow without bound (red team, wave 2).
        """
        if backend is not None:
            return backend.info.name
        return trace.model if trace.model in self.models else "-"

    async def _record(
        self,
        trace: Trace,
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
            skipped=tuple(trace.skipped),
            dlp=trace.dlp,
            sent_body=trace.sent,
            attempts=tuple(a.to_json() for a in trace.attempts) if len(trace.attempts) > 1 else (),
            retrieval=trace.retrieval,
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

    def _headers(self, request_id: str, backend: Backend) -> dict[str, str]:
        headers = {"x-request-id": request_id, "x-bastion-model": backend.info.name}
        if backend.info.digest:
            headers["x-bastion-model-digest"] = backend.info.digest
        return headers

    # -- other endpoints ----------------------------------------------------------------------------

    async def list_models(self, request: Request) -> Response:
        """The models Cedar lets this key use (no server paths or upstream URLs: those are not theirs)."""
        trace = Trace(uuid.uuid4().hex, time.perf_counter(), "models")
        try:
            principal = self.authenticate(request, trace)
        except BastionError as exc:
            return await self.refuse(trace, exc)
        visible = self.authorizer.visible(principal, (self._resource(m) for m in self.models.values()))
        data = []
        for name in visible:
            model, backend = self.models[name], self.router.backends[name]
            data.append(
                {
                    "id": name,
                    "object": "model",
                    "created": 0,
                    "owned_by": "bastion",
                    "bastion": {
                        "backend": model.backend,
                        "local": model.local,
                        "classification": model.classification,
                        "digest": backend.info.digest,
                        "endpoints": sorted(backend.info.endpoints),
                        "healthy": backend.healthy() and name not in self.refused,
                    },
                }
            )
        return Response(orjson.dumps({"object": "list", "data": data}), media_type=JSON)

    def is_admin(self, request: Request) -> bool:
        """Loopback callers (unless ``server.admin_loopback`` is off) and keys in ``server.admin_group``."""
        server = self.settings.server
        client = request.client.host if request.client else ""
        try:
            if server.admin_loopback and ipaddress.ip_address(client).is_loopback:
                return True
        except ValueError:
            pass
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            return False
        try:
            principal = self.keys.authenticate(token)
        except AuthenticationFailed:
            return False
        return server.admin_group in principal.groups

    async def admin_only(self, request: Request, what: str) -> Response | None:
        """None for an administrator; otherwise the (audited) 403 to send."""
        if self.is_admin(request):
            return None
        trace = Trace(uuid.uuid4().hex, time.perf_counter(), what)
        return await self.refuse(
            trace,
            PermissionDenied(
                f"{what} is for administrators",
                hint="Call it from the gateway host, or with a key in group"
                f" {self.settings.server.admin_group!r}.",
            ),
        )


async def _first_chunk(
    backend: Backend, endpoint: Endpoint, body: dict[str, Any], cancel: Cancel, out: Outgoing | None
) -> tuple[Usage, AsyncIterator[bytes], bytes | None]:
    """Open a stream at ``backend`` and pull its first chunk (each attempt with its own usage count)."""
    usage = Usage()
    stream = backend.stream(endpoint, body, cancel, usage)
    chunks = (out.stream(stream) if out is not None else stream).__aiter__()
    try:
        first = await chunks.__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException:
        await chunks.aclose()  # type: ignore[attr-defined]
        raise
    return usage, chunks, first
