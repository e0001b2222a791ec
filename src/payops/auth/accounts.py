"""Changes to user accounts: password and active state.

Every change bumps ``users.credentials_version``. Each server process's verified-password cache
remembers the version it verified and re-checks it on every request, so a changed password or a
deactivation ends cached logins at once in every process (decisions §11). Each change is audited
with the actor's name.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncSession

from payops import audit
from payops.auth import repository
from payops.auth.secrets import (
    MAX_PASSWORD_BYTES,
    MAX_USERNAME_LENGTH,
    MIN_PASSWORD_LENGTH,
    hash_password,
)
from payops.auth.service import Principal
from payops.db.models import User
from payops.domain import messages
from payops.errors import ApiError

if TYPE_CHECKING:  # the context is built from this package: name its type only
    from payops.context import AppContext


class AccountError(ApiError):
    """An account change that cannot be made: an unknown user (404) or an unusable password."""

    def __init__(self, detail: str, status_code: int = 400) -> None:
        super().__init__({"detail": detail})
        self.status_code = status_code


# Django's usernames (Ottu's): letters, digits and . @ + - _, at most what logins accept. A name
# with a colon, a space or more characters could be created but never sign in.
USERNAME = re.compile(rf"[A-Za-z0-9_.@+-]{{1,{MAX_USERNAME_LENGTH}}}")


def check_new_username(username: str) -> None:
    if not USERNAME.fullmatch(username):
        raise AccountError(messages.USERNAME_INVALID.format(n=MAX_USERNAME_LENGTH))


def check_new_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AccountError(messages.PASSWORD_TOO_SHORT.format(n=MIN_PASSWORD_LENGTH))
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        # The authenticator refuses longer passwords unread; such a user could never log in.
        raise AccountError(messages.PASSWORD_TOO_LONG.format(n=MAX_PASSWORD_BYTES))


def bump_credentials_version(user: User) -> None:
    """Call in the transaction that changes what a user's credentials grant (password, active
    state, permissions). Evaluated in SQL, so concurrent changes never collapse into one."""
    user.credentials_version = User.credentials_version + 1


async def _existing(session: AsyncSession, username: str) -> User:
    user = await repository.user_by_username(session, username)
    if user is None:
        raise AccountError(messages.USER_NOT_FOUND.format(username=username), 404)
    return user


async def set_password(ctx: AppContext, username: str, password: str, *, actor: Principal) -> None:
    check_new_password(password)
    # argon2id takes a good part of a second of CPU: hash before the write transaction, off the loop.
    password_hash = await asyncio.to_thread(hash_password, password)
    async with ctx.db.write() as session:
        user = await _existing(session, username)
        user.password_hash = password_hash
        bump_credentials_version(user)
        audit.record(session, actor, "user.set_password", "success", username=username)


async def set_active(ctx: AppContext, username: str, active: bool, *, actor: Principal) -> None:
    async with ctx.db.write() as session:
        user = await _existing(session, username)
        was_active = user.is_active
        user.is_active = active
        bump_credentials_version(user)
        audit.record(
            session,
            actor,
            "user.activate" if active else "user.deactivate",
            "success",
            username=username,
            was_active=was_active,
        )
