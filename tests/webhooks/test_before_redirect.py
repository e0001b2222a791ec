"""The payment webhook before the customer's redirect, as Ottu does it (decisions §10, issue 16):
200 → redirect_url; 201 → summary page; anything else → summary page and the usual retries.
The try is the outbox row's own delivery attempt."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from payops.db.models import OutboxEvent, WebhookAttempt
from payops.webhooks import outbox
from payops.webhooks.signing import verify
from tests.helpers import Seed
from tests.webhooks.receiver import Receiver, receiving

CARD = {
    "card_number": "4111111111111111",
    "expiry": "12/39",
    "cvv": "123",
    "cardholder_name": "Test Customer",
}
DECLINED = {**CARD, "card_number": "4000000000000002"}
REDIRECT = "https://merchant.example/done"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "webhook_timeout_seconds": 5.0,
        "webhook_backoff_base_seconds": 60,
        "webhook_redirect_deadline_seconds": 1.0,
    }


async def session(client: httpx.AsyncClient, seed: Seed, **fields: Any) -> dict[str, Any]:
    await seed.gateway("sandbox-kwd", "purchase", "KWD")
    auth = await seed.api_key()
    body = {
        "type": "e_commerce",
        "amount": "9.750",
        "currency_code": "KWD",
        "pg_codes": ["sandbox-kwd"],
        "redirect_url": REDIRECT,
        **fields,
    }
    response = await client.post("/b/checkout/v1/pymt-txn/", json=body, headers=auth)
    assert response.status_code == 201, response.text
    return response.json()


async def attempts(seed: Seed) -> list[tuple[str, str, int, int | None]]:
    async with seed.ctx.db.read() as db:
        rows = await db.execute(
            select(
                OutboxEvent.kind,
                OutboxEvent.state,
                WebhookAttempt.attempt,
                WebhookAttempt.status_code,
            )
            .join(WebhookAttempt, WebhookAttempt.event_id == OutboxEvent.id)
            .order_by(WebhookAttempt.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


async def test_200_redirects_after_the_webhook_arrived(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    with receiving(Receiver(script=[200])) as receiver:
        created = await session(client, seed, webhook_url=receiver.url)
        paid = await client.post(f"/checkout/{created['session_id']}", data=CARD)
        assert len(receiver.received) == 1  # sent before the page answered
    assert paid.status_code == 303 and paid.headers["location"].startswith(REDIRECT)
    assert receiver.received[0].body["state"] == "paid"
    assert await attempts(seed) == [("payment", "delivered", 1, 200)]


async def test_201_keeps_the_customer_on_the_summary_page(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    with receiving(Receiver(script=[201])) as receiver:
        created = await session(client, seed, webhook_url=receiver.url)
        paid = await client.post(f"/checkout/{created['session_id']}", data=CARD)
    assert paid.status_code == 200 and "Payment successful" in paid.text
    assert await attempts(seed) == [("payment", "delivered", 1, 201)]


@pytest.mark.parametrize("answer", [500, 404, 302])
async def test_other_answers_show_the_summary_page_and_leave_the_retries(
    client: httpx.AsyncClient, seed: Seed, answer: int
) -> None:
    with receiving(Receiver(script=[answer])) as receiver:
        created = await session(client, seed, webhook_url=receiver.url)
        declined = await client.post(f"/checkout/{created['session_id']}", data=DECLINED)
    assert declined.status_code == 200 and "Payment declined" in declined.text
    # Recorded as an ordinary attempt: a 5xx is retried later, another answer ends the event.
    expected_state = "pending" if answer >= 500 else "failed"
    assert await attempts(seed) == [("payment", expected_state, 1, answer)]


async def test_no_webhook_url_redirects_at_once(client: httpx.AsyncClient, seed: Seed) -> None:
    created = await session(client, seed)
    paid = await client.post(f"/checkout/{created['session_id']}", data=CARD)
    assert paid.status_code == 303 and paid.headers["location"].startswith(REDIRECT)


async def test_not_tried_while_an_older_event_of_the_transaction_is_pending(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    with receiving(Receiver(script=[503, 200, 200])) as receiver:
        created = await session(client, seed, webhook_url=receiver.url)
        first = await client.post(f"/checkout/{created['session_id']}", data=DECLINED)
        assert first.status_code == 200  # 503: summary page, the event waits for its retry
        paid = await client.post(f"/checkout/{created['session_id']}", data=CARD)
        assert len(receiver.received) == 1  # the newer event was not sent ahead of the older
    assert paid.status_code == 200 and "Payment successful" in paid.text
    events = await seed.outbox()
    assert [(e.state, e.attempts) for e in events] == [("pending", 1), ("pending", 0)]


async def test_the_customer_waits_no_longer_than_the_deadline(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    receiver = Receiver(script=["timeout"], timeout_sleep=2.5)
    with receiving(receiver):
        created = await session(client, seed, webhook_url=receiver.url)
        started = time.monotonic()
        paid = await client.post(f"/checkout/{created['session_id']}", data=CARD)
        waited = time.monotonic() - started
    assert paid.status_code == 200 and "Payment successful" in paid.text
    assert waited < 2.0  # the deadline is 1 s here (at most 10 s in production)
    [(kind, state, attempt, status)] = await attempts(seed)
    assert (kind, attempt, status) == ("payment", 1, None)  # recorded: the send timed out
    assert state == "pending"  # retried later by the worker


async def test_private_targets_are_refused_under_the_ssrf_rules(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    with receiving(Receiver(script=[200])) as receiver:
        created = await session(client, seed, webhook_url=receiver.url)
        # Accepted at input, then refused when sent (as when DNS changes after input): the
        # delivery keeps its own check.
        seed.ctx.settings.webhook_allow_private = False
        paid = await client.post(f"/checkout/{created['session_id']}", data=CARD)
        assert receiver.received == []
    assert paid.status_code == 200 and "Payment successful" in paid.text
    [event] = await seed.outbox()
    assert event.state == "failed" and event.last_error.startswith("refused:")


async def test_hmac_signed_like_every_delivery(client: httpx.AsyncClient, seed: Seed) -> None:
    async with seed.ctx.db.write() as db:
        await outbox.set_merchant_setting(db, outbox.HMAC_KEY_SETTING, "k-1")
    with receiving(Receiver(script=[200])) as receiver:
        created = await session(client, seed, webhook_url=receiver.url)
        await client.post(f"/checkout/{created['session_id']}", data=CARD)
    body = receiver.received[0].body
    assert verify(body, body["signature"], "k-1")
    assert receiver.received[0].headers["x-payops-attempt"] == "1"
