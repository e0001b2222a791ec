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

import json
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

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
            "buyer": {
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
    ) -> tuple[int, Any]:
        """(status, JSON body or bare text) for one request; mutates state."""
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), "")
        scheme, _, key = auth.partition(" ")
        if scheme != "Bearer" or not key:
            return 401, missing_bearer_response()
        if key not in self.secret_keys:
            return 401, invalid_key_response()
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


@pytest.fixture
def fake_tabby() -> Iterator[FakeTabby]:
    yield from FakeTabby().serving()
