"""v2 operation and inquiry: lookup by session_id or order_no, all six operations, throttling."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from payops.db.models import GatewayInquiry, PaymentTransaction
from tests.helpers import PENDING_CARD, Seed

OP = "/b/pbl/v2/operation/"
INQ = "/b/pbl/v2/inquiry/"


async def test_refund_by_session_id_with_and_without_slash(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    auth = await seed.api_key()
    parent = await seed.transaction("20.000")
    for path in (OP, OP.rstrip("/")):
        response = await client.post(
            path,
            json={"operation": "refund", "amount": "1.000", "session_id": parent.session_id},
            headers=auth,
        )
        assert response.status_code == 200, response.text
        assert response.json()["session_id"] == parent.session_id
    stored = await seed.find()
    assert stored is not None and stored.refunded == 2000


async def test_both_identifiers_use_session_id_and_must_agree(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    auth = await seed.api_key()
    parent = await seed.transaction("20.000", order_no="ORD-1")
    await seed.transaction("20.000", order_no="ORD-2")
    same = await client.post(
        OP,
        json={
            "operation": "refund",
            "amount": "1.000",
            "session_id": parent.session_id,
            "order_no": "ORD-1",
        },
        headers=auth,
    )
    assert same.status_code == 200
    other = await client.post(
        OP,
        json={
            "operation": "refund",
            "amount": "1.000",
            "session_id": parent.session_id,
            "order_no": "ORD-2",
        },
        headers=auth,
    )
    assert other.status_code == 400
    assert other.json() == {
        "detail": "session_id and order_no refer to different transactions",
        "operation": "refund",
        "result": "failed",
    }


@pytest.mark.parametrize(
    ("body", "status", "expected"),
    [
        (
            {"operation": "refund"},
            400,
            {
                "non_field_errors": [
                    "You must provide either `session_id` or `order_no` to identify the PaymentTransaction."
                ]
            },
        ),
        (
            {"operation": "refund", "session_id": "0" * 40},
            400,
            {"detail": "Session does not exist", "operation": "refund", "result": "failed"},
        ),
        (
            {"operation": "refund", "order_no": "NOPE"},
            400,
            {"detail": "Order number does not exist", "operation": "refund", "result": "failed"},
        ),
        (
            {"operation": "explode", "order_no": "ORD-1"},
            400,
            {"operation": ['"explode" is not a valid choice.']},
        ),
        (
            {"operation": "refund", "order_no": "ORD-1", "destination": "wallet"},
            400,
            {
                "detail": "Refunds to a wallet are not available",
                "operation": "refund",
                "result": "failed",
            },
        ),
        (
            {"operation": "refund", "order_no": "ORD-1", "destination": "bank"},
            400,
            {"destination": ['"bank" is not a valid choice.']},
        ),
    ],
)
async def test_refusals(
    client: httpx.AsyncClient,
    seed: Seed,
    body: dict[str, Any],
    status: int,
    expected: dict[str, Any],
) -> None:
    auth = await seed.api_key()
    await seed.transaction("20.000")
    before = await seed.snapshot()
    response = await client.post(OP, json=body, headers=auth)
    assert (response.status_code, response.json()) == (status, expected)
    assert await seed.snapshot() == before


@pytest.mark.parametrize(
    ("state", "allowed"),
    [
        ("created", True),
        ("pending", True),
        ("attempted", True),
        ("paid", False),
        ("canceled", False),
        ("expired", False),
    ],
)
async def test_expire(client: httpx.AsyncClient, seed: Seed, state: str, allowed: bool) -> None:
    auth = await seed.api_key()
    await seed.transaction("5.000", card=None)
    await seed.set_state("ORD-1", state)
    response = await client.post(
        OP, json={"operation": "expire", "order_no": "ORD-1"}, headers=auth
    )
    stored = await seed.find()
    assert stored is not None
    if allowed:
        assert response.status_code == 200
        assert response.json() == {
            "detail": "Operation done successfully",
            "message": "Operation done successfully",
            "operation": "expire",
            "result": "success",
        }
        assert stored.state == "expired"
    else:
        assert response.status_code == 400
        assert response.json()["detail"] == "Operation is not allowed"
        assert stored.state == state


async def test_delete_is_soft_for_paid_and_hard_otherwise(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    auth = await seed.api_key()
    paid = await seed.transaction("5.000", order_no="PAID")
    await seed.transaction("5.000", order_no="NEW", card=None)
    for order in ("PAID", "NEW"):
        response = await client.post(
            OP, json={"operation": "delete", "order_no": order}, headers=auth
        )
        assert response.status_code == 200 and response.json()["operation"] == "delete"
    soft = await seed.find("PAID", include_deleted=True)
    assert soft is not None and soft.deleted_at is not None and soft.state == "paid"
    assert await seed.find("NEW", include_deleted=True) is None
    # A soft-deleted transaction is hidden from every API lookup.
    hidden = await client.post(
        OP, json={"operation": "refund", "session_id": paid.session_id}, headers=auth
    )
    assert hidden.json()["detail"] == "Session does not exist"
    assert (await client.post(INQ, json={"order_no": "PAID"}, headers=auth)).status_code == 404


async def test_operation_permissions_per_code(client: httpx.AsyncClient, seed: Seed) -> None:
    await seed.transaction("5.000", card=None)
    only_cancel = await seed.user("canceller", permissions=["payment.cancel"])
    assert (
        await client.post(
            OP, json={"operation": "expire", "order_no": "ORD-1"}, headers=only_cancel
        )
    ).status_code == 403
    assert (
        await client.post(
            OP, json={"operation": "cancel", "order_no": "ORD-1"}, headers=only_cancel
        )
    ).status_code == 200


async def test_inquiry_by_either_identifier_and_disclosure_options(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    auth = await seed.api_key()
    parent = await seed.transaction("5.000", webhook_url="https://merchant.example/hook")
    by_sid = await client.post(INQ, json={"session_id": parent.session_id}, headers=auth)
    by_order = await client.post(INQ.rstrip("/"), json={"order_no": "ORD-1"}, headers=auth)
    assert by_sid.status_code == by_order.status_code == 200
    assert by_sid.json()["session_id"] == by_order.json()["session_id"] == parent.session_id
    await client.post(INQ, json={"order_no": "ORD-1", "notify_webhook_url": True}, headers=auth)
    await client.post(
        INQ,
        json={
            "order_no": "ORD-1",
            "notify_webhook_url": True,
            "webhook_url": "https://other.example/psq",
        },
        headers=auth,
    )
    await client.post(
        INQ,
        json={
            "order_no": "ORD-1",
            "disclose_to_merchant": True,
            "disclosure_url": "https://legacy.example/psq",
        },
        headers=auth,
    )
    targets = [e.target_url for e in await seed.outbox() if e.kind == "disclosure"]
    assert targets == [
        "https://merchant.example/hook",
        "https://other.example/psq",
        "https://legacy.example/psq",
    ]
    missing = await client.post(INQ, json={"session_id": "f" * 40}, headers=auth)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Session does not exist", "result": "failed"}


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {"inquiry_throttle": True}


async def _age(seed: Seed, minutes: int) -> None:
    async with seed.ctx.db.write() as session:
        parent = await session.get_one(PaymentTransaction, (await seed.find()).id)  # type: ignore[union-attr]
        parent.created_at = parent.created_at - timedelta(minutes=minutes)


async def test_inquiry_throttling_counts_only_gateway_inquiries(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    auth = await seed.api_key()
    await seed.transaction("5.000", card=PENDING_CARD)  # pending: an inquiry asks the gateway
    early = await client.post(INQ, json={"order_no": "ORD-1"}, headers=auth)
    assert early.status_code == 429
    assert 590 <= int(early.headers["Retry-After"]) <= 600
    assert early.json()["detail"].startswith("Request was throttled. Expected available in")
    await _age(seed, 11)
    served = await client.post(INQ, json={"order_no": "ORD-1"}, headers=auth)
    assert served.status_code == 200 and served.json()["state"] == "paid"
    # Paid now: answered from storage, never throttled.
    for _ in range(5):
        assert (await client.post(INQ, json={"order_no": "ORD-1"}, headers=auth)).status_code == 200
    assert await seed.count(GatewayInquiry) == 1


async def test_throttle_gap_between_gateway_inquiries(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    auth = await seed.api_key()
    await seed.transaction("5.000", card="4000000000000002")  # declined: attempted, inquirable
    await _age(seed, 11)
    assert (await client.post(INQ, json={"order_no": "ORD-1"}, headers=auth)).status_code == 200
    second = await client.post(INQ, json={"order_no": "ORD-1"}, headers=auth)
    assert second.status_code == 429 and int(second.headers["Retry-After"]) > 1700
