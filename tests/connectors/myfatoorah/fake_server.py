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

The payment side (spec/gateways-payment-acceptance.md §4.5):

- ``InitiatePayment`` lists two methods; ``ExecutePayment`` (exactly one of ``PaymentMethodId`` /
  ``SessionId``) and ``SendPayment`` (``CustomerName``, ``NotificationOption`` and the contact it
  needs) create a **new invoice on every call** with its ``CustomerReference``; ``CallBackUrl`` and
  ``ErrorUrl`` are checked (≤ 254 characters; localhost refused only with ``refuse_localhost``);
  ``ExpiryDate`` is read in Asia/Kuwait time and shown back as ``ExpiryDate``/``ExpiryTime``.
- ``GET /En/KWT/PayInvoice/Checkout?invoiceKey=…``: a card form. ``CARD_SUCCESS`` adds a
  ``Succss`` transaction (``Authorize`` with ``authorize_only``), sets the invoice Paid and sends
  the browser (302) to ``CallBackUrl?paymentId=<id>&Id=<id>``; ``CARD_DECLINE`` adds a ``Failed``
  transaction (``MF002``) and sends it to ``ErrorUrl?paymentId=…``; Cancel does the same with
  ``MF006``; ``CARD_PENDING`` adds an ``InProgress`` transaction and waits (3-D Secure, no answer
  until ``complete_pending``). Another try on the same invoice is allowed until it is paid; an
  expired invoice takes no card.
- Switches: ``duplicate_next`` (the invoice is paid twice: ``DuplicatePayment``),
  ``authorize_only``, ``never_return`` (paid, the browser is never sent back), and
  ``webhook(invoice_id)`` / ``send_webhook`` for a signed V2 ``PAYMENT_STATUS_CHANGED``.

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

import base64
import hashlib
import hmac
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import escape
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.fakes.base import Answer, FakeGateway, Fault, RecordedRequest

TEST_API_TOKEN = "mf-test-7Kq2VfX9LrT4nBw8ZsY3cJd6HgP1aE5uQm0oWiRx"  # made up here
WRONG_API_TOKEN = "wrong-token-0000"

PAYMENT_ENDPOINTS = ("/v2/InitiatePayment", "/v2/ExecutePayment", "/v2/SendPayment")
CHECKOUT_PAGE = "/En/KWT/PayInvoice/Checkout"
VENDOR_ZONE = ZoneInfo("Asia/Kuwait")  # test accounts' time zone (MyFatoorah's library)
# Test cards of this fake's payment page (any expiry and CVV): approved, declined (MF002), and
# held for 3-D Secure with no final answer (an InProgress transaction).
CARD_SUCCESS = "4111111111111111"
CARD_DECLINE = "4000000000000002"
CARD_PENDING = "4000000000000259"
ENDPOINTS = PAYMENT_ENDPOINTS + (
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


def refund_webhook(
    secret: str,
    refund_id: int,
    status: str,
    amount: str,
    invoice: str | None,
    *,
    event_reference: str = "WH-9",
    **refund: Any,
) -> tuple[bytes, dict[str, str]]:
    """A signed V2 REFUND_STATUS_CHANGED webhook (``MyFatoorah-Signature`` over the documented
    fields). ``refund`` adds fields to ``Data.Refund``; ``invoice`` None: the event names no
    referenced invoice. ``amount`` is written as given (a JSON number)."""
    extra = "".join(f",{json.dumps(key)}:{json.dumps(value)}" for key, value in refund.items())
    referenced = f'{{"Id":"{invoice}"}}' if invoice is not None else "null"
    body = (
        '{"Event":{"Code":2,"Name":"REFUND_STATUS_CHANGED","CountryIsoCode":"KWT",'
        f'"CreationDate":"2025-01-26T12:07:15Z","Reference":"{event_reference}"}},'
        f'"Data":{{"Refund":{{"Id":{refund_id},"Status":"{status}"{extra}}},'
        f'"Amount":{{"BaseCurrency":"KWD","ValueInBaseCurrency":{amount}}},'
        f'"ReferencedInvoice":{referenced}}}}}'
    )
    canonical = (
        f"Refund.Id={refund_id},Refund.Status={status},"
        f"Amount.ValueInBaseCurrency={amount},ReferencedInvoice.Id={invoice or ''}"
    )
    digest = hmac.new(secret.encode(), canonical.encode(), hashlib.sha256)
    return body.encode(), {
        "MyFatoorah-Signature": base64.b64encode(digest.digest()).decode(),
        "myfatoorah-webhook-version": "v2",
        "Content-Type": "application/json",
    }


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
    # The payment side (ExecutePayment / SendPayment): where the page sends the browser back,
    # the page's key, the invoice's expiry (aware), and which endpoint made it.
    callback_url: str = ""
    error_url: str = ""
    key: str = ""
    expiry: datetime | None = None
    created_by: str = ""
    request: dict[str, Any] = field(default_factory=dict)

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
        expiry = (self.expiry or self.created + timedelta(days=3)).astimezone(VENDOR_ZONE)
        return {
            "InvoiceId": self.id,
            "InvoiceStatus": self.status,
            "InvoiceReference": f"2025{self.id:06d}",
            "CustomerReference": self.customer_reference,
            "CreatedDate": _stamp(self.created),
            "ExpiryDate": expiry.strftime("%B %d, %Y"),
            "ExpiryTime": expiry.strftime("%H:%M:%S") + ".000",
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
        # Payment side switches. ``authorize_only``: an Authorize-Capture account (a paid card
        # leaves an ``Authorize`` transaction, the invoice Pending). ``duplicate_next``: the next
        # approved card finds the invoice already paid once (``DuplicatePayment``).
        # ``never_return``: after an approved card the page shows a receipt and never sends the
        # browser back ("paid but never returned"). ``refuse_localhost``: ExecutePayment's
        # refusal of localhost URLs (off: tests run on loopback).
        self.authorize_only = False
        self.duplicate_next = False
        self.never_return = False
        self.refuse_localhost = False
        self.webhook_secret = ""
        self._keys = itertools.count(1)

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
        if urlsplit(path).path == CHECKOUT_PAGE:
            return self._page(method, path, body)
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
            if path == "/v2/InitiatePayment":
                return self._initiate_payment(data)
            if path in ("/v2/ExecutePayment", "/v2/SendPayment"):
                return self._create_invoice(path, data)
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

    # -- payment side: invoice creation (spec: payment acceptance §4.1, §4.5) -------------------
    def _initiate_payment(self, data: dict[str, Any]) -> tuple[int, Any]:
        currency = data.get("CurrencyIso")
        problem, amount = self._amount(
            {"Amount": data.get("InvoiceAmount")},
            currency if currency in DECIMALS else None,
            required=True,
        )
        if problem or currency not in DECIMALS:
            return 400, validation_error_response(
                problem or ("CurrencyIso", "The CurrencyIso is invalid.")
            )
        assert amount is not None
        return 200, envelope(
            {
                "PaymentMethods": [
                    {
                        "PaymentMethodId": 1,
                        "PaymentMethodAr": "كي نت",
                        "PaymentMethodEn": "KNET",
                        "PaymentMethodCode": "kn",
                        "IsDirectPayment": False,
                        "ServiceCharge": Decimal(0),
                        "TotalAmount": amount,
                        "CurrencyIso": currency,
                        "ImageUrl": "",
                        "IsEmbeddedSupported": False,
                    },
                    {
                        "PaymentMethodId": 2,
                        "PaymentMethodAr": "فيزا / ماستر",
                        "PaymentMethodEn": "VISA/MASTER",
                        "PaymentMethodCode": "vm",
                        "IsDirectPayment": False,
                        "ServiceCharge": Decimal(0),
                        "TotalAmount": amount,
                        "CurrencyIso": currency,
                        "ImageUrl": "",
                        "IsEmbeddedSupported": True,
                    },
                ]
            },
            "Initiated Successfully!",
        )

    def _url_problem(self, name: str, value: Any) -> tuple[str, str] | None:
        if not isinstance(value, str) or not value.strip():
            return (name, f"The {name} field is required.")
        if len(value) > 254:
            return (name, f"The {name} must be at most 254 characters.")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return (name, f"The {name} is not a valid URL.")
        if self.refuse_localhost and parts.hostname in ("localhost", "127.0.0.1", "::1"):
            return (name, f"The {name} cannot be localhost.")
        return None

    def _create_invoice(self, path: str, data: dict[str, Any]) -> tuple[int, Any]:
        problems: list[tuple[str, str]] = []
        execute = path == "/v2/ExecutePayment"
        currency = data.get("DisplayCurrencyIso") or "KWD"
        if currency not in DECIMALS:
            problems.append(("DisplayCurrencyIso", "The DisplayCurrencyIso is invalid."))
            currency = None
        problem, amount = self._amount(
            {"Amount": data.get("InvoiceValue")}, currency, required=True
        )
        if problem:
            problems.append(("InvoiceValue", problem[1].replace("Amount", "InvoiceValue")))
        if execute:
            if (data.get("PaymentMethodId") is None) == (data.get("SessionId") is None):
                problems.append(("PaymentMethodId", "Provide either PaymentMethodId or SessionId."))
        else:
            option = str(data.get("NotificationOption") or "").upper()
            if option not in ("EML", "SMS", "LNK", "ALL"):
                problems.append(("NotificationOption", "The NotificationOption is invalid."))
            if not str(data.get("CustomerName") or "").strip():
                problems.append(("CustomerName", "The CustomerName field is required."))
            if option in ("EML", "ALL") and not data.get("CustomerEmail"):
                problems.append(("CustomerEmail", "The CustomerEmail field is required."))
            if option in ("SMS", "ALL") and not data.get("CustomerMobile"):
                problems.append(("CustomerMobile", "The CustomerMobile field is required."))
        for name in ("CallBackUrl", "ErrorUrl"):
            if name in data or execute:
                url_problem = self._url_problem(name, data.get(name))
                if url_problem:
                    problems.append(url_problem)
        expiry = None
        if data.get("ExpiryDate"):
            try:
                expiry = datetime.strptime(
                    str(data["ExpiryDate"])[:19], "%Y-%m-%dT%H:%M:%S"
                ).replace(tzinfo=VENDOR_ZONE)
            except ValueError:
                problems.append(("ExpiryDate", "The ExpiryDate is invalid."))
        if problems:
            return 400, validation_error_response(*problems)
        assert amount is not None and currency is not None
        invoice = FakeInvoice(
            id=next(self._ids),
            value=amount,
            currency=currency,
            status="Pending",
            customer_reference=str(data.get("CustomerReference") or ""),
            created=_now(),
            callback_url=str(data.get("CallBackUrl") or ""),
            error_url=str(data.get("ErrorUrl") or ""),
            key=f"01072{next(self._keys):08d}",
            expiry=expiry,
            created_by=path,
            request=dict(data),
        )
        self.invoices[invoice.id] = invoice
        page = f"{self.url}{CHECKOUT_PAGE}?invoiceKey={invoice.key}"
        reply: dict[str, Any] = {
            "InvoiceId": invoice.id,
            "CustomerReference": invoice.customer_reference,
            "UserDefinedField": data.get("UserDefinedField"),
        }
        if execute:
            page += f"&paymentGatewayId={data.get('PaymentMethodId') or 0}"
            reply.update(IsDirectPayment=False, PaymentURL=page, RecurringId="")
        else:
            reply.update(InvoiceURL=page)
        return 200, envelope(reply, "Invoice Created Successfully!")

    # -- payment side: the hosted page ----------------------------------------------------------
    def invoice_by_key(self, key: str) -> FakeInvoice | None:
        with self.lock:
            return next((i for i in self.invoices.values() if i.key and i.key == key), None)

    def _page(self, method: str, target: str, body: bytes) -> Answer:
        query = dict(parse_qsl(urlsplit(target).query))
        with self.lock:
            invoice = self.invoice_by_key(query.get("invoiceKey", ""))
            if invoice is None:
                return Answer(404, "<html><body>Invoice not found</body></html>", "text/html")
            if invoice.status in ("Paid", "DuplicatePayment"):
                return Answer(
                    200, _page_html(invoice, "This invoice is already paid.", None), "text/html"
                )
            if invoice.status == "Canceled" or (
                invoice.expiry is not None and invoice.expiry <= _now()
            ):
                return Answer(
                    200, _page_html(invoice, "This invoice has expired.", None), "text/html"
                )
            action = f"{CHECKOUT_PAGE}?{urlencode(query)}"
            if method == "GET":
                return Answer(200, _page_html(invoice, "", action), "text/html")
            if method != "POST":
                return Answer(405, "<html>Method Not Allowed</html>", "text/html")
            form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
            if form.get("action") == "cancel":
                return self._finish(
                    invoice, "Failed", error="Transaction cancelled", error_code="MF006"
                )
            card = form.get("card_number", "").replace(" ", "")
            if card == CARD_SUCCESS:
                return self._finish(invoice, "Authorize" if self.authorize_only else "Succss")
            if card == CARD_DECLINE:
                return self._finish(
                    invoice, "Failed", error="Declined by the issuer", error_code="MF002"
                )
            if card == CARD_PENDING:
                invoice.transactions.append(self._transaction(invoice, "InProgress", invoice.value))
                return Answer(
                    200,
                    _page_html(
                        invoice,
                        "Your bank is checking the payment (3-D Secure). Please wait.",
                        None,
                    ),
                    "text/html",
                )
            return Answer(200, _page_html(invoice, "Card number is invalid.", action), "text/html")

    def _finish(
        self,
        invoice: FakeInvoice,
        status: str,
        *,
        error: str | None = None,
        error_code: str | None = None,
    ) -> Answer:
        """Record the card's result on the invoice and send the browser back (302)."""
        transaction = self._transaction(
            invoice, status, invoice.value, error=error, error_code=error_code
        )
        invoice.transactions.append(transaction)
        if status == "Succss":
            invoice.status = "Paid"
            if self.duplicate_next:
                self.duplicate_next = False
                invoice.transactions.append(self._transaction(invoice, "Succss", invoice.value))
                invoice.status = "DuplicatePayment"
        payment_id = transaction["PaymentId"]
        if status in ("Succss", "Authorize") and self.never_return:
            return Answer(
                200,
                _page_html(invoice, "Payment received. You may close this window.", None),
                "text/html",
            )
        target = invoice.callback_url if status in ("Succss", "Authorize") else invoice.error_url
        if not target:
            return Answer(200, _page_html(invoice, "Payment finished.", None), "text/html")
        joiner = "&" if "?" in target else "?"
        location = f"{target}{joiner}{urlencode({'paymentId': payment_id, 'Id': payment_id})}"
        return Answer(302, _redirect_html(location), "text/html", headers={"Location": location})

    # -- payment side: control --------------------------------------------------------------
    def complete_pending(self, invoice_id: str | int, *, success: bool = True) -> None:
        """The bank finishes a held (3-D Secure) payment: the InProgress transaction becomes
        ``Succss`` (invoice Paid) or ``Failed``."""
        with self.lock:
            invoice = self.invoices[int(invoice_id)]
            for transaction in invoice.transactions:
                if transaction["TransactionStatus"] == "InProgress":
                    transaction["TransactionStatus"] = "Succss" if success else "Failed"
                    if not success:
                        transaction.update(Error="Declined by the issuer", ErrorCode="MF002")
            if success:
                invoice.status = "Paid"

    def expire(self, invoice_id: str | int) -> None:
        """Move the invoice's ExpiryDate into the past."""
        with self.lock:
            self.invoices[int(invoice_id)].expiry = _now() - timedelta(minutes=1)

    def set_invoice_value(self, invoice_id: str | int, amount: str) -> None:
        with self.lock:
            self.invoices[int(invoice_id)].value = Decimal(amount)

    def created(self) -> list[FakeInvoice]:
        """Invoices made by ExecutePayment / SendPayment, oldest first."""
        with self.lock:
            return [i for i in self.invoices.values() if i.created_by]

    def webhook(self, invoice_id: str | int) -> tuple[bytes, dict[str, str]]:
        """A signed V2 PAYMENT_STATUS_CHANGED webhook about the invoice's last transaction
        (``MyFatoorah-Signature`` with ``webhook_secret``)."""
        with self.lock:
            invoice = self.invoices[int(invoice_id)]
            last = invoice.transactions[-1] if invoice.transactions else {}
            status = {
                "Succss": "SUCCESS",
                "Failed": "FAILED",
                "Authorize": "AUTHORIZE",
                "InProgress": "INPROGRESS",
                "Canceled": "CANCELED",
            }.get(last.get("TransactionStatus", ""), "")
            invoice_status = "PAID" if invoice.status in ("Paid", "DuplicatePayment") else "PENDING"
            # INFERRED: Invoice.ExternalIdentifier carries the invoice's CustomerReference.
            data = {
                "Invoice": {
                    "Id": str(invoice.id),
                    "Status": invoice_status,
                    "Reference": f"2025{invoice.id:06d}",
                    "ExternalIdentifier": invoice.customer_reference,
                    "UserDefinedField": None,
                },
                "Transaction": {
                    "Id": str(last.get("TransactionId", "")),
                    "Status": status,
                    "PaymentMethod": "VISA/MASTER",
                    "PaymentId": str(last.get("PaymentId", "")),
                },
                "Amount": {
                    "BaseCurrency": invoice.currency,
                    "ValueInBaseCurrency": invoice.money(invoice.value),
                },
            }
        payload = {
            "Event": {
                "Code": 1,
                "Name": "PAYMENT_STATUS_CHANGED",
                "CountryIsoCode": "KWT",
                "CreationDate": _stamp(_now()) + "Z",
                "Reference": f"WH-{invoice.id}",
            },
            "Data": data,
        }
        canonical = ",".join(
            [
                f"Invoice.Id={data['Invoice']['Id']}",
                f"Invoice.Status={invoice_status}",
                f"Transaction.Status={status}",
                f"Transaction.PaymentId={data['Transaction']['PaymentId']}",
                f"Invoice.ExternalIdentifier={invoice.customer_reference}",
            ]
        )
        digest = hmac.new(self.webhook_secret.encode(), canonical.encode(), hashlib.sha256)
        headers = {
            "MyFatoorah-Signature": base64.b64encode(digest.digest()).decode(),
            "myfatoorah-webhook-version": "v2",
            "Content-Type": "application/json",
        }
        return encode(payload).encode(), headers

    def send_webhook(self, invoice_id: str | int, url: str) -> int:
        body, headers = self.webhook(invoice_id)
        return httpx.post(url, content=body, headers=headers, timeout=10).status_code


def _page_html(invoice: FakeInvoice, message: str, action: str | None) -> str:
    amount = escape(invoice.display())
    parts = [
        f"<html><head><title>MyFatoorah - Invoice {invoice.id}</title></head><body>",
        f"<h1>Pay {amount}</h1>",
    ]
    if message:
        parts.append(f'<p class="message">{escape(message)}</p>')
    if action:
        parts.append(
            f'<form method="post" action="{escape(action)}">'
            '<label>Card number <input name="card_number" autocomplete="cc-number"></label>'
            '<label>Expiry <input name="expiry" placeholder="MM/YY"></label>'
            '<label>CVV <input name="cvv"></label>'
            '<label>Name on card <input name="cardholder_name"></label>'
            '<button type="submit" name="action" value="pay">Pay</button>'
            '<button type="submit" name="action" value="cancel">Cancel</button>'
            "</form>"
        )
    parts.append("</body></html>")
    return "".join(parts)


def _redirect_html(location: str) -> str:
    return f'<html><body><a href="{escape(location)}">Continue</a></body></html>'


@pytest.fixture
def fake_myfatoorah() -> Iterator[FakeMyFatoorah]:
    yield from FakeMyFatoorah().serving()
