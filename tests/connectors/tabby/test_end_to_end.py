"""Tabby through PayOps's HTTP API (``POST /b/pbl/v1/operation/{order_no}``) against the fake
Tabby, on SQLite and PostgreSQL (the ``backend`` fixture)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from payops.context import AppContext
from payops.operations.reconciler import reconcile_once
from tests import e2e
from tests.connectors.tabby import fake_server
from tests.connectors.tabby.fake_server import (
    TEST_SECRET_KEY,
    FakeTabby,
    disputed_response,
    refund_not_closed_response,
)
from tests.e2e import NOT_SUPPORTED, assert_unconfirmed, post_op, totals
from tests.helpers import Seed

fake_tabby = fake_server.fake_tabby  # the fake's fixture, used by this module
auth = e2e.auth

TIMEOUT = 0.5


assert_operation = e2e.asserting_operation(TEST_SECRET_KEY)


async def tabby_payment(
    seed: Seed,
    fake: FakeTabby,
    *,
    state: str = "authorized",
    amount: str = "100.000",
    currency: str = "KWD",
    **imported: Any,
) -> str:
    """A Tabby payment at the fake, imported into PayOps as order ORD-1; returns its id."""
    if state == "authorized":
        payment_id = fake.add_payment(amount, currency)
    else:
        payment_id = fake.paid_payment(amount, currency)  # captured in full, so CLOSED
    refs, credentials = {"payment_id": payment_id}, {"secret_key": TEST_SECRET_KEY}
    await e2e.import_payment(
        seed,
        "tabby",
        fake.url,
        refs,
        credentials,
        amount=amount,
        currency=currency,
        state=state,
        **imported,
    )
    return payment_id


# -- every supported operation --------------------------------------------------------------------


async def test_capture_in_parts_then_refund(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], fake_tabby: FakeTabby
) -> None:
    payment_id = await tabby_payment(seed, fake_tabby)

    first = assert_operation(
        await post_op(client, auth, "capture", "40.000"), "capture", "40.000", "paid"
    )
    assert fake_tabby.requests_to("/captures")[-1].json == {
        "amount": "40.000",
        "reference_id": first["reference_number"],
    }
    capture_id = fake_tabby.payment(payment_id)["captures"][0]["id"]
    assert first["pg_params"]["transaction_id"] == capture_id
    assert first["pg_params"]["payment_id"] == payment_id
    assert first["pg_response"]["status"] == "AUTHORIZED"
    assert "remaining_amount" not in first  # exactly ExternalOperation (issue 16)

    # PayOps allows refunding what was captured; Tabby refunds only CLOSED payments, and a
    # partial capture leaves the payment AUTHORIZED: the gateway's refusal, with its reply.
    refused = await post_op(client, auth, "refund", "10.000")
    assert refused.status_code == 400
    assert refused.json() == {
        "detail": "can not refund payment that has no captures and not closed",
        "operation": "refund",
        "result": "failed",
        "pg_response": refund_not_closed_response(),
    }
    assert TEST_SECRET_KEY not in refused.text
    assert [op.state for op in await seed.operations()] == ["succeeded", "failed"]

    # the rest (amount omitted): Tabby closes the payment
    rest = assert_operation(await post_op(client, auth, "capture"), "capture", "60.000", "paid")
    assert rest["pg_response"]["status"] == "CLOSED"
    assert fake_tabby.payment(payment_id)["status"] == "CLOSED"

    refund = assert_operation(
        await post_op(client, auth, "refund", "25.000"), "refund", "25.000", "refunded"
    )
    assert fake_tabby.requests_to("/refunds")[-1].json == {
        "amount": "25.000",
        "reference_id": refund["reference_number"],
    }
    assert [r["amount"] for r in fake_tabby.payment(payment_id)["refunds"]] == ["25.000"]
    assert await totals(seed) == (100_000, 25_000, 0)
    assert [op.state for op in await seed.operations()] == [
        "succeeded",
        "failed",
        "succeeded",
        "succeeded",
    ]


async def test_void_closes_the_payment(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], fake_tabby: FakeTabby
) -> None:
    payment_id = await tabby_payment(seed, fake_tabby, amount="75.50", currency="AED")
    body = assert_operation(await post_op(client, auth, "void"), "void", "75.50", "voided")
    assert body["pg_response"]["status"] == "CLOSED"
    payment = fake_tabby.payment(payment_id)
    assert payment["status"] == "CLOSED" and payment["captures"] == []
    assert [r.method for r in fake_tabby.requests] == ["GET", "POST"]
    assert fake_tabby.requests[1].body == b""
    assert await totals(seed) == (0, 0, 7_550)

    refused = await post_op(client, auth, "capture", "1.00")
    assert refused.status_code == 400
    assert refused.json()["detail"] == "Operation is not allowed"


async def test_refunds_of_a_paid_payment_until_it_is_disputed(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], fake_tabby: FakeTabby
) -> None:
    payment_id = await tabby_payment(
        seed, fake_tabby, state="paid", amount="200.00", currency="SAR"
    )
    assert_operation(await post_op(client, auth, "refund", "50.25"), "refund", "50.25", "refunded")

    fake_tabby.set_disputed(payment_id)
    disputed = await post_op(client, auth, "refund", "10.00")
    assert disputed.status_code == 400
    assert disputed.json() == {
        "detail": "payment is disputed",
        "operation": "refund",
        "result": "failed",
        "pg_response": disputed_response(),
    }
    fake_tabby.set_disputed(payment_id, False)

    assert_operation(await post_op(client, auth, "refund"), "refund", "149.75", "refunded")
    assert [r.json["amount"] for r in fake_tabby.requests_to("/refunds")] == [
        "50.25",
        "10.00",
        "149.75",
    ]
    assert [r["amount"] for r in fake_tabby.payment(payment_id)["refunds"]] == ["50.25", "149.75"]
    assert await totals(seed) == (0, 20_000, 0)


async def test_a_delayed_refund_is_queued_then_reconciled(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    fake_tabby: FakeTabby,
    ctx: AppContext,
) -> None:
    fake_tabby.delayed_refunds = True
    payment_id = await tabby_payment(
        seed, fake_tabby, state="paid", options={"delayed_refunds": True}
    )
    body = assert_operation(
        await post_op(client, auth, "refund", "30.000"), "refund", "30.000", "refund_queued"
    )
    assert body["result"] == "queued"
    assert (await seed.operations())[0].state == "queued"

    await reconcile_once(ctx)
    assert (await seed.operations())[0].state == "queued"  # Tabby has not executed it yet

    fake_tabby.backdate_refunds(payment_id, 86_400)  # the 24 h have passed
    await reconcile_once(ctx)
    assert (await seed.operations())[0].state == "succeeded"
    assert await totals(seed) == (0, 30_000, 0)


# -- unknown outcomes and reconciliation --------------------------------------------------------


@pytest.mark.parametrize(
    ("performed", "final"), [(True, "succeeded"), (False, "failed")], ids=["done", "not-done"]
)
async def test_a_timeout_is_504_then_reconciled_to_tabbys_truth(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    fake_tabby: FakeTabby,
    ctx: AppContext,
    performed: bool,
    final: str,
) -> None:
    fake_tabby.hang_seconds = 1.5
    payment_id = await tabby_payment(seed, fake_tabby, state="paid", timeout=TIMEOUT)
    fake_tabby.fail_next("timeout", suffix="/refunds", apply=performed)

    response = await post_op(client, auth, "refund", "10.000")
    operation = await assert_unconfirmed(response, seed, "refund")
    assert len(fake_tabby.payment(payment_id)["refunds"]) == (1 if performed else 0)

    summary = await reconcile_once(ctx)
    assert summary.examined == 1
    [operation] = await seed.operations()
    assert operation.state == final
    assert fake_tabby.requests[-1].method == "GET"
    assert await totals(seed) == (0, 10_000 if performed else 0, 0)


async def test_a_lost_void_is_reconciled(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    fake_tabby: FakeTabby,
    ctx: AppContext,
) -> None:
    fake_tabby.hang_seconds = 1.5
    await tabby_payment(seed, fake_tabby, timeout=TIMEOUT)
    fake_tabby.fail_next("reset", suffix="/close", apply=True)
    response = await post_op(client, auth, "void")
    assert response.status_code == 504
    assert response.json()["result"] == "pending"
    await reconcile_once(ctx)
    [operation] = await seed.operations()
    assert operation.state == "succeeded"
    assert await totals(seed) == (0, 0, 100_000)


# -- capability ---------------------------------------------------------------------------------


async def test_an_operation_not_enabled_for_the_configuration_is_not_supported(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], fake_tabby: FakeTabby
) -> None:
    await tabby_payment(seed, fake_tabby, enabled_operations=["refund", "inquiry"])
    for operation, amount in (("capture", "10.000"), ("void", None)):
        response = await post_op(client, auth, operation, amount)
        assert response.status_code == 400
        assert response.json() == {
            "detail": NOT_SUPPORTED,
            "operation": operation,
            "result": "failed",
        }
    assert fake_tabby.requests == []


# -- credentials --------------------------------------------------------------------------------


async def test_credentials_never_appear_in_responses(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], fake_tabby: FakeTabby
) -> None:
    fake_tabby.hang_seconds = 1.5
    payment_id = await tabby_payment(seed, fake_tabby, timeout=TIMEOUT)
    responses = [
        await post_op(client, auth, "capture", "30.000"),
        await post_op(client, auth, "refund", "1.000"),  # Tabby refuses: not closed
        await client.post("/b/pbl/v1/inquiry/ORD-1", headers=auth),
    ]
    fake_tabby.fail_next("timeout", suffix="/captures")
    responses.append(await post_op(client, auth, "capture", "5.000"))
    fake_tabby.fail_next("500", suffix="/captures")
    responses.append(await post_op(client, auth, "capture", "5.000"))
    assert [r.status_code for r in responses] == [200, 400, 200, 504, 504]
    for response in responses:
        assert TEST_SECRET_KEY not in response.text
        assert "Bearer" not in response.text
    assert fake_tabby.payment(payment_id)["captures"][0]["amount"] == "30.000"
