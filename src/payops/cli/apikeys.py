"""`payops apikey …`: API keys (Api-Key auth), shown once and stored as a hash."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from payops.cli.common import cli_actor, console, fail, run

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from payops.auth.service import Principal
    from payops.context import AppContext
    from payops.db.models import ApiKey

app = typer.Typer(help="API keys (Api-Key auth).", no_args_is_help=True)
NAME_MAX = 50


def add_api_key(
    session: AsyncSession, actor: Principal, name: str, expires_in_days: int = 0
) -> tuple[str, str]:
    """A new API key, stored as prefix + hash and audited (``apikey create`` and ``demo``).
    Returns (the whole key, to show once; its prefix)."""
    from payops import audit
    from payops.auth.secrets import new_api_key
    from payops.db.models import ApiKey

    key, prefix, secret_hash = new_api_key()
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days > 0 else None
    session.add(ApiKey(prefix=prefix, secret_hash=secret_hash, name=name, expires_at=expires))
    audit.record(
        session,
        actor,
        "api_key.create",
        "success",
        prefix=prefix,
        name=name,
        expires_in_days=expires_in_days,
    )
    return key, prefix


@app.command("create")
def apikey_create(
    name: str,
    expires_in_days: int = typer.Option(0, help="0 = never expires"),
) -> None:
    """Create an API key; the key is shown once and stored only as a hash."""
    if len(name) > NAME_MAX:
        fail(f"the name may have at most {NAME_MAX} characters")

    async def work(ctx: AppContext) -> tuple[str, str]:
        async with ctx.db.write() as session:
            return add_api_key(session, cli_actor(), name, expires_in_days)

    key, prefix = run(work)
    console.print(f"API key [bold]{name}[/bold] (prefix {prefix}), shown only now:")
    print(key)


@app.command("revoke")
def apikey_revoke(prefix: str) -> None:
    """Revoke an API key by its prefix (the part before the dot)."""
    from payops import audit
    from payops.auth import repository as auth_repo

    async def work(ctx: AppContext) -> bool:
        async with ctx.db.write() as session:
            key = await auth_repo.api_key_by_prefix(session, prefix.split(".")[0])
            if key is None:
                return False
            if key.revoked_at is None:
                key.revoked_at = datetime.now(UTC)
                audit.record(
                    session,
                    cli_actor(),
                    "api_key.revoke",
                    "success",
                    prefix=key.prefix,
                    name=key.name,
                )
            return True

    if not run(work):
        fail(f"no API key with prefix {prefix.split('.')[0]!r}; see `payops apikey list`")
    console.print(f"revoked API key {prefix.split('.')[0]}")


@app.command("list")
def apikey_list() -> None:
    """List API keys (never their secrets)."""
    from payops.auth import repository as auth_repo

    async def work(ctx: AppContext) -> list[ApiKey]:
        async with ctx.db.read() as session:
            return await auth_repo.list_api_keys(session)

    table = Table("prefix", "name", "created", "expires", "revoked")
    for key in run(work):
        table.add_row(
            key.prefix,
            key.name,
            str(key.created_at)[:19],
            str(key.expires_at)[:19] if key.expires_at else "-",
            str(key.revoked_at)[:19] if key.revoked_at else "-",
        )
    console.print(table)
