"""A local fake of Tabby's payments API, written from the protocol document
(spec/gateways-mpgs-ngenius-tabby-myfatoorah.md, section 3), not from the connector.

It serves real HTTP on 127.0.0.1 (a threaded stdlib server, so a test can reset a connection at
the socket) and enforces what Tabby enforces:

- ``Authorization: Bearer <secret key>``: missing or another scheme → 401 ``not_authorized``
  ("missing Bearer scheme"); unknown key → 401 ("invalid secret key"); a payment of another
  merchant → 403 ``no_permission``.
- ``GET /api/v2/payments/{id}``; ``POST …/captures``, ``POST …/refunds`` with
  ``{"amount": "<major units string>", "reference_id": …}``; ``POST …/close`` with no body.
  A malformed id → 400 ``bad_data`` "invalid payment id"; an unknown one → 404 ``not_found``
  "no such payment"; an unknown path → 404 with a bare-string body.
- Amounts are strings in major units with at most 2 decimals (AED, SAR) or 3 (KWD).
- Captures only on ``AUTHORIZED`` payments, in total at most the payment amount; reaching it closes
  the payment. Refunds only on ``CLOSED`` payments with captures, up to the captured total; a
  disputed payment answers 409 ``conflict``. Close turns ``AUTHORIZED`` into ``CLOSED``; a second
  close is 400 "already closed".
- ``reference_id`` is the idempotency key: repeating it answers 200 with the payment and moves
  no money again.
- "Delayed Refunds" (``delayed_refunds = True``): a refund waits (cancellable) and no second refund
  is accepted until the first is processed.

Tests steer it with ``fail_next(fault, …)`` (timeout, reset, 500, malformed, throttle, decline;
``apply=True`` performs the request before the fault, as when a reply is lost) and with the
payment controls below. Every request is recorded in ``requests``.

Details the document does not give, chosen here (marked GUESS in the code): the text of the
over-capture / over-refund / close-not-authorized / refund-pending errors, the shape of
``errors[]``, and that a repeated ``reference_id`` answers 200 even after the payment changed.
"""

from __future__ import annotations

import html
import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from tests.fakes.base import Answer, FakeGateway, Fault, RecordedRequest

TEST_SECRET_KEY = "sk_test_4f1c2a9e-7d55-4b1a-9c33-5e0e7b1d2f60"
OTHER_MERCHANT_KEY = "sk_test_0b7e6d55-1111-4c2b-8f00-aa55aa55aa55"
LIVE_SECRET_KEY = "sk_8d2e4f60-live-0000-4b1a-9c33-000000000000"
TEST_MERCHANT_CODE = "PAYOPSAE"

DECIMALS = {"AED": 2, "SAR": 2, "KWD": 3}
PAYMENT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
ROUTE = re.compile(r"^/api/v2/payments/(?P<id>[^/]+)(?P<action>/captures|/refunds|/close)?$")
AMOUNT = re.compile(r"^[0-9]+(?:\.(?P<frac>[0-9]+))?$")
CHECKOUT_ROUTE = re.compile(r"^/api/v2/checkout/(?P<id>[^/]+)(?P<action>/cancel)?$")

# Payment acceptance (spec/gateways-payment-acceptance.md §2.5).
# Merchant codes and the one currency each takes (Tabby's code follows the merchant's country).
MERCHANT_CURRENCIES = {"AE": "AED", "SA": "SAR", "KW": "KWD", TEST_MERCHANT_CODE: "AED"}
TEST_OTP = "8888"
SUCCESS_EMAIL = "otp.success@tabby.ai"
REJECTED_EMAIL = "otp.rejected@tabby.ai"  # GUESS: Tabby's sandbox buyer that is never eligible
# Above this amount a session is ``rejected`` with ``order_amount_too_high`` (per currency).
DEFAULT_AMOUNT_LIMITS = {"AED": Decimal("5000"), "SAR": Decimal("5000"), "KWD": Decimal("400")}


# -- canned replies ---------------------------------------------------------------------------


def error_body(error_type: str, error: str) -> dict[str, Any]:
    return {"status": "error", "errorType": error_type, "error": error}


def missing_bearer_response() -> dict[str, Any]:
    return error_body("not_authorized", "missing Bearer scheme")


def invalid_key_response() -> dict[str, Any]:
    return error_body("not_authorized", "invalid secret key")


def no_permission_response() -> dict[str, Any]:
    return error_body("no_permission", "no permission")  # GUESS: text not documented


def no_such_payment_response() -> dict[str, Any]:
    return error_body("not_found", "no such payment")


def invalid_payment_id_response() -> dict[str, Any]:
    return error_body("bad_data", "invalid payment id")


def decode_failed_response() -> dict[str, Any]:
    return error_body("bad_data", "failed to decode request")


def validation_failed_response(problems: list[str]) -> dict[str, Any]:
    return {"status": "error", "errorType": "bad_data", "errors": problems}  # GUESS: list of text


def capture_not_authorized_response() -> dict[str, Any]:
    return error_body("bad_data", "could not capture not authorized payments")


def capture_exceeds_response() -> dict[str, Any]:
    return error_body("bad_data", "capture amount exceeds payment amount")  # GUESS: text


def refund_not_closed_response() -> dict[str, Any]:
    return error_body("bad_data", "can not refund payment that has no captures and not closed")


def refund_exceeds_response() -> dict[str, Any]:
    return error_body("bad_data", "refund amount exceeds captured amount")  # GUESS: text


def refund_pending_response() -> dict[str, Any]:
    return error_body("bad_data", "previous refund is not processed yet")  # GUESS: text


def disputed_response() -> dict[str, Any]:
    return error_body("conflict", "payment is disputed")


def already_closed_response() -> dict[str, Any]:
    return error_body("bad_data", "already closed")


def close_not_authorized_response() -> dict[str, Any]:
    return error_body("bad_data", "could not close not authorized payments")  # GUESS: text


def declined_response(message: str = "capture is not allowed for this payment") -> dict[str, Any]:
    return error_body("bad_data", message)


def throttled_response() -> dict[str, Any]:
    return error_body("too_many_requests", "too many requests")  # GUESS: 429 body undocumented


NOT_FOUND_TEXT = "404 page not found"
SERVER_ERROR_TEXT = "Internal Server error"
MALFORMED_TEXT = '{"id": "7a1b", "status": "CLOSED", "captures": [{"amount": '


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class FakePayment:
    id: str
    amount: Decimal
    currency: str
    status: str
    secret_key: str
    order_reference: str
    created_at: datetime
    captures: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    disputed: bool = False
    # Payment acceptance: a CREATED payment turns EXPIRED this many seconds after creation.
    expire_after: float | None = None
    buyer: dict[str, Any] | None = None

    def fmt(self, value: Decimal) -> str:
        return f"{value:.{DECIMALS[self.currency]}f}"

    @property
    def captured(self) -> Decimal:
        return sum((Decimal(c["amount"]) for c in self.captures), Decimal(0))

    @property
    def refunded(self) -> Decimal:
        return sum((Decimal(r["amount"]) for r in self.refunds), Decimal(0))

    def as_json(self) -> dict[str, Any]:
        refunds = []
        for entry in self.refunds:
            public = {k: v for k, v in entry.items() if not k.startswith("_")}
            refunds.append(public)
        return {
            "id": self.id,
            "created_at": _iso(self.created_at),
            "expires_at": _iso(self.created_at + timedelta(minutes=30)),
            "status": self.status,
            "is_test": self.secret_key.startswith("sk_test_"),
            "amount": self.fmt(self.amount),
            "currency": self.currency,
            "description": "PayOps test order",
            "buyer": self.buyer
            or {
                "name": "Test Buyer",
                "email": "otp.success@tabby.ai",
                "phone": "+971500000001",
                "dob": "2000-01-20",
            },
            "shipping_address": {"city": "Dubai", "address": "Dubai", "zip": "1111"},
            "order": {
                "reference_id": self.order_reference,
                "tax_amount": self.fmt(Decimal(0)),
                "shipping_amount": self.fmt(Decimal(0)),
                "discount_amount": self.fmt(Decimal(0)),
                "items": [],
            },
            "captures": [dict(c) for c in self.captures],
            "refunds": refunds,
            "buyer_history": {},
            "order_history": [],
            "meta": {"order_id": self.order_reference, "customer": None},
        }


class FakeTabby(FakeGateway):
    """State and behaviour of the fake; ``url`` is where it listens. Faults: the common ones
    (tests/fakes/base.py) and ``throttle`` (429)."""

    EXTRA_FAULTS: ClassVar[tuple[str, ...]] = ("throttle",)
    malformed_body = MALFORMED_TEXT
    malformed_content_type = "application/json"
    server_error_body = SERVER_ERROR_TEXT
    server_error_content_type = "text/plain; charset=utf-8"

    def __init__(self) -> None:
        super().__init__()
        self.secret_keys = {TEST_SECRET_KEY, OTHER_MERCHANT_KEY, LIVE_SECRET_KEY}
        self.payments: dict[str, FakePayment] = {}
        self.delayed_refunds = False
        # -- payment acceptance --
        self.sessions: dict[str, dict[str, Any]] = {}  # session id -> session state
        self.expiry_seconds = 30 * 60.0  # CREATED -> EXPIRED (Tabby: about 30 minutes)
        self.amount_limits = dict(DEFAULT_AMOUNT_LIMITS)
        self.redirect_after_approve = True  # False: "paid but never returned" (webhook only)
        self.webhooks: list[dict[str, Any]] = []  # registered: url, is_test, header{title,value}
        self.webhook_deliveries: list[dict[str, Any]] = []  # sent: url, status_code, payload
        self._delivery_threads: list[threading.Thread] = []

    # -- control ----------------------------------------------------------------------------
    def add_payment(
        self,
        amount: str = "100.000",
        currency: str = "KWD",
        *,
        status: str = "AUTHORIZED",
        captured: str | None = None,
        secret_key: str = TEST_SECRET_KEY,
        order_reference: str = "ORD-1",
    ) -> str:
        payment = FakePayment(
            id=str(uuid.uuid4()),
            amount=Decimal(amount),
            currency=currency,
            status=status,
            secret_key=secret_key,
            order_reference=order_reference,
            created_at=_now(),
        )
        if captured is not None:
            payment.captures.append(
                self._movement(payment, Decimal(captured), f"dashboard-{uuid.uuid4().hex[:8]}")
            )
            if status == "AUTHORIZED" and payment.captured >= payment.amount:
                payment.status = "CLOSED"
        with self.lock:
            self.payments[payment.id] = payment
        return payment.id

    def paid_payment(self, amount: str = "100.000", currency: str = "KWD") -> str:
        """A payment captured in full (Tabby closes it): what a PayOps "paid" payment is."""
        return self.add_payment(amount, currency, captured=amount)

    def payment(self, payment_id: str) -> dict[str, Any]:
        with self.lock:
            return self.payments[payment_id].as_json()

    def set_disputed(self, payment_id: str, disputed: bool = True) -> None:
        with self.lock:
            self.payments[payment_id].disputed = disputed

    def set_status(self, payment_id: str, status: str) -> None:
        with self.lock:
            self.payments[payment_id].status = status

    def backdate_refunds(self, payment_id: str, seconds: float) -> None:
        with self.lock:
            for entry in self.payments[payment_id].refunds:
                moment = datetime.fromisoformat(entry["created_at"].replace("Z", "+00:00"))
                entry["created_at"] = _iso(moment - timedelta(seconds=seconds))

    def cancel_refund(self, payment_id: str, reference_id: str) -> None:
        """The merchant deletes a delayed refund before it executes."""
        with self.lock:
            payment = self.payments[payment_id]
            payment.refunds = [r for r in payment.refunds if r["reference_id"] != reference_id]

    def fault_matches(self, fault: Fault, method: str, path: str) -> bool:
        """``suffix`` names the action: "" (the payment itself), "/captures", "/refunds" or
        "/close"."""
        if fault.method and fault.method != method:
            return False
        if fault.path is not None:
            return fault.path == path
        if fault.suffix is not None:
            action = ROUTE.match(path)
            return ((action.group("action") or "") if action else None) == fault.suffix
        return True

    def decline_answer(self, fault: Fault, request: RecordedRequest) -> Answer:
        return Answer(
            fault.status or 400,
            declined_response(fault.message) if fault.message else declined_response(),
        )

    def extra_fault(self, fault: Fault, request: RecordedRequest) -> Answer | None:
        return Answer(429, throttled_response())  # throttle

    def encode(self, value: Any) -> bytes:
        return json.dumps(value).encode()

    def requests_to(
        self,
        suffix: str,
        method: str = "POST",  # type: ignore[override]
        **_: Any,
    ) -> list[RecordedRequest]:
        return [
            r
            for r in self.requests
            if r.method == method
            and (ROUTE.match(r.path) and (ROUTE.match(r.path).group("action") or "") == suffix)
        ]

    # -- protocol ---------------------------------------------------------------------------
    @staticmethod
    def _movement(payment: FakePayment, amount: Decimal, reference: str) -> dict[str, Any]:
        zero = payment.fmt(Decimal(0))
        return {
            "id": str(uuid.uuid4()),
            "created_at": _iso(_now()),
            "amount": payment.fmt(amount),
            "reference_id": reference,
            "tax_amount": zero,
            "shipping_amount": zero,
            "discount_amount": zero,
            "items": [],
        }

    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> Answer | tuple[int, Any]:
        """(status, JSON body or bare text) for one request; mutates state. ``path`` carries
        the query string, if any."""
        path, _, query = path.partition("?")
        self._tick()
        if path in ("/hpp", "/hpp/"):  # the hosted page: the customer's browser, no API key
            return self._hosted_page(method, query, body)
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, key = auth.partition(" ")
        if scheme != "Bearer" or not key:
            return 401, missing_bearer_response()
        if key not in self.secret_keys:
            return 401, invalid_key_response()
        if path == "/api/v2/checkout":
            if method != "POST":
                return 404, NOT_FOUND_TEXT
            return self._create_checkout(key, body)
        session_route = CHECKOUT_ROUTE.match(path)
        if session_route is not None:
            return self._session_api(
                method, key, session_route.group("id"), session_route.group("action") or ""
            )
        if path == "/api/v2/payments":
            if method != "GET":
                return 404, NOT_FOUND_TEXT
            return self._list_payments(key, query)
        if path == "/api/v1/webhooks":
            if method != "POST":
                return 404, NOT_FOUND_TEXT
            return self._register_webhook(headers, body)
        route = ROUTE.match(path)
        if route is None:
            return 404, NOT_FOUND_TEXT
        action = route.group("action") or ""
        if (method, action) not in {
            ("GET", ""),
            ("POST", "/captures"),
            ("POST", "/refunds"),
            ("POST", "/close"),
        }:
            return 404, NOT_FOUND_TEXT
        payment_id = route.group("id")
        if not PAYMENT_ID.fullmatch(payment_id):
            return 400, invalid_payment_id_response()
        with self.lock:
            payment = self.payments.get(payment_id)
            if payment is None:
                return 404, no_such_payment_response()
            if payment.secret_key != key:
                return 403, no_permission_response()
            if action == "":
                return 200, payment.as_json()
            if action == "/close":
                return self._close(payment)
            try:
                data = json.loads(body) if body else None
            except ValueError:
                return 400, decode_failed_response()
            if not isinstance(data, dict):
                return 400, decode_failed_response()
            problems, amount = self._validate(payment, data)
            if problems:
                return 400, validation_failed_response(problems)
            if action == "/captures":
                return self._capture(payment, amount, data["reference_id"])
            return self._refund(payment, amount, data["reference_id"])

    @staticmethod
    def _validate(payment: FakePayment, data: dict[str, Any]) -> tuple[list[str], Decimal]:
        problems = []
        amount = Decimal(0)
        raw = data.get("amount")
        if raw is None:
            problems.append("amount is required")
        elif not isinstance(raw, str):
            problems.append("amount must be a string")
        else:
            match = AMOUNT.match(raw)
            if not match:
                problems.append("amount is not a valid decimal")
            elif len(match.group("frac") or "") > DECIMALS[payment.currency]:
                problems.append(
                    f"amount allows up to {DECIMALS[payment.currency]} decimals for "
                    f"{payment.currency}"
                )
            elif Decimal(raw) <= 0:
                problems.append("amount must be positive")
            else:
                amount = Decimal(raw)
        reference = data.get("reference_id")
        if not isinstance(reference, str) or not reference.strip():
            problems.append("reference_id is required")
        return problems, amount

    def _capture(self, payment: FakePayment, amount: Decimal, reference: str) -> tuple[int, Any]:
        if any(c["reference_id"] == reference for c in payment.captures):
            return 200, payment.as_json()  # idempotent: no second movement
        if payment.status != "AUTHORIZED":
            return 400, capture_not_authorized_response()
        if payment.captured + amount > payment.amount:
            return 400, capture_exceeds_response()
        payment.captures.append(self._movement(payment, amount, reference))
        if payment.captured == payment.amount:
            payment.status = "CLOSED"
        return 200, payment.as_json()

    def _refund(self, payment: FakePayment, amount: Decimal, reference: str) -> tuple[int, Any]:
        if any(r["reference_id"] == reference for r in payment.refunds):
            return 200, payment.as_json()
        if payment.disputed:
            return 409, disputed_response()
        if payment.status != "CLOSED" or not payment.captures:
            return 400, refund_not_closed_response()
        if payment.refunded + amount > payment.captured:
            return 400, refund_exceeds_response()
        if self.delayed_refunds and any(r.get("_pending") for r in payment.refunds):
            return 400, refund_pending_response()
        entry = self._movement(payment, amount, reference)
        entry = {k: entry[k] for k in ("id", "created_at", "amount", "reference_id", "items")}
        entry["reason"] = None
        if self.delayed_refunds:
            entry["_pending"] = True
        payment.refunds.append(entry)
        return 200, payment.as_json()

    @staticmethod
    def _close(payment: FakePayment) -> tuple[int, Any]:
        if payment.status == "CLOSED":
            return 400, already_closed_response()
        if payment.status != "AUTHORIZED":
            return 400, close_not_authorized_response()
        payment.status = "CLOSED"  # after a partial capture this releases the remainder
        return 200, payment.as_json()

    # -- payment acceptance: control ----------------------------------------------------------
    def register_webhook(self, url: str, title: str, value: str) -> None:
        """What ``POST /api/v1/webhooks`` registers: notifications go to ``url`` with the static
        header ``title: value``."""
        with self.lock:
            self.webhooks.append(
                {
                    "id": str(uuid.uuid4()),
                    "url": url,
                    "is_test": True,
                    "header": {"title": title, "value": value},
                }
            )

    def session_of(self, url: str) -> dict[str, Any]:
        """The session a hosted-page URL (``web_url``) belongs to."""
        session_id = dict(parse_qsl(urlsplit(url).query)).get("sessionId", "")
        with self.lock:
            return self.sessions[session_id]

    def payments_for(self, reference: str) -> list[dict[str, Any]]:
        """Every payment created for an order ``reference_id`` (as Tabby's books show them)."""
        with self.lock:
            return [p.as_json() for p in self.payments.values() if p.order_reference == reference]

    def expire_now(self, payment_id: str) -> None:
        """Tabby's clock: a CREATED payment reaches its expiry (with an ``expired`` webhook)."""
        with self.lock:
            payment = self.payments[payment_id]
            if payment.status == "CREATED":
                payment.status = "EXPIRED"
                self._notify(payment)

    def send_webhook(self, payment_id: str, url: str, title: str, value: str) -> int:
        """Post the payment's notification (lower-case status) to ``url`` now; its HTTP status."""
        with self.lock:
            payload = self.payments[payment_id].as_json()
        payload["status"] = payload["status"].lower()
        response = httpx.post(
            url,
            content=json.dumps(payload).encode(),
            timeout=15.0,
            headers={"Content-Type": "application/json", title: value},
        )
        with self.lock:
            self.webhook_deliveries.append(
                {"url": url, "status_code": response.status_code, "payload": payload}
            )
        return response.status_code

    def wait_for_webhooks(self, timeout: float = 15.0) -> None:
        for thread in list(self._delivery_threads):
            thread.join(timeout)

    # -- payment acceptance: protocol ---------------------------------------------------------
    def _tick(self) -> None:
        """CREATED payments past their window turn EXPIRED (Tabby's own clock)."""
        now = _now()
        with self.lock:
            for payment in self.payments.values():
                if (
                    payment.status == "CREATED"
                    and payment.expire_after is not None
                    and (now - payment.created_at).total_seconds() >= payment.expire_after
                ):
                    payment.status = "EXPIRED"
                    self._notify(payment)

    def _notify(self, payment: FakePayment) -> None:
        """Send the status change to every registered webhook, from another thread (Tabby
        notifies on every status change whether or not the browser comes back)."""
        if not self.webhooks:
            return
        payload = payment.as_json()
        payload["status"] = payload["status"].lower()
        targets = [dict(hook) for hook in self.webhooks]

        def deliver() -> None:
            for hook in targets:
                header = hook.get("header") or {}
                headers = {"Content-Type": "application/json"}
                if header.get("title"):
                    headers[str(header["title"])] = str(header.get("value", ""))
                try:
                    response = httpx.post(
                        hook["url"],
                        content=json.dumps(payload).encode(),
                        headers=headers,
                        timeout=15.0,
                    )
                    status: int | None = response.status_code
                except httpx.HTTPError:
                    status = None
                with self.lock:
                    self.webhook_deliveries.append(
                        {"url": hook["url"], "status_code": status, "payload": payload}
                    )

        thread = threading.Thread(target=deliver, daemon=True)
        self._delivery_threads.append(thread)
        thread.start()

    def _create_checkout(self, key: str, body: bytes) -> tuple[int, Any]:
        try:
            data = json.loads(body) if body else None
        except ValueError:
            return 400, decode_failed_response()
        if not isinstance(data, dict):
            return 400, decode_failed_response()
        problems: list[str] = []
        for name in ("payment", "lang", "merchant_code", "merchant_urls"):
            if name not in data:
                problems.append(f"{name} is required")
        payment = data.get("payment") if isinstance(data.get("payment"), dict) else {}
        for name, kind in (
            ("amount", str),
            ("currency", str),
            ("buyer", dict),
            ("order", dict),
            ("buyer_history", dict),
            ("order_history", list),
            ("shipping_address", dict),
        ):
            if not isinstance(payment.get(name), kind):
                problems.append(f"payment.{name} is required")
        if data.get("lang") not in ("en", "ar"):
            problems.append("lang must be en or ar")
        urls = data.get("merchant_urls") if isinstance(data.get("merchant_urls"), dict) else {}
        for name in ("success", "cancel", "failure"):
            if not str(urls.get(name) or "").startswith(("http://", "https://")):
                problems.append(f"merchant_urls.{name} must be a URL")
        order = payment.get("order") if isinstance(payment.get("order"), dict) else {}
        reference = order.get("reference_id")
        if not isinstance(reference, str) or not reference.strip():
            problems.append("payment.order.reference_id is required")
        if not isinstance(order.get("items"), list):
            problems.append("payment.order.items is required")
        if problems:
            return 400, validation_failed_response(problems)
        currency = payment["currency"]
        if currency not in DECIMALS:
            return 400, error_body("bad_data", f"currency {currency} is not supported")
        expected = MERCHANT_CURRENCIES.get(str(data["merchant_code"]))
        if expected is None:
            return 400, error_body("bad_data", "invalid merchant_code")  # GUESS: text
        if currency != expected:
            return 400, error_body(
                "bad_data",
                f"could not create payment: only '{expected}' is supported, but got '{currency}'",
            )
        match = AMOUNT.match(payment["amount"])
        if (
            not match
            or len(match.group("frac") or "") > DECIMALS[currency]
            or Decimal(payment["amount"]) <= 0
        ):
            return 400, validation_failed_response(["payment.amount is not a valid amount"])
        amount = Decimal(payment["amount"])
        buyer = payment["buyer"]
        rejection = None
        if str(buyer.get("email") or "").lower() == REJECTED_EMAIL:
            rejection = "not_available"
        elif amount > self.amount_limits.get(currency, amount):
            rejection = "order_amount_too_high"
        created = FakePayment(
            id=str(uuid.uuid4()),
            amount=amount,
            currency=currency,
            status="CREATED",
            secret_key=key,
            order_reference=reference,
            created_at=_now(),
            expire_after=self.expiry_seconds,
            buyer=dict(buyer),
        )
        session = {
            "id": str(uuid.uuid4()),
            "payment_id": created.id,
            "merchant_urls": urls,
            "status": "rejected" if rejection else "created",
            "lang": data["lang"],
            "rejection_reason": rejection,
            "secret_key": key,
            "merchant_code": data["merchant_code"],
        }
        with self.lock:
            self.payments[created.id] = created
            self.sessions[session["id"]] = session
        return 200, self._session_json(session)

    def _session_json(self, session: dict[str, Any]) -> dict[str, Any]:
        payment = self.payments[session["payment_id"]]
        eligible = session["status"] == "created"
        web_url = f"{self.url}/hpp?{urlencode({'sessionId': session['id']})}"
        return {
            "id": session["id"],
            "status": session["status"],
            "payment": payment.as_json(),
            "configuration": {
                "available_products": {"installments": [{"web_url": web_url}]} if eligible else {},
                "products": {
                    "installments": {
                        "type": "installments",
                        "is_available": eligible,
                        "rejection_reason": session["rejection_reason"],
                    }
                },
            },
            "merchant_urls": session["merchant_urls"],
            "merchant_code": session["merchant_code"],
            "lang": session["lang"],
            "token": None,
        }

    def _session_api(self, method: str, key: str, session_id: str, action: str) -> tuple[int, Any]:
        with self.lock:
            session = self.sessions.get(session_id)
            if session is None:
                return 404, error_body("not_found", "no such checkout session")  # GUESS: text
            if session["secret_key"] != key:
                return 403, no_permission_response()
            if method == "GET" and not action:
                return 200, self._session_json(session)
            if method == "POST" and action == "/cancel":
                payment = self.payments[session["payment_id"]]
                if payment.status == "CREATED":
                    payment.status = "EXPIRED"
                    self._notify(payment)
                return 200, self._session_json(session)
        return 404, NOT_FOUND_TEXT

    def _list_payments(self, key: str, query: str) -> tuple[int, Any]:
        args = dict(parse_qsl(query))
        try:
            limit = int(args.get("limit", "20"))
            offset = int(args.get("offset", "0"))
        except ValueError:
            return 400, error_body("bad_data", "invalid pagination")
        if not 0 < limit <= 20 or offset < 0:
            return 400, error_body("bad_data", "limit must be between 1 and 20")
        bounds = []
        for name in ("created_at__gte", "created_at__lte"):
            value = args.get(name)
            try:
                bounds.append(
                    datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None
                )
            except ValueError:
                return 400, error_body("bad_data", f"invalid {name}")
        since, until = bounds
        with self.lock:
            found = [
                p
                for p in self.payments.values()
                if p.secret_key == key
                and (since is None or p.created_at >= since)
                and (until is None or p.created_at <= until)
                and (not args.get("status") or p.status == args["status"].upper())
            ]
            found.sort(key=lambda p: p.created_at, reverse=True)
            page = [p.as_json() for p in found[offset : offset + limit]]
        return 200, {"payments": page}

    def _register_webhook(self, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        code = next((v for k, v in headers.items() if k.lower() == "x-merchant-code"), "")
        if code not in MERCHANT_CURRENCIES:
            return 400, error_body("bad_data", "X-Merchant-Code is required")  # GUESS: text
        try:
            data = json.loads(body) if body else None
        except ValueError:
            return 400, decode_failed_response()
        if not isinstance(data, dict) or not str(data.get("url") or "").startswith("http"):
            return 400, validation_failed_response(["url is required"])
        header = data.get("header") if isinstance(data.get("header"), dict) else {}
        with self.lock:
            if len(self.webhooks) >= 4:
                return 400, error_body("bad_data", "webhooks limit reached")  # GUESS: text
            hook = {
                "id": str(uuid.uuid4()),
                "url": data["url"],
                "is_test": bool(data.get("is_test")),
                "header": header,
            }
            self.webhooks.append(hook)
        return 200, hook

    def _hosted_page(self, method: str, query: str, body: bytes) -> Answer:
        """The customer's side: GET shows the OTP form, POST decides (approve / reject /
        cancel) and sends the browser back to the matching merchant URL with ``payment_id``."""
        fields = dict(
            parse_qsl(
                query if method == "GET" else body.decode("utf-8", "replace"),
                keep_blank_values=True,
            )
        )
        with self.lock:
            session = self.sessions.get(fields.get("sessionId", ""))
            payment = self.payments.get(session["payment_id"]) if session else None
            if session is None or payment is None or session["status"] != "created":
                return Answer(
                    404,
                    _page("Tabby", "<p>This checkout does not exist.</p>"),
                    "text/html; charset=utf-8",
                )
            if payment.status != "CREATED":
                return Answer(
                    410,
                    _page(
                        "Tabby",
                        f"<p>This checkout has ended ({html.escape(payment.status.lower())}).</p>",
                    ),
                    "text/html; charset=utf-8",
                )
            if method == "GET":
                return Answer(200, _otp_page(session["id"], payment), "text/html; charset=utf-8")
            if method != "POST":
                return Answer(405, "method not allowed")
            decision = fields.get("decision", "")
            if decision == "cancel":
                payment.status, target = "EXPIRED", "cancel"
            elif decision in ("approve", "reject"):
                if fields.get("otp") != TEST_OTP:
                    return Answer(
                        200,
                        _otp_page(session["id"], payment, "Wrong code"),
                        "text/html; charset=utf-8",
                    )
                if decision == "approve":
                    payment.status, target = "AUTHORIZED", "success"
                else:
                    payment.status, target = "REJECTED", "failure"
            else:
                return Answer(
                    400, _page("Tabby", "<p>Unknown decision.</p>"), "text/html; charset=utf-8"
                )
            self._notify(payment)
            if target == "success" and not self.redirect_after_approve:
                return Answer(
                    200,
                    _page("Tabby", "<p>Thank you, your order is placed.</p>"),
                    "text/html; charset=utf-8",
                )
            location = _with_query(session["merchant_urls"][target], payment_id=payment.id)
        return Answer(302, "", "text/plain", headers={"Location": location})


def _with_query(url: str, **extra: str) -> str:
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), *extra.items()])
    return urlunsplit(parts._replace(query=query))


def _page(title: str, content: str) -> str:
    return (
        f"<!doctype html><html><head><title>{html.escape(title)}</title></head>"
        f"<body>{content}</body></html>"
    )


def _otp_page(session_id: str, payment: FakePayment, error: str = "") -> str:
    notice = f'<p class="error">{html.escape(error)}</p>' if error else ""
    return _page(
        "Tabby",
        (
            f"<h1>Pay {html.escape(payment.fmt(payment.amount))} {payment.currency} in 4</h1>"
            f"{notice}"
            '<form method="post" action="/hpp">'
            f'<input type="hidden" name="sessionId" value="{html.escape(session_id)}">'
            '<label>Code sent to your phone <input name="otp" inputmode="numeric"></label>'
            '<button type="submit" name="decision" value="approve">Approve</button>'
            '<button type="submit" name="decision" value="reject">Reject</button>'
            '<button type="submit" name="decision" value="cancel">Cancel</button>'
            "</form>"
        ),
    )


@pytest.fixture
def fake_tabby() -> Iterator[FakeTabby]:
    yield from FakeTabby().serving()
