"""Authentication (API key -> principal) and authorisation (principal x action x model).

``Authorizer`` is the seam the policy capability replaces with Cedar; the gateway calls nothing else.
"""

from __future__ import annotations

from typing import Protocol

from bastion.errors import PermissionDenied
from bastion.keys import Principal


class Authorizer(Protocol):
    """Decide whether ``principal`` may perform ``action`` on ``model``; raise PermissionDenied if not."""

    def authorize(self, principal: Principal, action: str, model: str) -> None: ...


class KeyModelListAuthorizer:
    """Allow a key exactly the models listed on it (``*`` allows every model)."""

    def authorize(self, principal: Principal, action: str, model: str) -> None:
        if "*" in principal.models or model in principal.models:
            return
        raise PermissionDenied(
            f"API key {principal.key_id} ({principal.name}) may not call model {model!r}",
            hint="Create a key that lists this model: 'bastion keys create NAME --model " + model + "'.",
            param="model",
        )


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None
