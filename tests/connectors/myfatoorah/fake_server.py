"""A local fake of MyFatoorah's API v2, written from the protocol document
(spec/gateways-mpgs-ngenius-tabby-myfatoorah.md, section 4), not from the connector.

It serves real HTTP on 127.0.0.1 (a threaded stdlib server, so a test can reset a connection at
the socket) and enforces what MyFatoorah enforces:

- Every call is ``POST /v2/<Endpoint>`` with ``Authorization: Bearer <token>`` and a JSON body.
  A missing or wrong token answers 401 with an **empty body**; another method 405; an unknown
  endpoint 404 ``{"Message": "No HTTP resource was found that matches the request URI …"}``.
- Replies use the envelope ``{"IsSuccess", "Message", "ValidationErrors", "Data"}``; refusals
  have ``IsSuccess: false`` with ``Message`` and/or ``ValidationErrors: [{"Name", "Error"}]``.
- Amounts are JSON numbers in major units with at most the currency's decimals (KWD 3, SAR 2…).
- ``GetPaymentStatus`` ``{"Key", "KeyType": InvoiceId|PaymentId|CustomerReference}``: the invoice
  with ``InvoiceTransactions[]`` (``InProgress``, ``Succss`` (sic), ``Failed``, ``Authorize``,
  ``Canceled``), ``TransationValue`` (sic) and local currency names (``KD``, ``SR``).
- ``UpdatePaymentStatus`` ``{"Operation": capture|release, "Amount", "Key", "KeyType"}``: only on an
  authorized invoice, only once per invoice (capture **or** release); capture ≤ the authorized
  value (partial allowed: ``InvoiceValue`` becomes the captured amount, the invoice turns Paid with
  a new ``Succss`` transaction); release (Amount optional, else equal to the invoice value) adds a
  ``Canceled`` transaction with ``Error: "Transaction Released"`` and leaves the invoice Pending.
- ``MakeRefund`` ``{"KeyType": InvoiceId|PaymentId, "Key", "Amount", "Comment",
  "ServiceChargeOnCustomer", "RefundChargeOnCustomer", "ExternalIdentifier"}``: only on a Paid
  invoice, at most ``InvoiceValue − Σ(Pending + Refunded refunds)``; creates a **Pending** refund
  (finance review) unless ``auto_refund`` is set (then ``Refunded`` at once). There is **no
  idempotency**: the same ExternalIdentifier twice creates two refunds, as the real gateway does.
- ``GetRefundStatus`` ``{"KeyType": InvoiceId|RefundReference|RefundId, "Key"}``:
  ``Data.RefundStatusResult[]`` with ``RefundStatus`` ``Refunded``/``Canceled``/``Pending``.

Tests steer it with ``fail_next(kind, endpoint=…)`` (timeout, reset, 500, malformed, decline,
blocked; ``apply=True`` performs the request before the fault, as when a reply is lost), with
``settle_refund`` (finance approves or cancels), and with the invoice builders below. Every request
is recorded in ``requests``.

Details the document does not give, chosen here (marked GUESS in the code): the exact texts of the
business refusals and their HTTP status (400), that a string ``Amount`` or too many decimals are
refused rather than coerced or rounded, that GetRefundStatus lists an invoice without refunds as
an empty list, that an authorized invoice reads ``InvoiceStatus: "Pending"`` with an
``Authorize`` transaction, and the 415 / 405 texts.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

import pytest

from tests.fakes.base import Answer, FakeGateway, Fault, RecordedRequest

TEST_API_TOKEN = "mf-test-7Kq2VfX9LrT4nBw8ZsY3cJd6HgP1aE5uQm0oWiRx"  # made up here
WRONG_API_TOKEN = "wrong-token-0000"

ENDPOINTS = (
    "/v2/GetPaymentStatus",
    "/v2/UpdatePaymentStatus",
    "/v2/MakeRefund",
    "/v2/GetRefundStatus",
)
DECIMALS = {
    "KWD": 3,
    "BHD": 3,
    "OMR": 3,
    "JOD": 3,
    "SAR": 2,
    "AED": 2,
    "QAR": 2,
    "EGP": 2,
    "USD": 2,
}
LOCAL_CURRENCY = {"KWD": "KD", "SAR": "SR", "BHD": "BD", "QAR": "QR", "OMR": "RO", "JOD": "JD"}
MASKED_CARD = "450875xxxxxx1019"


# -- JSON with exact numbers ----------------------------------------------------------------------


def encode(value: Any) -> str:
    """JSON where a Decimal is written as the number literal it holds (as .NET writes decimals)."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    return json.dumps(value, ensure_ascii=False)


# -- canned replies -------------------------------------------------------------------------------


def envelope(data: Any, message: str = "") -> dict[str, Any]:
    return {"IsSuccess": True, "Message": message, "ValidationErrors": None, "Data": data}


def error_envelope(message: str, errors: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {"IsSuccess": False, "Message": message, "ValidationErrors": errors, "Data": None}


def validation_error_response(*problems: tuple[str, str]) -> dict[str, Any]:
    return error_envelope("Invalid data", [{"Name": n, "Error": e} for n, e in problems])


def invalid_key_response() -> dict[str, Any]:
    return error_envelope("Invalid Key")  # GUESS: text


def not_authorized_response() -> dict[str, Any]:
    return error_envelope("The invoice is not authorized")  # GUESS: text


def already_updated_response() -> dict[str, Any]:
    # The docs: only one Capture/Release operation on each invoice. GUESS: text
    return error_envelope("You can make only one Capture/Release operation on each invoice")


def capture_exceeds_response() -> dict[str, Any]:
    return error_envelope("The amount has to be less than or equal to the invoice value")  # GUESS


def release_amount_response() -> dict[str, Any]:
    return error_envelope("The amount has to be equal to the invoice value")  # GUESS: text


def refund_not_paid_response() -> dict[str, Any]:
    return error_envelope("The invoice is not paid")  # GUESS: text


def refund_exceeds_response() -> dict[str, Any]:
    return error_envelope("Refund amount exceeds the remaining amount of the invoice")  # GUESS


def declined_response(message: str = "The operation was declined") -> dict[str, Any]:
    return error_envelope(message)


def not_found_response(path: str) -> dict[str, Any]:
    return {
        "Message": "No HTTP resource was found that matches the request URI "
        f"'https://apitest.myfatoorah.com{path}'."
    }


def method_not_allowed_response(method: str) -> dict[str, Any]:
    return {"Message": f"The requested resource does not support http method '{method}'."}


def unsupported_media_response(media: str) -> dict[str, Any]:
    return {
        "Message": f"The request entity's media type '{media}' is not supported for this resource."
    }  # GUESS: .NET's wording


def payment_status_response(invoice: FakeInvoice) -> dict[str, Any]:
    return envelope(invoice.as_json())


def successful_refund_response(refund: FakeRefund, key: str) -> dict[str, Any]:
    return envelope(
        {
            "Key": key,
            "RefundId": refund.id,
            "RefundReference": refund.reference,
            "RefundInvoiceId": refund.refund_invoice_id,
            "Amount": refund.amount,
            "Comment": refund.comment,
            "ExternalIdentifier": refund.external_identifier,
        },
        "Refund Created Successfully!",
    )


def refund_status_response(refunds: list[FakeRefund]) -> dict[str, Any]:
    return envelope({"RefundStatusResult": [r.as_json() for r in refunds]})


BLOCKED_HTML = (
    "<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n<center><h1>"
    "403 Forbidden</h1></center>\r\n<hr><center>Microsoft-Azure-Application-Gateway/v2"
    "</center>\r\n</body>\r\n</html>\r\n"
)
SERVER_ERROR_TEXT = "<html><body><h1>500 Internal Server Error</h1></body></html>"
MALFORMED_TEXT = '{"IsSuccess":true,"Message":"","ValidationErrors":null,"Data":{"InvoiceId":58'


def _now() -> datetime:
    return datetime.now(UTC)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3]


# -- state ----------------------------------------------------------------------------------------


@dataclass
class FakeRefund:
    id: int
    reference: str
    refund_invoice_id: int
    invoice_id: int
    amount: Decimal
    currency: str
    status: str  # Pending | Refunded | Canceled
    comment: str
    external_identifier: str | None
    rrn: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "RefundId": self.id,
            "RefundStatus": self.status,
            "InvoiceId": self.invoice_id,
            "Amount": self.amount,
            "RefundReference": self.reference,
            "ExternalIdentifier": self.external_identifier,
            "RRN": self.rrn,
            "RefundAmount": self.amount,
            "BaseCurrency": self.currency,
        }


@dataclass
class FakeInvoice:
    id: int
    value: Decimal
    currency: str
    status: str  # Pending | Paid | Canceled
    customer_reference: str
    created: datetime
    transactions: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[FakeRefund] = field(default_factory=list)
    updated: bool = False  # a capture or release was done (one per invoice)

    def money(self, value: Decimal) -> Decimal:
        return value.quantize(Decimal(1).scaleb(-DECIMALS[self.currency]))

    def display(self) -> str:
        local = LOCAL_CURRENCY.get(self.currency, self.currency)
        return f"{self.money(self.value):,} {local}"

    @property
    def refunded(self) -> Decimal:
        return sum(
            (r.amount for r in self.refunds if r.status in ("Pending", "Refunded")), Decimal(0)
        )

    def as_json(self) -> dict[str, Any]:
        expiry = self.created + timedelta(days=3)
        return {
            "InvoiceId": self.id,
            "InvoiceStatus": self.status,
            "InvoiceReference": f"2025{self.id:06d}",
            "CustomerReference": self.customer_reference,
            "CreatedDate": _stamp(self.created),
            "ExpiryDate": expiry.strftime("%B %d, %Y"),
            "ExpiryTime": expiry.strftime("%H:%M:%S"),
            "InvoiceValue": self.money(self.value),
            "Comments": None,
            "CustomerName": "Test Customer",
            "CustomerMobile": "+965 00000000",
            "CustomerEmail": "customer@example.com",
            "UserDefinedField": None,
            "InvoiceDisplayValue": self.display(),
            "DueDeposit": Decimal(0),
            "DepositStatus": "Not Deposited",
            "InvoiceItems": [],
            "InvoiceTransactions": [dict(t) for t in self.transactions],
            "Suppliers": [],
        }


class FakeMyFatoorah(FakeGateway):
    """State and behaviour of the fake; ``url`` is where it listens. Faults: the common ones
    (tests/fakes/base.py) and ``blocked`` (the WAF's 403 HTML page)."""

    EXTRA_FAULTS: ClassVar[tuple[str, ...]] = ("blocked",)
    malformed_body = MALFORMED_TEXT

    def __init__(self) -> None:
        super().__init__()
        self.tokens = {TEST_API_TOKEN}
        self.invoices: dict[int, FakeInvoice] = {}
        self.auto_refund = False
        # Idempotency-Key on MakeRefund is honoured for Kuwait and Saudi accounts only.
        self.honours_idempotency = True
        self.idempotent_replies: dict[str, tuple[int, Any]] = {}
        self._ids = itertools.count(6_424_001)
        self._refund_ids = itertools.count(28_401)
        self._payment_ids = itertools.count(100_202_409_798_688_317)

    # -- control: invoices ------------------------------------------------------------------
    def _transaction(
        self,
        invoice: FakeInvoice,
        status: str,
        value: Decimal,
        *,
        error: str | None = None,
        error_code: str | None = None,
    ) -> dict[str, Any]:
        number = next(self._payment_ids)
        return {
            "TransactionDate": _stamp(_now()),
            "PaymentGateway": "VISA/MASTER",
            "ReferenceId": f"{number % 10**12:012d}",
            "TrackId": f"{_now():%d-%m-%Y}_{number % 10**7}",
            "TransactionId": f"{number % 10**15:015d}",
            "PaymentId": f"0707{invoice.id}{number % 10**8:08d}",
            "AuthorizationId": f"{number % 10**6:06d}",
            "TransactionStatus": status,
            "TransationValue": invoice.money(value),
            "CustomerServiceCharge": Decimal(0),
            "TotalServiceCharge": Decimal(0),
            "DueValue": invoice.money(value),
            "PaidCurrency": LOCAL_CURRENCY.get(invoice.currency, invoice.currency),
            "PaidCurrencyValue": invoice.money(value),
            "VatAmount": Decimal(0),
            "IpAddress": "10.0.0.1",
            "Country": "Kuwait",
            "Currency": LOCAL_CURRENCY.get(invoice.currency, invoice.currency),
            "Error": error,
            "CardNumber": MASKED_CARD,
            "ErrorCode": error_code,
        }

    def add_invoice(
        self,
        amount: str = "100.000",
        currency: str = "KWD",
        *,
        state: str = "paid",
        customer_reference: str = "ORD-1",
    ) -> str:
        """An invoice in ``state``: paid | authorized | in_progress | failed | canceled | unpaid.
        Returns its InvoiceId (as text, as PayOps records it)."""
        with self.lock:
            invoice = FakeInvoice(
                id=next(self._ids),
                value=Decimal(amount),
                currency=currency,
                status="Pending",
                customer_reference=customer_reference,
                created=_now(),
            )
            value = invoice.value
            if state == "paid":
                invoice.status = "Paid"
                invoice.transactions.append(self._transaction(invoice, "Succss", value))
            elif state == "authorized":
                # GUESS: v2 shows an authorized invoice as Pending with an Authorize transaction
                invoice.transactions.append(self._transaction(invoice, "Authorize", value))
            elif state == "in_progress":
                invoice.transactions.append(self._transaction(invoice, "InProgress", value))
            elif state == "failed":
                invoice.transactions.append(
                    self._transaction(
                        invoice, "Failed", value, error="Declined by the issuer", error_code="MF002"
                    )
                )
            elif state == "canceled":
                invoice.status = "Canceled"
            elif state != "unpaid":
                raise ValueError(state)
            self.invoices[invoice.id] = invoice
            return str(invoice.id)

    def invoice(self, invoice_id: str | int) -> dict[str, Any]:
        """The invoice as GetPaymentStatus would show it (amounts as Decimal)."""
        with self.lock:
            return self.invoices[int(invoice_id)].as_json()

    def payment_id(self, invoice_id: str | int) -> str:
        with self.lock:
            return str(self.invoices[int(invoice_id)].transactions[0]["PaymentId"])

    def set_invoice_status(self, invoice_id: str | int, status: str) -> None:
        with self.lock:
            self.invoices[int(invoice_id)].status = status

    def set_transaction(self, invoice_id: str | int, **fields: Any) -> None:
        """Change the invoice's last transaction (e.g. an unmasked CardNumber)."""
        with self.lock:
            self.invoices[int(invoice_id)].transactions[-1].update(fields)

    # -- control: refunds -------------------------------------------------------------------
    def refunds(self, invoice_id: str | int) -> list[dict[str, Any]]:
        with self.lock:
            return [r.as_json() for r in self.invoices[int(invoice_id)].refunds]

    def add_refund(
        self,
        invoice_id: str | int,
        amount: str,
        *,
        status: str = "Pending",
        external_identifier: str | None = None,
    ) -> int:
        """A refund created elsewhere (e.g. in the MyFatoorah portal)."""
        with self.lock:
            invoice = self.invoices[int(invoice_id)]
            refund = self._new_refund(invoice, Decimal(amount), "portal", external_identifier)
            refund.status = status
            return refund.id

    def settle_refund(
        self,
        invoice_id: str | int,
        status: str = "Refunded",
        *,
        external_identifier: str | None = None,
    ) -> None:
        """MyFatoorah's finance team executes (``Refunded``) or rejects (``Canceled``) refunds
        of the invoice (those with ``external_identifier`` only, when given)."""
        assert status in ("Refunded", "Canceled", "Pending")
        with self.lock:
            for refund in self.invoices[int(invoice_id)].refunds:
                if external_identifier is None or refund.external_identifier == external_identifier:
                    refund.status = status
                    if status == "Refunded":
                        refund.rrn = f"{refund.id:012d}"

    def _new_refund(
        self, invoice: FakeInvoice, amount: Decimal, comment: str, external_identifier: str | None
    ) -> FakeRefund:
        number = next(self._refund_ids)
        refund = FakeRefund(
            id=number,
            reference=f"2025{number:06d}",
            refund_invoice_id=next(self._ids),
            invoice_id=invoice.id,
            amount=invoice.money(amount),
            currency=invoice.currency,
            status="Refunded" if self.auto_refund else "Pending",
            comment=comment,
            external_identifier=external_identifier,
        )
        if refund.status == "Refunded":
            refund.rrn = f"{number:012d}"
        invoice.refunds.append(refund)
        return refund

    # -- control: faults and records --------------------------------------------------------
    def fail_next(
        self,
        kind: str,
        *,
        endpoint: str | None = None,
        apply: bool = False,
        message: str = "",
        status: int = 400,
        **more: Any,
    ) -> None:
        """The next request to ``endpoint`` (any when None) meets ``kind``. ``decline`` answers
        ``IsSuccess: false`` with ``message`` and HTTP ``status``."""
        assert endpoint is None or endpoint in ENDPOINTS, endpoint
        super().fail_next(kind, path=endpoint, apply=apply, message=message, status=status, **more)

    def encode(self, value: Any) -> bytes:
        return encode(value).encode()

    def decline_answer(self, fault: Fault, request: RecordedRequest) -> Answer:
        return Answer(
            fault.status or 400,
            declined_response(fault.message) if fault.message else declined_response(),
        )

    def extra_fault(self, fault: Fault, request: RecordedRequest) -> Answer | None:
        return Answer(403, BLOCKED_HTML, "text/html")  # blocked

    # -- protocol ---------------------------------------------------------------------------
    def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, Any]:
        """(status, JSON body, bare text or None for an empty body); mutates state."""
        lower = {k.lower(): v for k, v in headers.items()}
        if path not in ENDPOINTS:
            return 404, not_found_response(path)
        if method != "POST":
            return 405, method_not_allowed_response(method)
        scheme, _, token = lower.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token not in self.tokens:
            return 401, None
        media = lower.get("content-type", "").split(";")[0].strip().lower()
        if media != "application/json":
            return 415, unsupported_media_response(media)
        try:
            data = json.loads(body, parse_float=Decimal) if body else None
        except ValueError:
            return 400, validation_error_response(("request", "The request is invalid."))  # GUESS
        if not isinstance(data, dict):
            return 400, validation_error_response(("request", "The request is invalid."))
        with self.lock:
            if path == "/v2/GetPaymentStatus":
                return self._get_payment_status(data)
            if path == "/v2/UpdatePaymentStatus":
                return self._update_payment_status(data)
            if path == "/v2/MakeRefund":
                # Idempotency-Key (Kuwait and Saudi accounts): the same key answers the first
                # reply again, without a second refund.
                key = lower.get("idempotency-key")
                if key and key in self.idempotent_replies:
                    return self.idempotent_replies[key]
                reply = self._make_refund(data)
                if key and self.honours_idempotency and reply[0] == 200:
                    self.idempotent_replies[key] = reply
                return reply
            return self._get_refund_status(data)

    # validation helpers: each returns a problem (Name, Error) or None
    @staticmethod
    def _key(
        data: dict[str, Any], allowed: tuple[str, ...]
    ) -> tuple[list[tuple[str, str]], str, str]:
        problems = []
        key = data.get("Key")
        if (
            isinstance(key, bool)
            or not isinstance(key, (str, int, Decimal))
            or not str(key).strip()
        ):
            problems.append(("Key", "The Key field is required."))
        key_type = data.get("KeyType")
        match = next(
            (
                a
                for a in allowed
                if isinstance(key_type, str) and key_type.strip().lower() == a.lower()
            ),
            None,
        )
        if match is None:
            problems.append(("KeyType", f"KeyType must be one of {', '.join(allowed)}."))
        return problems, str(key).strip() if key is not None else "", match or ""

    @staticmethod
    def _amount(
        data: dict[str, Any], currency: str | None, *, required: bool
    ) -> tuple[tuple[str, str] | None, Decimal | None]:
        raw = data.get("Amount")
        if raw is None:
            return (("Amount", "The Amount field is required.") if required else None), None
        if isinstance(raw, bool) or not isinstance(raw, (int, Decimal)):
            return ("Amount", "The Amount must be a number."), None  # GUESS: no coercion
        amount = Decimal(raw)
        if amount <= 0:
            return ("Amount", "The Amount must be greater than zero."), None
        if currency is not None and -amount.as_tuple().exponent > DECIMALS[currency]:  # type: ignore[operator]
            return (
                "Amount",
                f"The Amount allows at most {DECIMALS[currency]} decimals for {currency}.",
            ), None  # GUESS: refused, not rounded
        return None, amount

    def _find(self, key: str, key_type: str) -> FakeInvoice | None:
        if key_type == "InvoiceId":
            return self.invoices.get(int(key)) if key.isdigit() else None
        for invoice in self.invoices.values():
            if key_type == "PaymentId" and any(t["PaymentId"] == key for t in invoice.transactions):
                return invoice
            if key_type == "CustomerReference" and invoice.customer_reference == key:
                return invoice
        return None

    def _get_payment_status(self, data: dict[str, Any]) -> tuple[int, Any]:
        problems, key, key_type = self._key(data, ("InvoiceId", "PaymentId", "CustomerReference"))
        if problems:
            return 400, validation_error_response(*problems)
        invoice = self._find(key, key_type)
        if invoice is None:
            return 400, invalid_key_response()
        return 200, payment_status_response(invoice)

    def _update_payment_status(self, data: dict[str, Any]) -> tuple[int, Any]:
        problems, key, key_type = self._key(data, ("InvoiceId", "PaymentId", "CustomerReference"))
        operation = data.get("Operation")
        operation = operation.strip().lower() if isinstance(operation, str) else ""
        if operation not in ("capture", "release"):
            problems.append(("Operation", "Operation must be Capture or Release."))
        invoice = self._find(key, key_type) if not problems else None
        amount_problem, amount = self._amount(
            data, invoice.currency if invoice else None, required=operation == "capture"
        )
        if amount_problem:
            problems.append(amount_problem)
        if problems:
            return 400, validation_error_response(*problems)
        if invoice is None:
            return 400, invalid_key_response()
        if invoice.updated:
            return 400, already_updated_response()
        authorized = [t for t in invoice.transactions if t["TransactionStatus"] == "Authorize"]
        if invoice.status != "Pending" or not authorized:
            return 400, not_authorized_response()
        if operation == "capture":
            assert amount is not None
            if amount > invoice.value:
                return 400, capture_exceeds_response()
            invoice.value = amount
            invoice.status = "Paid"
            invoice.transactions.append(self._transaction(invoice, "Succss", amount))
        else:
            if amount is not None and amount != invoice.value:
                return 400, release_amount_response()
            invoice.transactions.append(
                self._transaction(invoice, "Canceled", invoice.value, error="Transaction Released")
            )
        invoice.updated = True
        return 200, payment_status_response(invoice)

    def _make_refund(self, data: dict[str, Any]) -> tuple[int, Any]:
        problems, key, key_type = self._key(data, ("InvoiceId", "PaymentId"))
        for name in ("ServiceChargeOnCustomer", "RefundChargeOnCustomer"):
            if name in data and not isinstance(data[name], bool):
                problems.append((name, f"{name} must be true or false."))
        for name in ("Comment", "ExternalIdentifier"):
            if data.get(name) is not None and not isinstance(data[name], str):
                problems.append((name, f"{name} must be a string."))
        invoice = self._find(key, key_type) if not problems else None
        amount_problem, amount = self._amount(
            data, invoice.currency if invoice else None, required=True
        )
        if amount_problem:
            problems.append(amount_problem)
        if problems:
            return 400, validation_error_response(*problems)
        if invoice is None:
            return 400, invalid_key_response()
        if invoice.status not in ("Paid", "DuplicatePayment"):
            return 400, refund_not_paid_response()
        assert amount is not None
        if amount > invoice.value - invoice.refunded:
            return 400, refund_exceeds_response()
        # No idempotency: a repeated ExternalIdentifier makes another refund, as MyFatoorah does.
        refund = self._new_refund(
            invoice, amount, data.get("Comment") or "", data.get("ExternalIdentifier")
        )
        return 200, successful_refund_response(refund, key)

    def _get_refund_status(self, data: dict[str, Any]) -> tuple[int, Any]:
        problems, key, key_type = self._key(data, ("InvoiceId", "RefundReference", "RefundId"))
        if problems:
            return 400, validation_error_response(*problems)
        if key_type == "InvoiceId":
            invoice = self._find(key, "InvoiceId")
            if invoice is None:
                return 400, invalid_key_response()
            return 200, refund_status_response(list(invoice.refunds))  # GUESS: [] when none
        for invoice in self.invoices.values():
            for refund in invoice.refunds:
                if (key_type == "RefundId" and str(refund.id) == key) or (
                    key_type == "RefundReference" and refund.reference == key
                ):
                    return 200, refund_status_response([refund])
        return 400, invalid_key_response()


@pytest.fixture
def fake_myfatoorah() -> Iterator[FakeMyFatoorah]:
    yield from FakeMyFatoorah().serving()
