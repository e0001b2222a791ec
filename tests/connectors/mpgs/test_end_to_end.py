"""MPGS through PayOps's HTTP API (``POST /b/pbl/v1/operation/{order_no}``) against the fake
gateway, on SQLite and PostgreSQL (the ``backend`` fixture)."""

from __future__ import annotations

import asyncio
import base64
from decimal import Decimal
from typing import Any

import httpx
import pytest

from payops.context import AppContext
from payops.operations.reconciler import reconcile_once
from tests import e2e
from tests.connectors.mpgs.fake_server import (  # noqa: F401 - mpgs_fake is a fixture
    API_PASSWORD,
    MERCHANT_ID,
    FakeMpgs,
    mpgs_fake,
)
from tests.e2e import NOT_SUPPORTED, assert_unconfirmed, post_v2_op, totals, v2_inquiry
from tests.helpers import Seed

MPGS_ORDER = "MPGS-ORD-1"
AUTH_TXN = "AUTH-1"
TIMEOUT = 0.5
BASIC_TOKEN = base64.b64encode(f"merchant.{MERCHANT_ID}:{API_PASSWORD}".encode()).decode()


@pytest.fixture
async def auth(seed: Seed) -> dict[str, str]:
    return await seed.superuser()


async def mpgs_payment(
    seed: Seed,
    fake: FakeMpgs,
    *,
    state: str = "authorized",
    amount: str = "100.000",
    currency: str = "KWD",
    timeout: float = 5.0,
    **gateway: Any,
) -> None:
    """An MPGS order at the fake, imported into PayOps as ORD-1."""
    fake.add_order(
        MPGS_ORDER,
        amount,
        currency,
        mode="authorize" if state == "authorized" else "purchase",
        transaction_id=AUTH_TXN,
    )
    await seed.imported(
        connector="mpgs",
        code=f"mpgs-{currency.lower()}",
        amount=amount,
        currency=currency,
        state=state,
        gateway_refs={"order_id": MPGS_ORDER, "transaction_id": AUTH_TXN},
        credentials={"merchant_id": MERCHANT_ID, "api_password": API_PASSWORD},
        options={"base_url": fake.url, "timeout_seconds": timeout},
        **gateway,
    )


async def post_op(
    client: httpx.AsyncClient, auth: dict[str, str], operation: str, amount: str | None = None
) -> httpx.Response:
    return await e2e.post_op(
        client, auth, operation, amount, never_shown=(API_PASSWORD, BASIC_TOKEN)
    )


def assert_operation(
    response: httpx.Response, operation: str, amount: str, state: str
) -> dict[str, Any]:
    body = e2e.assert_operation(response, operation, amount, state)
    assert body["pg_params"]["transaction_id"] == body["reference_number"]
    assert body["pg_params"]["ref"] == MPGS_ORDER
    assert body["pg_response"]["transaction"]["id"] == body["reference_number"]
    return body


async def test_capture_then_refund(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], mpgs_fake: FakeMpgs
) -> None:  # noqa: F811
    await mpgs_payment(seed, mpgs_fake)

    capture = assert_operation(
        await post_op(client, auth, "capture", "60.000"), "capture", "60.000", "paid"
    )
    assert "remaining_amount" not in capture  # exactly ExternalOperation (issue 16)
    sent = mpgs_fake.puts()[-1]
    assert sent.path == (
        f"/api/rest/version/100/merchant/{MERCHANT_ID}/order/{MPGS_ORDER}"
        f"/transaction/{capture['reference_number']}"
    )
    assert sent.json == {
        "apiOperation": "CAPTURE",
        "transaction": {
            "amount": "60.000",
            "currency": "KWD",
            "reference": capture["reference_number"],
        },
    }

    rest = assert_operation(await post_op(client, auth, "capture"), "capture", "40.000", "paid")
    assert mpgs_fake.puts()[-1].json["transaction"]["amount"] == "40.000"
    assert rest["pg_response"]["order"]["status"] == "CAPTURED"

    refund = assert_operation(
        await post_op(client, auth, "refund", "15.500"), "refund", "15.500", "refunded"
    )
    assert mpgs_fake.puts()[-1].json == {
        "apiOperation": "REFUND",
        "transaction": {
            "amount": "15.500",
            "currency": "KWD",
            "reference": refund["reference_number"],
        },
    }
    assert await totals(seed) == (100_000, 15_500, 0)
    order = mpgs_fake.orders[MPGS_ORDER]
    assert (order.captured, order.refunded) == (Decimal("100"), Decimal("15.5"))

    # A captured payment's inquiry answers from storage, without any credential in it.
    inquiry = await client.post("/b/pbl/v1/inquiry/ORD-1", headers=auth)
    assert inquiry.status_code == 200, inquiry.text
    assert (inquiry.json()["captured_amount"], inquiry.json()["refunded_amount"]) == (
        "100.000",
        "15.500",
    )
    assert API_PASSWORD not in inquiry.text
    assert BASIC_TOKEN not in inquiry.text


async def test_refund_of_a_purchase(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], mpgs_fake: FakeMpgs
) -> None:  # noqa: F811
    await mpgs_payment(seed, mpgs_fake, state="paid", amount="20.00", currency="USD")
    assert_operation(await post_op(client, auth, "refund", "7.25"), "refund", "7.25", "refunded")
    assert mpgs_fake.puts()[-1].json["transaction"] == {
        "amount": "7.25",
        "currency": "USD",
        "reference": mpgs_fake.puts()[-1].path.rsplit("/", 1)[1],
    }
    body = assert_operation(await post_op(client, auth, "refund"), "refund", "12.75", "refunded")
    assert body["pg_response"]["order"]["status"] == "REFUNDED"
    assert await totals(seed) == (0, 2_000, 0)


async def test_void(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], mpgs_fake: FakeMpgs
) -> None:  # noqa: F811
    await mpgs_payment(seed, mpgs_fake)
    body = assert_operation(await post_op(client, auth, "void"), "void", "100.000", "voided")
    assert mpgs_fake.puts()[-1].json == {
        "apiOperation": "VOID",
        "transaction": {"targetTransactionId": AUTH_TXN, "reference": body["reference_number"]},
    }
    assert body["pg_response"]["transaction"]["type"] == "VOID_AUTHORIZATION"
    assert await totals(seed) == (0, 0, 100_000)
    assert mpgs_fake.orders[MPGS_ORDER].status == "CANCELLED"


async def test_decline_is_400_with_the_gateway_message(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    mpgs_fake: FakeMpgs,  # noqa: F811
) -> None:
    await mpgs_payment(seed, mpgs_fake)
    mpgs_fake.fail_next("decline")

    response = await post_op(client, auth, "capture", "10.000")

    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "Do not honour (DECLINED)"
    assert body["operation"] == "capture"
    assert body["result"] == "failed"
    assert body["pg_response"]["result"] == "FAILURE"
    assert body["pg_response"]["response"]["gatewayCode"] == "DECLINED"
    [operation] = await seed.operations()
    assert operation.state == "failed"
    assert await totals(seed) == (0, 0, 0)
    # The reservation is released: the whole authorization can still be captured.
    assert_operation(await post_op(client, auth, "capture"), "capture", "100.000", "paid")


async def test_gateway_refusals_are_400(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], mpgs_fake: FakeMpgs
) -> None:  # noqa: F811
    await mpgs_payment(seed, mpgs_fake)
    mpgs_fake.orders[MPGS_ORDER].settled = True  # the batch closed: MPGS no longer voids
    response = await post_op(client, auth, "void")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "INVALID_REQUEST: The target transaction has been settled; refund instead"
    )
    assert response.json()["pg_response"]["error"]["cause"] == "INVALID_REQUEST"
    assert await totals(seed) == (0, 0, 0)

    mpgs_fake.merchants[MERCHANT_ID] = "rotated-password"  # the API password changed at MPGS
    response = await post_op(client, auth, "capture", "1.000")
    assert response.status_code == 400
    assert response.json()["detail"] == "REQUEST_REJECTED: Invalid credentials."
    assert response.json()["pg_response"]["http_status"] == 401
    assert "rotated-password" not in response.text
    assert [op.state for op in await seed.operations()] == ["failed", "failed"]


@pytest.mark.parametrize(
    ("perform", "final_state", "captured"),
    [
        (True, "succeeded", 30_000),
        (False, "failed", 0),
    ],
)
async def test_timeout_is_504_then_reconciled_to_the_gateway_truth(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    mpgs_fake: FakeMpgs,
    perform: bool,
    final_state: str,
    captured: int,  # noqa: F811
) -> None:
    await mpgs_payment(seed, mpgs_fake, timeout=TIMEOUT)
    mpgs_fake.fail_next("timeout", apply=perform)

    response = await post_op(client, auth, "capture", "30.000")
    operation = await assert_unconfirmed(response, seed, "capture")
    assert await totals(seed) == (0, 0, 0)
    # The client gave up after TIMEOUT; on a loaded machine the fake's thread may handle the
    # request a moment later. Wait (bounded) until it has, so its books are the gateway's truth.
    for _ in range(100):
        if any(r.method == "PUT" for r in mpgs_fake.requests) and (
            not perform or mpgs_fake.transaction(MPGS_ORDER, operation.reference_number)
        ):
            break
        await asyncio.sleep(0.05)
    assert (mpgs_fake.transaction(MPGS_ORDER, operation.reference_number) is not None) is perform

    summary = await reconcile_once(ctx)

    assert summary.examined == 1
    [operation] = await seed.operations()
    assert operation.state == final_state
    assert await totals(seed) == (captured, 0, 0)
    inquiry = [r for r in mpgs_fake.requests if r.method == "GET"]
    assert inquiry[0].path.endswith(f"/order/{MPGS_ORDER}/transaction/{operation.reference_number}")
    assert API_PASSWORD not in str(operation.pg_response)


@pytest.mark.parametrize("kind", ["reset"])  # every fault kind: test_connector.py
async def test_lost_reply_is_504_then_reconciled(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    mpgs_fake: FakeMpgs,
    kind: str,  # noqa: F811
) -> None:
    await mpgs_payment(seed, mpgs_fake, state="paid", timeout=TIMEOUT)
    mpgs_fake.fail_next(kind, apply=True)
    response = await post_op(client, auth, "refund", "1.000")
    assert response.status_code == 504
    assert response.json()["result"] == "pending"
    await reconcile_once(ctx)
    [operation] = await seed.operations()
    assert operation.state == "succeeded"
    assert await totals(seed) == (0, 1_000, 0)


async def test_pending_refund_is_queued_then_settled(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    mpgs_fake: FakeMpgs,  # noqa: F811
) -> None:
    await mpgs_payment(seed, mpgs_fake, state="paid")
    mpgs_fake.fail_next("queue")

    body = assert_operation(
        await post_op(client, auth, "refund", "5.000"), "refund", "5.000", "refund_queued"
    )
    assert body["result"] == "queued"
    await reconcile_once(ctx)
    assert (await seed.operations())[0].state == "queued"

    mpgs_fake.settle_pending(MPGS_ORDER, body["reference_number"])
    await reconcile_once(ctx)
    [operation] = await seed.operations()
    assert operation.state == "succeeded"
    assert await totals(seed) == (0, 5_000, 0)


async def test_operation_not_enabled_is_not_supported(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    mpgs_fake: FakeMpgs,  # noqa: F811
) -> None:
    # MPGS can capture, refund and void; this configuration enables only refunds and inquiry.
    await mpgs_payment(seed, mpgs_fake, enabled_operations=["refund", "inquiry"])
    for operation in ("capture", "void"):
        response = await post_op(client, auth, operation)
        assert response.status_code == 400
        assert response.json() == {
            "detail": NOT_SUPPORTED,
            "operation": operation,
            "result": "failed",
        }
    assert mpgs_fake.requests == []


async def test_v2_operations_by_session_id(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    mpgs_fake: FakeMpgs,  # noqa: F811
) -> None:
    await mpgs_payment(seed, mpgs_fake, state="authorized")
    parent = await seed.find("ORD-1")
    assert parent is not None
    for operation, amount, state in (
        ("capture", "60.000", "paid"),
        ("refund", "10.000", "refunded"),
    ):
        response = await post_v2_op(client, auth, operation, parent.session_id, amount)
        assert_operation(response, operation, amount, state)
    inquiry = await v2_inquiry(client, auth, parent.session_id)
    assert inquiry.status_code == 200
    body = inquiry.json()
    assert (body["state"], body["captured_amount"], body["refunded_amount"]) == (
        "authorized",
        "60.000",
        "10.000",
    )
    assert body["gateway_name"] == "mpgs"
