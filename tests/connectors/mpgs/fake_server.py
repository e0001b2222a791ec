"""A local fake of the Mastercard Gateway (MPGS) REST-JSON API, written from the protocol notes
(/work/shared/spec/gateways-mpgs-ngenius-tabby-myfatoorah.md §1), not from the connector.

It serves real HTTP on 127.0.0.1 (stdlib ``ThreadingHTTPServer`` in a background thread, so a
test can make it hold a reply past the client's timeout or reset the connection) and enforces
what the gateway enforces:

- paths ``/api/rest/version/{N}/merchant/{merchantId}/order/{orderId}[/transaction/{txnId}]``;
- HTTP Basic auth ``merchant.{merchantId}`` + API password, else 401 ``REQUEST_REJECTED``;
- ``PUT`` a new transaction with ``apiOperation`` CAPTURE / REFUND / VOID, JSON body; missing,
  unexpected or malformed fields and amounts with more decimals than the currency has are 400
  ``INVALID_REQUEST`` with ``error.field`` / ``error.validationType``;
- captures up to the authorized amount, refunds up to the captured (paid) amount, voids only of an
  approved transaction and not of an authorization that has been captured or settled;
- the transaction id is unique within the order: an identical resend returns the recorded
  transaction without processing it again, a different body under the same id is refused;
- declines are 2xx with ``result`` FAILURE; ``GET`` a transaction or an order (with every
  transaction and the running totals).

Details the notes mark VERIFY, or do not give, are the fake's guesses and are marked ``GUESS``.

Per-test control: ``fake.fail_next(kind, perform=...)`` queues one fault for the next matching
request: ``decline``, ``pending``, ``result_unknown``, ``timeout``, ``reset``, ``server_error``
(500), ``server_busy`` (503), ``malformed``. ``perform=True`` makes the gateway do the work before
the reply goes wrong (the "done, but the answer was lost" case).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar

import pytest

from tests.fakes.base import Answer, FakeGateway, Fault, RecordedRequest

MERCHANT_ID = "TESTMERCH01"
API_PASSWORD = "mpgs-api-password-9f2c71d0"
MAX_API_VERSION = 100  # the current documented version

# ISO 4217 minor digits the notes list (AED/SAR/USD 2; KWD/BHD/OMR/JOD 3; JPY 0), plus EUR.
CURRENCY_DIGITS = {
    "AED": 2,
    "SAR": 2,
    "USD": 2,
    "EUR": 2,
    "KWD": 3,
    "BHD": 3,
    "OMR": 3,
    "JOD": 3,
    "JPY": 0,
}

MASKED_CARD = "512345xxxxxx0008"
FULL_CARD = "5123450000000008"

PATH = re.compile(
    r"^/api/rest/version/(?P<version>[^/]+)/merchant/(?P<merchant>[^/]+)"
    r"/order/(?P<order>[^/]+)(?:/transaction/(?P<txn>[^/]+))?/?$"
)
ID_CHARS = re.compile(r"^[A-Za-z0-9_.\-]{1,40}$")  # GUESS: MPGS ids are up to 40 characters
AMOUNT = re.compile(r"^[0-9]{1,13}(?:\.[0-9]+)?$")

TOP_LEVEL_FIELDS = {"apiOperation", "transaction", "order", "partnerSolutionId"}
TRANSACTION_FIELDS = {
    "CAPTURE": {"amount", "currency", "reference"},
    "REFUND": {"amount", "currency", "reference"},
    "VOID": {"targetTransactionId", "reference"},
}
ORDER_FIELDS = {"notificationUrl"}

# Faults that answer in the protocol (the transaction is recorded with this result).
RESULT_FAULTS = ("decline", "queue", "result_unknown")
MALFORMED_BODY = b'{"result":"SUCCESS","response":{"gatewayCode":"APPR'


# -- canned replies -----------------------------------------------------------------------------


def error_response(
    cause: str, explanation: str, *, field: str | None = None, validation_type: str | None = None
) -> dict[str, Any]:
    error: dict[str, Any] = {"cause": cause, "explanation": explanation}
    if field is not None:
        error["field"] = field
    if validation_type is not None:
        error["validationType"] = validation_type
    return {"error": error, "result": "ERROR"}


def invalid_credentials_response() -> dict[str, Any]:
    return error_response("REQUEST_REJECTED", "Invalid credentials.")


def missing_field_response(name: str) -> dict[str, Any]:
    return error_response(
        "INVALID_REQUEST",
        f"Missing parameter value for '{name}'",
        field=name,
        validation_type="MISSING",
    )


def invalid_field_response(name: str, value: Any, why: str = "") -> dict[str, Any]:
    text = f"Value '{value}' is invalid." + (f" {why}" if why else "")
    return error_response("INVALID_REQUEST", text, field=name, validation_type="INVALID")


def unexpected_field_response(name: str) -> dict[str, Any]:
    # GUESS: the exact validationType for a field the operation does not take.
    return error_response(
        "INVALID_REQUEST",
        f"Unexpected parameter '{name}'",
        field=name,
        validation_type="UNSUPPORTED",
    )


def server_failed_response() -> dict[str, Any]:
    return error_response("SERVER_FAILED", "An internal error occurred; retry later.")


def server_busy_response() -> dict[str, Any]:
    return error_response("SERVER_BUSY", "The server is busy; retry later.")


def response_block(gateway_code: str) -> dict[str, Any]:
    approved = gateway_code in ("APPROVED", "APPROVED_AUTO")
    acquirer = {
        "APPROVED": ("00", "Approved"),
        "DECLINED": ("05", "Do not honour"),
        "PENDING": ("", ""),
        "SUBMITTED": ("", ""),
        "TIMED_OUT": ("", ""),
    }
    code, message = acquirer.get(gateway_code, ("00" if approved else "05", ""))
    block: dict[str, Any] = {"gatewayCode": gateway_code}
    if code:
        block["acquirerCode"] = code
    if message:
        block["acquirerMessage"] = message
    return block


def transaction_response(
    merchant: str,
    order: dict[str, Any],
    transaction: dict[str, Any],
    result: str,
    gateway_code: str,
    *,
    version: str = "100",
    card_number: str = MASKED_CARD,
    security_code: str | None = None,
) -> dict[str, Any]:
    card: dict[str, Any] = {
        "brand": "MASTERCARD",
        "scheme": "MASTERCARD",
        "number": card_number,
        "expiry": {"month": "5", "year": "39"},
        "fundingMethod": "CREDIT",
    }
    if security_code is not None:
        card["securityCode"] = security_code
    return {
        "gatewayEntryPoint": "WEB_SERVICES_API",
        "merchant": merchant,
        "order": order,
        "response": response_block(gateway_code),
        "result": result,
        "sourceOfFunds": {"provided": {"card": card}, "type": "CARD"},
        "timeOfRecord": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "transaction": transaction,
        "version": version,
    }


def successful_capture_response(
    merchant: str,
    order: dict[str, Any],
    txn_id: str,
    amount: Decimal,
    currency: str,
    reference: str | None = None,
) -> dict[str, Any]:
    txn = {
        "id": txn_id,
        "type": "CAPTURE",
        "amount": amount,
        "currency": currency,
        "authorizationCode": "A1B2C3",
        "receipt": "412345678901",
        "acquirer": {"id": "FAKE_ACQUIRER", "merchantId": "ACQ-123"},
    }
    if reference:
        txn["reference"] = reference
    return transaction_response(merchant, order, txn, "SUCCESS", "APPROVED")


def successful_refund_response(
    merchant: str,
    order: dict[str, Any],
    txn_id: str,
    amount: Decimal,
    currency: str,
    reference: str | None = None,
) -> dict[str, Any]:
    txn = {
        "id": txn_id,
        "type": "REFUND",
        "amount": amount,
        "currency": currency,
        "receipt": "412345678902",
        "acquirer": {"id": "FAKE_ACQUIRER"},
    }
    if reference:
        txn["reference"] = reference
    return transaction_response(merchant, order, txn, "SUCCESS", "APPROVED")


def successful_void_response(
    merchant: str,
    order: dict[str, Any],
    txn_id: str,
    amount: Decimal,
    currency: str,
    target: str,
    reference: str | None = None,
) -> dict[str, Any]:
    txn = {
        "id": txn_id,
        "type": "VOID_AUTHORIZATION",
        "amount": amount,
        "currency": currency,
        "targetTransactionId": target,
        "acquirer": {"id": "FAKE_ACQUIRER"},
    }
    if reference:
        txn["reference"] = reference
    return transaction_response(merchant, order, txn, "SUCCESS", "APPROVED")


def declined_response(
    merchant: str, order: dict[str, Any], transaction: dict[str, Any]
) -> dict[str, Any]:
    return transaction_response(merchant, order, transaction, "FAILURE", "DECLINED")


def pending_response(
    merchant: str, order: dict[str, Any], transaction: dict[str, Any]
) -> dict[str, Any]:
    return transaction_response(merchant, order, transaction, "PENDING", "SUBMITTED")


# -- JSON with exact decimal numbers ------------------------------------------------------------

_DEC = re.compile(r'"\\u0000DEC:(-?[0-9.]+)"')


def _mark_decimals(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mark_decimals(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mark_decimals(v) for v in value]
    if isinstance(value, Decimal):
        return f"\u0000DEC:{value}"
    return value


def render(value: Any) -> bytes:
    """JSON where Decimals are numbers written exactly (``60.000``), as MPGS replies carry them."""
    return _DEC.sub(r"\1", json.dumps(_mark_decimals(value))).encode()


# -- state --------------------------------------------------------------------------------------


@dataclass
class StoredTransaction:
    id: str
    type: str
    amount: Decimal
    currency: str
    result: str
    gateway_code: str
    request: str = ""  # canonical JSON of the request that created it ("" for seeded ones)
    reply: dict[str, Any] | None = None  # the reply first sent, replayed on an identical resend
    reference: str | None = None
    target: str | None = None

    def block(self) -> dict[str, Any]:
        txn: dict[str, Any] = {
            "id": self.id,
            "type": self.type,
            "amount": self.amount,
            "currency": self.currency,
            "acquirer": {"id": "FAKE_ACQUIRER"},
        }
        if self.reference:
            txn["reference"] = self.reference
        if self.target:
            txn["targetTransactionId"] = self.target
        if self.type in ("AUTHORIZATION", "PAYMENT", "CAPTURE"):
            txn["authorizationCode"] = "A1B2C3"
            txn["receipt"] = "412345678900"
        return txn


@dataclass
class FakeOrder:
    id: str
    currency: str
    amount: Decimal
    transactions: dict[str, StoredTransaction] = field(default_factory=dict)
    settled: bool = False  # the acquirer's batch has closed: voids are no longer possible

    def _sum(self, kind: str, *results: str) -> Decimal:
        wanted = results or ("SUCCESS",)
        return sum(
            (t.amount for t in self.transactions.values() if t.type == kind and t.result in wanted),
            Decimal(0),
        )

    @property
    def voided_auth(self) -> bool:
        return any(
            t.type == "VOID_AUTHORIZATION" and t.result == "SUCCESS"
            for t in self.transactions.values()
        )

    @property
    def authorized(self) -> Decimal:
        if self.voided_auth:
            return Decimal(0)
        return self._sum("AUTHORIZATION") + self._sum("PAYMENT")

    @property
    def captured(self) -> Decimal:
        voided_captures = sum(
            (
                t.amount
                for t in self.transactions.values()
                if t.type == "VOID_CAPTURE" and t.result == "SUCCESS"
            ),
            Decimal(0),
        )
        return self._sum("CAPTURE") + self._sum("PAYMENT") - voided_captures

    @property
    def refunded(self) -> Decimal:
        voided_refunds = sum(
            (
                t.amount
                for t in self.transactions.values()
                if t.type == "VOID_REFUND" and t.result == "SUCCESS"
            ),
            Decimal(0),
        )
        return self._sum("REFUND") - voided_refunds

    @property
    def status(self) -> str:
        if self.voided_auth:
            return "CANCELLED"
        if self.refunded > 0:
            return "REFUNDED" if self.refunded >= self.captured else "PARTIALLY_REFUNDED"
        if self.captured > 0:
            return "CAPTURED" if self.captured >= self.authorized else "PARTIALLY_CAPTURED"
        if self.authorized > 0:
            return "AUTHORIZED"
        if any(
            t.type in ("AUTHORIZATION", "PAYMENT") and t.result == "PENDING"
            for t in self.transactions.values()
        ):
            return "AUTHENTICATION_INITIATED"  # 3-D Secure still running (§1.3: pending)
        return "FAILED"

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "amount": self.amount,
            "currency": self.currency,
            "status": self.status,
            "creationTime": "2026-01-01T10:00:00.000Z",
            "totalAuthorizedAmount": self.authorized,
            "totalCapturedAmount": self.captured,
            "totalRefundedAmount": self.refunded,
        }


class FakeMpgs(FakeGateway):
    """Faults: the common ones (tests/fakes/base.py; ``decline`` and ``queue`` record a FAILURE
    or PENDING transaction) and ``result_unknown`` (an UNKNOWN transaction) and ``server_busy``
    (503). A fault is met only by a request the gateway accepts (after validation)."""

    EXTRA_FAULTS: ClassVar[tuple[str, ...]] = ("result_unknown", "server_busy")
    malformed_body = MALFORMED_BODY
    malformed_content_type = "text/html"
    malformed_status = 201
    server_error_content_type = "application/json;charset=UTF-8"

    def __init__(
        self,
        merchant_id: str = MERCHANT_ID,
        api_password: str = API_PASSWORD,
        *,
        hold_seconds: float = 3.0,
    ) -> None:
        super().__init__()
        self.merchants = {merchant_id: api_password}
        self.merchant_id = merchant_id
        self.api_password = api_password
        self.orders: dict[str, FakeOrder] = {}
        self.hang_seconds = hold_seconds
        self.leak_card_data = False  # misbehave: echo a full card number and security code
        # The payment side: Hosted Checkout sessions and the payer's page (checkout_fake.py).
        from tests.connectors.mpgs.checkout_fake import HostedCheckout

        self.checkout = HostedCheckout(self)

    # -- test controls --------------------------------------------------------------------------
    def add_order(
        self,
        order_id: str,
        amount: str,
        currency: str,
        *,
        mode: str = "authorize",
        transaction_id: str = "1",
    ) -> FakeOrder:
        """An order the customer paid (mode purchase: PAYMENT) or authorized (AUTHORIZATION)."""
        order = FakeOrder(order_id, currency, Decimal(amount))
        kind = "AUTHORIZATION" if mode == "authorize" else "PAYMENT"
        order.transactions[transaction_id] = StoredTransaction(
            transaction_id, kind, Decimal(amount), currency, "SUCCESS", "APPROVED"
        )
        with self.lock:
            self.orders[order_id] = order
        return order

    def fail_next(self, kind: str, *, method: str | None = "PUT", **more: Any) -> None:
        super().fail_next(kind, method=method, **more)

    @property
    def server_error_body(self) -> Any:  # type: ignore[override]
        return server_failed_response()

    def extra_fault(self, fault: Fault, request: RecordedRequest) -> Answer | None:
        return Answer(503, server_busy_response())  # server_busy

    def encode(self, value: Any) -> bytes:
        return render(value)

    def settle_pending(self, order_id: str, transaction_id: str, approve: bool = True) -> None:
        with self.lock:
            txn = self.orders[order_id].transactions[transaction_id]
            txn.result, txn.gateway_code = (
                ("SUCCESS", "APPROVED") if approve else ("FAILURE", "DECLINED")
            )

    def transaction(self, order_id: str, transaction_id: str) -> StoredTransaction | None:
        with self.lock:
            order = self.orders.get(order_id)
            return order.transactions.get(transaction_id) if order else None

    def puts(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "PUT"]

    def expected_authorization(
        self, merchant_id: str | None = None, password: str | None = None
    ) -> str:
        user = f"merchant.{merchant_id or self.merchant_id}"
        token = base64.b64encode(f"{user}:{password or self.api_password}".encode()).decode()
        return f"Basic {token}"

    # -- request handling (called from the server threads) --------------------------------------
    def take_fault(self, method: str, path: str) -> Fault | None:
        return None  # faults are met inside the protocol, by accepted requests only

    def _take_fault(self, method: str, path: str) -> Fault | None:
        return super().take_fault(method, path.split("?", 1)[0])

    def _authenticate(self, merchant: str, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return False
        expected = self.merchants.get(merchant)
        return expected is not None and user == f"merchant.{merchant}" and password == expected

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        headers = {k.lower(): v for k, v in headers.items()}
        hosted = self.checkout.handle(method, path, headers, body)
        if hosted is not None:
            return hosted
        status, reply, fault = self._handle(method, path, headers, body)
        content_type = "text/html" if isinstance(reply, bytes) else "application/json;charset=UTF-8"
        if fault is not None and fault.kind in RESULT_FAULTS:
            fault = None  # answered in the protocol
        return Answer(status, reply, content_type, fault)

    def _handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any, Fault | None]:
        """(status, reply, fault) for one request; a reply of bytes is sent as is."""
        match = PATH.match(path.split("?", 1)[0])
        if match is None:
            return 404, b"<html><body>Not Found</body></html>", None
        version, merchant = match["version"], match["merchant"]
        if not version.isdigit() or not 1 <= int(version) <= MAX_API_VERSION:
            # GUESS: the exact reply for an unsupported version.
            return 400, invalid_field_response("version", version), None
        if not self._authenticate(merchant, headers.get("authorization")):
            return 401, invalid_credentials_response(), None
        order_id, txn_id = match["order"], match["txn"]
        if method == "GET":
            fault = self._take_fault("GET", path)
            if fault is not None and fault.kind not in RESULT_FAULTS:
                return 0, None, fault
            return (*self._retrieve(merchant, order_id, txn_id, version), None)
        if method != "PUT" or txn_id is None:
            return 400, error_response("INVALID_REQUEST", f"Unsupported method {method}"), None
        with self.lock:
            return self._put(merchant, version, order_id, txn_id, headers, body, path)

    def _retrieve(
        self, merchant: str, order_id: str, txn_id: str | None, version: str
    ) -> tuple[int, Any]:
        with self.lock:
            order = self.orders.get(order_id)
            if order is None:
                # GUESS: explanation text and 400 (the notes do not give the not-found reply).
                return 400, invalid_field_response("orderId", order_id, "Order not found.")
            if txn_id is None:
                return 200, self._order_reply(merchant, order, version)
            txn = order.transactions.get(txn_id)
            if txn is None:
                return 400, invalid_field_response(
                    "transactionId", txn_id, "Transaction not found."
                )
            return 200, self._txn_reply(merchant, order, txn, version)

    def _card(self) -> dict[str, Any]:
        if self.leak_card_data:
            return {"card_number": FULL_CARD, "security_code": "123"}
        return {}

    def _txn_reply(
        self, merchant: str, order: FakeOrder, txn: StoredTransaction, version: str
    ) -> dict[str, Any]:
        return transaction_response(
            merchant,
            order.summary(),
            txn.block(),
            txn.result,
            txn.gateway_code,
            version=version,
            **self._card(),
        )

    def _order_reply(self, merchant: str, order: FakeOrder, version: str) -> dict[str, Any]:
        return {
            **order.summary(),
            "merchant": merchant,
            "result": "SUCCESS",
            "sourceOfFunds": {
                "type": "CARD",
                "provided": {
                    "card": {
                        "brand": "MASTERCARD",
                        "number": FULL_CARD if self.leak_card_data else MASKED_CARD,
                        "expiry": {"month": "5", "year": "39"},
                    }
                },
            },
            "transaction": [
                self._txn_reply(merchant, order, t, version) for t in order.transactions.values()
            ],
        }

    def _put(
        self,
        merchant: str,
        version: str,
        order_id: str,
        txn_id: str,
        headers: dict[str, str],
        body: bytes,
        path: str,
    ) -> tuple[int, Any, Fault | None]:
        if not (headers.get("content-type") or "").lower().startswith("application/json"):
            return (
                400,
                error_response("INVALID_REQUEST", "Content-Type must be application/json"),
                None,
            )
        try:
            data = json.loads(body, parse_float=Decimal)
        except ValueError:
            return 400, error_response("INVALID_REQUEST", "Request body is not valid JSON"), None
        if not isinstance(data, dict):
            return 400, error_response("INVALID_REQUEST", "Request body is not a JSON object"), None
        if not ID_CHARS.match(txn_id):
            return 400, invalid_field_response("transactionId", txn_id), None
        problem = self._shape_problem(data)
        if problem is not None:
            return 400, problem, None
        order = self.orders.get(order_id)
        if order is None:
            return 400, invalid_field_response("orderId", order_id, "Order not found."), None
        canonical = json.dumps(data, sort_keys=True, default=str)
        existing = order.transactions.get(txn_id)
        if existing is not None:
            if existing.request == canonical and existing.reply is not None:
                # An identical resend: the transaction is not processed again.
                return 200, existing.reply, None  # GUESS: 200 (201 only on creation)
            # GUESS (VERIFY in the notes): a different body under an existing id is refused.
            return (
                400,
                invalid_field_response(
                    "transactionId",
                    txn_id,
                    "A transaction with this id already exists on the order.",
                ),
                None,
            )
        operation = data["apiOperation"]
        txn_data = data["transaction"]
        refusal = self._business_problem(order, operation, txn_data)
        if refusal is not None:
            return 400, refusal, None
        fault = self._take_fault("PUT", path)
        if fault is not None and fault.kind not in RESULT_FAULTS and not fault.apply:
            return 0, None, fault
        result, code = "SUCCESS", "APPROVED"
        if fault is not None and fault.kind == "decline":
            result, code = "FAILURE", "DECLINED"
        elif fault is not None and fault.kind == "queue":
            result, code = "PENDING", "SUBMITTED"
        elif fault is not None and fault.kind == "result_unknown":
            result, code = "UNKNOWN", "TIMED_OUT"
        txn = self._record(order, txn_id, operation, txn_data, result, code, canonical)
        reply = self._txn_reply(merchant, order, txn, version)
        txn.reply = reply
        return 201, reply, fault

    @staticmethod
    def _shape_problem(data: dict[str, Any]) -> dict[str, Any] | None:
        for key in data:
            if key not in TOP_LEVEL_FIELDS:
                return unexpected_field_response(key)
        operation = data.get("apiOperation")
        if operation is None:
            return missing_field_response("apiOperation")
        if operation not in TRANSACTION_FIELDS:
            return invalid_field_response("apiOperation", operation)
        order_block = data.get("order", {})
        if not isinstance(order_block, dict):
            return invalid_field_response("order", order_block)
        for key in order_block:
            if key not in ORDER_FIELDS:
                return unexpected_field_response(f"order.{key}")
        txn = data.get("transaction")
        if txn is None:
            return missing_field_response("transaction")
        if not isinstance(txn, dict):
            return invalid_field_response("transaction", txn)
        for key in txn:
            if key not in TRANSACTION_FIELDS[operation]:
                return unexpected_field_response(f"transaction.{key}")
        required = ("targetTransactionId",) if operation == "VOID" else ("amount", "currency")
        for key in required:
            if txn.get(key) in (None, ""):
                return missing_field_response(f"transaction.{key}")
        reference = txn.get("reference")
        if reference is not None and (not isinstance(reference, str) or len(reference) > 40):
            return invalid_field_response("transaction.reference", reference)
        if operation != "VOID":
            currency = txn["currency"]
            if not isinstance(currency, str) or currency not in CURRENCY_DIGITS:
                return invalid_field_response("transaction.currency", currency)
            amount = txn["amount"]
            text = str(amount) if isinstance(amount, (str, Decimal, int)) else None
            if isinstance(amount, bool) or text is None or not AMOUNT.match(text):
                return invalid_field_response("transaction.amount", amount)
            try:
                value = Decimal(text)
            except InvalidOperation:
                return invalid_field_response("transaction.amount", amount)
            decimals = len(text.partition(".")[2])
            if decimals > CURRENCY_DIGITS[currency]:
                return invalid_field_response(
                    "transaction.amount",
                    amount,
                    f"{currency} allows {CURRENCY_DIGITS[currency]} decimal places.",
                )
            if value <= 0:
                return invalid_field_response("transaction.amount", amount)
        return None

    @staticmethod
    def _business_problem(
        order: FakeOrder, operation: str, txn: dict[str, Any]
    ) -> dict[str, Any] | None:
        if operation != "VOID":
            if txn["currency"] != order.currency:
                return invalid_field_response(
                    "transaction.currency", txn["currency"], "Currency does not match the order."
                )
            amount = Decimal(str(txn["amount"]))
        if operation == "CAPTURE":
            if order.voided_auth or order.authorized <= 0:
                return error_response("INVALID_REQUEST", "No authorization available to capture")
            if not any(t.type == "AUTHORIZATION" for t in order.transactions.values()):
                return error_response("INVALID_REQUEST", "The order was paid; nothing to capture")
            open_captures = order._sum("CAPTURE", "PENDING")
            if amount > order.authorized - order.captured - open_captures:
                # GUESS: explanation text (the notes: "rejected unless the profile allows it").
                return invalid_field_response(
                    "transaction.amount",
                    txn["amount"],
                    "Requested capture amount exceeds the outstanding authorized amount.",
                )
        elif operation == "REFUND":
            if order.captured <= 0:
                return error_response(
                    "INVALID_REQUEST", "Refund not possible: no funds have been captured"
                )
            open_refunds = order._sum("REFUND", "PENDING")
            if amount > order.captured - order.refunded - open_refunds:
                # GUESS: explanation text (VERIFY in the notes).
                return invalid_field_response(
                    "transaction.amount",
                    txn["amount"],
                    "Requested refund amount exceeds the captured amount.",
                )
        else:
            target = order.transactions.get(str(txn["targetTransactionId"]))
            if target is None or target.result != "SUCCESS" or target.type.startswith("VOID"):
                return invalid_field_response(
                    "transaction.targetTransactionId", txn["targetTransactionId"]
                )
            if order.settled:
                return error_response(
                    "INVALID_REQUEST", "The target transaction has been settled; refund instead"
                )
            if target.type == "AUTHORIZATION" and (order.captured > 0 or order.voided_auth):
                return error_response(
                    "INVALID_REQUEST", "The authorization has been captured or voided"
                )
        return None

    @staticmethod
    def _record(
        order: FakeOrder,
        txn_id: str,
        operation: str,
        txn: dict[str, Any],
        result: str,
        code: str,
        canonical: str,
    ) -> StoredTransaction:
        reference = txn.get("reference")
        if operation == "VOID":
            target = order.transactions[str(txn["targetTransactionId"])]
            kind = {
                "AUTHORIZATION": "VOID_AUTHORIZATION",
                "CAPTURE": "VOID_CAPTURE",
                "REFUND": "VOID_REFUND",
                "PAYMENT": "VOID_PAYMENT",
            }[target.type]
            stored = StoredTransaction(
                txn_id,
                kind,
                target.amount,
                order.currency,
                result,
                code,
                canonical,
                reference=reference,
                target=target.id,
            )
        else:
            stored = StoredTransaction(
                txn_id,
                operation,
                Decimal(str(txn["amount"])),
                txn["currency"],
                result,
                code,
                canonical,
                reference=reference,
            )
        order.transactions[txn_id] = stored
        return stored


@pytest.fixture
def mpgs_fake() -> Iterator[FakeMpgs]:
    yield from FakeMpgs().serving()
