"""The payment side of the MPGS fake: Hosted Checkout, written from the protocol notes
(/work/shared/spec/gateways-payment-acceptance.md §1.5), not from the connector.

- ``POST /api/rest/version/{N}/merchant/{mid}/session``: Basic auth ``merchant.{mid}``,
  ``apiOperation=INITIATE_CHECKOUT``; ``order.id``, ``order.amount`` (decimals at the currency's
  exponent), ``order.currency``, ``interaction.operation`` (PURCHASE / AUTHORIZE) and
  ``interaction.returnUrl`` required; answers ``{"checkoutMode", "merchant", "result",
  "session": {"id", "updateStatus", "version"}, "successIndicator"}`` with a 31-character
  session id and a random 16-hex success indicator.
- ``GET /static/checkout/checkout.min.js``: ``Checkout.configure/showPaymentPage`` that navigate
  to the page below.
- ``GET /checkout/pay/{sessionId}``: the payer's card form and a cancel link; after the session's
  lifetime (``session_lifetime``, default 15 min) an error page with the time-out link.
- ``POST /checkout/pay/{sessionId}``: decides by test card and records an ``AUTHORIZATION``
  (AUTHORIZE) or ``PAYMENT`` (PURCHASE) transaction on the order, then ``303`` to
  ``returnUrl?resultIndicator=…&sessionVersion=…``. A declined card returns with another,
  random indicator; the 3-D Secure-style card leaves the payment PENDING and keeps the payer
  on a "waiting for your bank" page (``settle_pending`` decides it later).
- ``GET /checkout/pay/{sessionId}/cancel``: ``303`` to ``interaction.cancelUrl`` (else
  ``returnUrl``), nothing recorded.

Switches: ``never_return`` (paid, the browser never comes back) and ``forge_indicator`` (the
return carries a random indicator). ``notify(url)`` posts the order's latest payment transaction
to PayOps with ``X-Notification-Secret``, as the gateway's webhook does.

Details the notes do not give are the fake's guesses and are marked ``GUESS``.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from tests.fakes.base import Answer

if TYPE_CHECKING:
    from tests.connectors.mpgs.fake_server import FakeMpgs

SESSION_PATH = re.compile(
    r"^/api/rest/version/(?P<version>[^/]+)/merchant/(?P<merchant>[^/]+)"
    r"/session/?$"
)
PAY_PATH = re.compile(r"^/checkout/pay/(?P<session>[A-Za-z0-9]+)(?P<cancel>/cancel)?/?$")
SUCCESS_CARD = "5123450000000008"
DECLINED_CARD = "4000000000000002"
PENDING_CARD = "4000000000000259"  # 3-D Secure-style: the issuer has not decided yet
CARDS = {
    SUCCESS_CARD: ("SUCCESS", "APPROVED"),
    DECLINED_CARD: ("FAILURE", "DECLINED"),
    PENDING_CARD: ("PENDING", "PENDING"),
}
OPERATIONS = {"PURCHASE": "PAYMENT", "AUTHORIZE": "AUTHORIZATION"}
DEFAULT_LIFETIME = 15 * 60.0


@dataclass
class CheckoutSession:
    id: str
    merchant: str
    indicator: str
    version: str
    order_id: str
    amount: Decimal
    currency: str
    operation: str  # PURCHASE | AUTHORIZE
    return_url: str
    cancel_url: str
    timeout_url: str
    notification_url: str
    created: float
    body: dict[str, Any]


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True) + list(params.items())
    return urlunsplit(parts._replace(query=urlencode(query)))


def _page(title: str, body: str, status: int = 200) -> Answer:
    document = (
        f"<!doctype html><html><head><title>{html.escape(title)} · Mastercard Gateway "
        f"(fake)</title></head><body>{body}</body></html>"
    )
    return Answer(status, document, "text/html; charset=utf-8")


class HostedCheckout:
    def __init__(self, fake: FakeMpgs) -> None:
        self.fake = fake
        self.sessions: dict[str, CheckoutSession] = {}
        self.session_lifetime = DEFAULT_LIFETIME
        self.never_return = False
        self.forge_indicator = False
        self.notification_secret = ""
        self.last_order_id = ""
        # Charge this instead of the order's amount (a gateway confirming another amount).
        self.charge_amount: Decimal | None = None

    # -- test controls ------------------------------------------------------------------------
    def expire_sessions(self) -> None:
        with self.fake.lock:
            for session in self.sessions.values():
                session.created -= self.session_lifetime + 1

    def session_for(self, url: str) -> CheckoutSession:
        match = PAY_PATH.match(urlsplit(url).path)
        assert match is not None, url
        return self.sessions[match["session"]]

    def created(self) -> list[dict[str, Any]]:
        """The INITIATE_CHECKOUT bodies the fake accepted, oldest first."""
        with self.fake.lock:
            return [s.body for s in self.sessions.values()]

    def notify(self, url: str) -> bool:
        """Post the latest payment transaction of the last paid order, as MPGS's webhook does."""
        with self.fake.lock:
            order = self.fake.orders[self.last_order_id]
            txn = [
                t for t in order.transactions.values() if t.type in ("AUTHORIZATION", "PAYMENT")
            ][-1]
            body = self.fake._txn_reply(self.fake.merchant_id, order, txn, "100")
        response = httpx.post(
            url,
            content=self.fake.encode(body),
            timeout=10,
            headers={
                "Content-Type": "application/json",
                "X-Notification-Secret": self.notification_secret,
                "X-Notification-Id": secrets.token_hex(8),
                "X-Notification-Attempt": "1",
            },
        )
        return response.status_code == 200

    # -- the protocol -------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer | None:
        bare = path.split("?", 1)[0]
        if method == "POST" and (match := SESSION_PATH.match(bare)):
            return self._create(match["version"], match["merchant"], headers, body, bare)
        if method == "GET" and bare == "/static/checkout/checkout.min.js":
            return Answer(200, CHECKOUT_JS, "application/javascript")
        match = PAY_PATH.match(bare)
        if match is None:
            return None
        with self.fake.lock:
            session = self.sessions.get(match["session"])
        if session is None:
            return _page("Not found", "<h1>Unknown or invalid session</h1>", 404)
        if match["cancel"]:
            return Answer(
                303, "", "text/html", headers={"Location": session.cancel_url or session.return_url}
            )
        if time.monotonic() - session.created > self.session_lifetime:
            target = html.escape(session.timeout_url or session.return_url)
            return _page(
                "Expired",
                "<h1>Your payment session has expired.</h1>"
                f'<p><a id="timeout" href="{target}">Return to the merchant</a></p>',
                410,
            )
        if method == "GET":
            return self._form(session)
        if method == "POST":
            return self._pay(session, body)
        return _page("Not allowed", "<h1>Method not allowed</h1>", 405)

    def _create(
        self, version: str, merchant: str, headers: dict[str, str], body: bytes, path: str
    ) -> Answer:
        from tests.connectors.mpgs import fake_server as f

        if not version.isdigit() or not 63 <= int(version) <= f.MAX_API_VERSION:
            # INITIATE_CHECKOUT exists from v63 (older versions: CREATE_CHECKOUT_SESSION).
            return Answer(400, f.invalid_field_response("version", version))
        if not self.fake._authenticate(merchant, headers.get("authorization")):
            return Answer(401, f.invalid_credentials_response())
        try:
            data = json.loads(body, parse_float=Decimal)
        except ValueError:
            return Answer(
                400, f.error_response("INVALID_REQUEST", "Request body is not valid JSON")
            )
        problem = self._shape_problem(data)
        if problem is not None:
            return Answer(400, problem)
        fault = self.fake._take_fault("POST", path)
        if fault is not None and not fault.apply:
            return Answer(200, None, fault=fault)
        order, interaction = data["order"], data["interaction"]
        session = CheckoutSession(
            id="SESSION" + secrets.token_hex(12).upper(),
            merchant=merchant,
            indicator=secrets.token_hex(8),
            version=secrets.token_hex(5),
            order_id=str(order["id"]),
            amount=Decimal(str(order["amount"])),
            currency=order["currency"],
            operation=interaction["operation"],
            return_url=interaction["returnUrl"],
            cancel_url=interaction.get("cancelUrl", ""),
            timeout_url=interaction.get("timeoutUrl", ""),
            notification_url=order.get("notificationUrl", ""),
            created=time.monotonic(),
            body=data,
        )
        with self.fake.lock:
            self.sessions[session.id] = session
        reply = {
            "checkoutMode": "WEBSITE",
            "merchant": merchant,
            "result": "SUCCESS",
            "session": {"id": session.id, "updateStatus": "SUCCESS", "version": session.version},
            "successIndicator": session.indicator,
        }
        return Answer(201, reply, "application/json;charset=UTF-8", fault=fault)

    @staticmethod
    def _shape_problem(data: Any) -> dict[str, Any] | None:
        from tests.connectors.mpgs import fake_server as f

        if not isinstance(data, dict):
            return f.error_response("INVALID_REQUEST", "Request body is not a JSON object")
        if data.get("apiOperation") != "INITIATE_CHECKOUT":
            return f.invalid_field_response("apiOperation", data.get("apiOperation"))
        order, interaction = data.get("order"), data.get("interaction")
        if not isinstance(order, dict):
            return f.missing_field_response("order")
        if not isinstance(interaction, dict):
            return f.missing_field_response("interaction")
        for name in ("id", "amount", "currency"):
            if order.get(name) in (None, ""):
                return f.missing_field_response(f"order.{name}")
        for name in ("operation", "returnUrl"):
            if interaction.get(name) in (None, ""):
                return f.missing_field_response(f"interaction.{name}")
        if interaction["operation"] not in OPERATIONS:
            return f.invalid_field_response("interaction.operation", interaction["operation"])
        if not f.ID_CHARS.match(str(order["id"])):
            return f.invalid_field_response("order.id", order["id"])
        currency = order["currency"]
        if currency not in f.CURRENCY_DIGITS:
            return f.invalid_field_response("order.currency", currency)
        text = str(order["amount"])
        try:
            value = Decimal(text)
        except InvalidOperation:
            return f.invalid_field_response("order.amount", order["amount"])
        if (
            not f.AMOUNT.match(text)
            or value <= 0
            or len(text.partition(".")[2]) > f.CURRENCY_DIGITS[currency]
        ):
            return f.invalid_field_response("order.amount", order["amount"])
        for name in ("returnUrl", "cancelUrl", "timeoutUrl"):
            url = interaction.get(name)
            if url is not None and urlsplit(str(url)).scheme not in ("http", "https"):
                return f.invalid_field_response(f"interaction.{name}", url)
        return None

    def _form(self, session: CheckoutSession, error: str = "", status: int = 200) -> Answer:
        notice = f'<p class="error">{html.escape(error)}</p>' if error else ""
        body = (
            f"<h1>Pay {session.amount} {session.currency}</h1>{notice}"
            f'<form method="post" action="/checkout/pay/{session.id}">'
            '<label>Card number <input name="cardNumber"></label>'
            '<label>Expiry (MM/YY) <input name="expiry"></label>'
            '<label>Security code <input name="securityCode"></label>'
            '<button type="submit">Pay</button></form>'
            f'<p><a id="cancel" href="/checkout/pay/{session.id}/cancel">Cancel</a></p>'
        )
        return _page("Payment", body, status)

    def _pay(self, session: CheckoutSession, body: bytes) -> Answer:
        from tests.connectors.mpgs import fake_server as f

        form = dict(parse_qsl(body.decode("utf-8", "replace")))
        card = form.get("cardNumber", "").replace(" ", "")
        if card not in CARDS or not re.fullmatch(r"\d{3}", form.get("securityCode", "")):
            return self._form(session, "Enter a valid test card and security code.", 400)
        result, code = CARDS[card]
        amount = self.charge_amount if self.charge_amount is not None else session.amount
        with self.fake.lock:
            order = self.fake.orders.get(session.order_id)
            if order is None:
                order = f.FakeOrder(session.order_id, session.currency, session.amount)
                self.fake.orders[session.order_id] = order
            txn_id = str(len(order.transactions) + 1)
            order.transactions[txn_id] = f.StoredTransaction(
                txn_id, OPERATIONS[session.operation], amount, session.currency, result, code
            )
            self.last_order_id = order.id
        if result == "PENDING":
            return _page("Authenticating", "<h1>Waiting for your bank to confirm…</h1>")
        if result == "SUCCESS" and self.never_return:
            return _page("Paid", "<h1>Payment complete.</h1><p>You may close this window.</p>")
        indicator = session.indicator
        if result != "SUCCESS" or self.forge_indicator:
            indicator = secrets.token_hex(8)
        target = _with_query(
            session.return_url, {"resultIndicator": indicator, "sessionVersion": session.version}
        )
        return Answer(303, "", "text/html", headers={"Location": target})


CHECKOUT_JS = """// Fake Mastercard Checkout library: enough to reach the hosted payment page.
var Checkout = (function () {
  var config = {};
  return {
    configure: function (c) { config = c || {}; },
    showPaymentPage: function () {
      window.location.href = "/checkout/pay/" + config.session.id + "?checkoutVersion=1.0.0";
    },
    showEmbeddedPage: function () { this.showPaymentPage(); }
  };
})();
"""
