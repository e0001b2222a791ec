"""Buyer personal data in Tabby's replies (name, email, phone, date of birth, addresses, order
history) is redacted before the reply is stored: it reaches neither API callers, nor the
database, nor webhooks. The evidence (ids, statuses, amounts) stays."""

from __future__ import annotations

import json

import httpx
from sqlalchemy import select

from payops.context import AppContext
from payops.db.models import Operation
from payops.webhooks import outbox
from payops.webhooks.delivery import deliver_due
from tests.connectors.tabby import fake_server
from tests.connectors.tabby.fake_server import FakeTabby
from tests.connectors.tabby.test_end_to_end import tabby_payment
from tests.e2e import post_op
from tests.helpers import Seed
from tests.webhooks.receiver import Receiver, receiving

fake_tabby = fake_server.fake_tabby  # the fake's fixture, used by this module

BUYER_DATA = ("otp.success@tabby.ai", "+971500000001", "Test Buyer", "2000-01-20", "Dubai")


async def test_buyer_data_is_redacted_from_answer_database_and_webhook(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext, fake_tabby: FakeTabby
) -> None:
    payment_id = await tabby_payment(seed, fake_tabby)
    # A capture-only user: they must see the evidence and nothing of the buyer.
    auth = await seed.user("capturer", permissions=["payment.capture"])
    with receiving(Receiver()) as receiver:
        async with ctx.db.write() as session:
            await outbox.set_merchant_setting(session, outbox.OPERATIONS_URL_SETTING, receiver.url)
        response = await post_op(client, auth, "capture", "40.000")
        assert response.status_code == 200, response.text
        assert await deliver_due(ctx) == {"delivered": 1}

    # The fake really did send the buyer's data: the redaction is what removed it.
    assert "otp.success@tabby.ai" in json.dumps(fake_tabby.payment(payment_id))
    body = response.json()
    for value in BUYER_DATA:
        assert value not in response.text, value
    reply = body["pg_response"]
    assert reply["id"] == payment_id and reply["status"] == "AUTHORIZED"
    assert reply["amount"] == "100.000" and reply["captures"][0]["amount"] == "40.000"
    assert reply["buyer"] == "[redacted]" and reply["shipping_address"] == "[redacted]"

    async with ctx.db.read() as session:
        [stored] = list(await session.scalars(select(Operation.pg_response)))
    for value in BUYER_DATA:
        assert value not in json.dumps(stored), value
    assert stored["id"] == payment_id

    [delivered] = receiver.delivered
    for value in BUYER_DATA:
        assert value not in json.dumps(delivered.body), value
    assert delivered.body["pg_response"]["status"] == "AUTHORIZED"
