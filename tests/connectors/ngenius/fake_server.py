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

A test steers it with ``inject(route, kind, perform=…)``: route is ``token``, ``order``,
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

import asyncio
import json
import secrets
import socket
import struct
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

API_KEY = "TjJ2ZkZha2VTZXJ2aWNlQWNjb3VudDpub3QtYS1yZWFsLWtleS1iNjRkMmY5Yg=="
OUTLET = "5edab6d7-5946-43f4-b8c7-06b29c272bdd"
IDENTITY_TYPE = "application/vnd.ni-identity.v1+json"
PAYMENT_TYPE = "application/vnd.ni-payment.v2+json"
CARD_TOKEN = "dG9rZW4tb2YtYS1zYXZlZC1jYXJkLWZvci10ZXN0cw=="
MASKED_PAN = "411111******1111"

SERVER_ERROR_BODY = b"<html><body><h1>500 Internal Server Error</h1></body></html>"
MALFORMED_BODY = b'{"_id": "urn:payment:'
TRANSPORT_FAULTS = ("timeout", "reset", "500", "malformed")


# -- canned replies --------------------------------------------------------------------------------

def access_token_response(token: str, expires_in: int = 300) -> dict[str, Any]:
    return {
        "access_token": token,
        "expires_in": expires_in,
        "refresh_expires_in": 1800,
        "refresh_token": secrets.token_urlsafe(24),
        "token_type": "bearer",
    }


def error_response(code: int, message: str, error_code: str,
                   domain: str = "payments") -> dict[str, Any]:
    reason = {400: "Bad Request", 401: "Unauthorized", 404: "Not Found", 405: "Method Not Allowed",
              406: "Not Acceptable", 415: "Unsupported Media Type"}.get(code, "Error")
    return {
        "message": reason,
        "code": code,
        "errors": [{"message": message, "localizedMessage": message, "errorCode": error_code,
                    "domain": domain}],
    }


def unauthorized_response() -> dict[str, Any]:
    return error_response(401, "Access token is missing, invalid or expired", "unauthorized",
                          "identity")


def invalid_credentials_response() -> dict[str, Any]:
    return error_response(401, "Invalid client credentials", "invalidCredentials", "identity")


def declined_response(operation: str) -> dict[str, Any]:
    return error_response(400, f"The {operation} was declined by the acquirer", "declined",
                          "processing")


def amount(value: int, currency: str) -> dict[str, Any]:
    return {"currencyCode": currency, "value": value}


# The id in a PURCHASE payment's cnp:refund link (GUESS, see the module docstring).
PURCHASE_CAPTURE = "sale"


# -- state -----------------------------------------------------------------------------------------

def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


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
    updated: str = field(default_factory=_now)

    def captured(self) -> int:
        return sum(c.value for c in self.captures if c.state == "SUCCESS")

    def refunded(self, capture_ref: str | None = None) -> int:
        return sum(r.value for r in self.refunds if r.state in ("SUCCESS", "REQUESTED")
                   and (capture_ref is None or r.capture_ref == capture_ref))


@dataclass
class FakeOrder:
    ref: str
    outlet: str
    action: str
    value: int
    currency: str
    payments: list[FakePayment] = field(default_factory=list)
    created: str = field(default_factory=_now)


@dataclass
class Fault:
    route: str
    kind: str
    perform: bool = False
    times: int = 1


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


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
    if payment.state in ("AUTHORISED", "PURCHASED") and not payment.captures \
            and not payment.refunds:
        links["cnp:cancel"] = {"href": f"{url}/cancel"}
    if payment.action == "PURCHASE" and payment.state in ("PURCHASED", "PARTIALLY_REFUNDED") \
            and payment.refund_link:
        links["cnp:refund"] = {"href": f"{url}/captures/{PURCHASE_CAPTURE}/refund"}
    body: dict[str, Any] = {
        "_id": f"urn:payment:{payment.ref}",
        "_links": links,
        "reference": payment.ref,
        "paymentMethod": {"expiry": "2029-04", "cardholderName": "Test Holder", "name": "VISA",
                          "pan": MASKED_PAN},
        "state": payment.state,
        "amount": amount(payment.value, payment.currency),
        "updateDateTime": payment.updated,
        "outletId": order.outlet,
        "orderReference": order.ref,
        "authResponse": {"authorizationCode": "AB12CD", "success": True, "resultCode": "00",
                         "resultMessage": "Successful approval/completion", "rrn": "412345678901"},
    }
    if payment.saved_card:
        body["savedCard"] = {"maskedPan": MASKED_PAN, "expiry": "2029-04",
                             "cardholderName": "Test Holder", "scheme": "VISA",
                             "cardToken": CARD_TOKEN, "recaptureCsc": True}
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


class FakeNgenius:
    def __init__(self, *, api_key: str = API_KEY, outlet: str = OUTLET) -> None:
        self.url = ""
        self._lock = threading.Lock()
        self._generation = 0  # bumped by reset(): hanging handlers of earlier tests give up
        self.reset(api_key=api_key, outlet=outlet)

    def reset(self, *, api_key: str = API_KEY, outlet: str = OUTLET) -> None:
        """Forget everything (orders, tokens, recorded requests, faults) for the next test."""
        with self._lock:
            self._generation += 1
            self.api_key = api_key
            self.outlet = outlet
            self.token_lifetime = 300
            self.hang_seconds = 3.0
            self.orders: dict[str, FakeOrder] = {}
            self.tokens: dict[str, float] = {}  # token → monotonic expiry
            self.requests: list[Recorded] = []
            self.faults: list[Fault] = []

    # -- control ------------------------------------------------------------------------------------
    def create_order(self, action: str = "AUTH", value: int = 10000, currency: str = "AED",
                     state: str | None = None, *, saved_card: bool = True) -> tuple[str, str]:
        """An order paid by the customer: AUTH → AUTHORISED, SALE → CAPTURED (one capture of the
        whole amount), PURCHASE → PURCHASED. Returns (order reference, payment reference)."""
        order = FakeOrder(str(uuid.uuid4()), self.outlet, action, value, currency)
        default = {"AUTH": "AUTHORISED", "SALE": "CAPTURED", "PURCHASE": "PURCHASED"}[action]
        payment = FakePayment(str(uuid.uuid4()), action, state or default, value, currency,
                              saved_card=saved_card)
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
        with self._lock:
            self.faults.append(Fault(route, kind, perform, times))

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

    def calls(self, method: str | None = None, suffix: str = "") -> list[Recorded]:
        return [r for r in self.requests
                if (method is None or r.method == method) and r.path.endswith(suffix)]

    def operations(self) -> list[Recorded]:
        """Every request other than the token exchange and order inquiries."""
        return [r for r in self.requests if r.method in ("POST", "PUT", "DELETE")
                and not r.path.startswith("/identity/")]

    # -- helpers ------------------------------------------------------------------------------------
    def _take_fault(self, route: str) -> Fault | None:
        with self._lock:
            for fault in self.faults:
                if fault.route == route and fault.times > 0:
                    fault.times -= 1
                    if fault.times == 0:
                        self.faults.remove(fault)
                    return fault
        return None

    async def _misbehave(self, fault: Fault, request: Request, good: Response | None) -> Response:
        if fault.kind == "timeout":
            ends, generation = time.monotonic() + self.hang_seconds, self._generation
            while time.monotonic() < ends and generation == self._generation:
                await asyncio.sleep(0.02)
            return good or Response(status_code=504)
        if fault.kind == "reset":
            transport = request.scope.get("fake.transport")
            if transport is not None:
                sock = transport.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
                await asyncio.sleep(0.05)
            return Response(status_code=500)
        if fault.kind == "500":
            return Response(SERVER_ERROR_BODY, status_code=500, media_type="text/html")
        return Response(MALFORMED_BODY, status_code=201 if request.method == "POST" else 200,
                        media_type=PAYMENT_TYPE)

    def _check_bearer(self, request: Request, *, with_media_types: bool) -> None:
        header = request.headers.get("authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else ""
        with self._lock:
            expires = self.tokens.get(token)
        if not token or expires is None or expires <= time.monotonic():
            raise GatewayRefusal(401, unauthorized_response())
        if request.path_params.get("outlet") != self.outlet:
            raise GatewayRefusal(404, error_response(404, "Outlet not found", "outletNotFound"))
        if with_media_types:
            if request.headers.get("content-type", "").split(";")[0].strip() != PAYMENT_TYPE:
                raise GatewayRefusal(415, error_response(
                    415, f"Content-Type must be {PAYMENT_TYPE}", "unsupportedMediaType"))
            if PAYMENT_TYPE not in request.headers.get("accept", ""):
                raise GatewayRefusal(406, error_response(
                    406, f"Accept must include {PAYMENT_TYPE}", "notAcceptable"))

    def _find(self, request: Request) -> tuple[FakeOrder, FakePayment | None]:
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
            raise GatewayRefusal(400, error_response(
                400, "The request body is not valid JSON", "invalidRequest")) from None
        block = data.get("amount") if isinstance(data, dict) else None
        if not isinstance(block, dict) or "currencyCode" not in block or "value" not in block:
            raise GatewayRefusal(400, error_response(
                400, "amount.currencyCode and amount.value are required", "invalidRequest"))
        value, currency = block["value"], block["currencyCode"]
        if not isinstance(value, int) or isinstance(value, bool):
            raise GatewayRefusal(400, error_response(
                400, "amount.value must be an integer in minor units", "invalidAmount"))
        if value <= 0:
            raise GatewayRefusal(400, error_response(
                400, "amount.value must be greater than zero", "invalidAmount"))
        if not isinstance(currency, str) or currency != payment.currency:
            raise GatewayRefusal(400, error_response(
                400, "amount.currencyCode does not match the payment currency", "invalidCurrency"))
        return value

    @staticmethod
    def _refund_state(payment: FakePayment) -> None:
        base = payment.value if payment.action == "PURCHASE" else payment.captured()
        payment.state = "REFUNDED" if payment.refunded() >= base else "PARTIALLY_REFUNDED"

    # -- routes -------------------------------------------------------------------------------------
    async def _record(self, request: Request) -> bytes:
        body = await request.body()
        with self._lock:
            self.requests.append(Recorded(request.method, request.url.path,
                                          {k.lower(): v for k, v in request.headers.items()}, body))
        return body

    async def token(self, request: Request) -> Response:
        body = await self._record(request)
        fault = self._take_fault("token")
        if fault is not None and fault.kind in TRANSPORT_FAULTS:
            return await self._misbehave(fault, request, None)
        if request.headers.get("content-type", "").split(";")[0].strip() != IDENTITY_TYPE:
            return JSONResponse(error_response(415, f"Content-Type must be {IDENTITY_TYPE}",
                                               "unsupportedMediaType", "identity"), 415)
        if request.headers.get("authorization") != f"Basic {self.api_key}":
            return JSONResponse(invalid_credentials_response(), 401)
        if body:
            return JSONResponse(error_response(400, "The request body must be empty",
                                               "invalidRequest", "identity"), 400)
        token = secrets.token_urlsafe(32)
        with self._lock:
            self.tokens[token] = time.monotonic() + self.token_lifetime
        return JSONResponse(access_token_response(token, self.token_lifetime), 200)

    async def order(self, request: Request) -> Response:
        await self._record(request)
        try:
            self._check_bearer(request, with_media_types=False)
            fault = self._take_fault("order")
            if fault is not None and fault.kind in TRANSPORT_FAULTS:
                return await self._misbehave(fault, request, None)
            order, _ = self._find(request)
        except GatewayRefusal as refusal:
            return JSONResponse(refusal.body, refusal.status)
        return JSONResponse(order_status_response(self.url, order), 200, media_type=PAYMENT_TYPE)

    async def _operation(self, request: Request, route: str, perform: Any) -> Response:
        body = await self._record(request)
        try:
            self._check_bearer(request, with_media_types=True)
            fault = self._take_fault(route)
            if fault is not None and fault.kind in TRANSPORT_FAULTS and not fault.perform:
                return await self._misbehave(fault, request, None)
            if fault is not None and fault.kind == "decline":
                return JSONResponse(declined_response(route), 400)
            order, payment = self._find(request)
            assert payment is not None
            with self._lock:
                perform(request, body, payment, fault.kind if fault else "")
            status = 201 if request.method == "POST" else 200
            good = JSONResponse(payment_json(self.url, order, payment), status,
                                media_type=PAYMENT_TYPE)
            if fault is not None and fault.kind in TRANSPORT_FAULTS:
                return await self._misbehave(fault, request, good)
            return good
        except GatewayRefusal as refusal:
            return JSONResponse(refusal.body, refusal.status)

    async def capture(self, request: Request) -> Response:
        def perform(request: Request, body: bytes, payment: FakePayment, kind: str) -> None:
            value = self._amount(body, payment)
            if payment.action != "AUTH" or payment.state not in (
                    "AUTHORISED", "PARTIALLY_CAPTURED", "PARTIALLY_REFUNDED"):
                raise GatewayRefusal(400, error_response(
                    400, f"A payment in state {payment.state} cannot be captured",
                    "invalidPaymentState"))
            if payment.captured() + value > payment.value:
                raise GatewayRefusal(400, error_response(
                    400, "The capture amount exceeds the authorised amount", "amountExceeded"))
            state = "FAILED" if kind == "child_failed" else "SUCCESS"
            payment.captures.append(Child(str(uuid.uuid4()), "capture", value, payment.currency,
                                          state))
            if state == "SUCCESS" and not payment.refunds:
                payment.state = ("CAPTURED" if payment.captured() == payment.value
                                 else "PARTIALLY_CAPTURED")
            elif state == "SUCCESS":
                self._refund_state(payment)
            payment.updated = _now()

        return await self._operation(request, "capture", perform)

    async def refund_capture(self, request: Request) -> Response:
        def perform(request: Request, body: bytes, payment: FakePayment, kind: str) -> None:
            value = self._amount(body, payment)
            capture_ref = request.path_params["capture"]
            if capture_ref == PURCHASE_CAPTURE and payment.action == "PURCHASE":
                self._refund_purchase(body, payment, kind)
                return
            capture = next((c for c in payment.captures if c.ref == capture_ref), None)
            if capture is None:
                raise GatewayRefusal(404, error_response(404, "Capture not found",
                                                         "captureNotFound"))
            if capture.state != "SUCCESS" or payment.state == "REVERSED":
                raise GatewayRefusal(400, error_response(
                    400, "This capture cannot be refunded", "invalidPaymentState"))
            if payment.refunded(capture.ref) + value > capture.value:
                raise GatewayRefusal(400, error_response(
                    400, "The refund amount exceeds the captured amount", "amountExceeded"))
            self._add_refund(payment, value, kind, capture.ref)

        return await self._operation(request, "refund", perform)

    def _refund_purchase(self, body: bytes, payment: FakePayment, kind: str) -> None:
        value = self._amount(body, payment)
        if payment.state not in ("PURCHASED", "PARTIALLY_REFUNDED"):
            raise GatewayRefusal(400, error_response(
                400, f"A payment in state {payment.state} cannot be refunded this way",
                "invalidPaymentState"))
        if payment.refunded() + value > payment.value:
            raise GatewayRefusal(400, error_response(
                400, "The refund amount exceeds the purchased amount", "amountExceeded"))
        self._add_refund(payment, value, kind, None)

    def _add_refund(self, payment: FakePayment, value: int, kind: str,
                    capture_ref: str | None) -> None:
        state = {"pending": "REQUESTED", "child_failed": "FAILED"}.get(kind, "SUCCESS")
        payment.refunds.append(Child(str(uuid.uuid4()), "refund", value, payment.currency, state,
                                     capture_ref))
        if state != "FAILED":
            self._refund_state(payment)
        payment.updated = _now()

    async def cancel(self, request: Request) -> Response:
        def perform(request: Request, body: bytes, payment: FakePayment, kind: str) -> None:
            if body:
                raise GatewayRefusal(400, error_response(
                    400, "A reversal takes no request body", "invalidRequest"))
            if payment.state not in ("AUTHORISED", "PURCHASED") or payment.captures \
                    or payment.refunds:
                raise GatewayRefusal(400, error_response(
                    400, f"A payment in state {payment.state} with captures or refunds cannot be "
                         "reversed", "invalidPaymentState"))
            payment.state = "REVERSED"
            payment.updated = _now()

        return await self._operation(request, "void", perform)

    async def not_found(self, request: Request) -> Response:
        await self._record(request)
        return JSONResponse(error_response(404, "No such resource", "notFound"), 404)

    def app(self) -> Any:
        base = "/transactions/outlets/{outlet}/orders/{order}"
        payment = base + "/payments/{payment}"
        routes = [
            Route("/identity/auth/access-token", self.token, methods=["POST"]),
            Route(base, self.order, methods=["GET"]),
            Route(payment + "/captures", self.capture, methods=["POST"]),
            Route(payment + "/captures/{capture}/refund", self.refund_capture, methods=["POST"]),
            Route(payment + "/cancel", self.cancel, methods=["PUT"]),
            Route("/{rest:path}", self.not_found, methods=["GET", "POST", "PUT", "DELETE"]),
        ]
        starlette = Starlette(routes=routes)

        async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
            # uvicorn's send is a bound method of the connection's request cycle; its transport
            # lets the fake reset the connection.
            if scope["type"] == "http":
                scope["fake.transport"] = getattr(getattr(send, "__self__", None), "transport",
                                                  None)
            await starlette(scope, receive, send)

        return asgi


class FakeServer:
    """Serves a FakeNgenius with uvicorn in a background thread on a free loopback port."""

    def __init__(self, fake: FakeNgenius) -> None:
        self.fake = fake
        self.server: uvicorn.Server | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        self.fake.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(self.fake.app(), http="h11", lifespan="off", log_level="warning",
                                access_log=False, timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]},
                                       daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the fake N-Genius server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.fake.reset()
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)


@pytest.fixture(scope="session")
def ngenius_server() -> Iterator[FakeServer]:
    """One fake gateway for the session, on a free 127.0.0.1 port."""
    server = FakeServer(FakeNgenius())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def ngenius_fake(ngenius_server: FakeServer) -> Iterator[FakeNgenius]:
    """The fake gateway, with no orders, tokens, recorded requests or faults."""
    fake = ngenius_server.fake
    fake.reset()
    try:
        yield fake
    finally:
        fake.reset()  # also ends any request still hanging
