"""The hosted sandbox checkout page and automatic expiry."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from payops.transactions.expiry import expire_due
from tests.helpers import Seed

CARD = {
    "card_number": "4111111111111111",
    "expiry": "12/39",
    "cvv": "123",
    "cardholder_name": "Test Customer",
}


async def session(client: httpx.AsyncClient, seed: Seed, **fields: Any) -> dict[str, Any]:
    await seed.gateway("sandbox-kwd", "purchase", "KWD")
    await seed.gateway("sandbox-auth-kwd", "authorize", "KWD")
    auth = await seed.api_key()
    body = {
        "type": "e_commerce",
        "amount": "9.750",
        "currency_code": "KWD",
        "pg_codes": ["sandbox-kwd"],
        **fields,
    }
    response = await client.post("/b/checkout/v1/pymt-txn/", json=body, headers=auth)
    assert response.status_code == 201, response.text
    return response.json()


def page_path(created: dict[str, Any]) -> str:
    return "/checkout/" + created["session_id"]


async def test_page_is_a_labelled_form_with_safe_headers(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    created = await session(client, seed)
    page = await client.get(page_path(created))
    assert page.status_code == 200
    for name in ("card_number", "expiry", "cvv", "cardholder_name"):
        assert f'<label for="{name}">' in page.text and f'name="{name}"' in page.text
    assert "Pay 9.750 KWD" in page.text and '<html lang="en">' in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "default-src 'none'" in page.headers["content-security-policy"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("card_number", "4111111111111112", "valid card number"),
        ("card_number", "4242424242424242", "valid card number"),
        ("expiry", "13/30", "MM/YY"),
        ("expiry", "01/20", "expired"),
        ("cvv", "12", "3-digit"),
        ("cardholder_name", " ", "name on the card"),
    ],
)
async def test_invalid_card_details_record_no_attempt(
    client: httpx.AsyncClient, seed: Seed, field: str, value: str, message: str
) -> None:
    created = await session(client, seed)
    response = await client.post(page_path(created), data={**CARD, field: value})
    assert response.status_code == 400 and message in response.text
    assert 'aria-invalid="true"' in response.text
    assert (await seed.snapshot())["attempts"] == []


async def test_success_without_redirect_shows_a_result_page(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    created = await session(client, seed, order_no="H-1")
    response = await client.post(page_path(created), data=CARD)
    assert response.status_code == 200 and "Payment successful" in response.text
    parent = await seed.find("H-1")
    assert parent is not None and parent.state == "paid" and parent.paid_total == 9750
    assert "4111111111111111" not in str(await seed.snapshot())


async def test_authorize_gateway_is_chosen_on_the_page(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    created = await session(
        client,
        seed,
        order_no="H-2",
        pg_codes=["sandbox-kwd", "sandbox-auth-kwd"],
        redirect_url="https://shop.example/r",
    )
    page = await client.get(page_path(created))
    assert '<select id="pg_code" name="pg_code">' in page.text
    response = await client.post(page_path(created), data={**CARD, "pg_code": "sandbox-auth-kwd"})
    assert response.status_code == 303
    assert response.headers["location"].startswith("https://shop.example/r?session_id=")
    parent = await seed.find("H-2")
    assert parent is not None and parent.state == "authorized"


async def test_paid_or_unknown_sessions_take_no_payment(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    created = await session(client, seed)
    assert (await client.post(page_path(created), data=CARD)).status_code == 200
    again = await client.post(page_path(created), data=CARD)
    # A repeated submission shows the session's result and starts no charge.
    assert again.status_code == 200 and "Payment successful" in again.text
    assert len((await seed.snapshot())["attempts"]) == 1
    assert (await client.get("/checkout/" + "0" * 40)).status_code == 404
    assert (await client.get("/checkout/not-a-session")).status_code == 404


async def test_sessions_expire_on_their_own(client: httpx.AsyncClient, seed: Seed) -> None:
    webhook = "https://shop.example/hook"
    created = await session(
        client, seed, order_no="EXP", expiration_time="00:00:01", webhook_url=webhook
    )
    keeps = await session(client, seed, order_no="KEEP")
    await asyncio.sleep(1.2)
    assert await expire_due(seed.ctx) == 1
    expired = await seed.find("EXP")
    assert expired is not None and expired.state == "expired"
    kept = await seed.find("KEEP")
    assert kept is not None and kept.state == "created"
    assert (await client.get(page_path(created))).status_code == 410
    assert [(e.kind, e.payload["state"]) for e in await seed.outbox()] == [("payment", "expired")]
    assert keeps["state"] == "created"


async def test_the_page_expires_a_due_session_itself(client: httpx.AsyncClient, seed: Seed) -> None:
    created = await session(client, seed, order_no="LATE", expiration_time="00:00:01")
    await asyncio.sleep(1.2)
    response = await client.post(page_path(created), data=CARD)
    assert response.status_code == 409 and "expired" in response.text
    assert (await seed.snapshot())["attempts"] == []
