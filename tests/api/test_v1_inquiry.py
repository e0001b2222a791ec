"""HTTP tests for ``POST /b/pbl/v1/inquiry/{order_no}`` (spec ottu-api.md §3.5, §4.4, §4.5, §5, §6;
decisions.md §4, §8, §10).

Every test runs on SQLite and PostgreSQL (the ``backend`` fixture). Payments are made at the
sandbox gateway: card 4111111111111111 succeeds, 4000000000000002 is declined and
4000000000000259 stays pending until an inquiry reveals its success.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from payops.connectors.sandbox.connector import SandboxConnector
from payops.webhooks.signing import sign
from tests.helpers import DECLINED_CARD, PENDING_CARD, Seed

PATHS = ("/b/pbl/v1/inquiry/{}", "/b/pbl/v1/inquiry/{}/")
OPERATION_PATH = "/b/pbl/v1/operation/{}"

NOT_ALLOWED = "Operation is not allowed"
ORDER_NOT_FOUND = "Order number does not exist"
DISCLOSURE_URL = "https://merchant.example.com/disclose"
WEBHOOK_URL = "https://merchant.example.com/webhook"

# SchemaWebhook: the keys the spec marks required (ottu-api.md §4.4).
PAYMENT_REQUIRED = {
    "agreement",
    "amount",
    "amount_details",
    "card_acceptance_criteria",
    "currency_code",
    "customer_address_country",
    "fee",
    "gateway_account",
    "gateway_name",
    "gateway_response",
    "message",
    "paid_amount",
    "pg_params",
    "reference_number",
    "remaining_amount",
    "result",
    "settled_amount",
    "signature",
    "state",
    "timestamp_utc",
}


# -- helpers ------------------------------------------------------------------------------------


def inquiry_path(order_no: str = "ORD-1", *, slash: bool = False) -> str:
    return PATHS[slash].format(order_no)


async def inquire(
    client: httpx.AsyncClient,
    auth: dict[str, str],
    order_no: str = "ORD-1",
    *,
    json: dict[str, Any] | None = None,
    form: dict[str, str] | None = None,
    slash: bool = False,
) -> httpx.Response:
    """No ``json``/``form``: an empty body without a content type."""
    if json is not None:
        return await client.post(inquiry_path(order_no, slash=slash), json=json, headers=auth)
    if form is not None:
        return await client.post(inquiry_path(order_no, slash=slash), data=form, headers=auth)
    return await client.post(inquiry_path(order_no, slash=slash), headers=auth)


def failure(detail: str) -> dict[str, str]:
    return {"detail": detail, "result": "failed"}


async def disclosures(seed: Seed) -> list[Any]:
    return [event for event in await seed.outbox() if event.kind == "disclosure"]


@pytest.fixture
def gateway_inquiries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Reference numbers of the payment attempts the sandbox gateway is asked about."""
    calls: list[str] = []
    original = SandboxConnector.inquire_payment

    async def spy(self: SandboxConnector, payment: Any) -> Any:
        calls.append(payment.reference_number)
        return await original(self, payment)

    monkeypatch.setattr(SandboxConnector, "inquire_payment", spy)
    return calls


@pytest.fixture
async def auth(seed: Seed) -> dict[str, str]:
    return await seed.superuser()


# -- answered from storage: paid and authorized -------------------------------------------------

BODIES = {
    "empty": {},
    "json": {"json": {}},
    "json-no-disclosure": {"json": {"disclose_to_merchant": False}},
    "form": {"form": {"disclose_to_merchant": "false"}},
}


@pytest.mark.parametrize("slash", [False, True], ids=["no-slash", "slash"])
@pytest.mark.parametrize("body", list(BODIES))
async def test_paid_transaction_is_answered_from_storage(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    gateway_inquiries: list[str],
    slash: bool,
    body: str,
) -> None:
    parent = await seed.transaction("100.000", "KWD", fee="2.000")
    before = await seed.snapshot()

    response = await inquire(client, auth, slash=slash, **BODIES[body])

    assert response.status_code == 200, response.text
    data = response.json()
    assert PAYMENT_REQUIRED <= data.keys()
    assert data["state"] == "paid"
    assert data["result"] == "success"
    assert data["session_id"] == parent.session_id
    assert data["order_no"] == "ORD-1"
    assert data["currency_code"] == "KWD"
    assert data["amount"] == "100.000"
    assert data["amount_details"] == {
        "currency_code": "KWD",
        "amount": "100.000",
        "total": "102.000",
        "fee": "2.000",
    }
    assert data["fee"] == "2.000 KWD"
    assert data["paid_amount"] == "102.000"  # purchase: settled amount + fee
    assert data["settled_amount"] == "100.000"
    assert data["remaining_amount"] == "0.000"
    assert data["gateway_account"] == "sandbox-purchase-kwd"
    assert data["gateway_name"] == "sandbox"
    assert isinstance(data["gateway_response"], dict) and data["gateway_response"]
    assert data["transactions"] == []
    assert gateway_inquiries == []
    assert await seed.snapshot() == before


async def test_authorized_transaction_reports_captures(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], gateway_inquiries: list[str]
) -> None:
    await seed.transaction("100.000", "KWD", mode="authorize")
    fresh = await inquire(client, auth)
    assert fresh.status_code == 200, fresh.text
    assert (fresh.json()["state"], fresh.json()["result"]) == ("authorized", "success")
    assert fresh.json()["paid_amount"] == "0.000"  # authorize: total captured
    assert fresh.json()["settled_amount"] == "100.000"

    capture = await client.post(
        OPERATION_PATH.format("ORD-1"),
        json={"operation": "capture", "amount": "40.000"},
        headers=auth,
    )
    assert capture.status_code == 200, capture.text
    after = await inquire(client, auth)

    assert after.status_code == 200, after.text
    data = after.json()
    assert data["state"] == "authorized"
    assert data["paid_amount"] == "40.000"
    assert [
        (t["amount"], t["currency_code"], t["state"], t["session_id"]) for t in data["transactions"]
    ] == [("40.000", "KWD", "paid", capture.json()["txn"]["session_id"])]
    assert gateway_inquiries == []


async def test_refunds_are_listed_as_child_transactions(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    parent = await seed.transaction("100.000", "KWD")
    children = []
    for amount in ("10.000", "5.500"):
        refund = await client.post(
            OPERATION_PATH.format("ORD-1"),
            json={"operation": "refund", "amount": amount},
            headers=auth,
        )
        assert refund.status_code == 200, refund.text
        children.append(refund.json()["txn"]["session_id"])

    response = await inquire(client, auth)

    assert response.status_code == 200, response.text
    data = response.json()
    assert data["state"] == "paid"  # operations never change the parent's state
    assert data["refunded_amount"] == "15.500"
    transactions = data["transactions"]
    assert [
        (t["amount"], t["currency_code"], t["state"], t["order_no"], t["session_id"])
        for t in transactions
    ] == [
        ("10.000", "KWD", "refunded", "ORD-1", children[0]),
        ("5.500", "KWD", "refunded", "ORD-1", children[1]),
    ]
    assert parent.session_id not in children


async def test_inquiry_body_is_signed_with_the_merchant_hmac_key(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.set_hmac_key("k")
    await seed.transaction("100.000", "KWD")
    response = await inquire(client, auth)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["signature"] == sign({k: v for k, v in body.items() if k != "signature"}, "k")
    assert len(body["signature"]) == 64


@pytest.mark.parametrize(("currency", "amount"), [("JPY", "1000"), ("USD", "25.50")])
async def test_amounts_use_the_currency_decimals(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], currency: str, amount: str
) -> None:
    await seed.transaction(amount, currency)
    response = await inquire(client, auth)
    assert response.status_code == 200, response.text
    data = response.json()
    assert (data["amount"], data["settled_amount"], data["paid_amount"]) == (amount, amount, amount)
    assert data["currency_code"] == currency


# -- asking the gateway: pending, attempted -----------------------------------------------------


async def test_pending_payment_is_revealed_as_paid_and_stays_paid(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], gateway_inquiries: list[str]
) -> None:
    parent = await seed.transaction("100.000", "KWD", card=PENDING_CARD)
    assert parent.state == "pending"

    revealed = await inquire(client, auth)

    assert revealed.status_code == 200, revealed.text
    assert (revealed.json()["state"], revealed.json()["result"]) == ("paid", "success")
    assert revealed.json()["paid_amount"] == "100.000"
    assert len(gateway_inquiries) == 1
    stored = await seed.find()
    assert stored is not None and stored.state == "paid"
    assert stored.paid_total == 100_000

    again = await inquire(client, auth)  # now paid: answered from storage
    assert again.status_code == 200, again.text
    assert again.json()["state"] == "paid"
    assert len(gateway_inquiries) == 1


@pytest.mark.parametrize(("mode", "operation"), [("purchase", "refund"), ("authorize", "capture")])
async def test_payment_revealed_by_inquiry_can_be_operated_on(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], mode: str, operation: str
) -> None:
    await seed.transaction("100.000", "KWD", mode=mode, card=PENDING_CARD)
    assert (await inquire(client, auth)).status_code == 200

    response = await client.post(
        OPERATION_PATH.format("ORD-1"),
        json={"operation": operation, "amount": "1.000"},
        headers=auth,
    )

    assert response.status_code == 200, response.text
    assert response.json()["amount"] == "1.000"


async def test_pending_authorization_is_revealed_as_authorized(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", "KWD", mode="authorize", card=PENDING_CARD)
    response = await inquire(client, auth)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "authorized"
    stored = await seed.find()
    assert stored is not None and stored.state == "authorized"


async def test_declined_attempt_stays_attempted(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], gateway_inquiries: list[str]
) -> None:
    parent = await seed.transaction("100.000", "KWD", card=DECLINED_CARD)
    assert parent.state == "attempted"

    response = await inquire(client, auth)

    assert response.status_code == 200, response.text
    data = response.json()
    assert data["state"] == "attempted"
    assert data["result"] != "success"
    assert data["paid_amount"] == "0.000"
    assert len(gateway_inquiries) == 1
    stored = await seed.find()
    assert stored is not None
    assert (stored.state, stored.paid_total) == ("attempted", 0)


async def test_declined_single_attempt_stays_failed(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", "KWD", card=DECLINED_CARD, multi_attempt=False)
    response = await inquire(client, auth)
    assert response.status_code == 200, response.text
    assert (response.json()["state"], response.json()["result"]) == ("failed", "failed")
    stored = await seed.find()
    assert stored is not None and stored.state == "failed"


async def test_gateway_without_inquiry_is_not_asked(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], gateway_inquiries: list[str]
) -> None:
    await seed.transaction("100.000", "KWD", card=PENDING_CARD, enabled_operations=["refund"])
    response = await inquire(client, auth)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "pending"
    assert gateway_inquiries == []


# -- refusals: the four messages ----------------------------------------------------------------


@pytest.mark.parametrize("slash", [False, True], ids=["no-slash", "slash"])
async def test_unknown_order_is_404(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], slash: bool
) -> None:
    await seed.transaction("100.000")
    response = await inquire(client, auth, "NO-SUCH-ORDER", slash=slash)
    assert response.status_code == 404
    assert response.json() == failure(ORDER_NOT_FOUND)


@pytest.mark.parametrize("state", ["canceled", "invalided"])
async def test_state_without_inquiry_is_refused(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    gateway_inquiries: list[str],
    state: str,
) -> None:
    await seed.transaction("100.000", card=DECLINED_CARD)  # one attempt, declined
    await seed.set_state("ORD-1", state)
    before = await seed.snapshot()

    response = await inquire(client, auth, json={})

    assert response.status_code == 400
    assert response.json() == failure(NOT_ALLOWED)
    assert await seed.snapshot() == before
    assert gateway_inquiries == []


@pytest.mark.parametrize("disclose", [False, True])
async def test_checks_run_in_the_documented_order(
    client: httpx.AsyncClient,
    seed: Seed,
    auth: dict[str, str],
    gateway_inquiries: list[str],
    disclose: bool,
) -> None:
    """decisions §13: unknown order → no attempts → disclosure without URL → state. A session
    created but never paid has no attempts, whatever else is wrong with the request."""
    await seed.transaction("100.000", card=None)  # created, never attempted
    before = await seed.snapshot()

    response = await inquire(client, auth, json={"disclose_to_merchant": disclose})

    assert response.status_code == 400
    assert response.json() == failure("No payment attempts for order ORD-1")
    assert await seed.snapshot() == before
    assert gateway_inquiries == []

    # With an attempt, disclosure without a URL comes before the state check.
    await seed.transaction("100.000", order_no="ORD-2", card=DECLINED_CARD)
    await seed.set_state("ORD-2", "canceled")
    response = await inquire(client, auth, "ORD-2", json={"disclose_to_merchant": True})
    assert response.json() == failure("No disclosure url found for order ORD-2")


async def test_pending_transaction_without_attempts(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", card=None)
    await seed.set_state("ORD-1", "pending")

    response = await inquire(client, auth)

    assert response.status_code == 400
    assert response.json() == failure("No payment attempts for order ORD-1")


@pytest.mark.parametrize(
    "request_body",
    [{"json": {"disclose_to_merchant": True}}, {"form": {"disclose_to_merchant": "true"}}],
    ids=["json", "form"],
)
async def test_disclosure_without_any_url(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], request_body: dict[str, Any]
) -> None:
    await seed.transaction("100.000")
    before = await seed.snapshot()

    response = await inquire(client, auth, **request_body)

    assert response.status_code == 400
    assert response.json() == failure("No disclosure url found for order ORD-1")
    assert await seed.snapshot() == before


@pytest.mark.parametrize(
    "bad_url", ["not a url", "ftp://merchant.example.com/disclose", "https://", "x" * 201]
)
async def test_invalid_disclosure_url_is_a_field_error(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], bad_url: str
) -> None:
    await seed.transaction("100.000")
    response = await inquire(
        client, auth, json={"disclose_to_merchant": True, "disclosure_url": bad_url}
    )
    assert response.status_code == 400
    assert list(response.json()) == ["disclosure_url"]
    assert all(isinstance(m, str) and m for m in response.json()["disclosure_url"])
    assert await disclosures(seed) == []


# -- disclosure to the merchant -----------------------------------------------------------------


@pytest.mark.parametrize(
    "request_body",
    [
        {"json": {"disclose_to_merchant": True, "disclosure_url": DISCLOSURE_URL}},
        {"form": {"disclose_to_merchant": "true", "disclosure_url": DISCLOSURE_URL}},
    ],
    ids=["json", "form"],
)
async def test_disclosure_is_queued_to_the_disclosure_url(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], request_body: dict[str, Any]
) -> None:
    parent = await seed.transaction("100.000")

    response = await inquire(client, auth, **request_body)

    assert response.status_code == 200, response.text
    [event] = await disclosures(seed)
    assert event.target_url == DISCLOSURE_URL
    assert event.transaction_id == parent.id
    assert event.payload == response.json()


async def test_disclosure_falls_back_to_the_stored_webhook_url(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", webhook_url=WEBHOOK_URL)

    response = await inquire(client, auth, json={"disclose_to_merchant": True})

    assert response.status_code == 200, response.text
    [event] = await disclosures(seed)
    assert event.target_url == WEBHOOK_URL
    assert event.payload == response.json()


async def test_disclosure_url_wins_over_the_stored_webhook_url(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", webhook_url=WEBHOOK_URL)
    response = await inquire(
        client, auth, json={"disclose_to_merchant": True, "disclosure_url": DISCLOSURE_URL}
    )
    assert response.status_code == 200, response.text
    assert [event.target_url for event in await disclosures(seed)] == [DISCLOSURE_URL]


async def test_disclosure_after_revealing_a_pending_payment_carries_the_new_state(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", card=PENDING_CARD)
    response = await inquire(
        client, auth, json={"disclose_to_merchant": True, "disclosure_url": DISCLOSURE_URL}
    )
    assert response.status_code == 200, response.text
    [event] = await disclosures(seed)
    assert event.payload["state"] == "paid"


async def test_no_disclosure_unless_asked(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", webhook_url=WEBHOOK_URL)
    response = await inquire(client, auth, json={"disclosure_url": DISCLOSURE_URL})
    assert response.status_code == 200, response.text
    assert await disclosures(seed) == []


# -- permissions --------------------------------------------------------------------------------


async def test_inquiry_needs_its_permission(client: httpx.AsyncClient, seed: Seed) -> None:
    auth = await seed.user("clerk", permissions=["payment.refund"])
    await seed.transaction("100.000")
    response = await inquire(client, auth)
    assert response.status_code == 403
    assert response.json() == {"detail": "You do not have permission to perform this action."}


async def test_inquiry_with_api_key(client: httpx.AsyncClient, seed: Seed) -> None:
    auth = await seed.api_key()
    await seed.transaction("100.000")
    response = await inquire(client, auth)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "paid"


# -- throttling (decisions §4, ottu-api.md §6.6) -------------------------------------------------
# The test settings turn throttling off (conftest); these tests turn it back on with Ottu's numbers.

THROTTLED = {"inquiry_throttle": True}


@pytest.mark.parametrize("settings_overrides", [THROTTLED], ids=["throttle-on"])
async def test_answers_from_storage_and_refusals_are_never_throttled(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str]
) -> None:
    await seed.transaction("100.000", order_no="ORD-1")
    await seed.transaction("100.000", order_no="ORD-2", card=None)
    for _ in range(5):
        assert (await inquire(client, auth, "ORD-1")).status_code == 200
        assert (await inquire(client, auth, "ORD-2")).status_code == 400


@pytest.mark.parametrize("settings_overrides", [THROTTLED], ids=["throttle-on"])
async def test_gateway_inquiry_is_throttled_in_the_first_ten_minutes(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], gateway_inquiries: list[str]
) -> None:
    await seed.transaction("100.000", card=PENDING_CARD)

    response = await inquire(client, auth)

    assert response.status_code == 429
    retry_after = int(response.headers["Retry-After"])
    assert 540 < retry_after <= 600
    assert response.json() == {
        "detail": f"Request was throttled. Expected available in {retry_after} seconds."
    }
    assert gateway_inquiries == []
    stored = await seed.find()
    assert stored is not None and stored.state == "pending"
