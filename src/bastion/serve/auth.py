"""Authentication (API key -> principal) and authorisation (principal x action x model).

``Authorizer`` is the seam; the gateway is given ``bastion.policy.CedarAuthorizer`` and calls nothing
else. Every model that may answer a request is authorised through it: the requested model and each
fallback the router walks to. There is no path around it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from bastion.keys import Principal
from bastion.policy import DlpContext, ModelResource


class Authorizer(Protocol):
    """Decide what a principal may do with a served model."""

    @property
    def origin(self) -> str:
        """Where the policy in force came from (for logs and audit entries)."""

    def authorize(self, principal: Principal, action: str, model: ModelResource) -> None:
        """Return if ``principal`` may perform ``action`` on ``model``; raise PermissionDenied if not."""

    def dlp_transform(self, principal: Principal, action: str, model: ModelResource, dlp: DlpContext) -> str:
        """What must be done to send ``dlp``'s findings to ``model`` ("none", "pseudonymise", "redact");
        raise DataLossBlocked when nothing may be sent."""

    def visible(self, principal: Principal, models: Iterable[ModelResource]) -> list[str]:
        """The names among ``models`` the principal may use for at least one action."""

    def reload(self, clearance: Mapping[str, int] | None = None) -> None:
        """Re-read the policy (and take the groups' new ``clearance``, when given); raise (keeping the
        old policy) when the new one does not validate."""


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None
