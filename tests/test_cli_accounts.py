"""`payops user deactivate|activate|set-password` (auth/accounts.py): a change ends cached logins
at once in every process (users.credentials_version), is audited with the operator's name, and the
password never travels as a command-line argument.

Two app instances stand for two server processes; each has verified (and cached) the password
before the CLI, a third process, changes the account.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from sqlalchemy import select

from payops.api.app import create_app
from payops.config import Settings
from payops.db.models import AuditEntry, User
from tests.conftest import basic
from tests.helpers import Seed
from tests.test_cli import Cli

URL = "/b/pbl/v1/inquiry/ORD-1"
OLD, NEW = "Old-passw0rd-1", "N3w-passw0rd-2"
INVALID_BASIC = {"detail": "Invalid username/password."}
INACTIVE = {"detail": "User inactive or deleted."}


@pytest.fixture
def cli(settings: Settings) -> Cli:
    """The CLI on the very database, data dir and secret key of the `app` fixture."""
    return Cli(settings.data_dir, settings.database_url, settings.secret_key)


@asynccontextmanager
async def process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    application = create_app(settings)
    async with LifespanManager(application):
        transport = httpx.ASGITransport(app=application, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http


async def answers(clients: list[httpx.AsyncClient], headers: dict[str, str]) -> list[Any]:
    found = []
    for http in clients:
        response = await http.post(URL, headers=headers)
        found.append(
            200 if response.status_code == 200 else (response.status_code, response.json())
        )
    return found


async def test_account_changes_end_cached_logins_at_once_in_every_process(
    client: httpx.AsyncClient, seed: Seed, settings: Settings, cli: Cli
) -> None:
    await seed.transaction(order_no="ORD-1")
    await seed.user("merchant", OLD, superuser=True)
    old, new = basic("merchant", OLD), basic("merchant", NEW)
    async with process(settings) as other:
        processes = [client, other]
        assert await answers(processes, old) == [200, 200]  # verified, now cached in both

        result = await asyncio.to_thread(
            cli.ok, "user", "set-password", "merchant", input=f"{NEW}\n{NEW}\n"
        )
        assert OLD not in result.output and NEW not in result.output
        assert await answers(processes, old) == [(401, INVALID_BASIC)] * 2
        assert await answers(processes, new) == [200, 200]

        await asyncio.to_thread(cli.ok, "user", "deactivate", "merchant")
        assert await answers(processes, new) == [(401, INACTIVE)] * 2
        await asyncio.to_thread(cli.ok, "user", "activate", "merchant")
        assert await answers(processes, new) == [200, 200]

    async with seed.ctx.db.read() as session:
        user = (await session.scalars(select(User).where(User.username == "merchant"))).one()
        trail = list(
            await session.scalars(
                select(AuditEntry).where(AuditEntry.action.like("user.%")).order_by(AuditEntry.id)
            )
        )
    assert user.credentials_version == 4  # created at 1, then three changes
    assert user.is_active and user.password_hash.startswith("$argon2id$")
    assert [(e.action, e.actor_type, e.result, e.details["username"]) for e in trail] == [
        ("user.set_password", "cli", "success", "merchant"),
        ("user.deactivate", "cli", "success", "merchant"),
        ("user.activate", "cli", "success", "merchant"),
    ]
    assert all(e.actor.startswith("cli:") and len(e.actor) > 4 for e in trail)
    assert not any(OLD in str(e.details) or NEW in str(e.details) for e in trail)


async def test_set_password_from_stdin_and_what_it_refuses(
    client: httpx.AsyncClient, seed: Seed, cli: Cli
) -> None:
    await seed.transaction(order_no="ORD-1")
    await seed.user("merchant", OLD, superuser=True)

    async def status(password: str) -> int:
        return (await client.post(URL, headers=basic("merchant", password))).status_code

    # Scripts pipe the password in; it is never an argument (shell history, process lists).
    await asyncio.to_thread(
        cli.ok, "user", "set-password", "merchant", "--password-stdin", input=f"{NEW}\n"
    )
    assert (await status(NEW), await status(OLD)) == (200, 401)
    as_argument = await asyncio.to_thread(cli, "user", "set-password", "merchant", "Arg-passw0rd")
    assert as_argument.exit_code == 2, as_argument.output

    refusals = [
        (
            ("user", "set-password", "merchant", "--password-stdin"),
            "short\n",
            "at least 8 characters",
        ),
        (
            ("user", "set-password", "merchant", "--password-stdin"),
            "x" * 4097 + "\n",
            "at most 4096 bytes",
        ),
        (
            ("user", "set-password", "ghost", "--password-stdin"),
            f"{NEW}\n",
            "No user named 'ghost'",
        ),
        (("user", "deactivate", "ghost"), None, "No user named 'ghost'"),
        (("user", "activate", "ghost"), None, "No user named 'ghost'"),
    ]
    # `user create` keeps to the same policy: a password logins would refuse unread is refused.
    refusals.append(
        (("user", "create", "longpw"), "x" * 4097 + "\n" + "x" * 4097 + "\n", "at most 4096 bytes")
    )
    for args, stdin, message in refusals:
        result = await asyncio.to_thread(cli, *args, input=stdin)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
    # Nothing changed: the password set above still works, and only that change was audited.
    assert await status(NEW) == 200
    async with seed.ctx.db.read() as session:
        actions = list(
            await session.scalars(select(AuditEntry.action).where(AuditEntry.action.like("user.%")))
        )
    assert actions == ["user.set_password"]


async def test_user_create_refuses_a_username_no_login_could_use(
    client: httpx.AsyncClient, seed: Seed, cli: Cli
) -> None:
    # Basic auth refuses usernames over 150 characters unread and splits at the first colon,
    # and the dashboard strips spaces: such users were created but could never sign in.
    await seed.transaction(order_no="ORD-1")
    for name in ("u" * 151, "ops:team", "", " ops ", "ops team", "op\ts"):
        result = await asyncio.to_thread(
            cli, "user", "create", name, "--superuser", input=f"{NEW}\n{NEW}\n"
        )
        assert result.exit_code == 2 and "A username has 1 to 150" in result.stderr, (
            name,
            result.output,
        )
    async with seed.ctx.db.read() as session:
        assert list(await session.scalars(select(User.username))) == []
    longest = "u" * 150
    await asyncio.to_thread(
        cli.ok, "user", "create", longest, "--superuser", input=f"{NEW}\n{NEW}\n"
    )
    response = await client.post(URL, headers=basic(longest, NEW))
    assert response.status_code == 200, response.text
