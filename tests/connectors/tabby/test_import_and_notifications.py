"""A Tabby payment registered through the admin import endpoint, then operated on; and Tabby's
notifications, verified by their secret header and confirmed by inquiry."""

from __future__ import annotations

import httpx
import pytest

from payops.gateways.service import add_gateway
from tests.connectors.tabby import fake_server
from tests.connectors.tabby.fake_server import TEST_SECRET_KEY, FakeTabby
from tests.helpers import Seed

fake_tabby = fake_server.fake_tabby
SECRET = "tabby-hook-secret"


@pytest.fixture
async def gateway(seed: Seed, fake_tabby: FakeTabby) -> str:  # noqa: F811
    async with seed.ctx.db.write() as session:
        await add_gateway(
            session,
            seed.ctx.settings,
            pg_code="tabby-kwd",
            connector="tabby",
            operation_mode="authorize",
            default_currency="KWD",
            credentials={"secret_key": TEST_SECRET_KEY},
            options={"base_url": fake_tabby.url},
            webhook_secret=SECRET,
        )
    return "tabby-kwd"


async def test_import_then_capture(
    client: httpx.AsyncClient, seed: Seed, gateway: str, fake_tabby: FakeTabby
) -> None:  # noqa: F811
    auth = await seed.api_key()
    payment_id = fake_tabby.add_payment("40.000", "KWD")
    imported = await client.post(
        "/b/payops/v1/import/",
        headers=auth,
        json={
            "pg_code": gateway,
            "amount": "40.000",
            "currency_code": "KWD",
            "state": "authorized",
            "gateway_refs": {"payment_id": payment_id},
            "order_no": "TB-1",
        },
    )
    assert imported.status_code == 201, imported.text
    assert imported.json()["state"] == "authorized"
    capture = await client.post(
        "/b/pbl/v1/operation/TB-1", headers=auth, json={"operation": "capture", "amount": "15.000"}
    )
    assert capture.status_code == 200, capture.text
    assert capture.json()["txn"]["state"] == "paid"


@pytest.mark.parametrize(
    ("body", "errors"),
    [
        ({"pg_code": "nope"}, {"pg_code": ['Payment gateway code "nope" does not exist.']}),
        (
            {"amount": "1.0001"},
            {"amount": ["Ensure that there are no more than 3 decimal places for KWD."]},
        ),
        (
            {"gateway_refs": {}},
            {"gateway_refs": ["Give the gateway's identifiers as an object of non-empty strings."]},
        ),
        ({"state": "pending"}, {"state": ['"pending" is not a valid choice.']}),
    ],
)
async def test_import_validation(
    client: httpx.AsyncClient,
    seed: Seed,
    gateway: str,
    body: dict[str, object],
    errors: dict[str, object],
) -> None:
    auth = await seed.api_key()
    valid = {
        "pg_code": gateway,
        "amount": "40.000",
        "currency_code": "KWD",
        "gateway_refs": {"payment_id": "p-1"},
    }
    response = await client.post("/b/payops/v1/import/", headers=auth, json={**valid, **body})
    assert (response.status_code, response.json()) == (400, errors)


async def test_import_needs_the_import_permission(
    client: httpx.AsyncClient, seed: Seed, gateway: str
) -> None:
    clerk = await seed.user("clerk", permissions=["payment.refund", "payment.capture"])
    response = await client.post("/b/payops/v1/import/", headers=clerk, json={})
    assert response.status_code == 403


async def test_notification_is_verified_then_confirmed(
    client: httpx.AsyncClient,
    seed: Seed,
    gateway: str,
    fake_tabby: FakeTabby,  # noqa: F811
) -> None:
    auth = await seed.api_key()
    payment_id = fake_tabby.add_payment("40.000", "KWD")
    await client.post(
        "/b/payops/v1/import/",
        headers=auth,
        json={
            "pg_code": gateway,
            "amount": "40.000",
            "currency_code": "KWD",
            "state": "authorized",
            "gateway_refs": {"payment_id": payment_id},
            "order_no": "TB-1",
        },
    )
    url = f"/b/pg/notifications/{gateway}"
    body = {"id": payment_id, "status": "AUTHORIZED", "captures": [], "refunds": []}
    forged = await client.post(url, json=body, headers={"X-PayOps-Webhook-Secret": "nope"})
    assert forged.status_code == 401
    ok = await client.post(url, json=body, headers={"X-PayOps-Webhook-Secret": SECRET})
    assert ok.status_code == 200 and ok.json() == {"detail": "Success"}
