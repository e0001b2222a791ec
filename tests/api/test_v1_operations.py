"""HTTP tests for ``POST /b/pbl/v1/operation/{order_no}`` (spec ottu-api.md §3.4, §4.2, §4.3, §4.5, §6;
decisions.md §3–§6, §8).

Every test runs on SQLite and PostgreSQL (the ``backend`` fixture). Transactions are paid at the
built-in sandbox gateway, whose operation outcome is chosen by the last three digits of the amount
in minor units: 991 declined, 992 refund queued, 993 done but the reply is lost, 994 timeout with
nothing done, 995 HTTP 500 with nothing done.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from payops.connectors.sandbox.connector import SandboxConnector
from payops.db.models import Operation
from payops.webhooks.signing import sign
from tests.e2e import post_op
from tests.helpers import DECLINED_CARD, PENDING_CARD, Seed

DONE = "Operation done successfully"
NOT_ALLOWED = "Operation is not allowed"
NOT_SUPPORTED = "Operation is not supported by the payment gateway"
FOREIGN_CURRENCY = "Operations are not available for payments made in a foreign currency"
ORDER_NOT_FOUND = "Order number does not exist"
UNCONFIRMED = "The payment gateway did not confirm the operation; it will be reconciled"
TRACKING_IN_PROGRESS = "An operation with this Tracking-Key is in progress"
TRACKING_MISMATCH = {
    "detail": "This Tracking-Key was used for a different request",
    "operation": "operation_tracking",
    "result": "failed",
}
SANDBOX_DECLINE = "Declined by the sandbox issuer"

# ExternalOperation: the keys the spec marks required (ottu-api.md §4.3).
EXTERNAL_REQUIRED = {
    "amount",
    "operation",
    "order_no",
    "pg_params",
    "pg_response",
    "reference_number",
    "result",
    "session_id",
    "signature",
    "source",
    "success",
    "timestamp_utc",
    "txn",
}
CHILD_STATE = {"capture": "paid", "refund": "refunded", "void": "voided"}
SESSION_ID = re.compile(r"[0-9a-f]{40}")
TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")


# -- helpers ------------------------------------------------------------------------------------


def failure(detail: str, operation: str) -> dict[str, str]:
    return {"detail": detail, "operation": operation, "result": "failed"}


def exceeds(kind: str, amount: str, currency: str) -> str:
    return f"Amount exceeds the {kind} amount ({amount} {currency})"


async def totals(seed: Seed, order_no: str = "ORD-1") -> tuple[int, int, int]:
    """(captured, refunded, voided) on the parent, after checking they equal the sum of the
    succeeded child operations (decisions §3: totals are kept on the parent)."""
    parent = await seed.find(order_no)
    assert parent is not None
    operations = await seed.operations(order_no)

    def succeeded(kind: str) -> int:
        return sum(
            op.amount for op in operations if op.operation == kind and op.state == "succeeded"
        )

    stored = (parent.captured, parent.refunded, parent.voided)
    assert stored == (succeeded("capture"), succeeded("refund"), succeeded("void"))
    return stored


async def only_operation(seed: Seed, order_no: str = "ORD-1") -> Operation:
    operations = await seed.operations(order_no)
    assert len(operations) == 1, operations
    return operations[0]


@pytest.fixture
def gateway_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every capture/refund/void the sandbox gateway is asked to perform: (operation, minor units)."""
    calls: list[tuple[str, int]] = []
    original = SandboxConnector.run

    async def spy(self: SandboxConnector, request: Any) -> Any:
        calls.append((request.operation, request.amount))
        return await original(self, request)

    monkeypatch.setattr(SandboxConnector, "run", spy)
    return calls


@pytest.fixture
async def auth(seed: Seed) -> dict[str, str]:
    return await seed.superuser()


# -- success bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("slash", [False, True], ids=["no-slash", "slash"])
@pytest.mark.parametrize(
    ("mode", "operation", "amount", "expected_amount"),
    [
        ("authorize", "capture", "40.000", "40.000"),
        ("purchase", "refund", "25.000", "25.000"),
        # void covers the whole authorization with its fee; a given amount is ignored
        ("authorize", "void", "1.000", "102.000"),
    ],
)
async def test_external_operation_success_body(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    slash: bool,
    mode: str,
    operation: str,
    amount: str,
    expected_amount: str,
) -> None:
    parent = await seed.transaction("100.000", "KWD", mode=mode, fee="2.000")
    response = await post_op(client, auth, operation, amount, slash=slash)

    assert response.status_code == 200, response.text
    body = response.json()
    assert EXTERNAL_REQUIRED <= body.keys()
    stored = await only_operation(seed)
    assert stored.state == "succeeded"
    assert body["operation"] == operation
    assert body["amount"] == expected_amount
    assert body["session_id"] == parent.session_id
    assert body["order_no"] == "ORD-1"
    assert body["reference_number"] == stored.reference_number
    assert body["pg_code"] == f"sandbox-{mode}-kwd"
    assert body["is_sandbox"] is True
    assert body["source"] == "input"
    assert body["success"] is True
    assert body["result"] == "success"
    assert TIMESTAMP.fullmatch(body["timestamp_utc"])
    assert isinstance(body["pg_response"], dict) and body["pg_response"]
    assert isinstance(body["pg_params"], dict)
    txn = body["txn"]
    assert txn["amount"] == expected_amount
    assert txn["currency_code"] == "KWD"
    assert txn["state"] == CHILD_STATE[operation]
    assert SESSION_ID.fullmatch(txn["session_id"])
    assert txn["session_id"] != parent.session_id
    assert txn["session_id"] == stored.child_session_id

    after = await seed.find()
    assert after is not None
    assert after.state == parent.state  # the parent's state never changes (decisions §3)
    expected_minor = int(expected_amount.replace(".", ""))
    assert (
        await totals(seed)
        == {
            "capture": (expected_minor, 0, 0),
            "refund": (0, expected_minor, 0),
            "void": (0, 0, expected_minor),
        }[operation]
    )


async def test_children_have_distinct_session_ids(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    parent = await seed.transaction("100.000", "KWD")
    children = set()
    for amount in ("1.000", "2.000", "3.000"):
        response = await post_op(client, auth, "refund", amount)
        assert response.status_code == 200, response.text
        children.add(response.json()["txn"]["session_id"])
    assert len(children) == 3
    assert parent.session_id not in children
    assert all(SESSION_ID.fullmatch(sid) for sid in children)


@pytest.mark.parametrize("slash", [False, True], ids=["no-slash", "slash"])
@pytest.mark.parametrize("state", ["created", "pending", "attempted", "cod"])
async def test_cancel_succeeds_in_cancelable_states(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], state: str, slash: bool
) -> None:
    card = {"created": None, "pending": PENDING_CARD, "attempted": DECLINED_CARD, "cod": None}[
        state
    ]
    await seed.transaction("10.000", card=card)
    if state == "cod":
        await seed.set_state("ORD-1", "cod")
    parent = await seed.find()
    assert parent is not None and parent.state == state

    response = await post_op(client, auth, "cancel", slash=slash)

    assert response.status_code == 200, response.text
    assert response.json() == {
        "detail": DONE,
        "message": DONE,
        "operation": "cancel",
        "result": "success",
    }
    after = await seed.find()
    assert after is not None and after.state == "canceled"


async def test_cancel_pending_without_attempts(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("10.000", card=None)
    await seed.set_state("ORD-1", "pending")
    response = await post_op(client, auth, "cancel")
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "success"
    after = await seed.find()
    assert after is not None and after.state == "canceled"


@pytest.mark.parametrize("state", ["paid", "authorized", "canceled"])
async def test_cancel_refused_after_payment_or_cancel(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], state: str
) -> None:
    mode = "authorize" if state == "authorized" else "purchase"
    await seed.transaction(
        "10.000", mode=mode, card=None if state == "canceled" else "4111111111111111"
    )
    if state == "canceled":
        await seed.set_state("ORD-1", "canceled")
    before = await seed.snapshot()

    response = await post_op(client, auth, "cancel")

    assert response.status_code == 400
    assert response.json() == failure(NOT_ALLOWED, "cancel")
    assert await seed.snapshot() == before


# -- amounts: omitted, partial, over the limit --------------------------------------------------


async def test_partial_refunds_then_over_refund_names_the_remainder(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", "KWD")
    for amount, refunded in (("10.000", 10_000), ("15.500", 25_500)):
        response = await post_op(client, auth, "refund", amount)
        assert response.status_code == 200, response.text
        assert response.json()["amount"] == amount
        assert await totals(seed) == (0, refunded, 0)

    before = await seed.snapshot()
    over = await post_op(client, auth, "refund", "74.501")
    assert over.status_code == 400
    assert over.json() == failure(exceeds("refundable", "74.500", "KWD"), "refund")
    assert await seed.snapshot() == before

    exact = await post_op(client, auth, "refund", "74.500")
    assert exact.status_code == 200, exact.text
    assert await totals(seed) == (0, 100_000, 0)


async def test_omitted_amount_refunds_all_that_is_left_but_never_the_fee(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", "KWD", fee="2.000")
    first = await post_op(client, auth, "refund", "30.000")
    assert first.status_code == 200, first.text

    rest = await post_op(client, auth, "refund")

    assert rest.status_code == 200, rest.text
    assert rest.json()["amount"] == "70.000"
    assert rest.json()["txn"]["amount"] == "70.000"
    assert await totals(seed) == (0, 100_000, 0)
    nothing_left = await post_op(client, auth, "refund", "0.001")
    assert nothing_left.status_code == 400
    assert nothing_left.json() == failure(exceeds("refundable", "0.000", "KWD"), "refund")


async def test_omitted_amount_captures_everything_including_the_fee(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", "KWD", mode="authorize", fee="2.000")

    response = await post_op(client, auth, "capture")

    assert response.status_code == 200, response.text
    assert response.json()["amount"] == "102.000"
    assert response.json()["txn"]["state"] == "paid"
    assert await totals(seed) == (102_000, 0, 0)


async def test_capture_beyond_capturable_is_refused(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", "KWD", mode="authorize", fee="2.000")
    assert (await post_op(client, auth, "capture", "40.000")).status_code == 200
    assert await totals(seed) == (40_000, 0, 0)

    before = await seed.snapshot()
    over = await post_op(client, auth, "capture", "62.001")
    assert over.status_code == 400
    assert over.json() == failure(exceeds("capturable", "62.000", "KWD"), "capture")
    assert await seed.snapshot() == before

    rest = await post_op(client, auth, "capture")
    assert rest.status_code == 200, rest.text
    assert rest.json()["amount"] == "62.000"
    assert await totals(seed) == (102_000, 0, 0)
    nothing_left = await post_op(client, auth, "capture", "0.001")
    assert nothing_left.status_code == 400
    assert nothing_left.json() == failure(exceeds("capturable", "0.000", "KWD"), "capture")


async def test_refund_of_an_authorization_is_limited_to_what_was_captured(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", "KWD", mode="authorize")
    assert (await post_op(client, auth, "capture", "30.000")).status_code == 200

    over = await post_op(client, auth, "refund", "30.001")
    assert over.status_code == 400
    assert over.json() == failure(exceeds("refundable", "30.000", "KWD"), "refund")

    rest = await post_op(client, auth, "refund")
    assert rest.status_code == 200, rest.text
    assert rest.json()["amount"] == "30.000"
    assert rest.json()["txn"]["state"] == "refunded"
    assert await totals(seed) == (30_000, 30_000, 0)


@pytest.mark.parametrize(
    ("currency", "amount", "bad_amount"),
    [("JPY", "1000", "1.5"), ("USD", "50.00", "1.001"), ("KWD", "20.000", "1.0001")],
)
async def test_amount_with_more_decimals_than_the_currency_is_a_field_error(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    currency: str,
    amount: str,
    bad_amount: str,
) -> None:
    await seed.transaction(amount, currency)
    before = await seed.snapshot()
    response = await post_op(client, auth, "refund", bad_amount)
    assert response.status_code == 400
    assert list(response.json()) == ["amount"]
    assert all(isinstance(m, str) and m for m in response.json()["amount"])
    assert await seed.snapshot() == before


# -- currencies ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("currency", "amount", "partial", "rest", "zero"),
    [
        ("JPY", "1000", "300", "700", "0"),
        ("USD", "50.00", "12.50", "37.50", "0.00"),
        ("KWD", "20.000", "5.250", "14.750", "0.000"),
    ],
)
async def test_purchase_refund_flow_formats_amounts_in_the_currency(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    currency: str,
    amount: str,
    partial: str,
    rest: str,
    zero: str,
) -> None:
    await seed.transaction(amount, currency)

    first = await post_op(client, auth, "refund", partial)
    assert first.status_code == 200, first.text
    assert (first.json()["amount"], first.json()["txn"]["amount"]) == (partial, partial)
    assert first.json()["txn"]["currency_code"] == currency

    second = await post_op(client, auth, "refund")
    assert second.status_code == 200, second.text
    assert second.json()["amount"] == rest

    parent = await seed.find()
    assert parent is not None
    assert (await totals(seed))[1] == parent.amount
    over = await post_op(client, auth, "refund", partial)
    assert over.status_code == 400
    assert over.json() == failure(exceeds("refundable", zero, currency), "refund")


@pytest.mark.parametrize(
    ("currency", "amount", "fee", "capture", "capture_rest", "refund_all"),
    [
        ("JPY", "1000", "50", "400", "650", "1000"),
        ("USD", "50.00", "1.50", "20.00", "31.50", "50.00"),
    ],
)
async def test_authorize_capture_refund_flow_in_the_currency(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    currency: str,
    amount: str,
    fee: str,
    capture: str,
    capture_rest: str,
    refund_all: str,
) -> None:
    await seed.transaction(amount, currency, mode="authorize", fee=fee)

    first = await post_op(client, auth, "capture", capture)
    assert first.status_code == 200, first.text
    assert first.json()["amount"] == capture
    rest = await post_op(client, auth, "capture")
    assert rest.status_code == 200, rest.text
    assert rest.json()["amount"] == capture_rest
    refund = await post_op(client, auth, "refund")
    assert refund.status_code == 200, refund.text
    assert refund.json()["amount"] == refund_all  # min(captured, amount): never the fee

    parent = await seed.find()
    assert parent is not None
    assert await totals(seed) == (parent.amount + parent.fee, parent.amount, 0)


async def test_void_in_jpy(client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]) -> None:
    await seed.transaction("1000", "JPY", mode="authorize", fee="20")
    response = await post_op(client, auth, "void")
    assert response.status_code == 200, response.text
    txn = response.json()["txn"]
    assert response.json()["amount"] == "1020"
    assert (txn["amount"], txn["currency_code"], txn["state"]) == ("1020", "JPY", "voided")
    assert await totals(seed) == (0, 0, 1020)


# -- state rules ----------------------------------------------------------------------------------


async def test_void_after_capture_is_refused(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", mode="authorize")
    assert (await post_op(client, auth, "capture", "10.000")).status_code == 200
    before = await seed.snapshot()

    response = await post_op(client, auth, "void")

    assert response.status_code == 400
    assert response.json() == failure(NOT_ALLOWED, "void")
    assert await seed.snapshot() == before


@pytest.mark.parametrize("operation", ["capture", "refund", "void"])
async def test_nothing_runs_after_a_void(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], operation: str
) -> None:
    await seed.transaction("100.000", mode="authorize")
    assert (await post_op(client, auth, "void")).status_code == 200
    before = await seed.snapshot()

    response = await post_op(client, auth, operation, "10.000")

    assert response.status_code == 400
    assert response.json() == failure(NOT_ALLOWED, operation)
    assert await seed.snapshot() == before
    assert await totals(seed) == (0, 0, 100_000)


async def test_refund_of_an_uncaptured_authorization_is_refused(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", mode="authorize")
    before = await seed.snapshot()
    response = await post_op(client, auth, "refund", "10.000")
    assert response.status_code == 400
    assert response.json() == failure(NOT_ALLOWED, "refund")
    assert await seed.snapshot() == before


async def test_capture_of_a_purchase_is_refused(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", mode="purchase")
    for operation in ("capture", "void"):
        response = await post_op(client, auth, operation, "10.000")
        assert response.status_code == 400
        assert response.json() == failure(NOT_ALLOWED, operation)


async def _transaction_in_state(seed: Seed, state: str, mode: str) -> None:
    if state == "created":
        await seed.transaction("100.000", mode=mode, card=None)
    elif state == "pending":
        await seed.transaction("100.000", mode=mode, card=PENDING_CARD)
    elif state == "failed":
        await seed.transaction(
            "100.000",
            mode=mode,
            card=DECLINED_CARD,
            gateway_code=f"single-attempt-{mode}",
            multi_attempt=False,
        )
    else:
        await seed.transaction("100.000", mode=mode, card=None)
        await seed.set_state("ORD-1", state)
    parent = await seed.find()
    assert parent is not None and parent.state == state


@pytest.mark.parametrize("state", ["created", "pending", "failed", "canceled"])
@pytest.mark.parametrize(
    ("operation", "mode"), [("capture", "authorize"), ("refund", "purchase"), ("void", "authorize")]
)
async def test_external_operation_is_refused_before_payment(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    gateway_calls: list[Any],
    state: str,
    operation: str,
    mode: str,
) -> None:
    await _transaction_in_state(seed, state, mode)
    before = await seed.snapshot()

    response = await post_op(client, auth, operation, "10.000")

    assert response.status_code == 400
    assert response.json() == failure(NOT_ALLOWED, operation)
    assert await seed.snapshot() == before
    assert gateway_calls == []


# -- refusals: unknown order, gateway support, foreign currency ----------------------------------


@pytest.mark.parametrize("slash", [False, True], ids=["no-slash", "slash"])
@pytest.mark.parametrize("operation", ["capture", "refund", "void", "cancel"])
async def test_unknown_order_number(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], operation: str, slash: bool
) -> None:
    await seed.transaction("100.000")
    response = await post_op(client, auth, operation, order_no="NO-SUCH-ORDER", slash=slash)
    assert response.status_code == 400
    assert response.json() == failure(ORDER_NOT_FOUND, operation)


@pytest.mark.parametrize(
    ("operation", "mode", "enabled"),
    [
        ("capture", "authorize", ["refund", "inquiry"]),
        ("void", "authorize", ["refund", "inquiry"]),
        ("refund", "purchase", ["capture", "inquiry"]),
    ],
)
async def test_operation_disabled_on_the_gateway(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    gateway_calls: list[Any],
    operation: str,
    mode: str,
    enabled: list[str],
) -> None:
    await seed.transaction("100.000", mode=mode, enabled_operations=enabled)
    before = await seed.snapshot()

    response = await post_op(client, auth, operation, "10.000")

    assert response.status_code == 400
    assert response.json() == failure(NOT_SUPPORTED, operation)
    assert await seed.snapshot() == before
    assert gateway_calls == []


@pytest.mark.parametrize(
    ("operation", "mode"), [("capture", "authorize"), ("refund", "purchase"), ("void", "authorize")]
)
async def test_foreign_currency_payment_is_refused(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    gateway_calls: list[Any],
    operation: str,
    mode: str,
) -> None:
    parent = await seed.transaction(
        "10.00", "USD", mode=mode, gateway_currency="KWD", accepted_currencies=["USD"]
    )
    assert parent.state == ("authorized" if mode == "authorize" else "paid")
    before = await seed.snapshot()

    response = await post_op(client, auth, operation, "1.00")

    assert response.status_code == 400
    assert response.json() == failure(FOREIGN_CURRENCY, operation)
    assert await seed.snapshot() == before
    assert gateway_calls == []


# -- the gateway's answer: declined, unconfirmed, queued ----------------------------------------


@pytest.mark.parametrize(
    ("mode", "currency", "txn_amount", "operation", "amount"),
    [
        ("purchase", "KWD", "100.000", "refund", "0.991"),
        ("authorize", "KWD", "100.000", "capture", "0.991"),
        ("authorize", "KWD", "100.991", "void", None),
        ("purchase", "JPY", "5000", "refund", "991"),
        ("purchase", "USD", "50.00", "refund", "9.91"),
    ],
)
async def test_gateway_decline_is_a_failure_with_the_gateways_reply(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    mode: str,
    currency: str,
    txn_amount: str,
    operation: str,
    amount: str | None,
) -> None:
    await seed.transaction(txn_amount, currency, mode=mode)

    response = await post_op(client, auth, operation, amount)

    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == SANDBOX_DECLINE
    assert body["operation"] == operation
    assert body["result"] == "failed"
    assert isinstance(body["pg_response"], dict)
    assert body["pg_response"]["result"] == "DECLINED"
    stored = await only_operation(seed)
    assert stored.state == "failed"  # no child, nothing reserved
    assert body["pg_response"]["reference"] == stored.reference_number
    assert await totals(seed) == (0, 0, 0)

    # nothing stays reserved: the declined amount can be operated on again
    retry = await post_op(
        client,
        auth,
        *{
            "refund": ("refund", None),
            "capture": ("capture", None),
            "void": ("capture", "1.000"),
        }[operation],
    )
    assert retry.status_code == 200, retry.text


@pytest.mark.parametrize("trigger", ["993", "994", "995"])
async def test_unconfirmed_refund_answers_504_and_stays_reserved(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], trigger: str
) -> None:
    await seed.transaction("100.000", "KWD")
    amount = f"0.{trigger}"

    response = await post_op(client, auth, "refund", amount)

    assert response.status_code == 504
    stored = await only_operation(seed)
    assert response.json() == {
        "detail": UNCONFIRMED,
        "operation": "refund",
        "result": "pending",
        "reference_number": stored.reference_number,
    }
    assert stored.state == "processing"
    assert stored.amount == int(trigger)
    assert await totals(seed) == (0, 0, 0)

    remaining = f"{100 - int(trigger) / 1000:.3f}"
    full = await post_op(client, auth, "refund", "100.000")
    assert full.status_code == 400
    assert full.json() == failure(exceeds("refundable", remaining, "KWD"), "refund")
    rest = await post_op(client, auth, "refund")
    assert rest.status_code == 200, rest.text
    assert rest.json()["amount"] == remaining
    assert await totals(seed) == (0, 100_000 - int(trigger), 0)
    assert (await seed.operations())[0].state == "processing"


@pytest.mark.parametrize("trigger", ["993", "994", "995"])
async def test_unconfirmed_capture_answers_504_and_blocks_a_void(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], trigger: str
) -> None:
    await seed.transaction("100.000", "KWD", mode="authorize")

    response = await post_op(client, auth, "capture", f"1.{trigger}")

    assert response.status_code == 504
    stored = await only_operation(seed)
    assert response.json() == {
        "detail": UNCONFIRMED,
        "operation": "capture",
        "result": "pending",
        "reference_number": stored.reference_number,
    }
    assert stored.state == "processing"
    assert await totals(seed) == (0, 0, 0)

    void = await post_op(client, auth, "void")
    assert void.status_code == 400
    assert void.json() == failure(NOT_ALLOWED, "void")
    remaining = f"{100 - 1 - int(trigger) / 1000:.3f}"
    over = await post_op(client, auth, "capture", "100.000")
    assert over.status_code == 400
    assert over.json() == failure(exceeds("capturable", remaining, "KWD"), "capture")


async def test_unconfirmed_void_answers_504_and_blocks_a_capture(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.994", "KWD", mode="authorize")

    response = await post_op(client, auth, "void")

    assert response.status_code == 504
    stored = await only_operation(seed)
    assert response.json()["result"] == "pending"
    assert response.json()["reference_number"] == stored.reference_number
    assert stored.state == "processing"
    capture = await post_op(client, auth, "capture", "1.000")
    assert capture.status_code == 400
    assert capture.json() == failure(NOT_ALLOWED, "capture")
    assert await totals(seed) == (0, 0, 0)


async def test_queued_refund_answers_200_refund_queued_and_stays_reserved(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], gateway_calls: list[Any]
) -> None:
    await seed.transaction("100.000", "KWD")

    response = await post_op(client, auth, "refund", "0.992", tracking_key="queued-1")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["txn"]["state"] == "refund_queued"
    assert body["success"] is True
    assert body["amount"] == "0.992"
    stored = await only_operation(seed)
    assert stored.state == "queued"
    assert await totals(seed) == (0, 0, 0)  # not refunded yet, but held

    full = await post_op(client, auth, "refund", "100.000")
    assert full.status_code == 400
    assert full.json() == failure(exceeds("refundable", "99.008", "KWD"), "refund")

    replay = await post_op(client, auth, "refund", "0.992", tracking_key="queued-1")
    assert replay.status_code == 200, replay.text
    assert replay.json() == body
    other = await post_op(client, auth, "refund", "5.000", tracking_key="queued-1")
    assert (other.status_code, other.json()) == (409, TRACKING_MISMATCH)
    assert gateway_calls == [("refund", 992)]


# -- operation webhook (decisions §5 step 4, §10) -------------------------------------------------

WEBHOOK_URL = "https://merchant.example.com/webhook"


async def test_successful_operation_writes_the_operation_webhook(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    parent = await seed.transaction("100.000", "KWD", webhook_url=WEBHOOK_URL)

    response = await post_op(client, auth, "refund", "10.000")

    assert response.status_code == 200, response.text
    events = [event for event in await seed.outbox() if event.kind == "operation"]
    assert [(event.target_url, event.transaction_id) for event in events] == [
        (WEBHOOK_URL, parent.id)
    ]
    assert events[0].payload == response.json()


@pytest.mark.parametrize("amount", ["0.991", "0.994"], ids=["declined", "unconfirmed"])
async def test_no_operation_webhook_without_an_outcome_to_report(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], amount: str
) -> None:
    await seed.transaction("100.000", "KWD", webhook_url=WEBHOOK_URL)
    response = await post_op(client, auth, "refund", amount)
    assert response.status_code in (400, 504)
    assert [event for event in await seed.outbox() if event.kind == "operation"] == []


# -- Tracking-Key (decisions §6) ----------------------------------------------------------------


async def test_tracking_key_replays_the_stored_response_without_a_gateway_call(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], gateway_calls: list[Any]
) -> None:
    await seed.transaction("100.000", "KWD")
    first = await post_op(client, auth, "refund", "10.000", tracking_key="key-1")
    assert first.status_code == 200, first.text

    # The same request, the amount written in any way that normalises to the same value.
    replays = [
        await post_op(client, auth, "refund", "10.000", tracking_key="key-1"),
        await post_op(client, auth, "refund", "10", tracking_key="key-1", slash=True),
        await post_op(client, auth, "refund", "10.0", tracking_key="key-1"),
    ]

    for replay in replays:
        assert replay.status_code == 200, replay.text
        assert replay.json() == first.json()
    assert gateway_calls == [("refund", 10_000)]
    assert len(await seed.operations()) == 1
    assert await totals(seed) == (0, 10_000, 0)


async def test_tracking_key_replay_is_the_stored_response_after_later_operations(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", "KWD")
    first = await post_op(client, auth, "refund", "10.000", tracking_key="key-1")
    assert first.status_code == 200, first.text
    assert (await post_op(client, auth, "refund", "5.000")).status_code == 200

    replay = await post_op(client, auth, "refund", "10.000", tracking_key="key-1")

    assert replay.status_code == 200
    assert replay.json() == first.json()


async def test_tracking_key_is_bound_to_the_operation_and_amount(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], gateway_calls: list[Any]
) -> None:
    """decisions §13: a different operation or amount under a used key → 409, nothing sent."""
    await seed.transaction("100.000", "KWD", mode="authorize")
    first = await post_op(client, auth, "capture", "10.000", tracking_key="key-1")
    assert first.status_code == 200, first.text
    before = await seed.snapshot()

    for operation, amount in (
        ("void", None),
        ("capture", "20.000"),
        ("capture", None),
        ("refund", "10.000"),
        ("capture", "10.001"),
    ):
        response = await post_op(client, auth, operation, amount, tracking_key="key-1")
        assert (response.status_code, response.json()) == (409, TRACKING_MISMATCH), (
            operation,
            amount,
            response.text,
        )
    assert await seed.snapshot() == before
    assert gateway_calls == [("capture", 10_000)]
    assert await totals(seed) == (10_000, 0, 0)


async def test_tracking_key_without_amount_matches_only_without_amount(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], gateway_calls: list[Any]
) -> None:
    await seed.transaction("100.000", "KWD")
    everything = await post_op(client, auth, "refund", tracking_key="all")
    assert everything.status_code == 200 and everything.json()["amount"] == "100.000"
    replay = await post_op(client, auth, "refund", tracking_key="all")
    assert replay.status_code == 200 and replay.json() == everything.json()
    explicit = await post_op(client, auth, "refund", "100.000", tracking_key="all")
    assert (explicit.status_code, explicit.json()) == (409, TRACKING_MISMATCH)
    assert gateway_calls == [("refund", 100_000)]


async def test_tracking_key_replay_never_shows_another_operation_to_its_caller(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], gateway_calls: list[Any]
) -> None:
    """A user who may only capture, sending a refund's key, gets no refund body back."""
    await seed.transaction("100.000", "KWD", mode="authorize")
    assert (await post_op(client, auth, "capture", "50.000")).status_code == 200
    refund = await post_op(client, auth, "refund", "5.000", tracking_key="key-r")
    assert refund.status_code == 200, refund.text
    capturer = await seed.user("capturer", permissions=["payment.capture"])

    response = await post_op(client, capturer, "capture", "5.000", tracking_key="key-r")

    assert (response.status_code, response.json()) == (409, TRACKING_MISMATCH)
    assert refund.json()["reference_number"] not in response.text
    refused = await post_op(client, capturer, "refund", "5.000", tracking_key="key-r")
    assert refused.status_code == 403  # and no replay without payment.refund
    assert gateway_calls == [("capture", 50_000), ("refund", 5_000)]


async def test_tracking_key_of_a_failed_operation_is_free_to_reuse(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], gateway_calls: list[Any]
) -> None:
    await seed.transaction("100.000", "KWD")
    declined = await post_op(client, auth, "refund", "0.991", tracking_key="key-1")
    assert declined.status_code == 400

    retry = await post_op(client, auth, "refund", "5.000", tracking_key="key-1")

    assert retry.status_code == 200, retry.text
    assert retry.json()["amount"] == "5.000"
    assert [op.state for op in await seed.operations()] == ["failed", "succeeded"]
    assert gateway_calls == [("refund", 991), ("refund", 5_000)]
    assert await totals(seed) == (0, 5_000, 0)


async def test_tracking_key_of_a_refused_request_is_free_to_reuse(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", "KWD")
    refused = await post_op(client, auth, "refund", "500.000", tracking_key="key-1")
    assert refused.status_code == 400

    retry = await post_op(client, auth, "refund", "5.000", tracking_key="key-1")

    assert retry.status_code == 200, retry.text
    assert await totals(seed) == (0, 5_000, 0)


@pytest.mark.parametrize("trigger", ["993", "994", "995"])
async def test_tracking_key_of_an_operation_in_progress_is_409(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    gateway_calls: list[Any],
    trigger: str,
) -> None:
    await seed.transaction("100.000", "KWD")
    pending = await post_op(client, auth, "refund", f"0.{trigger}", tracking_key="key-1")
    assert pending.status_code == 504
    before = await seed.snapshot()

    again = await post_op(client, auth, "refund", f"0.{trigger}", tracking_key="key-1")

    assert again.status_code == 409
    assert again.json() == {
        "detail": TRACKING_IN_PROGRESS,
        "operation": "operation_tracking",
        "result": "failed",
    }
    other = await post_op(client, auth, "refund", "5.000", tracking_key="key-1")
    assert (other.status_code, other.json()) == (409, TRACKING_MISMATCH)
    assert await seed.snapshot() == before
    assert gateway_calls == [("refund", int(trigger))]


async def test_tracking_key_is_scoped_to_one_transaction(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], gateway_calls: list[Any]
) -> None:
    await seed.transaction("100.000", "KWD", order_no="ORD-1")
    await seed.transaction("100.000", "KWD", order_no="ORD-2")

    one = await post_op(client, auth, "refund", "10.000", order_no="ORD-1", tracking_key="shared")
    two = await post_op(client, auth, "refund", "20.000", order_no="ORD-2", tracking_key="shared")

    assert (one.status_code, two.status_code) == (200, 200)
    assert two.json()["amount"] == "20.000"
    assert two.json()["order_no"] == "ORD-2"
    assert gateway_calls == [("refund", 10_000), ("refund", 20_000)]
    assert await totals(seed, "ORD-1") == (0, 10_000, 0)
    assert await totals(seed, "ORD-2") == (0, 20_000, 0)


# -- initiator, audit trail, signature, permissions ---------------------------------------------


async def test_basic_user_is_the_initiator_and_is_audited(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    auth = await seed.user("merchant", permissions=["payment.refund"])
    parent = await seed.transaction("100.000", "KWD")

    response = await post_op(client, auth, "refund", "10.000")

    assert response.status_code == 200, response.text
    initiator = response.json()["initiator"]
    assert set(initiator) == {"id", "first_name", "last_name", "username", "email", "phone"}
    assert isinstance(initiator["id"], int)
    assert {k: v for k, v in initiator.items() if k != "id"} == {
        "first_name": "Mer",
        "last_name": "Chant",
        "username": "merchant",
        "email": "m@example.com",
        "phone": "",
    }
    entries = [e for e in await seed.audit() if e.action == "refund"]
    # Who asked (the intent), then how it ended (the settlement, recorded by PayOps itself).
    assert [(e.actor_type, e.actor, e.result) for e in entries] == [
        ("user", "merchant", "intent"),
        ("system", "settlement", "succeeded"),
    ]
    for entry in entries:
        assert entry.transaction_id == parent.id
        assert entry.order_no == "ORD-1"
        assert entry.session_id == parent.session_id


async def test_api_key_initiator_is_empty(client: httpx.AsyncClient, seed: Seed) -> None:
    auth = await seed.api_key()
    await seed.transaction("100.000", "KWD")

    response = await post_op(client, auth, "refund", "10.000")

    assert response.status_code == 200, response.text
    assert response.json()["initiator"] == {}


@pytest.mark.parametrize(
    ("mode", "operation", "amount"),
    [
        ("purchase", "refund", "10.000"),
        ("authorize", "capture", "10.000"),
        ("authorize", "void", None),
    ],
)
async def test_response_is_signed_with_the_merchant_hmac_key(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    mode: str,
    operation: str,
    amount: str | None,
) -> None:
    await seed.set_hmac_key("k")
    await seed.transaction("100.000", "KWD", mode=mode)

    response = await post_op(client, auth, operation, amount)

    assert response.status_code == 200, response.text
    body = response.json()
    unsigned = {key: value for key, value in body.items() if key != "signature"}
    assert re.fullmatch(r"[0-9a-f]{64}", body["signature"])
    assert body["signature"] == sign(unsigned, "k")


@pytest.mark.parametrize(
    ("operation", "mode"),
    [
        ("capture", "authorize"),
        ("refund", "purchase"),
        ("void", "authorize"),
        ("cancel", "purchase"),
    ],
)
async def test_operation_needs_its_permission(
    client: httpx.AsyncClient, seed: Seed, operation: str, mode: str
) -> None:
    auth = await seed.user("clerk", permissions=["payment.inquiry"])
    await seed.transaction(
        "100.000", mode=mode, card=None if operation == "cancel" else "4111111111111111"
    )
    before = await seed.snapshot()

    response = await post_op(client, auth, operation, "1.000" if operation != "cancel" else None)

    assert response.status_code == 403
    assert response.json() == {"detail": "You do not have permission to perform this action."}
    assert await seed.snapshot() == before


async def test_operation_requires_authentication(client: httpx.AsyncClient, seed: Seed) -> None:
    await seed.transaction("100.000")
    response = await post_op(client, {}, "refund", "1.000")
    assert response.status_code == 401
    assert response.json() == {"detail": "Authentication credentials were not provided."}
