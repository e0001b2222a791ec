"""The official ottu-py SDK, unchanged, against a live PayOps server: checkout → pay on the
hosted page → every operation and inquiry, as a merchant integrated with Ottu would run them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from ottu import Ottu
from ottu.auth import APIKeyAuth, BasicAuth
from ottu.enums import TxnType

from payops.auth.secrets import hash_password, new_api_key
from payops.config import Settings
from payops.context import AppContext
from payops.db.models import ApiKey, User
from payops.gateways.service import add_gateway
from tests.live import live_server, run_with_context

CARD = {
    "card_number": "4111 1111 1111 1111",
    "expiry": "12/39",
    "cvv": "123",
    "cardholder_name": "Test Customer",
}
REDIRECT = "https://merchant.example/payment-done?src=ottu"


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[str, dict[str, Any]]]:
    key, prefix, secret_hash = new_api_key()

    async def prepare(ctx: AppContext) -> None:
        async with ctx.db.write() as session:
            session.add(ApiKey(prefix=prefix, secret_hash=secret_hash, name="sdk"))
            session.add(
                User(
                    username="backoffice",
                    password_hash=hash_password("s3cret-pass"),
                    is_superuser=True,
                )
            )
            for code, mode in (("sandbox-kwd", "purchase"), ("sandbox-auth-kwd", "authorize")):
                await add_gateway(
                    session,
                    ctx.settings,
                    pg_code=code,
                    connector="sandbox",
                    operation_mode=mode,
                    default_currency="KWD",
                )

    run_with_context(settings, prepare)
    with live_server(settings) as url:
        yield url, {"api_key": key}


def client(url: str, auth: Any) -> Ottu:
    ottu = Ottu(merchant_id="payops.test", auth=auth)
    ottu.host_url = url  # the SDK builds https://{merchant_id}; tests point it at loopback
    return ottu


def checkout(
    ottu: Ottu, pg_code: str = "sandbox-kwd", amount: str = "25.000", **extra: Any
) -> dict[str, Any]:
    result = ottu.checkout(
        txn_type=TxnType.E_COMMERCE,
        amount=amount,
        currency_code="KWD",
        pg_codes=[pg_code],
        redirect_url=REDIRECT,
        customer_email="customer@example.com",
        **extra,
    )
    assert result["success"], result
    assert result["status_code"] == 201
    return result["response"]


def pay(session: dict[str, Any], card: str = CARD["card_number"]) -> httpx.Response:
    page = httpx.get(session["checkout_url"])
    assert page.status_code == 200 and 'name="card_number"' in page.text
    return httpx.post(
        session["checkout_url"],
        data={**CARD, "card_number": card},
        follow_redirects=False,
        timeout=30,
    )


def test_purchase_refund_inquiry_with_api_key(server: tuple[str, dict[str, Any]]) -> None:
    url, creds = server
    ottu = client(url, APIKeyAuth(creds["api_key"]))
    session = checkout(ottu, order_no="SDK-1")
    assert session["state"] == "created" and len(session["session_id"]) == 40
    assert session["payment_methods"][0]["code"] == "sandbox-kwd"

    paid = pay(session)
    assert paid.status_code == 303
    location = urlsplit(paid.headers["location"])
    query = parse_qs(location.query)
    assert location.netloc == "merchant.example" and query["src"] == ["ottu"]
    assert query["session_id"] == [session["session_id"]] and query["order_no"] == ["SDK-1"]
    assert query["reference_number"][0]

    ottu.session.refresh()
    assert ottu.session.state == "paid"

    refund = ottu.session.refund(amount="5.000")
    assert refund["success"] and refund["status_code"] == 200
    assert refund["response"]["txn"]["state"] == "refunded"
    # The SDK refreshed the session after the operation: the parent shows the child.
    assert ottu.session.state == "paid"
    assert ottu.session.refunded_amount == "5.000"
    assert [t["state"] for t in ottu.session.transactions] == ["refunded"]

    first = ottu.session.refund(amount="1.000", tracking_key="refund-1")
    again = ottu.session.refund(amount="1.000", tracking_key="refund-1")
    assert first["success"] and again["success"]
    assert again["response"]["reference_number"] == first["response"]["reference_number"]
    assert again["response"]["amount"] == "1.000"
    assert ottu.session.refunded_amount == "6.000"
    other = ottu.session.refund(amount="9.000", tracking_key="refund-1")
    assert not other["success"] and other["status_code"] == 409
    assert ottu.session.refunded_amount == "6.000"

    over = ottu.session.refund(amount="50.000")
    assert not over["success"] and over["status_code"] == 400
    assert over["error"] == {
        "detail": "Amount exceeds the refundable amount (19.000 KWD)",
        "operation": "refund",
        "result": "failed",
    }

    status = ottu.session.psq()
    assert status["success"] and status["response"]["state"] == "paid"
    assert status["response"]["refunded_amount"] == "6.000"
    by_order = ottu.session.psq(order_id="SDK-1")
    assert by_order["response"]["session_id"] == session["session_id"]


def test_authorize_capture_void_with_basic_auth(server: tuple[str, dict[str, Any]]) -> None:
    url, _ = server
    ottu = client(url, BasicAuth(username="backoffice", password="s3cret-pass"))
    session = checkout(ottu, pg_code="sandbox-auth-kwd", amount="30.000")
    assert pay(session).status_code == 303
    ottu.session.refresh()
    assert ottu.session.state == "authorized"

    capture = ottu.session.capture(amount="10.000", tracking_key="cap-1")
    assert capture["success"] and capture["response"]["txn"]["state"] == "paid"
    assert capture["response"]["initiator"]["username"] == "backoffice"
    assert ottu.session.captured_amount == "10.000"
    void = ottu.session.void()
    assert not void["success"] and void["error"]["detail"] == "Operation is not allowed"

    other = checkout(ottu, pg_code="sandbox-auth-kwd", amount="7.500")
    assert pay(other).status_code == 303
    ottu.session.refresh()
    voided = ottu.session.void(tracking_key="void-1")
    assert voided["success"] and voided["response"]["txn"]["state"] == "voided"
    assert ottu.session.voided_amount == "7.500"
    assert not ottu.session.capture(amount="1.000")["success"]


def test_cancel_expire_delete(server: tuple[str, dict[str, Any]]) -> None:
    url, creds = server
    ottu = client(url, APIKeyAuth(creds["api_key"]))

    checkout(ottu)
    canceled = ottu.session.cancel()
    assert canceled["success"] and canceled["response"]["result"] == "success"
    assert ottu.session.state == "canceled"

    checkout(ottu)
    expired = ottu.session.expire()
    assert expired["success"] and ottu.session.state == "expired"
    assert httpx.get(ottu.session.checkout_url).status_code == 410

    created = checkout(ottu, order_no="SDK-DEL")
    deleted = ottu.session.delete()
    assert deleted["success"] and deleted["response"]["operation"] == "delete"
    gone = ottu.session.retrieve(created["session_id"])
    assert not gone["success"] and gone["status_code"] == 404

    paid = checkout(ottu)
    assert pay(paid).status_code == 303
    assert ottu.session.delete(session_id=paid["session_id"])["success"]  # soft delete
    assert ottu.session.retrieve(paid["session_id"])["status_code"] == 404


def test_declined_and_pending_cards(server: tuple[str, dict[str, Any]]) -> None:
    url, creds = server
    ottu = client(url, APIKeyAuth(creds["api_key"]))
    session = checkout(ottu)
    declined = pay(session, "4000000000000002")
    assert declined.status_code == 303
    ottu.session.refresh()
    assert ottu.session.state == "attempted"  # multi-attempt: the customer may try again

    invalid = httpx.post(session["checkout_url"], data={**CARD, "card_number": "4242424242424242"})
    assert invalid.status_code == 400 and "valid card number" in invalid.text

    pending = pay(session, "4000000000000259")
    assert pending.status_code == 202 and "being processed" in pending.text
    ottu.session.refresh()
    assert ottu.session.state == "pending"
    status = ottu.session.psq()
    assert status["success"] and status["response"]["state"] == "paid"
    ottu.session.refresh()
    assert ottu.session.state == "paid"


def test_payment_methods(server: tuple[str, dict[str, Any]]) -> None:
    url, creds = server
    ottu = client(url, APIKeyAuth(creds["api_key"]))
    result = ottu.get_payment_methods(plugin="e_commerce", currencies=["KWD"])
    assert result["success"], result
    codes = {m["code"]: m for m in result["response"]["payment_methods"]}
    assert set(codes) == {"sandbox-kwd", "sandbox-auth-kwd"}
    assert codes["sandbox-auth-kwd"]["operations"] == ["capture", "refund", "void"]
