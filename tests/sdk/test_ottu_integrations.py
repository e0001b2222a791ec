"""Issue 16 with the official ottu-py SDK, unchanged, against a live server: its multipart
checkout (with an attachment) and its Django webhook receiver, which copies every top-level key
of a verified webhook onto the stored checkout."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from ottu import Ottu
from ottu.auth import APIKeyAuth
from ottu.enums import TxnType
from ottu.utils.webhooks import verify_signature

from payops.auth.secrets import new_api_key
from payops.config import Settings
from payops.context import AppContext
from payops.db.models import ApiKey
from payops.gateways.service import add_gateway
from payops.webhooks import outbox
from payops.webhooks.delivery import deliver_due
from tests.live import live_server, run_with_context

HMAC_KEY = "merchant-webhook-key"
CARD = {
    "card_number": "4111 1111 1111 1111",
    "expiry": "12/39",
    "cvv": "123",
    "cardholder_name": "Test Customer",
}
REDIRECT = "https://merchant.example/payment-done"


class DjangoStyleReceiver:
    """What ottu-py's ``contrib.django`` webhook view and ``Webhook.create_from_webhook`` do:
    verify the signature, answer 401 if it fails, else copy every top-level key of the payload
    onto the stored checkout of that ``session_id`` and answer 200 ``{"detail": "Success"}``."""

    def __init__(self) -> None:
        self.checkouts: dict[str, dict[str, Any]] = {}
        self.payloads: list[dict[str, Any]] = []
        self.unverified = 0
        self.url = ""

    def handle(self, data: dict[str, Any]) -> tuple[int, dict[str, str]]:
        if not verify_signature(
            payload=data, signature=data.get("signature") or "", webhook_key=HMAC_KEY
        ):
            self.unverified += 1
            return 401, {"detail": "Unable to verify signature"}
        self.payloads.append(data)
        checkout = self.checkouts.get(data.get("session_id", ""))
        if checkout is not None:
            for field, value in data.items():
                checkout[field] = value
        return 200, {"detail": "Success"}


@pytest.fixture
def receiver() -> Iterator[DjangoStyleReceiver]:
    merchant = DjangoStyleReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            raw = self.rfile.read(int(self.headers.get("content-length", "0")))
            status, answer = merchant.handle(json.loads(raw))
            body = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    merchant.url = f"http://127.0.0.1:{server.server_address[1]}/ottu/webhook/"
    try:
        yield merchant
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[str, str]]:
    key, prefix, secret_hash = new_api_key()

    async def prepare(ctx: AppContext) -> None:
        async with ctx.db.write() as session:
            session.add(ApiKey(prefix=prefix, secret_hash=secret_hash, name="sdk"))
            await outbox.set_merchant_setting(session, outbox.HMAC_KEY_SETTING, HMAC_KEY)
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
        yield url, key


def sdk(url: str, key: str) -> Ottu:
    ottu = Ottu(merchant_id="payops.test", auth=APIKeyAuth(key))
    ottu.host_url = url  # the SDK builds https://{merchant_id}; tests point it at loopback
    return ottu


def test_sdk_multipart_checkout_reads_every_field_and_refuses_the_attachment(
    server: tuple[str, str], tmp_path: Path
) -> None:
    url, key = server
    ottu = sdk(url, key)
    invoice = tmp_path / "invoice.pdf"
    invoice.write_bytes(b"%PDF-1.4 invoice")
    result = ottu.checkout(
        txn_type=TxnType.E_COMMERCE,
        amount="12.000",
        currency_code="KWD",
        pg_codes=["sandbox-kwd", "sandbox-auth-kwd"],
        order_no="MP-1",
        customer_email="customer@example.com",
        attachment=str(invoice),
    )
    # The SDK sent multipart (its attachment path). Every other field was read as DRF reads it
    # (two pg_codes, no "Expected a list"), and the file is refused, naming it: never dropped.
    assert not result["success"] and result["status_code"] == 400
    assert list(result["error"]) == ["attachment"]
    # The SDK's own multipart transport (what checkout(attachment=…) sends), with a JSON part
    # in place of the file: the session is created with both gateways.
    payload = {
        "type": "e_commerce",
        "amount": "12.000",
        "currency_code": "KWD",
        "pg_codes": ["sandbox-kwd", "sandbox-auth-kwd"],
        "payment_type": "one_off",
        "order_no": "MP-1",
        "customer_email": "customer@example.com",
    }
    sent = ottu.send_request(
        path="/b/checkout/v1/pymt-txn/",
        method="POST",
        data=payload,
        files={"extra": (None, '{"invoice": "INV-7"}', "application/json")},
    )
    assert sent.success and sent.status_code == 201, sent.error
    assert sent.response["pg_codes"] == ["sandbox-kwd", "sandbox-auth-kwd"]
    assert sent.response["extra"] == {"invoice": "INV-7"}
    # And the SDK's JSON path, as ever.
    created = ottu.checkout(
        txn_type=TxnType.E_COMMERCE,
        amount="12.000",
        currency_code="KWD",
        pg_codes=["sandbox-kwd", "sandbox-auth-kwd"],
        order_no="MP-2",
        customer_email="customer@example.com",
    )
    assert created["success"] and created["status_code"] == 201
    assert created["response"]["pg_codes"] == ["sandbox-kwd", "sandbox-auth-kwd"]


def test_django_style_receiver_keeps_paid_after_a_partial_refund(
    server: tuple[str, str], receiver: DjangoStyleReceiver, settings: Settings
) -> None:
    url, key = server
    ottu = sdk(url, key)
    result = ottu.checkout(
        txn_type=TxnType.E_COMMERCE,
        amount="25.000",
        currency_code="KWD",
        pg_codes=["sandbox-kwd"],
        redirect_url=REDIRECT,
        webhook_url=receiver.url,
        customer_email="customer@example.com",
    )
    assert result["success"], result
    session = result["response"]
    # The merchant stores the checkout as its Django model would.
    receiver.checkouts[session["session_id"]] = {
        key: session[key]
        for key in ("session_id", "type", "payment_type", "amount", "currency_code", "state")
    }

    # The page may wait up to 10 s for the webhook (PAYOPS_WEBHOOK_REDIRECT_DEADLINE_SECONDS).
    paid = httpx.post(session["checkout_url"], data=CARD, follow_redirects=False, timeout=30)
    # The payment webhook went first; its 200 sent the customer on to redirect_url.
    assert paid.status_code == 303 and paid.headers["location"].startswith(REDIRECT)
    stored = receiver.checkouts[session["session_id"]]
    assert stored["state"] == "paid"

    refund = ottu.session.refund(amount="5.000")
    assert refund["success"], refund
    assert set(refund["response"]) == {
        "amount",
        "session_id",
        "order_no",
        "initiator",
        "is_sandbox",
        "operation",
        "pg_code",
        "pg_response",
        "pg_params",
        "reference_number",
        "source",
        "success",
        "result",
        "signature",
        "timestamp_utc",
        "txn",
        "extra",
    }
    assert set(refund["response"]["txn"]) == {
        "amount",
        "currency_code",
        "order_no",
        "session_id",
        "state",
    }

    async def drain(ctx: AppContext) -> None:
        for _ in range(5):
            if not await deliver_due(ctx):
                return

    run_with_context(settings, drain)
    assert receiver.unverified == 0
    operation_webhook = receiver.payloads[-1]
    assert operation_webhook["operation"] == "refund"
    assert operation_webhook["txn"]["state"] == "refunded"
    assert "state" not in operation_webhook
    # The receiver copied every top-level key: the payment's state stays "paid"; its amount is
    # overwritten by the operation's (as with Ottu; money decisions are confirmed by inquiry).
    assert stored["state"] == "paid"
    assert stored["amount"] == "5.000"
