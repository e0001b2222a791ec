"""MyFatoorah through PayOps's HTTP API (``POST /b/pbl/v1/operation/{order_no}``) against the fake
MyFatoorah, on SQLite and PostgreSQL (the ``backend`` fixture)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from payops.context import AppContext
from payops.operations.reconciler import reconcile_once
from tests import e2e
from tests.connectors.myfatoorah import fake_server
from tests.connectors.myfatoorah.fake_server import (
    TEST_API_TOKEN,
    FakeMyFatoorah,
    already_updated_response,
    declined_response,
    refund_exceeds_response,
    refund_webhook,
)
from tests.e2e import NOT_SUPPORTED, assert_unconfirmed, post_op, states, totals
from tests.helpers import Seed

fake_myfatoorah = fake_server.fake_myfatoorah  # the fake's fixture, used by this module
auth = e2e.auth
settings_overrides = e2e.settings_overrides  # the timeout tests set their own short one

QUEUED = "Refund request created; MyFatoorah will review and execute it"
TIMEOUT = 0.5


assert_operation = e2e.asserting_operation(TEST_API_TOKEN)


async def myfatoorah_payment(
    seed: Seed,
    fake: FakeMyFatoorah,
    *,
    state: str = "paid",
    amount: str = "100.000",
    currency: str = "KWD",
    options: dict[str, Any] | None = None,
    **imported: Any,
) -> str:
    """An invoice at the fake, imported into PayOps as order ORD-1; returns its InvoiceId."""
    invoice_id = fake.add_invoice(amount, currency, state=state)
    refs, credentials = {"invoice_id": invoice_id}, {"api_token": TEST_API_TOKEN}
    options = {"country": "KWT", **(options or {})}
    await e2e.import_payment(
        seed,
        "myfatoorah",
        fake.url,
        refs,
        credentials,
        amount=amount,
        currency=currency,
        state=state,
        options=options,
        **imported,
    )
    return invoice_id


# -- refunds --------------------------------------------------------------------------------------


async def test_refunds_are_queued_until_myfatoorah_decides(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    invoice = await myfatoorah_payment(
        seed, fake_myfatoorah, enabled_operations=["refund", "inquiry"]
    )
    body = assert_operation(
        await post_op(client, auth, "refund", "30.000"), "refund", "30.000", "refund_queued"
    )
    assert body["result"] == "queued"
    assert body["pg_params"]["pg_message"] == QUEUED
    assert body["pg_response"]["Message"] == "Refund Created Successfully!"
    sent = fake_myfatoorah.requests_to("/v2/MakeRefund")[0]
    assert sent.json["ExternalIdentifier"] == body["reference_number"]
    assert b'"Amount":30.000,' in sent.body

    await reconcile_once(ctx)
    assert await states(seed) == ["queued"]  # MyFatoorah's finance team has not acted yet

    fake_myfatoorah.settle_refund(invoice, "Refunded")
    await reconcile_once(ctx)
    assert await states(seed) == ["succeeded"]
    assert await totals(seed) == (0, 30_000, 0)

    # the rest (amount omitted), which MyFatoorah then rejects
    rest = assert_operation(
        await post_op(client, auth, "refund"), "refund", "70.000", "refund_queued"
    )
    fake_myfatoorah.settle_refund(invoice, "Canceled", external_identifier=rest["reference_number"])
    await reconcile_once(ctx)
    assert await states(seed) == ["succeeded", "rejected"]
    assert await totals(seed) == (0, 30_000, 0)


async def test_an_auto_refund_account_refunds_at_once(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], fake_myfatoorah: FakeMyFatoorah
) -> None:
    fake_myfatoorah.auto_refund = True
    await myfatoorah_payment(
        seed, fake_myfatoorah, amount="80.00", currency="SAR", options={"auto_refund": "true"}
    )
    assert_operation(await post_op(client, auth, "refund", "12.50"), "refund", "12.50", "refunded")
    assert await totals(seed) == (0, 1_250, 0)


async def test_a_gateway_refusal_is_400_with_its_message(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], fake_myfatoorah: FakeMyFatoorah
) -> None:
    invoice = await myfatoorah_payment(seed, fake_myfatoorah)
    fake_myfatoorah.fail_next(
        "decline", endpoint="/v2/MakeRefund", message="Refunds are disabled for this account"
    )
    declined = await post_op(client, auth, "refund", "10.000")
    assert declined.status_code == 400
    message = "Refunds are disabled for this account"
    assert declined.json() == {
        "detail": message,
        "operation": "refund",
        "result": "failed",
        "pg_response": declined_response(message),
    }

    # a refund made in MyFatoorah's portal leaves less than PayOps believes
    fake_myfatoorah.add_refund(invoice, "95.000")
    exceeds = await post_op(client, auth, "refund", "10.000")
    assert exceeds.status_code == 400
    assert exceeds.json() == {
        "detail": refund_exceeds_response()["Message"],
        "operation": "refund",
        "result": "failed",
        "pg_response": refund_exceeds_response(),
    }
    assert await states(seed) == ["failed", "failed"]
    assert await totals(seed) == (0, 0, 0)
    assert TEST_API_TOKEN not in declined.text + exceeds.text


# -- capture and release (Authorize-Capture accounts) ---------------------------------------------


async def test_capture_then_refund(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    invoice = await myfatoorah_payment(seed, fake_myfatoorah, state="authorized")
    body = assert_operation(
        await post_op(client, auth, "capture", "40.000"), "capture", "40.000", "paid"
    )
    assert fake_myfatoorah.requests[-1].json["Operation"] == "capture"
    assert body["pg_response"]["Data"]["InvoiceStatus"] == "Paid"
    assert (
        body["pg_params"]["payment_id"]
        == fake_myfatoorah.invoice(invoice)["InvoiceTransactions"][-1]["PaymentId"]
    )
    assert "remaining_amount" not in body  # exactly ExternalOperation (issue 16)

    # PayOps would let the rest be captured; MyFatoorah takes one capture per invoice
    second = await post_op(client, auth, "capture", "10.000")
    assert second.status_code == 400
    assert second.json()["detail"] == already_updated_response()["Message"]

    assert_operation(
        await post_op(client, auth, "refund", "15.000"), "refund", "15.000", "refund_queued"
    )
    fake_myfatoorah.settle_refund(invoice, "Refunded")
    await reconcile_once(ctx)
    assert await states(seed) == ["succeeded", "failed", "succeeded"]
    assert await totals(seed) == (40_000, 15_000, 0)


async def test_void_releases_the_authorization(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], fake_myfatoorah: FakeMyFatoorah
) -> None:
    invoice = await myfatoorah_payment(
        seed, fake_myfatoorah, state="authorized", amount="75.50", currency="SAR"
    )
    body = assert_operation(await post_op(client, auth, "void"), "void", "75.50", "voided")
    assert fake_myfatoorah.requests[-1].json["Operation"] == "release"
    assert b'"Amount":75.50,' in fake_myfatoorah.requests[-1].body
    assert (
        fake_myfatoorah.invoice(invoice)["InvoiceTransactions"][-1]["Error"]
        == "Transaction Released"
    )
    assert body["pg_params"]["result"] == "success"
    assert await totals(seed) == (0, 0, 7_550)
    refused = await post_op(client, auth, "capture", "1.00")
    assert refused.status_code == 400
    assert refused.json()["detail"] == "Operation is not allowed"


# -- unknown outcomes and reconciliation ----------------------------------------------------------


@pytest.mark.parametrize(
    ("performed", "final"), [(True, "queued"), (False, "failed")], ids=["done", "not-done"]
)
async def test_a_refund_timeout_is_504_then_reconciled_to_myfatoorahs_truth(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    fake_myfatoorah: FakeMyFatoorah,
    performed: bool,
    final: str,
) -> None:
    fake_myfatoorah.hang_seconds = 1.5
    invoice = await myfatoorah_payment(seed, fake_myfatoorah, timeout=TIMEOUT)
    fake_myfatoorah.fail_next("timeout", endpoint="/v2/MakeRefund", apply=performed)

    response = await post_op(client, auth, "refund", "10.000")
    await assert_unconfirmed(response, seed, "refund")
    assert len(fake_myfatoorah.refunds(invoice)) == (1 if performed else 0)

    summary = await reconcile_once(ctx)
    assert summary.examined == 1
    assert await states(seed) == [final]
    assert fake_myfatoorah.requests[-1].path == "/v2/GetRefundStatus"
    if performed:  # the refund exists but awaits review: queued, then final once executed
        fake_myfatoorah.settle_refund(invoice, "Refunded")
        await reconcile_once(ctx)
        assert await states(seed) == ["succeeded"]
    assert await totals(seed) == (0, 10_000 if performed else 0, 0)


async def test_a_lost_capture_is_reconciled(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    ctx: AppContext,
    fake_myfatoorah: FakeMyFatoorah,
) -> None:
    await myfatoorah_payment(seed, fake_myfatoorah, state="authorized", timeout=TIMEOUT)
    fake_myfatoorah.fail_next("500", endpoint="/v2/UpdatePaymentStatus", apply=True)
    response = await post_op(client, auth, "capture", "100.000")
    assert response.status_code == 504
    assert response.json()["result"] == "pending"
    assert await states(seed) == ["processing"]
    await reconcile_once(ctx)
    assert await states(seed) == ["succeeded"]
    assert await totals(seed) == (100_000, 0, 0)


# -- capability -----------------------------------------------------------------------------------


async def test_an_operation_not_enabled_for_the_configuration_is_not_supported(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], fake_myfatoorah: FakeMyFatoorah
) -> None:
    """An account without Authorize-Capture: configured with refund and inquiry only."""
    await myfatoorah_payment(
        seed, fake_myfatoorah, state="authorized", enabled_operations=["refund", "inquiry"]
    )
    for operation, amount in (("capture", "10.000"), ("void", None)):
        response = await post_op(client, auth, operation, amount)
        assert response.status_code == 400
        assert response.json() == {
            "detail": NOT_SUPPORTED,
            "operation": operation,
            "result": "failed",
        }
    assert fake_myfatoorah.requests == []


# -- notifications (POST /b/pg/notifications/{pg_code}) -----------------------------------------

WEBHOOK_SECRET = "mf-webhook-secret-for-tests"


def signed_refund_event(
    reference: str,
    invoice: str | None,
    refund_id: int,
    status: str,
    amount: str,
    secret: str = WEBHOOK_SECRET,
) -> tuple[bytes, dict[str, str]]:
    """A V2 REFUND_STATUS_CHANGED event, signed as the webhook documentation describes. It
    carries no refund ExternalIdentifier (``reference`` is not in it); ``Refund.InvoiceId`` is the
    refund's own invoice. ``invoice`` None: the event names no referenced invoice."""
    refund = {"Reference": f"2025{refund_id}", "InvoiceId": 9999001}
    return refund_webhook(secret, refund_id, status, amount, invoice, **refund)


async def test_a_signed_refund_notification_settles_the_queued_refund(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], fake_myfatoorah: FakeMyFatoorah
) -> None:
    invoice = await myfatoorah_payment(seed, fake_myfatoorah, webhook_secret=WEBHOOK_SECRET)
    body = assert_operation(
        await post_op(client, auth, "refund", "20.000"), "refund", "20.000", "refund_queued"
    )
    reference = body["reference_number"]
    refund_id = fake_myfatoorah.refunds(invoice)[0]["RefundId"]

    forged, headers = signed_refund_event(
        reference, invoice, refund_id, "REFUNDED", "20.000", secret="not-the-secret"
    )
    refused = await client.post(
        "/b/pg/notifications/myfatoorah-kwd", content=forged, headers=headers
    )
    assert refused.status_code == 401
    assert await states(seed) == ["queued"]

    # A genuine event is only a hint: PayOps asks MyFatoorah, which has not executed it yet.
    event, headers = signed_refund_event(reference, invoice, refund_id, "REFUNDED", "20.000")
    early = await client.post("/b/pg/notifications/myfatoorah-kwd", content=event, headers=headers)
    assert early.status_code == 200
    assert await states(seed) == ["queued"]

    fake_myfatoorah.settle_refund(invoice, "Refunded")
    done = await client.post("/b/pg/notifications/myfatoorah-kwd", content=event, headers=headers)
    assert done.status_code == 200
    assert await states(seed) == ["succeeded"]
    assert await totals(seed) == (0, 20_000, 0)


async def test_a_v2_refund_event_is_matched_by_its_refund_id(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], fake_myfatoorah: FakeMyFatoorah
) -> None:
    invoice = await myfatoorah_payment(seed, fake_myfatoorah, webhook_secret=WEBHOOK_SECRET)
    body = assert_operation(
        await post_op(client, auth, "refund", "15.000"), "refund", "15.000", "refund_queued"
    )
    refund_id = fake_myfatoorah.refunds(invoice)[0]["RefundId"]
    fake_myfatoorah.settle_refund(invoice, "Refunded")
    # No referenced invoice in the event: only Refund.Id (MakeRefund's RefundId) names ours.
    event, headers = signed_refund_event(
        body["reference_number"], None, refund_id, "REFUNDED", "15.000"
    )
    answer = await client.post("/b/pg/notifications/myfatoorah-kwd", content=event, headers=headers)
    assert answer.status_code == 200
    assert await states(seed) == ["succeeded"]


async def test_a_notification_nested_too_deeply_is_refused_not_500(
    client: httpx.AsyncClient, seed: Seed, fake_myfatoorah: FakeMyFatoorah
) -> None:
    # Read before the signature can be checked, so anyone could send it: it raised
    # RecursionError (500) instead of being refused like any body that is not a notification.
    await myfatoorah_payment(seed, fake_myfatoorah, webhook_secret=WEBHOOK_SECRET)
    before = await states(seed)
    for body in (b"[" * 5000 + b"]" * 5000, b'{"Data":' * 3000 + b"{}" + b"}" * 3000):
        response = await client.post(
            "/b/pg/notifications/myfatoorah-kwd",
            content=body,
            headers={"MyFatoorah-Signature": "x", "Content-Type": "application/json"},
        )
        assert response.status_code == 401, response.status_code
    assert await states(seed) == before


# -- credentials ----------------------------------------------------------------------------------


async def test_credentials_never_appear_in_responses(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], fake_myfatoorah: FakeMyFatoorah
) -> None:
    fake_myfatoorah.hang_seconds = 1.5
    await myfatoorah_payment(seed, fake_myfatoorah, timeout=TIMEOUT)
    responses = [
        await post_op(client, auth, "refund", "1.000"),
        await post_op(client, auth, "capture", "1.000"),  # not allowed: paid
        await client.post("/b/pbl/v1/inquiry/ORD-1", headers=auth),
    ]
    fake_myfatoorah.fail_next("timeout", endpoint="/v2/MakeRefund")
    responses.append(await post_op(client, auth, "refund", "2.000"))
    fake_myfatoorah.fail_next("decline", endpoint="/v2/MakeRefund")
    responses.append(await post_op(client, auth, "refund", "3.000"))
    assert [r.status_code for r in responses] == [200, 400, 200, 504, 400]
    for response in responses:
        assert TEST_API_TOKEN not in response.text
        assert "Bearer" not in response.text
