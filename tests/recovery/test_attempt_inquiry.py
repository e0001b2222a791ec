"""Automatic inquiry of payment attempts left pending (issue 17), on SQLite and PostgreSQL.

A customer pays with the sandbox's pending card (4000000000000259) on the hosted page and never
comes back. The sandbox configuration's ``pending_inquiries=N`` option plays a gateway that has
no answer yet for the first N inquiries; the sandbox's own books record every inquiry it gets,
so the tests count the gateway's side, not PayOps's.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from typer.testing import CliRunner

from payops.cli.main import app as cli_app
from payops.config import Settings, get_settings
from payops.context import AppContext
from payops.db.models import GatewayInquiry, PaymentAttempt, PaymentTransaction
from payops.transactions.attempt_inquiry import inquire_due_attempts
from payops.transactions.expiry import expire_due
from tests.helpers import PENDING_CARD, Seed
from tests.live import run_with_context

URL = "/b/checkout/v1/pymt-txn/"
FORM = {"expiry": "12/39", "cvv": "123", "cardholder_name": "Test Customer"}
HOOK = "http://127.0.0.1:9/hook"
WINDOW = timedelta(minutes=1)  # the sandbox connector's default inquiry window


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # The merchant's inquiry throttle is on, and strict: one gateway inquiry a day per payment.
    return {
        "inquiry_throttle": True,
        "inquiry_throttle_initial_delay_seconds": 0,
        "inquiry_throttle_gap_seconds": 0,
        "inquiry_throttle_daily_max": 1,
    }


def gateway_inquiries(settings: Settings, reference: str) -> int:
    """How many times the sandbox gateway was asked about this payment (its own books)."""
    with sqlite3.connect(settings.effective_sandbox_ledger) as conn:
        return int(
            conn.execute(
                "SELECT COUNT(*) FROM payment_inquiries WHERE payment_reference=?", (reference,)
            ).fetchone()[0]
        )


async def pending_attempt(
    client: httpx.AsyncClient,
    seed: Seed,
    *,
    order_no: str = "AUTO-1",
    pending_inquiries: int = 0,
    **gateway: Any,
) -> PaymentAttempt:
    """A customer who paid with the pending card on the hosted page and never came back."""
    code = f"sandbox-pending-{pending_inquiries}-{gateway.get('inquiry_window_minutes', 0)}"
    await seed.gateway(
        code, "purchase", "KWD", options={"pending_inquiries": str(pending_inquiries)}, **gateway
    )
    auth = await seed.api_key()
    created = await client.post(
        URL,
        headers=auth,
        json={
            "type": "e_commerce",
            "amount": "5.000",
            "currency_code": "KWD",
            "pg_codes": [code],
            "order_no": order_no,
            "webhook_url": HOOK,
        },
    )
    assert created.status_code == 201, created.text
    page = await client.post(
        "/checkout/" + created.json()["session_id"],
        data={**FORM, "card_number": PENDING_CARD},
        timeout=30,
    )
    assert page.status_code == 202 and "being processed" in page.text
    return await only_attempt(seed, order_no)


async def only_attempt(seed: Seed, order_no: str = "AUTO-1") -> PaymentAttempt:
    async with seed.ctx.db.read() as session:
        parent = await session.scalar(
            select(PaymentTransaction).where(PaymentTransaction.order_no == order_no)
        )
        assert parent is not None
        [attempt] = list(
            await session.scalars(
                select(PaymentAttempt)
                .where(PaymentAttempt.transaction_id == parent.id)
                .execution_options(populate_existing=True)
            )
        )
        return attempt


async def payment_webhooks(seed: Seed) -> list[tuple[str, str]]:
    return [
        (e.payload["state"], e.payload["result"])
        for e in await seed.outbox()
        if e.kind == "payment"
    ]


async def test_inquired_once_per_window_at_most_three_times(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    attempt = await pending_attempt(client, seed, pending_inquiries=10)
    ref, start = attempt.reference_number, attempt.created_at
    ctx = seed.ctx

    assert await inquire_due_attempts(ctx, start + WINDOW - timedelta(seconds=5)) == 0
    assert gateway_inquiries(settings, ref) == 0
    first = start + WINDOW + timedelta(seconds=1)
    assert await inquire_due_attempts(ctx, first) == 1
    # Once per window: asking again at once, or before the next window ends, asks nothing.
    assert await inquire_due_attempts(ctx, first) == 0
    assert await inquire_due_attempts(ctx, first + WINDOW - timedelta(seconds=1)) == 0
    assert gateway_inquiries(settings, ref) == 1
    stored = await only_attempt(seed)
    assert (stored.state, stored.inquiry_count, stored.next_inquiry_at) == (
        "pending",
        1,
        first + WINDOW,
    )

    assert await inquire_due_attempts(ctx, first + WINDOW) == 1
    assert await inquire_due_attempts(ctx, first + 2 * WINDOW) == 1
    # Three unanswered inquiries: no fourth, however long one waits.
    assert await inquire_due_attempts(ctx, first + 30 * WINDOW) == 0
    assert gateway_inquiries(settings, ref) == 3
    stored = await only_attempt(seed)
    assert (stored.state, stored.inquiry_count) == ("pending", 3)
    parent = await seed.find("AUTO-1")
    assert parent is not None and parent.state == "pending"
    assert await payment_webhooks(seed) == []
    # ... and it waits for an operator.
    admin = await seed.superuser()
    queue = await client.get("/b/payops/v1/attempts/review", headers=admin)
    assert queue.status_code == 200, queue.text
    [listed] = queue.json()["results"]
    assert (listed["reference_number"], listed["review"], listed["automatic_inquiries"]) == (
        ref,
        "no_answer",
        3,
    )
    [entry] = [a for a in await seed.audit() if a.action == "attempt.review"]
    assert (entry.actor_type, entry.details["automatic_inquiries"]) == ("system", 3)


async def test_the_configuration_sets_the_window(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    attempt = await pending_attempt(client, seed, pending_inquiries=10, inquiry_window_minutes=20)
    start = attempt.created_at
    assert await inquire_due_attempts(seed.ctx, start + timedelta(minutes=19, seconds=59)) == 0
    assert await inquire_due_attempts(seed.ctx, start + timedelta(minutes=20, seconds=1)) == 1
    assert gateway_inquiries(settings, attempt.reference_number) == 1


async def test_a_final_answer_is_applied_and_not_throttled(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    attempt = await pending_attempt(client, seed, pending_inquiries=2)
    start = attempt.created_at
    auth = await seed.api_key()
    for n in (1, 2):
        assert await inquire_due_attempts(seed.ctx, start + n * WINDOW + timedelta(seconds=1)) == 1
    # PayOps's own inquiries are not the merchant's: none was recorded against the throttle ...
    assert await seed.count(GatewayInquiry) == 0
    assert (await only_attempt(seed)).state == "pending"
    # ... so the merchant's one inquiry of the day still reaches the gateway, which now answers.
    inquiry = await client.post("/b/pbl/v1/inquiry/AUTO-1", headers=auth)
    assert inquiry.status_code == 200, inquiry.text
    assert (inquiry.json()["state"], inquiry.json()["paid_amount"]) == ("paid", "5.000")
    assert await seed.count(GatewayInquiry) == 1
    assert gateway_inquiries(settings, attempt.reference_number) == 3
    # The throttle still holds for the merchant: a second gateway inquiry today is refused
    # (paid: answered from storage, never throttled, so check on another pending session).
    other = await pending_attempt(client, seed, order_no="AUTO-2", pending_inquiries=2)
    assert (await client.post("/b/pbl/v1/inquiry/AUTO-2", headers=auth)).status_code == 200
    assert (await client.post("/b/pbl/v1/inquiry/AUTO-2", headers=auth)).status_code == 429
    assert (
        await inquire_due_attempts(seed.ctx, other.created_at + WINDOW + timedelta(seconds=1)) == 1
    )
    assert gateway_inquiries(settings, other.reference_number) == 2


async def test_the_answer_settles_the_session_with_its_webhook(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    attempt = await pending_attempt(client, seed, pending_inquiries=1)
    start = attempt.created_at
    assert await inquire_due_attempts(seed.ctx, start + WINDOW + timedelta(seconds=1)) == 1
    assert await payment_webhooks(seed) == []
    assert await inquire_due_attempts(seed.ctx, start + 2 * WINDOW + timedelta(seconds=1)) == 1
    stored = await only_attempt(seed)
    assert (stored.state, stored.inquiry_count) == ("success", 2)
    parent = await seed.find("AUTO-1")
    assert parent is not None and (parent.state, parent.paid_total) == ("paid", 5000)
    assert await payment_webhooks(seed) == [("paid", "success")]
    # A settled attempt is never asked about again.
    assert await inquire_due_attempts(seed.ctx, start + 10 * WINDOW) == 0
    assert gateway_inquiries(settings, attempt.reference_number) == 2


async def test_concurrent_callers_ask_once(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    attempt = await pending_attempt(client, seed, pending_inquiries=10)
    due = attempt.created_at + WINDOW + timedelta(seconds=1)
    asked = await asyncio.gather(*(inquire_due_attempts(seed.ctx, due) for _ in range(4)))
    assert sum(asked) == 1
    assert gateway_inquiries(settings, attempt.reference_number) == 1
    assert (await only_attempt(seed)).inquiry_count == 1


async def test_two_workers_with_their_own_connections_ask_once(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    """Two workers (each its own event loop and database pool, as two processes) run the pass
    at the same moment against a slow gateway: one asks, the other finds the attempt claimed."""
    attempt = await pending_attempt(client, seed, pending_inquiries=10)
    due = attempt.created_at + WINDOW + timedelta(seconds=1)
    slow = settings.model_copy(update={"sandbox_latency_ms": 300})
    start = threading.Barrier(2)

    def worker(_: int) -> int:
        async def work(ctx: AppContext) -> int:
            await asyncio.to_thread(start.wait)
            return await inquire_due_attempts(ctx, due)

        return run_with_context(slow, work)

    with ThreadPoolExecutor(2) as pool:
        asked = await asyncio.to_thread(lambda: list(pool.map(worker, range(2))))
    assert sorted(asked) == [0, 1]
    assert gateway_inquiries(settings, attempt.reference_number) == 1
    assert (await only_attempt(seed)).inquiry_count == 1


async def test_an_attempt_in_flight_is_not_asked_about(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    """Another worker holds the attempt (its lease runs): nobody else asks until it ends."""
    attempt = await pending_attempt(client, seed, pending_inquiries=10)
    due = attempt.created_at + WINDOW + timedelta(seconds=1)
    async with seed.ctx.db.write() as session:
        await session.execute(
            update(PaymentAttempt).values(inquiry_claimed_until=due + timedelta(seconds=30))
        )
    assert await inquire_due_attempts(seed.ctx, due) == 0
    assert await inquire_due_attempts(seed.ctx, due + timedelta(seconds=31)) == 1
    assert gateway_inquiries(settings, attempt.reference_number) == 1


async def test_expiry_waits_for_the_inquiries_and_a_late_success_still_applies(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    attempt = await pending_attempt(client, seed, pending_inquiries=3)
    start = attempt.created_at
    async with seed.ctx.db.write() as session:
        await session.execute(update(PaymentTransaction).values(expires_at=start))
    # Past its expiration_time, but the customer may have paid: it waits for the gateway.
    assert await expire_due(seed.ctx) == 0
    assert (
        await client.get("/checkout/" + (await seed.find("AUTO-1")).session_id)
    ).status_code == 202  # the page's own expiry check waits too
    for n in (1, 2):
        assert await inquire_due_attempts(seed.ctx, start + n * WINDOW + timedelta(seconds=1)) == 1
        assert await expire_due(seed.ctx) == 0
    assert await inquire_due_attempts(seed.ctx, start + 3 * WINDOW + timedelta(seconds=1)) == 1
    # The inquiries are done without an answer: the session expires, the attempt stays open.
    assert await expire_due(seed.ctx) == 1
    parent = await seed.find("AUTO-1")
    assert parent is not None and parent.state == "expired"
    assert await payment_webhooks(seed) == [("expired", "failed")]

    # The gateway answers later (an operator's recheck here): the late success applies.
    admin = await seed.superuser()
    rechecked = await client.post(
        f"/b/payops/v1/attempts/{attempt.reference_number}/recheck", headers=admin
    )
    assert rechecked.status_code == 200, rechecked.text
    assert (rechecked.json()["state"], rechecked.json()["session_state"]) == ("success", "paid")
    parent = await seed.find("AUTO-1")
    assert parent is not None and (parent.state, parent.paid_total) == ("paid", 5000)
    assert await payment_webhooks(seed) == [("expired", "failed"), ("paid", "success")]
    assert gateway_inquiries(settings, attempt.reference_number) == 4
    assert await seed.count(GatewayInquiry) == 0


async def test_cli_inquires_due_attempts(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    attempt = await pending_attempt(client, seed, pending_inquiries=0)
    # The CLI runs on the wall clock: make the attempt older than its window.
    async with seed.ctx.db.write() as session:
        await session.execute(
            update(PaymentAttempt).values(created_at=attempt.created_at - 2 * WINDOW)
        )
    env = {
        "PAYOPS_DATA_DIR": str(Path(settings.data_dir)),
        "PAYOPS_DATABASE_URL": settings.database_url,
        "PAYOPS_SECRET_KEY": settings.secret_key,
        "COLUMNS": "300",
    }

    def payops(*args: str) -> Any:
        get_settings.cache_clear()
        try:
            return CliRunner().invoke(cli_app, list(args), env=env)
        finally:
            get_settings.cache_clear()

    result = await asyncio.to_thread(payops, "attempt", "inquire")
    assert result.exit_code == 0, result.stderr
    assert "1 attempt(s) inquired" in result.stdout
    parent = await seed.find("AUTO-1")
    assert parent is not None and parent.state == "paid"
