"""Durable webhook delivery against a real local receiver (decisions §10)."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import httpx
import pytest
from ottu.utils.webhooks import verify_signature
from sqlalchemy import select

from payops.context import AppContext
from payops.db.models import WebhookAttempt
from payops.operations.reconciler import reconcile_once
from payops.webhooks import outbox
from payops.webhooks.delivery import deliver_due
from payops.webhooks.signing import verify
from tests.e2e import post_op
from tests.helpers import Seed
from tests.webhooks.receiver import Receiver, receiving

HMAC_KEY = "merchant-hmac-key-1"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    # Retries become due at once, so a test can drive every try with deliver_due.
    return {
        "webhook_timeout_seconds": 0.5,
        "webhook_backoff_base_seconds": 0,
        "webhook_max_attempts": 10,
    }


async def send_operations_to(seed: Seed, url: str) -> None:
    """Operation webhooks to the merchant-wide URL only (no payment webhooks in these tests)."""
    async with seed.ctx.db.write() as session:
        await outbox.set_merchant_setting(session, outbox.OPERATIONS_URL_SETTING, url)


async def drain(ctx: AppContext, passes: int = 20) -> None:
    for _ in range(passes):
        if not await deliver_due(ctx):
            return


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_event_survives_a_down_receiver_500s_and_timeouts_and_arrives_once(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext
) -> None:
    auth = await seed.api_key()
    await seed.set_hmac_key(HMAC_KEY)
    port = unused_port()
    await send_operations_to(seed, f"http://127.0.0.1:{port}/hooks/payops")
    await seed.transaction("50.000")
    await post_op(client, auth, "refund", "5.000", expect=200)

    assert await deliver_due(ctx) == {"pending": 1}  # nobody listens yet: connection refused
    receiver = Receiver(script=[500, "timeout", 503, 429])
    with receiving(receiver, port):
        await drain(ctx)
    assert [r.headers["x-answer"] for r in receiver.received] == [
        "500",
        "timeout",
        "503",
        "429",
        "200",
    ]
    assert len(receiver.delivered) == 1
    event_ids = {r.headers["x-payops-event-id"] for r in receiver.received}
    assert len(event_ids) == 1, "one event id across every try, for receivers to deduplicate"
    [event] = await seed.outbox()
    assert event.state == "delivered" and event.attempts == 6
    body = receiver.delivered[0].body
    assert body["operation"] == "refund" and body["amount"] == "5.000"
    assert body["txn"]["state"] == "refunded"
    assert verify(body, body["signature"], HMAC_KEY)
    assert verify_signature(body, body["signature"], HMAC_KEY)  # the official SDK's verifier
    async with ctx.db.read() as session:
        attempts = list(await session.scalars(select(WebhookAttempt).order_by(WebhookAttempt.id)))
    assert [a.status_code for a in attempts] == [None, 500, None, 503, 429, 200]
    assert attempts[0].error and attempts[2].error
    assert len(attempts[-1].response_excerpt) <= 2048


async def test_gone_receiver_ends_the_event_failed_without_retries(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext
) -> None:
    auth = await seed.api_key()
    with receiving(Receiver(default=410)) as receiver:
        await send_operations_to(seed, receiver.url)
        await seed.transaction("50.000")
        await post_op(client, auth, "refund", "5.000", expect=200)
        await drain(ctx)
    [event] = await seed.outbox()
    assert event.state == "failed" and event.attempts == 1 and event.last_error == "HTTP 410"
    assert len(receiver.received) == 1


async def test_events_of_one_transaction_arrive_in_order(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext
) -> None:
    auth = await seed.api_key()
    with receiving(Receiver(script=[500, 500])) as receiver:
        await send_operations_to(seed, receiver.url)
        await seed.transaction("50.000")
        await post_op(client, auth, "refund", "1.000", expect=200)
        await post_op(client, auth, "refund", "2.000", expect=200)
        await drain(ctx)
    amounts = [r.body["amount"] for r in receiver.received]
    assert amounts == ["1.000", "1.000", "1.000", "2.000"]


async def test_signature_follows_a_rotated_key(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext
) -> None:
    auth = await seed.api_key()
    await seed.set_hmac_key("old-key-123")
    with receiving(Receiver()) as receiver:
        await send_operations_to(seed, receiver.url)
        await seed.transaction("50.000")
        await post_op(client, auth, "refund", "1.000", expect=200)
        await seed.set_hmac_key("new-key-456")
        await drain(ctx)
    body = receiver.delivered[0].body
    assert verify(body, body["signature"], "new-key-456")
    assert not verify(body, body["signature"], "old-key-123")


@pytest.mark.parametrize(
    "target",
    [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://10.0.0.8/hook",
        "http://192.168.1.20/hook",
        "http://172.16.0.1/hook",
        "http://169.254.169.254/latest",
        "http://[::1]:9/hook",
        "http://[::ffff:127.0.0.1]:9/hook",
        "http://[fe80::1]/hook",
        "http://0.0.0.0/hook",
        "ftp://example.com/hook",
    ],
)
async def test_private_targets_are_refused_without_a_connection(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext, target: str
) -> None:
    ctx.settings.webhook_allow_private = False
    auth = await seed.api_key()
    await send_operations_to(seed, target)
    await seed.transaction("50.000")
    await post_op(client, auth, "refund", "1.000", expect=200)
    assert await deliver_due(ctx) == {"failed": 1}
    [event] = await seed.outbox()
    assert event.last_error.startswith("refused:")


async def test_payment_and_operation_webhooks_reach_the_transaction_url(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext
) -> None:
    auth = await seed.api_key()
    await seed.set_hmac_key(HMAC_KEY)
    with receiving(Receiver()) as receiver:
        await seed.transaction("50.000", webhook_url=receiver.url)  # paid: a payment webhook
        # Queued at the sandbox: an operation webhook.
        await post_op(client, auth, "refund", "0.992", expect=200)
        await drain(ctx)
        await asyncio.sleep(ctx.settings.sandbox_queue_seconds)
        await reconcile_once(ctx)  # the queued refund becomes final: another operation webhook
        await drain(ctx)
    # An operation's state is only inside txn (issue 16); the payment's is at the top level.
    kinds = [
        (
            r.headers["x-payops-event-kind"],
            r.body["txn"]["state"] if "txn" in r.body else r.body.get("state"),
            r.body.get("result"),
        )
        for r in receiver.delivered
    ]
    assert kinds == [
        ("payment", "paid", "success"),
        ("operation", "refund_queued", "queued"),
        ("operation", "refunded", "success"),
    ]
    for delivered in receiver.delivered:
        assert verify_signature(delivered.body, delivered.body["signature"], HMAC_KEY)
