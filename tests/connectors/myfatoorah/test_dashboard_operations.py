"""A refund made in the MyFatoorah portal is recorded by PayOps (``source: "pg"``) once an
authentic (signed) notification arrives, exactly once, next to PayOps's own refund."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.connectors.myfatoorah import fake_server
from tests.connectors.myfatoorah.fake_server import TEST_API_TOKEN, FakeMyFatoorah, refund_webhook
from tests.helpers import Seed

fake_myfatoorah = fake_server.fake_myfatoorah  # the fake's fixture, used by this module
SECRET = "mf-webhook-secret-for-dashboard-tests"
URL = "/b/pg/notifications/myfatoorah-kwd"


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"gateway_timeout_seconds": 20.0}


@pytest.fixture
async def auth(seed: Seed) -> dict[str, str]:
    return await seed.api_key()


def signed_refund_event(
    invoice: str, refund_id: int, status: str, amount: str
) -> tuple[bytes, dict[str, str]]:
    """A V2 REFUND_STATUS_CHANGED event for a portal refund (no ExternalIdentifier), signed as
    MyFatoorah's webhook documentation describes."""
    return refund_webhook(
        SECRET, refund_id, status, amount, invoice, event_reference="WH-10", ExternalIdentifier=None
    )


async def test_refund_made_in_the_myfatoorah_portal_is_recorded_once(
    client: httpx.AsyncClient,
    seed: Seed,
    fake_myfatoorah: FakeMyFatoorah,  # noqa: F811
    auth: dict[str, str],
) -> None:
    fake = fake_myfatoorah
    fake.auto_refund = True  # refunds are executed at once, so PayOps's own refund succeeds
    invoice = str(fake.add_invoice("100.000", "KWD", state="paid"))
    await seed.imported(
        connector="myfatoorah",
        code="myfatoorah-kwd",
        amount="100.000",
        currency="KWD",
        state="paid",
        gateway_refs={"invoice_id": invoice},
        credentials={"api_token": TEST_API_TOKEN},
        options={"base_url": fake.url, "country": "KWT", "auto_refund": True},
        webhook_secret=SECRET,
    )
    # Through PayOps: a refund of 2.000. In the portal: a refund of 7.000 PayOps never saw.
    ours = await client.post(
        "/b/pbl/v1/operation/ORD-1", json={"operation": "refund", "amount": "2.000"}, headers=auth
    )
    assert ours.status_code == 200, ours.text
    assert ours.json()["txn"]["state"] == "refunded"
    dashboard = fake.add_refund(invoice, "7.000", status="Refunded")
    event, headers = signed_refund_event(invoice, dashboard, "REFUNDED", "7.000")
    for _ in range(2):  # a repeated notification records nothing twice
        response = await client.post(URL, content=event, headers=headers)
        assert response.status_code == 200, response.text
    operations = await seed.operations()
    assert [(op.operation, op.source, op.state, op.amount) for op in operations] == [
        ("refund", "input", "succeeded", 2000),
        ("refund", "pg", "succeeded", 7000),
    ]
    assert operations[1].gateway_refs == {"gateway_id": str(dashboard)}
    parent = await seed.find()
    assert parent is not None and parent.refunded == 9000
