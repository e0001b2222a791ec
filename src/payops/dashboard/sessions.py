"""Dashboard sign-in: server-side sessions, CSRF tokens and the idle timeout.

The cookie carries a random token; the ``dashboard_sessions`` row is keyed by its SHA-256, so the
table cannot be replayed. Every request re-reads the user, so a deactivation, a password change or
a revoked permission takes effect on the next click. Each session has its own CSRF token, sent in a
hidden field of every form and compared in constant time; before sign-in a short-lived cookie
plays that part (double submit).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import Request
from fastapi.responses import Response

from payops.auth.permissions import GRANTABLE_PERMISSIONS
from payops.auth.service import Principal
from payops.context import AppContext
from payops.dashboard import repository
from payops.db.models import DashboardSession, User
from payops.errors import AuthenticationFailed, DetailError

SESSION_COOKIE = "payops_session"
LOGIN_CSRF_COOKIE = "payops_login_csrf"
# A session's last_seen_at is written at most this often, so browsing is not a write per click.
TOUCH_EVERY = timedelta(seconds=60)


def superuser_permissions() -> frozenset[str]:
    """Everything a superuser holds in the dashboard: every payment and administration code."""
    return GRANTABLE_PERMISSIONS


def user_permissions(user: User) -> frozenset[str]:
    if user.is_superuser:
        return superuser_permissions()
    return frozenset(p.code for p in user.permissions)


def principal_for(user: User) -> Principal:
    """The same caller the API builds for this user's Basic credentials."""
    initiator = {
        "id": user.id,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "username": user.username,
        "email": user.email,
        "phone": user.phone,
    }
    return Principal("user", user.username, user_permissions(user), initiator)


def credentials_version(user: User) -> int:
    return int(user.credentials_version or 0)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def client_address(request: Request) -> str:
    return (request.client.host if request.client else "unknown")[:64]


def is_https(request: Request) -> bool:
    return request.url.scheme == "https"


@dataclass(frozen=True)
class Visitor:
    """A signed-in dashboard user, as of this request."""

    user_id: int
    username: str
    is_superuser: bool
    csrf_token: str
    session_key: str
    address: str
    principal: Principal

    def can(self, permission: str) -> bool:
        return self.principal.can(permission)

    @property
    def permissions(self) -> frozenset[str]:
        return self.principal.permissions


class SignInRefused(Exception):
    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


async def sign_in(ctx: AppContext, username: str, password: str, address: str) -> tuple[str, User]:
    """Check the credentials exactly as the API does (argon2id, failure throttle, inactive users)
    and open a session. Returns the cookie token and the user."""
    basic = base64.b64encode(f"{username}:{password}".encode()).decode()
    try:
        principal = await ctx.authenticator.authenticate(f"Basic {basic}", address)
    except AuthenticationFailed:
        raise SignInRefused("Invalid username or password, or the account is inactive.") from None
    except DetailError as error:  # throttled (429) or too busy verifying passwords (503)
        seconds = error.headers.get("Retry-After", "60")
        raise SignInRefused(
            f"Sign-in is not possible now. Try again in {seconds} seconds.", error.status_code
        ) from None
    token = secrets.token_urlsafe(32)
    now = datetime.now(UTC)
    async with ctx.db.write() as session:
        user = await session.get_one(User, principal.initiator["id"])
        await repository.delete_expired_sessions(session, now)
        session.add(
            DashboardSession(
                token_hash=token_hash(token),
                user_id=user.id,
                csrf_token=secrets.token_urlsafe(32),
                credentials_version=credentials_version(user),
                client_address=address,
                created_at=now,
                last_seen_at=now,
                expires_at=now + timedelta(hours=ctx.settings.dashboard_session_hours),
            )
        )
    return token, user


async def current_visitor(ctx: AppContext, request: Request) -> Visitor | None:
    """The signed-in user of this request, or None (no cookie, expired, idle, deactivated)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    if not token or len(token) > 128:
        return None
    key = token_hash(token)
    now = datetime.now(UTC)
    idle = timedelta(minutes=ctx.settings.dashboard_idle_minutes)
    async with ctx.db.read() as session:
        row = await session.get(DashboardSession, key)
        user = await session.get(User, row.user_id) if row is not None else None
    if row is None or user is None:
        return None
    if (
        row.expires_at <= now
        or row.last_seen_at + idle <= now
        or not user.is_active
        or credentials_version(user) != row.credentials_version
    ):
        await end_session(ctx, key)
        return None
    if now - row.last_seen_at >= TOUCH_EVERY:
        async with ctx.db.write() as session:
            stored = await session.get(DashboardSession, key)
            if stored is not None:
                stored.last_seen_at = now
    principal = principal_for(user)
    return Visitor(
        user.id,
        user.username,
        user.is_superuser,
        row.csrf_token,
        key,
        client_address(request),
        principal,
    )


async def end_session(ctx: AppContext, key: str) -> None:
    async with ctx.db.write() as session:
        await repository.delete_session(session, key)


def tokens_match(expected: str, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(expected, given or "")


def set_session_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
        path="/dashboard",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        SESSION_COOKIE,
        path="/dashboard",
        httponly=True,
        samesite="strict",
        secure=is_https(request),
    )


def set_login_csrf_cookie(response: Response, request: Request, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=is_https(request),
        path="/dashboard",
        max_age=3600,
    )
