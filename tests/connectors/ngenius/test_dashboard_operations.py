"""A refund made on the N-Genius portal is recorded by PayOps (``source: "pg"``) once an authentic
notification arrives, exactly once, next to PayOps's own refund."""

from __future__ import annotations

import httpx
import pytest

from payops.connectors.ngenius import tokens as token_cache
from payops.money import parse_amount
from tests.connectors.ngenius.fake_server import (
    API_KEY,
    OUTLET,
    FakeNgenius,
    ngenius_fake,  # noqa: F401 - fixtures
    ngenius_server,  # noqa: F401
)
from tests.helpers import Seed

SECRET = "ngenius-hook-secret"
URL = "/b/pg/notifications/ngenius-aed"
CREDENTIALS = {"api_key": API_KEY, "outlet_reference": OUTLET}


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> None:
    token_cache.clear_token_cache()


@pytest.fixture
async def auth(seed: Seed) -> dict[str, str]:
    return await seed.api_key()


async def test_refund_made_on_the_ngenius_portal_is_recorded_once(
    client: httpx.AsyncClient,
    seed: Seed,
    ngenius_fake: FakeNgenius,  # noqa: F811
    auth: dict[str, str],
) -> None:
    fake = ngenius_fake
    order_ref, payment_ref = fake.create_order("PURCHASE", parse_amount("100.00", "AED"), "AED")
    await seed.imported(
        connector="ngenius",
        code="ngenius-aed",
        amount="100.00",
        currency="AED",
        state="paid",
        gateway_refs={"order_reference": order_ref, "payment_reference": payment_ref},
        credentials=CREDENTIALS,
        options={"base_url": fake.url},
        webhook_secret=SECRET,
    )
    # Through PayOps: a refund of 2.00. On the N-Genius portal: a refund of 7.00 PayOps never saw.
    ours = await client.post(
        "/b/pbl/v1/operation/ORD-1", json={"operation": "refund", "amount": "2.00"}, headers=auth
    )
    assert ours.status_code == 200, ours.text
    assert ours.json()["txn"]["state"] == "refunded"
    payment = fake.payment(order_ref, payment_ref)
    with fake._lock:
        fake._add_refund(payment, 700, "ok", None)
    dashboard = payment.refunds[-1]
    body = {
        "eventId": "evt-1",
        "eventName": "REFUNDED",
        "outletId": OUTLET,
        "order": {
            "reference": order_ref,
            "_embedded": {"payment": [{"reference": payment_ref, "state": payment.state}]},
        },
    }
    for _ in range(2):  # a repeated notification records nothing twice
        response = await client.post(URL, json=body, headers={"X-PayOps-Webhook-Secret": SECRET})
        assert response.status_code == 200, response.text
    operations = await seed.operations()
    assert [(op.operation, op.source, op.state, op.amount) for op in operations] == [
        ("refund", "input", "succeeded", 200),
        ("refund", "pg", "succeeded", 700),
    ]
    assert operations[1].gateway_refs == {"gateway_id": dashboard.ref}
    parent = await seed.find()
    assert parent is not None and parent.refunded == 900
