"""Buyer personal data in MyFatoorah and N-Genius replies is redacted before storage (the Tabby
case has its own test beside the Tabby fake): the stored gateway reply (``pg_response``) keeps
the evidence but not the customer's name, email, card holder or card expiry."""

from __future__ import annotations

import json

import httpx
from sqlalchemy import select

from payops.context import AppContext
from payops.db.models import Operation
from tests.connectors.myfatoorah import fake_server as myfatoorah_fake
from tests.connectors.myfatoorah.fake_server import FakeMyFatoorah
from tests.connectors.myfatoorah.test_end_to_end import myfatoorah_payment
from tests.connectors.ngenius.fake_server import (  # noqa: F401 - fixtures
    FakeNgenius,
    ngenius_fake,
    ngenius_server,
)
from tests.connectors.ngenius.test_end_to_end import ngenius_payment
from tests.helpers import Seed

fake_myfatoorah = myfatoorah_fake.fake_myfatoorah


async def stored_replies(ctx: AppContext) -> str:
    async with ctx.db.read() as session:
        return json.dumps(list(await session.scalars(select(Operation.pg_response))))


async def test_myfatoorah_customer_data_is_redacted(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext, fake_myfatoorah: FakeMyFatoorah
) -> None:
    invoice = await myfatoorah_payment(seed, fake_myfatoorah, state="authorized")
    assert "customer@example.com" in json.dumps(fake_myfatoorah.invoice(invoice), default=str)
    auth = await seed.api_key()
    response = await client.post(
        "/b/pbl/v1/operation/ORD-1", headers=auth, json={"operation": "capture", "amount": "40.000"}
    )
    assert response.status_code == 200, response.text
    for shown in (response.text, await stored_replies(ctx)):
        assert "customer@example.com" not in shown and "Test Customer" not in shown
    data = response.json()["pg_response"]["Data"]
    assert data["InvoiceStatus"] == "Paid" and str(data["InvoiceId"]) == str(invoice)
    assert data["CustomerEmail"] == "[redacted]" and data["CustomerName"] == "[redacted]"


async def test_ngenius_card_holder_and_expiry_are_redacted(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    ngenius_fake: FakeNgenius,  # noqa: F811
) -> None:
    order_ref, _ = await ngenius_payment(seed, ngenius_fake)
    auth = await seed.api_key()
    response = await client.post(
        "/b/pbl/v1/operation/ORD-1", headers=auth, json={"operation": "capture", "amount": "40.00"}
    )
    assert response.status_code == 200, response.text
    reply = response.json()["pg_response"]
    # pg_params are the Ottu contract's normalised card fields and keep the holder's name; the
    # gateway's own reply (pg_response) is what is redacted.
    for shown in (json.dumps(reply), await stored_replies(ctx)):
        assert "Test Holder" not in shown and "2029-04" not in shown
    assert reply["_embedded"]["cnp:capture"][0]["state"] == "SUCCESS"
