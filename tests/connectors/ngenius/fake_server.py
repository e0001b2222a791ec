"""A local fake of N-Genius Online (Network International), written from the protocol document
(gateways-mpgs-ngenius-tabby-myfatoorah.md §2), served over real loopback HTTP.

What it enforces, as the real gateway does:
- the token exchange: ``POST /identity/auth/access-token`` with ``Authorization: Basic <api key>``
  (as issued), ``Content-Type: application/vnd.ni-identity.v1+json`` and an empty body; tokens
  expire (``token_lifetime``; ``expire_tokens()`` ends them all at once) and wrong or expired
  bearer tokens get 401;
- payment calls need ``Authorization: Bearer``; POST/PUT also the
  ``application/vnd.ni-payment.v2+json`` Content-Type and Accept; a foreign outlet is 404;
- ``amount`` is ``{"currencyCode", "value"}`` with an integer ``value`` in minor units: strings,
  fractions, booleans, non-positive values, a wrong currency or missing fields are 400;
- several captures are allowed while their sum ≤ the authorised amount; a refund may not exceed
  its capture (or a PURCHASE payment's amount); a void needs an AUTHORISED payment with no
  captures or refunds, and sets REVERSED;
- there is no idempotency key: sending the same capture twice captures twice.

Errors use the documented shape ``{"message", "code", "errors": [{"message", "localizedMessage",
"errorCode", "domain"}]}``. Successful captures, refunds and voids answer the payment object; the
order inquiry answers the order with ``_embedded.payment[]``.

The server plumbing and the fault words are the fake-gateway base's (tests/fakes/base.py); a
fault is met only by a request that passed the bearer check. A test steers it with
``inject(route, kind, perform=…)``: route is ``token``, ``order``,
``capture``, ``refund`` or ``void``; kind is ``timeout`` (hang), ``reset`` (TCP RST), ``500``,
``malformed`` (truncated JSON with 2xx), ``decline`` (4xx with errors[]), ``child_failed`` (2xx, the
new capture/refund in state FAILED) or ``pending`` (refund in state REQUESTED). ``perform=True``
performs the operation before misbehaving (the reply is lost, the money moved).

Protocol details the document leaves open, chosen here (VERIFY against the sandbox): the HTTP
status of successes (201 for POSTs, 200 otherwise) and of business refusals (400); where a
PURCHASE payment's ``cnp:refund`` link points (``…/captures/sale/refund``: N-Genius's own plugin
follows the payment's link or its first capture's, and no source shows a bare
``…/payments/{p}/refund``, which this fake does not serve); child ``_id`` urns and
``createdTime``; the ``errorCode`` values. A PURCHASE with no refund also offers ``cnp:cancel``
(the purchase reversal, which sets REVERSED); ``FakePayment.refund_link = False`` withholds the
payment's ``cnp:refund`` link.
"""

from __future__ import annotations

import html
import json
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.fakes.base import Answer, FakeGateway, Fault, RecordedRequest

API_KEY = "TjJ2ZkZha2VTZXJ2aWNlQWNjb3VudDpub3QtYS1yZWFsLWtleS1iNjRkMmY5Yg=="
OUTLET = "5edab6d7-5946-43f4-b8c7-06b29c272bdd"
IDENTITY_TYPE = "application/vnd.ni-identity.v1+json"
PAYMENT_TYPE = "application/vnd.ni-payment.v2+json"
CARD_TOKEN = "dG9rZW4tb2YtYS1zYXZlZC1jYXJkLWZvci10ZXN0cw=="
MASKED_PAN = "411111******1111"

SERVER_ERROR_BODY = b"<html><body><h1>500 Internal Server Error</h1></body></html>"
MALFORMED_BODY = b'{"_id": "urn:payment:'
TRANSPORT_FAULTS = ("timeout", "reset", "500", "malformed")
JSON = "application/json"


# -- canned replies --------------------------------------------------------------------------------


def access_token_response(token: str, expires_in: int = 300) -> dict[str, Any]:
    return {
        "access_token": token,
        "expires_in": expires_in,
        "refresh_expires_in": 1800,
        "refresh_token": secrets.token_urlsafe(24),
        "token_type": "bearer",
    }


def error_response(
    code: int, message: str, error_code: str, domain: str = "payments"
) -> dict[str, Any]:
    reason = {
        400: "Bad Request",
        401: "Unauthorized",
        404: "Not Found",
        405: "Method Not Allowed",
        406: "Not Acceptable",
        415: "Unsupported Media Type",
    }.get(code, "Error")
    return {
        "message": reason,
        "code": code,
        "errors": [
            {
                "message": message,
                "localizedMessage": message,
                "errorCode": error_code,
                "domain": domain,
            }
        ],
    }


def unauthorized_response() -> dict[str, Any]:
    return error_response(
        401, "Access token is missing, invalid or expired", "unauthorized", "identity"
    )


def invalid_credentials_response() -> dict[str, Any]:
    return error_response(401, "Invalid client credentials", "invalidCredentials", "identity")


def declined_response(operation: str) -> dict[str, Any]:
    return error_response(
        400, f"The {operation} was declined by the acquirer", "declined", "processing"
    )


def amount(value: int, currency: str) -> dict[str, Any]:
    return {"currencyCode": currency, "value": value}


# The id in a PURCHASE payment's cnp:refund link (GUESS, see the module docstring).
PURCHASE_CAPTURE = "sale"

# Payment acceptance (spec/gateways-payment-acceptance.md §3.5): test cards of the fake's page.
CARD_APPROVED = "4111111111111111"
CARD_DECLINED = "4000000000000002"
CARD_3DS_PENDING = "4000000000000259"  # a 3-D Secure challenge that never finishes
ORDER_ACTIONS = ("AUTH", "SALE", "PURCHASE")
PAID_STATE = {"AUTH": "AUTHORISED", "SALE": "CAPTURED", "PURCHASE": "PURCHASED"}
HTML = "text/html; charset=utf-8"


# -- state -----------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Child:
    ref: str
    kind: str  # capture | refund
    value: int
    currency: str
    state: str = "SUCCESS"
    capture_ref: str | None = None  # the capture a refund was made against
    created: str = field(default_factory=_now)


@dataclass
class FakePayment:
    ref: str
    action: str  # AUTH | SALE | PURCHASE
    state: str
    value: int
    currency: str
    captures: list[Child] = field(default_factory=list)
    refunds: list[Child] = field(default_factory=list)
    saved_card: bool = True
    refund_link: bool = True  # whether a PURCHASE offers its cnp:refund link
    card_used: bool = True  # False while nobody has paid on the page (no card details yet)
    updated: str = field(default_factory=_now)

    def captured(self) -> int:
        return sum(c.value for c in self.captures if c.state == "SUCCESS")

    def refunded(self, capture_ref: str | None = None) -> int:
        return sum(
            r.value
            for r in self.refunds
            if r.state in ("SUCCESS", "REQUESTED")
            and (capture_ref is None or r.capture_ref == capture_ref)
        )


@dataclass
class FakeOrder:
    ref: str
    outlet: str
    action: str
    value: int
    currency: str
    payments: list[FakePayment] = field(default_factory=list)
    created: str = field(default_factory=_now)
    # Orders created through the API (payment acceptance):
    merchant_order_reference: str | None = None
    email: str | None = None
    redirect_url: str | None = None
    cancel_url: str | None = None
    cancel_text: str | None = None
    code: str | None = None  # the payment page's ?code=
    created_at: float = field(default_factory=time.monotonic)


@dataclass
class _Call:
    """One request as the protocol code reads it."""

    method: str
    headers: dict[str, str]  # lower-case names
    path_params: dict[str, str]
    query: str = ""


# -- rendering (the documented shapes) ---------------------------------------------------------------


def _order_url(base: str, order: FakeOrder) -> str:
    return f"{base}/transactions/outlets/{order.outlet}/orders/{order.ref}"


def _payment_url(base: str, order: FakeOrder, payment: FakePayment) -> str:
    return f"{_order_url(base, order)}/payments/{payment.ref}"


def child_json(base: str, order: FakeOrder, payment: FakePayment, child: Child) -> dict[str, Any]:
    payment_url = _payment_url(base, order, payment)
    if child.kind == "capture":
        self_url = f"{payment_url}/captures/{child.ref}"
        links = {"self": {"href": self_url}, "cnp:refund": {"href": f"{self_url}/refund"}}
    else:
        links = {"self": {"href": f"{payment_url}/refunds/{child.ref}"}}
    return {
        "_id": f"urn:tnx:{child.ref}",
        "_links": links,
        "state": child.state,
        "amount": amount(child.value, child.currency),
        "createdTime": child.created,
    }


def payment_json(base: str, order: FakeOrder, payment: FakePayment) -> dict[str, Any]:
    url = _payment_url(base, order, payment)
    links: dict[str, Any] = {
        "self": {"href": url},
        "curies": [{"name": "cnp", "href": f"{base}/docs/rels/{{rel}}", "templated": True}],
    }
    if payment.action == "AUTH" and payment.state in ("AUTHORISED", "PARTIALLY_CAPTURED"):
        links["cnp:capture"] = {"href": f"{url}/captures"}
    if (
        payment.state in ("AUTHORISED", "PURCHASED")
        and not payment.captures
        and not payment.refunds
    ):
        links["cnp:cancel"] = {"href": f"{url}/cancel"}
    if (
        payment.action == "PURCHASE"
        and payment.state in ("PURCHASED", "PARTIALLY_REFUNDED")
        and payment.refund_link
    ):
        links["cnp:refund"] = {"href": f"{url}/captures/{PURCHASE_CAPTURE}/refund"}
    body: dict[str, Any] = {
        "_id": f"urn:payment:{payment.ref}",
        "_links": links,
        "reference": payment.ref,
        "paymentMethod": {
            "expiry": "2029-04",
            "cardholderName": "Test Holder",
            "name": "VISA",
            "pan": MASKED_PAN,
        },
        "state": payment.state,
        "amount": amount(payment.value, payment.currency),
        "updateDateTime": payment.updated,
        "outletId": order.outlet,
        "orderReference": order.ref,
        "authResponse": {
            "authorizationCode": "AB12CD",
            "success": True,
            "resultCode": "00",
            "resultMessage": "Successful approval/completion",
            "rrn": "412345678901",
        },
    }
    if not payment.card_used:  # nobody has paid on the page yet
        del body["paymentMethod"], body["authResponse"]
        links["payment:card"] = {"href": f"{url}/card"}
    elif payment.state == "DECLINED":
        body["authResponse"] = {
            "success": False,
            "resultCode": "05",
            "resultMessage": "Do not honour",
        }
    if payment.saved_card:
        body["savedCard"] = {
            "maskedPan": MASKED_PAN,
            "expiry": "2029-04",
            "cardholderName": "Test Holder",
            "scheme": "VISA",
            "cardToken": CARD_TOKEN,
            "recaptureCsc": True,
        }
    embedded: dict[str, Any] = {}
    if payment.captures:
        embedded["cnp:capture"] = [child_json(base, order, payment, c) for c in payment.captures]
    if payment.refunds:
        embedded["cnp:refund"] = [child_json(base, order, payment, r) for r in payment.refunds]
    if embedded:
        body["_embedded"] = embedded
    return body


def order_status_response(base: str, order: FakeOrder) -> dict[str, Any]:
    return {
        "_id": f"urn:order:{order.ref}",
        "_links": {"self": {"href": _order_url(base, order)}},
        "type": "SINGLE",
        "merchantDefinedData": {},
        "action": order.action,
        "amount": amount(order.value, order.currency),
        "language": "en",
        "reference": order.ref,
        "outletId": order.outlet,
        "createDateTime": order.created,
        "_embedded": {"payment": [payment_json(base, order, p) for p in order.payments]},
    } | (_accepted_order_fields(base, order) if order.code else {})


def _accepted_order_fields(base: str, order: FakeOrder) -> dict[str, Any]:
    """What an order created through the API also shows: the merchant's reference and email,
    its attributes and the payment page links."""
    page = f"{base}/paypage/?{urlencode({'code': order.code})}"
    return {
        "merchantOrderReference": order.merchant_order_reference,
        "emailAddress": order.email,
        "merchantAttributes": {
            "redirectUrl": order.redirect_url,
            "skipConfirmationPage": True,
            **(
                {"cancelUrl": order.cancel_url, "cancelText": order.cancel_text}
                if order.cancel_url
                else {}
            ),
        },
        "_links": {
            "self": {"href": _order_url(base, order)},
            "payment": {"href": page},
            "cnp:payment-link": {"href": f"{_order_url(base, order)}/payment-link"},
            "payment-authorization": {"href": f"{base}/transactions/paymentAuthorization"},
        },
    }


# The replies to a successful capture, refund and void are the payment object, rendered after the
# operation; these names say which reply a test expects.
successful_capture_response = payment_json
successful_refund_response = payment_json
reversed_payment_response = payment_json


# -- the fake gateway ------------------------------------------------------------------------------------


class GatewayRefusal(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.status = status
        self.body = body


class FakeNgenius(FakeGateway):
    EXTRA_FAULTS: ClassVar[tuple[str, ...]] = ("child_failed",)
    server_error_body = SERVER_ERROR_BODY

    def __init__(self, *, api_key: str = API_KEY, outlet: str = OUTLET) -> None:
        super().__init__()
        self._lock = self.lock
        self.reset(api_key=api_key, outlet=outlet)

    def reset(self, *, api_key: str = API_KEY, outlet: str = OUTLET) -> None:
        """Forget everything (orders, tokens, recorded requests, faults) for the next test."""
        self.release_hanging()  # requests of earlier tests still hanging give up
        with self._lock:
            self.api_key = api_key
            self.outlet = outlet
            self.token_lifetime = 300
            self.hang_seconds = 3.0
            self.orders: dict[str, FakeOrder] = {}
            self.tokens: dict[str, float] = {}  # token → monotonic expiry
            self.requests: list[RecordedRequest] = []
            self.faults: list[Fault] = []
            # -- payment acceptance --
            self.page_lifetime = 3600.0  # GUESS: the page's lifetime is not documented
            self.redirect_after_payment = True  # False: "paid but never returned"
            # Where the portal's webhook goes: (url, header key, header value), or None.
            self.webhook: tuple[str, str, str] | None = None
            self.webhook_deliveries: list[dict[str, Any]] = []

    # -- control ------------------------------------------------------------------------------------
    def create_order(
        self,
        action: str = "AUTH",
        value: int = 10000,
        currency: str = "AED",
        state: str | None = None,
        *,
        saved_card: bool = True,
    ) -> tuple[str, str]:
        """An order paid by the customer: AUTH → AUTHORISED, SALE → CAPTURED (one capture of the
        whole amount), PURCHASE → PURCHASED. Returns (order reference, payment reference)."""
        order = FakeOrder(str(uuid.uuid4()), self.outlet, action, value, currency)
        default = {"AUTH": "AUTHORISED", "SALE": "CAPTURED", "PURCHASE": "PURCHASED"}[action]
        payment = FakePayment(
            str(uuid.uuid4()), action, state or default, value, currency, saved_card=saved_card
        )
        if action == "SALE" and payment.state == "CAPTURED":
            payment.captures.append(Child(str(uuid.uuid4()), "capture", value, currency))
        order.payments.append(payment)
        with self._lock:
            self.orders[order.ref] = order
        return order.ref, payment.ref

    def payment(self, order_ref: str, payment_ref: str | None = None) -> FakePayment:
        order = self.orders[order_ref]
        return next(p for p in order.payments if payment_ref in (None, p.ref))

    def inject(self, route: str, kind: str, *, perform: bool = False, times: int = 1) -> None:
        """The next ``times`` requests to ``route`` (token, order, capture, refund, void) meet
        ``kind``; ``perform`` moves the money first."""
        self.fail_next(kind, path=route, apply=perform, times=times)

    def expire_tokens(self) -> None:
        with self._lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    def settle_requested_refunds(self) -> None:
        """The overnight settlement: REQUESTED refunds become SUCCESS."""
        with self._lock:
            for order in self.orders.values():
                for payment in order.payments:
                    for refund in payment.refunds:
                        if refund.state == "REQUESTED":
                            refund.state = "SUCCESS"

    def calls(self, method: str | None = None, suffix: str = "") -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if (method is None or r.method == method) and r.path.endswith(suffix)
        ]

    def operations(self) -> list[RecordedRequest]:
        """Every request other than the token exchange and order inquiries."""
        return [
            r
            for r in self.requests
            if r.method in ("POST", "PUT", "DELETE") and not r.path.startswith("/identity/")
        ]

    # -- helpers ------------------------------------------------------------------------------------
    def take_fault(self, method: str, path: str) -> Fault | None:
        return None  # faults are met inside the protocol, after the bearer check

    def _take_fault(self, route: str) -> Fault | None:
        return super().take_fault("", route)  # a fault's ``path`` is the route name

    def fault_matches(self, fault: Fault, method: str, path: str) -> bool:
        return fault.path == path

    def malformed_answer(self, request: RecordedRequest) -> Answer:
        return Answer(201 if request.method == "POST" else 200, MALFORMED_BODY, PAYMENT_TYPE)

    def _check_bearer(self, request: _Call, *, with_media_types: bool) -> None:
        header = request.headers.get("authorization", "")
        token = header[len("Bearer ") :] if header.startswith("Bearer ") else ""
        with self._lock:
            expires = self.tokens.get(token)
        if not token or expires is None or expires <= time.monotonic():
            raise GatewayRefusal(401, unauthorized_response())
        if request.path_params.get("outlet") != self.outlet:
            raise GatewayRefusal(404, error_response(404, "Outlet not found", "outletNotFound"))
        if with_media_types:
            if request.headers.get("content-type", "").split(";")[0].strip() != PAYMENT_TYPE:
                raise GatewayRefusal(
                    415,
                    error_response(
                        415, f"Content-Type must be {PAYMENT_TYPE}", "unsupportedMediaType"
                    ),
                )
            if PAYMENT_TYPE not in request.headers.get("accept", ""):
                raise GatewayRefusal(
                    406, error_response(406, f"Accept must include {PAYMENT_TYPE}", "notAcceptable")
                )

    def _find(self, request: _Call) -> tuple[FakeOrder, FakePayment | None]:
        order = self.orders.get(request.path_params["order"])
        if order is None or order.outlet != self.outlet:
            raise GatewayRefusal(404, error_response(404, "Order not found", "orderNotFound"))
        payment_ref = request.path_params.get("payment")
        if payment_ref is None:
            return order, None
        payment = next((p for p in order.payments if p.ref == payment_ref), None)
        if payment is None:
            raise GatewayRefusal(404, error_response(404, "Payment not found", "paymentNotFound"))
        return order, payment

    @staticmethod
    def _amount(body: bytes, payment: FakePayment) -> int:
        try:
            data = json.loads(body)
        except ValueError:
            raise GatewayRefusal(
                400, error_response(400, "The request body is not valid JSON", "invalidRequest")
            ) from None
        block = data.get("amount") if isinstance(data, dict) else None
        if not isinstance(block, dict) or "currencyCode" not in block or "value" not in block:
            raise GatewayRefusal(
                400,
                error_response(
                    400, "amount.currencyCode and amount.value are required", "invalidRequest"
                ),
            )
        value, currency = block["value"], block["currencyCode"]
        if not isinstance(value, int) or isinstance(value, bool):
            raise GatewayRefusal(
                400,
                error_response(
                    400, "amount.value must be an integer in minor units", "invalidAmount"
                ),
            )
        if value <= 0:
            raise GatewayRefusal(
                400, error_response(400, "amount.value must be greater than zero", "invalidAmount")
            )
        if not isinstance(currency, str) or currency != payment.currency:
            raise GatewayRefusal(
                400,
                error_response(
                    400,
                    "amount.currencyCode does not match the payment currency",
                    "invalidCurrency",
                ),
            )
        return value

    @staticmethod
    def _refund_state(payment: FakePayment) -> None:
        base = payment.value if payment.action == "PURCHASE" else payment.captured()
        payment.state = "REFUNDED" if payment.refunded() >= base else "PARTIALLY_REFUNDED"

    # -- routes -------------------------------------------------------------------------------------
    def token(self, request: _Call, body: bytes) -> Answer:
        fault = self._take_fault("token")
        if fault is not None and fault.kind in TRANSPORT_FAULTS:
            return Answer(0, fault=fault)
        if request.headers.get("content-type", "").split(";")[0].strip() != IDENTITY_TYPE:
            return Answer(
                415,
                error_response(
                    415, f"Content-Type must be {IDENTITY_TYPE}", "unsupportedMediaType", "identity"
                ),
                JSON,
            )
        if request.headers.get("authorization") != f"Basic {self.api_key}":
            return Answer(401, invalid_credentials_response(), JSON)
        if body:
            return Answer(
                400,
                error_response(400, "The request body must be empty", "invalidRequest", "identity"),
                JSON,
            )
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = time.monotonic() + self.token_lifetime
        return Answer(200, access_token_response(token, self.token_lifetime), JSON)

    def order(self, request: _Call, body: bytes) -> Answer:
        try:
            self._check_bearer(request, with_media_types=False)
            fault = self._take_fault("order")
            if fault is not None and fault.kind in TRANSPORT_FAULTS:
                return Answer(0, fault=fault)
            order, _ = self._find(request)
        except GatewayRefusal as refusal:
            return Answer(refusal.status, refusal.body, JSON)
        return Answer(200, order_status_response(self.url, order), PAYMENT_TYPE)

    def _operation(self, request: _Call, body: bytes, route: str, perform: Any) -> Answer:
        try:
            self._check_bearer(request, with_media_types=True)
            fault = self._take_fault(route)
            if fault is not None and fault.kind in TRANSPORT_FAULTS and not fault.apply:
                return Answer(0, fault=fault)
            if fault is not None and fault.kind == "decline":
                return Answer(400, declined_response(route), JSON)
            order, payment = self._find(request)
            assert payment is not None
            with self._lock:
                perform(request, body, payment, fault.kind if fault else "")
            status = 201 if request.method == "POST" else 200
            return Answer(
                status,
                payment_json(self.url, order, payment),
                PAYMENT_TYPE,
                fault if fault is not None and fault.kind in TRANSPORT_FAULTS else None,
            )
        except GatewayRefusal as refusal:
            return Answer(refusal.status, refusal.body, JSON)

    def capture(self, request: _Call, body: bytes) -> Answer:
        def perform(request: _Call, body: bytes, payment: FakePayment, kind: str) -> None:
            value = self._amount(body, payment)
            if payment.action != "AUTH" or payment.state not in (
                "AUTHORISED",
                "PARTIALLY_CAPTURED",
                "PARTIALLY_REFUNDED",
            ):
                raise GatewayRefusal(
                    400,
                    error_response(
                        400,
                        f"A payment in state {payment.state} cannot be captured",
                        "invalidPaymentState",
                    ),
                )
            if payment.captured() + value > payment.value:
                raise GatewayRefusal(
                    400,
                    error_response(
                        400, "The capture amount exceeds the authorised amount", "amountExceeded"
                    ),
                )
            state = "FAILED" if kind == "child_failed" else "SUCCESS"
            payment.captures.append(
                Child(str(uuid.uuid4()), "capture", value, payment.currency, state)
            )
            if state == "SUCCESS" and not payment.refunds:
                payment.state = (
                    "CAPTURED" if payment.captured() == payment.value else "PARTIALLY_CAPTURED"
                )
            elif state == "SUCCESS":
                self._refund_state(payment)
            payment.updated = _now()

        return self._operation(request, body, "capture", perform)

    def refund_capture(self, request: _Call, body: bytes) -> Answer:
        def perform(request: _Call, body: bytes, payment: FakePayment, kind: str) -> None:
            value = self._amount(body, payment)
            capture_ref = request.path_params["capture"]
            if capture_ref == PURCHASE_CAPTURE and payment.action == "PURCHASE":
                self._refund_purchase(body, payment, kind)
                return
            capture = next((c for c in payment.captures if c.ref == capture_ref), None)
            if capture is None:
                raise GatewayRefusal(
                    404, error_response(404, "Capture not found", "captureNotFound")
                )
            if capture.state != "SUCCESS" or payment.state == "REVERSED":
                raise GatewayRefusal(
                    400,
                    error_response(400, "This capture cannot be refunded", "invalidPaymentState"),
                )
            if payment.refunded(capture.ref) + value > capture.value:
                raise GatewayRefusal(
                    400,
                    error_response(
                        400, "The refund amount exceeds the captured amount", "amountExceeded"
                    ),
                )
            self._add_refund(payment, value, kind, capture.ref)

        return self._operation(request, body, "refund", perform)

    def _refund_purchase(self, body: bytes, payment: FakePayment, kind: str) -> None:
        value = self._amount(body, payment)
        if payment.state not in ("PURCHASED", "PARTIALLY_REFUNDED"):
            raise GatewayRefusal(
                400,
                error_response(
                    400,
                    f"A payment in state {payment.state} cannot be refunded this way",
                    "invalidPaymentState",
                ),
            )
        if payment.refunded() + value > payment.value:
            raise GatewayRefusal(
                400,
                error_response(
                    400, "The refund amount exceeds the purchased amount", "amountExceeded"
                ),
            )
        self._add_refund(payment, value, kind, None)

    def _add_refund(
        self, payment: FakePayment, value: int, kind: str, capture_ref: str | None
    ) -> None:
        state = {"queue": "REQUESTED", "child_failed": "FAILED"}.get(kind, "SUCCESS")
        payment.refunds.append(
            Child(str(uuid.uuid4()), "refund", value, payment.currency, state, capture_ref)
        )
        if state != "FAILED":
            self._refund_state(payment)
        payment.updated = _now()

    def cancel(self, request: _Call, body: bytes) -> Answer:
        def perform(request: _Call, body: bytes, payment: FakePayment, kind: str) -> None:
            if body:
                raise GatewayRefusal(
                    400, error_response(400, "A reversal takes no request body", "invalidRequest")
                )
            if (
                payment.state not in ("AUTHORISED", "PURCHASED")
                or payment.captures
                or payment.refunds
            ):
                raise GatewayRefusal(
                    400,
                    error_response(
                        400,
                        f"A payment in state {payment.state} with captures or refunds cannot be "
                        "reversed",
                        "invalidPaymentState",
                    ),
                )
            payment.state = "REVERSED"
            payment.updated = _now()

        return self._operation(request, body, "void", perform)

    def not_found(self, request: _Call, body: bytes) -> Answer:
        return Answer(404, error_response(404, "No such resource", "notFound"), JSON)

    # -- payment acceptance -------------------------------------------------------------------------
    def order_of_reference(self, merchant_reference: str) -> list[FakeOrder]:
        """Every order created with this ``merchantOrderReference`` (N-Genius's books)."""
        with self._lock:
            return [
                o for o in self.orders.values() if o.merchant_order_reference == merchant_reference
            ]

    def order_of_page(self, url: str) -> FakeOrder:
        code = dict(parse_qsl(urlsplit(url).query)).get("code", "")
        with self._lock:
            return next(o for o in self.orders.values() if o.code == code)

    def send_webhook(
        self, order_ref: str, url: str, header: str, value: str, event: str | None = None
    ) -> int:
        """Post the order's webhook (``{eventId, eventName, outletId, order}``) to ``url`` now."""
        payload = self._event(order_ref, event)
        response = httpx.post(
            url,
            content=json.dumps(payload).encode(),
            timeout=15.0,
            headers={"Content-Type": "application/json", header: value},
        )
        with self._lock:
            self.webhook_deliveries.append(
                {"url": url, "status_code": response.status_code, "payload": payload}
            )
        return response.status_code

    def _event(self, order_ref: str, event: str | None = None) -> dict[str, Any]:
        with self._lock:
            order = self.orders[order_ref]
            state = order.payments[-1].state if order.payments else "STARTED"
            return {
                "eventId": str(uuid.uuid4()),
                "eventName": event or state,
                "outletId": order.outlet,
                "order": order_status_response(self.url, order),
            }

    def _notify(self, order: FakeOrder) -> None:
        """The portal's webhook, if one is set: one POST per event, no retries."""
        if self.webhook is None:
            return
        url, header, value = self.webhook
        payload = self._event(order.ref)

        def deliver() -> None:
            try:
                response = httpx.post(
                    url,
                    content=json.dumps(payload).encode(),
                    timeout=15.0,
                    headers={"Content-Type": "application/json", header: value},
                )
                status: int | None = response.status_code
            except httpx.HTTPError:
                status = None
            with self._lock:
                self.webhook_deliveries.append(
                    {"url": url, "status_code": status, "payload": payload}
                )

        threading.Thread(target=deliver, daemon=True).start()

    def create(self, request: _Call, body: bytes) -> Answer:
        """POST …/outlets/{outlet}/orders: a new order with one STARTED payment and its page."""
        try:
            self._check_bearer(request, with_media_types=True)
            fault = self._take_fault("create")
            if fault is not None and fault.kind in TRANSPORT_FAULTS and not fault.apply:
                return Answer(0, fault=fault)
            if fault is not None and fault.kind == "decline":
                return Answer(400, declined_response("order"), JSON)
            order = self._new_order(request.path_params["outlet"], body)
        except GatewayRefusal as refusal:
            return Answer(refusal.status, refusal.body, JSON)
        reply = order_status_response(self.url, order)
        return Answer(
            201,
            reply,
            PAYMENT_TYPE,
            fault if fault is not None and fault.kind in TRANSPORT_FAULTS else None,
        )

    def _new_order(self, outlet: str, body: bytes) -> FakeOrder:
        def invalid(message: str) -> GatewayRefusal:
            return GatewayRefusal(400, error_response(400, message, "invalidRequest"))

        try:
            data = json.loads(body)
        except ValueError:
            raise invalid("The request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise invalid("The request body must be an object")
        action = data.get("action")
        if action not in ORDER_ACTIONS:
            raise invalid("action must be one of AUTH, SALE, PURCHASE")
        block = data.get("amount")
        if not isinstance(block, dict) or "currencyCode" not in block or "value" not in block:
            raise invalid("amount.currencyCode and amount.value are required")
        value, currency = block["value"], block["currencyCode"]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise GatewayRefusal(
                400,
                error_response(
                    400, "amount.value must be a positive integer in minor units", "invalidAmount"
                ),
            )
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
            raise GatewayRefusal(
                400,
                error_response(
                    400, "amount.currencyCode must be an ISO 4217 code", "invalidCurrency"
                ),
            )
        email = data.get("emailAddress")
        if not isinstance(email, str) or "@" not in email:
            raise invalid("emailAddress is required")
        attributes = data.get("merchantAttributes") or {}
        if not isinstance(attributes, dict):
            raise invalid("merchantAttributes must be an object")
        for name in ("redirectUrl", "cancelUrl"):
            if name in attributes and not str(attributes[name]).startswith(("http://", "https://")):
                raise invalid(f"merchantAttributes.{name} must be a URL")
        order = FakeOrder(str(uuid.uuid4()), outlet, action, value, currency)
        order.merchant_order_reference = data.get("merchantOrderReference")
        order.email = email
        order.redirect_url = attributes.get("redirectUrl")
        order.cancel_url = attributes.get("cancelUrl")
        order.cancel_text = attributes.get("cancelText") or "Cancel"
        order.code = secrets.token_hex(8)
        order.payments.append(
            FakePayment(
                str(uuid.uuid4()),
                action,
                "STARTED",
                value,
                currency,
                saved_card=False,
                card_used=False,
            )
        )
        with self._lock:
            self.orders[order.ref] = order
        return order

    def paypage(self, request: _Call, body: bytes) -> Answer:
        """The hosted payment page: GET shows the card form, POST pays or cancels."""
        fields = dict(
            parse_qsl(
                request.query if request.method == "GET" else body.decode("utf-8", "replace"),
                keep_blank_values=True,
            )
        )
        with self._lock:
            order = next(
                (o for o in self.orders.values() if o.code and o.code == fields.get("code")), None
            )
            if order is None:
                return Answer(404, _page("<p>Unknown payment link.</p>"), HTML)
            payment = order.payments[-1]
            if time.monotonic() - order.created_at > self.page_lifetime:
                return Answer(410, _page("<p>This payment link has expired.</p>"), HTML)
            if payment.state != "STARTED":
                return Answer(
                    410, _page(f"<p>This order is {html.escape(payment.state)}.</p>"), HTML
                )
            if request.method == "GET":
                return Answer(200, _card_page(order), HTML)
            if fields.get("action") == "cancel":
                if not order.cancel_url:
                    return Answer(400, _page("<p>No cancel address.</p>"), HTML)
                return Answer(302, "", "text/plain", headers={"Location": order.cancel_url})
            card = re.sub(r"\s", "", fields.get("pan", ""))
            outcome = {
                CARD_APPROVED: PAID_STATE[payment.action],
                CARD_DECLINED: "DECLINED",
                CARD_3DS_PENDING: "AWAIT_3DS",
            }.get(card)
            if outcome is None or not re.fullmatch(r"\d{3}", fields.get("cvv", "")):
                return Answer(200, _card_page(order, "Card not accepted"), HTML)
            payment.state, payment.card_used, payment.updated = outcome, True, _now()
            if outcome == "CAPTURED":
                payment.captures.append(
                    Child(str(uuid.uuid4()), "capture", payment.value, payment.currency)
                )
            if outcome == "AWAIT_3DS":  # the challenge page, which never completes
                return Answer(200, _page("<p>Authenticate this payment with your bank.</p>"), HTML)
            self._notify(order)
            if not self.redirect_after_payment or not order.redirect_url:
                return Answer(200, _page("<p>Payment processed.</p>"), HTML)
            location = _with_query(order.redirect_url, ref=order.ref)
        return Answer(302, "", "text/plain", headers={"Location": location})

    def routes(self) -> list[tuple[str, re.Pattern[str], Callable[[_Call, bytes], Answer]]]:
        base = r"/transactions/outlets/(?P<outlet>[^/]+)/orders/(?P<order>[^/]+)"
        payment = base + r"/payments/(?P<payment>[^/]+)"
        return [
            ("POST", re.compile(r"/identity/auth/access-token"), self.token),
            ("POST", re.compile(r"/transactions/outlets/(?P<outlet>[^/]+)/orders"), self.create),
            ("GET", re.compile(r"/paypage/?"), self.paypage),
            ("POST", re.compile(r"/paypage/?"), self.paypage),
            ("GET", re.compile(base), self.order),
            ("POST", re.compile(payment + "/captures"), self.capture),
            (
                "POST",
                re.compile(payment + r"/captures/(?P<capture>[^/]+)/refund"),
                self.refund_capture,
            ),
            ("PUT", re.compile(payment + "/cancel"), self.cancel),
        ]

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        path, _, query = path.partition("?")
        lower = {k.lower(): v for k, v in headers.items()}
        for verb, pattern, route in self.routes():
            match = pattern.fullmatch(path)
            if match is not None and verb == method:
                return route(_Call(method, lower, match.groupdict(), query), body)
        return self.not_found(_Call(method, lower, {}), body)


def _with_query(url: str, **extra: str) -> str:
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *extra.items()])
    return urlunsplit(parts._replace(query=query))


def _page(content: str) -> str:
    return (
        "<!doctype html><html><head><title>N-Genius payment</title></head>"
        f"<body>{content}</body></html>"
    )


def _card_page(order: FakeOrder, error: str = "") -> str:
    notice = f'<p class="error">{html.escape(error)}</p>' if error else ""
    shown = f"{order.value} (minor units) {order.currency}"
    cancel = (
        (
            f'<button type="submit" name="action" value="cancel">'
            f"{html.escape(order.cancel_text or 'Cancel')}</button>"
        )
        if order.cancel_url
        else ""
    )
    return _page(
        f"<h1>Pay {html.escape(shown)}</h1>{notice}"
        '<form method="post" action="/paypage/">'
        f'<input type="hidden" name="code" value="{html.escape(order.code or "")}">'
        '<label>Card number <input name="pan" autocomplete="cc-number"></label>'
        '<label>Expiry <input name="expiry" placeholder="MM/YY"></label>'
        '<label>CVV <input name="cvv"></label>'
        '<label>Name on card <input name="cardholderName"></label>'
        '<button type="submit" name="action" value="pay">Pay</button>'
        f"{cancel}</form>"
    )


@pytest.fixture(scope="session")
def ngenius_server() -> Iterator[FakeNgenius]:
    """One fake gateway for the session, on a free 127.0.0.1 port."""
    yield from FakeNgenius().serving()


@pytest.fixture
def ngenius_fake(ngenius_server: FakeNgenius) -> Iterator[FakeNgenius]:
    """The fake gateway, with no orders, tokens, recorded requests or faults."""
    ngenius_server.reset()
    try:
        yield ngenius_server
    finally:
        ngenius_server.reset()  # also ends any request still hanging
