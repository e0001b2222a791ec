"""`payops webhook …` (the merchant's HMAC key and operations URL) and `payops webhooks …`
(outgoing events and their delivery)."""

from __future__ import annotations

import asyncio
import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from payops.cli.common import console, fail, load_settings, run

if TYPE_CHECKING:
    from payops.context import AppContext
    from payops.db.models import OutboxEvent

settings_app = typer.Typer(help="Webhook settings: HMAC key, operations URL.", no_args_is_help=True)
key_app = typer.Typer(help="The merchant's webhook HMAC key.", no_args_is_help=True)
events_app = typer.Typer(help="Outgoing webhook events and their delivery.", no_args_is_help=True)
settings_app.add_typer(key_app, name="key")
KEY_MIN = 8


def _set_setting(key: str, value: str) -> None:
    from payops.webhooks import outbox

    async def work(ctx: AppContext) -> None:
        async with ctx.db.write() as session:
            await outbox.set_merchant_setting(session, key, value)

    run(work)


@key_app.command("set")
def webhook_key_set(
    key: str = typer.Option(..., prompt=True, hide_input=True, help="The HMAC key"),
) -> None:
    """Set the HMAC key that signs webhooks and API responses (spec §7.3)."""
    if len(key) < KEY_MIN:
        fail(f"the key must have at least {KEY_MIN} characters")
    from payops.webhooks.outbox import HMAC_KEY_SETTING

    _set_setting(HMAC_KEY_SETTING, key)
    console.print("webhook HMAC key set")


@key_app.command("rotate")
def webhook_key_rotate() -> None:
    """Generate a new HMAC key; undelivered events are signed with it when sent."""
    key = secrets.token_urlsafe(32)
    from payops.webhooks.outbox import HMAC_KEY_SETTING

    _set_setting(HMAC_KEY_SETTING, key)
    console.print("new webhook HMAC key, shown only now:")
    print(key)


@settings_app.command("operations-url")
def webhook_operations_url(url: str = typer.Argument(..., help="URL, or '' to clear")) -> None:
    """Set the merchant-wide URL that receives every operation webhook."""
    from payops.errors import FieldErrors
    from payops.web.requests import url as valid_url
    from payops.webhooks.outbox import OPERATIONS_URL_SETTING
    from payops.webhooks.targets import refuse_private_fields

    try:
        checked = valid_url("operations_url", url, max_length=2048) or ""
    except FieldErrors:
        fail("enter an http(s) URL")
    try:
        asyncio.run(
            refuse_private_fields(
                {"url": checked}, ("url",), allow_private=load_settings().webhook_allow_private
            )
        )
    except FieldErrors:
        fail(
            "the URL's host is a loopback, private, link-local or metadata address "
            "(allowed only with PAYOPS_WEBHOOK_ALLOW_PRIVATE=true)"
        )
    _set_setting(OPERATIONS_URL_SETTING, checked)
    console.print(f"operations webhook URL: {checked or '(none)'}")


@events_app.command("deliver")
def webhooks_deliver() -> None:
    """Send every due webhook event now (one pass), beside or instead of `payops serve`."""
    from payops.webhooks.delivery import deliver_due

    async def work(ctx: AppContext) -> dict[str, int]:
        total: dict[str, int] = {}
        while True:
            outcomes = await deliver_due(ctx)
            if not outcomes:
                return total
            for state, count in outcomes.items():
                total[state] = total.get(state, 0) + count

    outcomes = run(work)
    table = Table("outcome", "events", title="webhook delivery")
    for state, count in sorted(outcomes.items()):
        table.add_row(state, str(count))
    console.print(table)


@events_app.command("list")
def webhooks_list(
    failed: bool = typer.Option(False, "--failed", help="Only events that failed for good"),
    limit: int = typer.Option(100, help="At most this many rows"),
) -> None:
    """List webhook events with their delivery state and last error."""

    async def work(ctx: AppContext) -> list[OutboxEvent]:
        from payops.dashboard.repository import events_page  # the dashboard's list, newest first

        async with ctx.db.read() as session:
            events, _ = await events_page(session, "failed" if failed else "", None, limit)
            return events

    table = Table("id", "event id", "kind", "state", "tries", "target", "last error", "created")
    for event in run(work):
        table.add_row(
            str(event.id),
            event.event_id,
            event.kind,
            event.state,
            str(event.attempts),
            event.target_url[:60],
            event.last_error[:40],
            str(event.created_at)[:19],
        )
    console.print(table)


@events_app.command("retry")
def webhooks_retry(
    event: int = typer.Argument(..., help="Event id (the number in `list`)"),
) -> None:
    """Send a failed (or pending) event again, starting a fresh series of tries."""

    async def work(ctx: AppContext) -> str | None:
        from payops.db.models import OutboxEvent

        async with ctx.db.write() as session:
            row = await session.get(OutboxEvent, event)
            if row is None:
                return None
            if row.state == "delivered":
                return "delivered"
            row.state, row.attempts = "pending", 0
            row.next_attempt_at = datetime.now(UTC)
            return "pending"

    state = run(work)
    if state is None:
        fail(f"no webhook event {event}; see `payops webhooks list`")
    if state == "delivered":
        fail(f"event {event} was delivered already")
    console.print(f"event {event} queued for delivery")
