"""`payops demo`: a playground with a demo user, an API key and sandbox gateways."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from rich.table import Table

from payops.cli.apikeys import add_api_key
from payops.cli.common import cli_actor, console, load_settings, migrate, run
from payops.cli.users import add_user

if TYPE_CHECKING:
    from payops.context import AppContext

DEMO_USER = "demo"
DEMO_GATEWAYS = (
    ("sandbox-kwd", "purchase", "KWD"),
    ("sandbox-auth-kwd", "authorize", "KWD"),
    ("sandbox-usd", "purchase", "USD"),
)


def demo() -> None:
    """Prepare a playground: migrate, demo user, API key and sandbox gateways; print them."""
    settings = load_settings()
    migrate(settings)
    password = secrets.token_urlsafe(12)
    shown: dict[str, str] = {}

    async def work(ctx: AppContext) -> None:
        from payops.auth import repository as auth_repo
        from payops.auth.secrets import hash_password
        from payops.gateways import repository as gateway_repo
        from payops.gateways.service import add_gateway
        from payops.webhooks import outbox

        actor = cli_actor()
        async with ctx.db.write() as session:
            user = await auth_repo.user_by_username(session, DEMO_USER)
            if user is None:
                await add_user(
                    session,
                    actor,
                    DEMO_USER,
                    password,
                    superuser=True,
                    first_name="Demo",
                    last_name="Merchant",
                )
            else:
                user.password_hash = hash_password(password)
            shown["key"], _ = add_api_key(session, actor, f"demo-{datetime.now(UTC):%Y%m%d%H%M%S}")
            if not await outbox.merchant_setting(session, outbox.HMAC_KEY_SETTING):
                await outbox.set_merchant_setting(
                    session, outbox.HMAC_KEY_SETTING, secrets.token_urlsafe(24)
                )
            shown["hmac"] = await outbox.merchant_setting(session, outbox.HMAC_KEY_SETTING)
            existing = {gw.pg_code for gw in await gateway_repo.list_all(session)}
            for code, mode, currency in DEMO_GATEWAYS:
                if code not in existing:
                    await add_gateway(
                        session,
                        ctx.settings,
                        pg_code=code,
                        connector="sandbox",
                        operation_mode=mode,
                        default_currency=currency,
                    )

    run(work, settings)
    server = f"http://{settings.host}:{settings.port}"
    table = Table(show_header=False, title="PayOps demo (sandbox only)")
    table.add_row("server", server)
    table.add_row("dashboard", f"{server}/dashboard (sign in as {DEMO_USER})")
    table.add_row("Basic user", DEMO_USER)
    table.add_row("password", password)
    table.add_row("API key", shown["key"])
    table.add_row("webhook HMAC key", shown["hmac"])
    table.add_row("gateways", ", ".join(code for code, _, _ in DEMO_GATEWAYS))
    console.print(table)
    env_file = settings.data_dir / "demo.env"
    env_file.write_text(
        f"PAYOPS_DEMO_USER={DEMO_USER}\nPAYOPS_DEMO_PASSWORD={password}\n"
        f"PAYOPS_DEMO_API_KEY={shown['key']}\n"
    )
    env_file.chmod(0o600)
    console.print(f"(also written to {env_file} for the README walk-through)")
