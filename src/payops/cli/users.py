"""`payops user …`: dashboard/API users (Basic auth) and their permission codes."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from payops.cli.common import cli_actor, console, fail, run

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from payops.auth.service import Principal
    from payops.context import AppContext
    from payops.db.models import User

app = typer.Typer(help="Dashboard/API users (Basic auth).", no_args_is_help=True)


def check_permissions(codes: Iterable[str], *, listing: bool) -> None:
    from payops.auth.permissions import GRANTABLE_PERMISSIONS

    unknown = set(codes) - GRANTABLE_PERMISSIONS
    if unknown:
        known = f"; known: {', '.join(sorted(GRANTABLE_PERMISSIONS))}" if listing else ""
        fail(f"unknown permission(s): {', '.join(sorted(unknown))}{known}")


def refusal(exc: Exception) -> str:
    """The text of an account refusal (auth.accounts.AccountError)."""
    body = getattr(exc, "body", None)
    return str(body["detail"]) if isinstance(body, dict) else str(exc)


async def add_user(
    session: AsyncSession,
    actor: Principal,
    username: str,
    password: str,
    *,
    superuser: bool,
    permissions: Iterable[str] = (),
    **profile: str,
) -> User:
    """A new user with an argon2id-hashed password, audited (``user create`` and ``demo``)."""
    from payops import audit
    from payops.auth.secrets import hash_password
    from payops.db.models import User, UserPermission

    codes = sorted(set(permissions))
    user = User(
        username=username,
        password_hash=hash_password(password),
        is_superuser=superuser,
        permissions=[UserPermission(code=code) for code in codes],
        **profile,
    )
    session.add(user)
    audit.record(
        session,
        actor,
        "user.create",
        "success",
        username=username,
        superuser=superuser,
        permissions=codes,
    )
    return user


def _new_password(from_stdin: bool, prompt: str) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return str(typer.prompt(prompt, hide_input=True, confirmation_prompt=True))


@app.command("create")
def user_create(
    username: str,
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin (scripts)"
    ),
    superuser: bool = typer.Option(False, help="Holds every permission"),
    permission: list[str] = typer.Option([], "--permission", "-p", help="Permission code; repeat"),
    first_name: str = "",
    last_name: str = "",
    email: str = "",
    phone: str = "",
) -> None:
    """Create a user with an argon2id-hashed password, asked at a hidden prompt (or read from
    stdin), never taken as an argument: arguments show in `ps` and in the shell's history."""
    from payops.auth import repository as auth_repo
    from payops.auth.accounts import AccountError, check_new_password, check_new_username

    check_permissions(permission, listing=True)
    password = _new_password(password_stdin, "Password")
    try:
        check_new_username(username)  # one that Basic auth and the dashboard can sign in with
        check_new_password(password)  # at least 8 characters, at most what logins accept
    except AccountError as exc:
        fail(refusal(exc))

    async def work(ctx: AppContext) -> None:
        async with ctx.db.write() as session:
            if await auth_repo.user_by_username(session, username):
                fail(f"user {username!r} exists; choose another name, or see `payops user list`")
            await add_user(
                session,
                cli_actor(),
                username,
                password,
                superuser=superuser,
                permissions=permission,
                first_name=first_name,
                last_name=last_name,
                email=email,
                phone=phone,
            )

    run(work)
    console.print(f"created user [bold]{username}[/bold]")


@app.command("list")
def user_list() -> None:
    """List users and their permissions."""
    from payops.auth import repository as auth_repo

    async def work(ctx: AppContext) -> list[User]:
        async with ctx.db.read() as session:
            return await auth_repo.list_users(session)

    table = Table("username", "superuser", "active", "permissions")
    for user in run(work):
        table.add_row(
            user.username,
            "yes" if user.is_superuser else "no",
            "yes" if user.is_active else "no",
            ", ".join(sorted(p.code for p in user.permissions)) or "-",
        )
    console.print(table)


@app.command("grant")
def user_grant(
    username: str,
    permissions: list[str] = typer.Argument(..., help="Permission codes, e.g. payment.refund"),
    revoke: bool = typer.Option(False, help="Take the permissions away instead"),
) -> None:
    """Grant (or with --revoke, remove) permission codes."""
    from payops import audit
    from payops.auth import repository as auth_repo
    from payops.auth.accounts import bump_credentials_version
    from payops.db.models import UserPermission

    check_permissions(permissions, listing=False)

    async def work(ctx: AppContext) -> list[str]:
        async with ctx.db.write() as session:
            user = await auth_repo.user_by_username(session, username)
            if user is None:
                fail(f"no user {username!r}; see `payops user list`")
            held = {p.code: p for p in user.permissions}
            for code in permissions:
                if revoke and code in held:
                    user.permissions.remove(held[code])
                elif not revoke and code not in held:
                    user.permissions.append(UserPermission(code=code))
            bump_credentials_version(user)  # cached logins pick up the new permissions
            audit.record(
                session,
                cli_actor(),
                "user.revoke" if revoke else "user.grant",
                "success",
                username=username,
                permissions=sorted(set(permissions)),
            )
            await session.flush()
            return sorted(p.code for p in user.permissions)

    now_held = run(work)
    console.print(f"{username}: {', '.join(now_held) or 'no permissions'}")


def _account_change(change: Callable[[AppContext], Awaitable[None]]) -> None:
    from payops.auth.accounts import AccountError

    try:
        run(change)
    except AccountError as exc:
        fail(refusal(exc))


@app.command("deactivate")
def user_deactivate(username: str) -> None:
    """Deactivate a user: every login, cached or not, is refused at once in every process."""
    from payops.auth.accounts import set_active

    actor = cli_actor()
    _account_change(lambda ctx: set_active(ctx, username, False, actor=actor))
    console.print(f"deactivated user [bold]{username}[/bold]")


@app.command("activate")
def user_activate(username: str) -> None:
    """Activate a user again."""
    from payops.auth.accounts import set_active

    actor = cli_actor()
    _account_change(lambda ctx: set_active(ctx, username, True, actor=actor))
    console.print(f"activated user [bold]{username}[/bold]")


@app.command("set-password")
def user_set_password(
    username: str,
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin (scripts)"
    ),
) -> None:
    """Change a user's password; asked at a hidden prompt (or read from stdin), never taken as an
    argument, so it stays out of shell history and process lists. Cached logins end at once."""
    from payops.auth.accounts import set_password

    password = _new_password(password_stdin, "New password")
    actor = cli_actor()
    _account_change(lambda ctx: set_password(ctx, username, password, actor=actor))
    console.print(f"changed the password of user [bold]{username}[/bold]")
