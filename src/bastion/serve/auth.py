"""Authentication (API key -> principal) and authorisation (principal x action x model).

``Authorizer`` is the seam; the gateway is given ``bastion.policy.CedarAuthorizer`` (keys' model lists
and clearances, decided by Cedar) and calls nothing else.
"""

from __future__ import annotations

from typing import Protocol

from bastion.keys import Principal


class Authorizer(Protocol):
    """Decide whether ``principal`` may perform ``action`` on ``model``; raise PermissionDenied if not."""

    def authorize(self, principal: Principal, action: str, model: str) -> None: ...


def bearer_token(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, if any."""
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None
