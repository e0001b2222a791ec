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
    client = request.client.host if request.client else "unknown"
    async with ctx.db.read() as session:
        return await ctx.authenticator.authenticate(
            session, request.headers.get("authorization"), client
        )


def require_permission(principal: Principal, permission: str) -> None:
    if not principal.can(permission):
        raise PermissionDenied()
