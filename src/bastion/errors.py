"""One exception hierarchy for all of Bastion.

Every error carries a one-line message, a hint that tells the operator what to do, the exit status
the CLI uses and the HTTP status the gateway uses. The CLI (``bastion.cli.render``) and the HTTP layer
(``bastion.serve.http_errors``) each render it in exactly one place.

Exit statuses are distinct per class so scripts can branch on them:

====  =========================  ====
exit  class                      HTTP
====  =========================  ====
1     BastionError (unexpected)  500
2     UsageError                 400
3     UnusableInput              400
4     ConfigError                500
5     NotFound                   404
6     AuthenticationFailed       401
7     PermissionDenied           403
8     IntegrityError             409
9     BackendUnavailable         503
10    Busy                       429
11    PayloadTooLarge            413
12    VerdictFail (vet: fail)    422
13    PolicyDenied               403
14    DataLossBlocked (DLP)      403
15    DetectorFailed (DLP)       503
16    StoreUnavailable           503
====  =========================  ====

Subclasses share their parent's exit status: ``EgressBlocked`` (a ``PermissionDenied``, 403) and
``BadGateway`` (a ``BackendUnavailable`` whose upstream answered something unusable, 502),
``UpstreamTimedOut`` (a ``BackendUnavailable``, 503, code ``backend_unavailable``) and
``UpstreamRateLimited`` (429).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar


class BastionError(Exception):
    """Base of every error Bastion raises on purpose."""

    exit_code: ClassVar[int] = 1
    http_status: ClassVar[int] = 500
    #: OpenAI error envelope ``type``
    error_type: ClassVar[str] = "server_error"
    #: stable machine-readable code
    code: ClassVar[str] = "internal_error"
    default_hint: ClassVar[str] = ""

    def __init__(self, message: str, *, hint: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint
        self.param = param

    def to_json(self) -> dict[str, Any]:
        """The error as a plain mapping (used by ``--json`` and the HTTP envelope)."""
        return {
            "message": self.message,
            "type": self.error_type,
            "code": self.code,
            "param": self.param,
            "hint": self.hint or None,
        }


class UsageError(BastionError):
    """The request or command line is malformed."""

    exit_code = 2
    http_status = 400
    error_type = "invalid_request_error"
    code = "invalid_request"


class UnusableInput(BastionError):
    """An input file cannot be read as what it claims to be."""

    exit_code = 3
    http_status = 400
    error_type = "invalid_request_error"
    code = "unusable_input"


class ConfigError(BastionError):
    """The configuration file or an environment override is invalid."""

    exit_code = 4
    http_status = 500
    code = "config_error"


class NotFound(BastionError):
    """A named thing (model, key, entry) does not exist."""

    exit_code = 5
    http_status = 404
    error_type = "not_found_error"
    code = "not_found"


class AuthenticationFailed(BastionError):
    """No API key, or one that is unknown or revoked."""

    exit_code = 6
    http_status = 401
    error_type = "authentication_error"
    code = "invalid_api_key"
    default_hint = "Send 'Authorization: Bearer <key>' with a key from 'bastion keys create'."


class PermissionDenied(BastionError):
    """The principal is known but may not do this."""

    exit_code = 7
    http_status = 403
    error_type = "permission_error"
    code = "model_not_allowed"


class IntegrityError(BastionError):
    """Bytes on disk do not match what was recorded or signed."""

    exit_code = 8
    http_status = 409
    code = "integrity_error"


class BackendUnavailable(BastionError):
    """The model's backend is down or failed."""

    exit_code = 9
    http_status = 503
    error_type = "server_error"
    code = "backend_unavailable"


class BadGateway(BackendUnavailable):
    """An upstream answered, but with something the gateway will not pass on (a redirect, too large)."""

    http_status = 502
    code = "bad_upstream_response"


class UpstreamTimedOut(BackendUnavailable):
    """An upstream took longer than a timeout (connect, first byte, total); not retried: it spent the time."""


class UpstreamRateLimited(BackendUnavailable):
    """An upstream answered 429: this deployment is skipped for the time its Retry-After asks."""

    http_status = 429
    error_type = "rate_limit_error"
    code = "upstream_rate_limited"

    def __init__(self, message: str, retry_after_s: float, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after_s = retry_after_s


class Busy(BastionError):
    """The model's queue is full; retry later."""

    exit_code = 10
    http_status = 429
    error_type = "rate_limit_error"
    code = "queue_full"
    default_hint = "Retry after a short delay, or raise the model's max_queue in the configuration."


class PayloadTooLarge(BastionError):
    """The request body exceeds the configured limit."""

    exit_code = 11
    http_status = 413
    error_type = "invalid_request_error"
    code = "payload_too_large"


class VerdictFail(BastionError):
    """A vet verdict of ``fail``: the artifact must not be admitted."""

    exit_code = 12
    http_status = 422
    error_type = "invalid_request_error"
    code = "vet_failed"


class PolicyDenied(BastionError):
    """A written policy denied the action."""

    exit_code = 13
    http_status = 403
    error_type = "permission_error"
    code = "policy_denied"


class EgressBlocked(PermissionDenied):
    """An outbound connection to a host that is not loopback or a configured upstream."""

    code = "egress_blocked"


def internal_error() -> BastionError:
    """What a caller sees of an unexpected failure: a 500 that points at the log, never a traceback."""
    return BastionError(
        "internal error; the gateway log has the details",
        hint="Report it to the administrator with the request id.",
    )


class DataLossBlocked(PolicyDenied):
    """The policy lets none of what the request carries (markings, personal data, secrets) go to the model."""

    exit_code = 14
    code = "dlp_blocked"


class DetectorFailed(BastionError):
    """A data-loss detector failed or ran out of time: the text counts as unchecked and is refused."""

    exit_code = 15
    http_status = 503
    error_type = "server_error"
    code = "dlp_detector_failed"
    default_hint = "The gateway log names the detector; the request was refused rather than sent unchecked."


class StoreUnavailable(BastionError):
    """The database behind the stores (PostgreSQL) cannot be reached or used: down, wrong credentials,
    wrong database name, or every pooled connection busy. The message names the URL, password redacted."""

    exit_code = 16
    http_status = 503
    error_type = "server_error"
    code = "store_unavailable"
    default_hint = "Check store.url and that the database server is running (pg_isready)."


def did_you_mean(name: str, choices: Iterable[str] | Mapping[str, str], otherwise: str = "") -> str:
    """A hint naming the closest of ``choices`` to a mistyped ``name`` (difflib), else ``otherwise``.

    Case is ignored when matching, so ``SMOLLM2`` finds ``smollm2``. ``choices`` may map each spelling
    (e.g. an alias) to the name to suggest for it.
    """
    spelled = choices if isinstance(choices, Mapping) else {c: c for c in choices}
    pool: dict[str, str] = {}
    for spelling, shown in spelled.items():
        if spelling:
            pool.setdefault(spelling.lower(), shown)  # the first spelling given wins
    close = difflib.get_close_matches(name.lower(), list(pool), n=5, cutoff=0.6)
    names = list(dict.fromkeys(pool[c] for c in close))[:3]  # two aliases of one entry: suggest it once
    if not names:
        return otherwise
    listed = " or ".join(f"'{n}'" for n in names)
    return f"Did you mean {listed}?" + (f" {otherwise}" if otherwise else "")
