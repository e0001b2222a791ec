"""`payops gateway …`: gateway configurations (MIDs)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from payops.cli.common import check_currency, cli_actor, console, fail, run
from payops.connectors.registry import CONNECTORS  # names only: no connector is imported

if TYPE_CHECKING:
    from payops.context import AppContext

app = typer.Typer(help="Gateway configurations (MIDs).", no_args_is_help=True)


def key_values(option: str, items: list[str], *, empty_values: bool = True) -> dict[str, str]:
    """``KEY=VALUE`` options (``--option``, ``--ref``) as a dict."""
    found: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or (not value and not empty_values):
            fail(f"{option} takes KEY=VALUE, got {item!r}")
        found[key] = value
    return found


@app.command("add")
def gateway_add(
    connector: str = typer.Argument(..., help=f"Connector: {', '.join(CONNECTORS)}"),
    code: str = typer.Option(..., "--code", help="pg_code, unique"),
    mode: str = typer.Option("purchase", help="purchase or authorize"),
    currency: str = typer.Option(..., help="Default currency, e.g. KWD"),
    accept: list[str] = typer.Option([], "--accept", help="Another accepted currency; repeat"),
    operations: list[str] = typer.Option(
        [], "--operation", help="Enable only these operations; repeat (default: all supported)"
    ),
    production: bool = typer.Option(False, help="Use the gateway's production host"),
    single_attempt: bool = typer.Option(False, help="A failed attempt fails the transaction"),
    credentials: str = typer.Option("{}", help="Gateway credentials as JSON (stored encrypted)"),
    option: list[str] = typer.Option(
        [], "--option", help="Non-secret setting KEY=VALUE, e.g. timeout_seconds=20; repeat"
    ),
    webhook_secret: str = typer.Option("", help="Secret for the gateway's incoming webhooks"),
    inquiry_window: int = typer.Option(
        0,
        "--inquiry-window",
        min=0,
        max=10080,
        help="Minutes after which a payment attempt still pending is inquired automatically "
        "(0: the connector's default)",
    ),
) -> None:
    """Add a gateway configuration."""
    try:
        creds = json.loads(credentials)
    except ValueError:
        creds = None
    if not isinstance(creds, dict):
        fail('--credentials must be a JSON object, e.g. \'{"merchant_id": "…"}\'')
    options: dict[str, Any] = key_values("--option", option)
    check_currency("--currency", currency)
    for accepted in accept:
        check_currency("--accept", accepted)

    async def work(ctx: AppContext) -> None:
        from payops import audit
        from payops.gateways.service import add_gateway

        async with ctx.db.write() as session:
            await add_gateway(
                session,
                ctx.settings,
                pg_code=code,
                connector=connector,
                operation_mode=mode,
                default_currency=currency,
                accepted_currencies=list(accept),
                is_sandbox=not production,
                credentials=creds,
                enabled_operations=list(operations) or None,
                multi_attempt=not single_attempt,
                options=options,
                webhook_secret=webhook_secret,
                inquiry_window_minutes=inquiry_window,
            )
            # The names of the credential fields only, never their values.
            audit.record(
                session,
                cli_actor(),
                "gateway.add",
                "success",
                pg_code=code,
                connector=connector,
                credentials=sorted(creds),
            )

    try:
        run(work)
    except ValueError as exc:  # GatewayConfigError among them: what the configuration lacks
        fail(str(exc))
    console.print(f"added gateway [bold]{code}[/bold] ({connector}, {mode}, {currency.upper()})")


@app.command("list")
def gateway_list() -> None:
    """List gateway configurations (credentials are never shown)."""

    async def work(ctx: AppContext) -> list[Any]:
        from payops.gateways import repository as gateway_repo

        async with ctx.db.read() as session:
            return await gateway_repo.list_all(session)

    table = Table("pg_code", "connector", "mode", "currency", "accepts", "operations", "sandbox")
    for gw in run(work):
        table.add_row(
            gw.pg_code,
            gw.connector,
            gw.operation_mode,
            gw.default_currency,
            ", ".join(gw.accepted_currencies),
            ", ".join(gw.enabled_operations),
            "yes" if gw.is_sandbox else "no",
        )
    console.print(table)
