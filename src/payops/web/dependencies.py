"""FastAPI dependencies: the app context and the authenticated caller."""

from __future__ import annotations

from fastapi import Request

from payops.auth.service import Principal
from payops.context import AppContext
from payops.errors import PermissionDenied


def get_context(request: Request) -> AppContext:
    return request.app.state.ctx


async def authenticate(request: Request) -> Principal:
    ctx = get_context(request)
    # The client address is the TCP peer, or what a proxy in PAYOPS_TRUSTED_PROXIES forwarded
    # (the app's ProxyHeadersMiddleware and `payops serve` apply that setting; docs/security.md).
    client = request.client.host if request.client else "unknown"
    # No database session is held here: the authenticator opens short ones itself, so logins
    # waiting for a password verification never hold pooled connections.
    return await ctx.authenticator.authenticate(request.headers.get("authorization"), client)


def require_permission(principal: Principal, permission: str) -> None:
    if not principal.can(permission):
        raise PermissionDenied()
