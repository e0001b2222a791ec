"""MyFatoorah API v2 wire shapes (pydantic), exact-decimal JSON, status maps and error text.

Every v2 call is a POST with a JSON body and answers the same envelope::

    {"IsSuccess": true|false, "Message": "…", "ValidationErrors": [{"Name", "Error"}] | null,
     "Data": {…}}

Success is decided by ``IsSuccess``, never by the HTTP status. Amounts are decimal **major units**
as JSON numbers (``105.033`` KWD), so requests are serialised from ``Decimal`` without ever going
through a float, and replies are parsed with ``parse_float=Decimal``. Nothing here performs I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, Final, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictBool, ValidationError

from payops import money
from payops.connectors.base import Outcome
from payops.connectors.kit import mask_first6_last4

GET_PAYMENT_STATUS = "/v2/GetPaymentStatus"
UPDATE_PAYMENT_STATUS = "/v2/UpdatePaymentStatus"
MAKE_REFUND = "/v2/MakeRefund"
GET_REFUND_STATUS = "/v2/GetRefundStatus"
EXECUTE_PAYMENT = "/v2/ExecutePayment"
SEND_PAYMENT = "/v2/SendPayment"

KEY_INVOICE_ID: Final = "InvoiceId"
KEY_PAYMENT_ID: Final = "PaymentId"
KEY_REFUND_ID: Final = "RefundId"
KEY_CUSTOMER_REFERENCE: Final = "CustomerReference"
PaymentKeyType = Literal["InvoiceId", "PaymentId", "CustomerReference"]

# GUESS: the spec's example sends lower case ("capture"); MyFatoorah's reference table writes
# "Capture"/"Release". The API is .NET and matches these case-insensitively elsewhere (KeyType).
OPERATION_CAPTURE: Final = "capture"
OPERATION_RELEASE: Final = "release"


# -- JSON with exact decimals ---------------------------------------------------------------------

_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


# -- amounts --------------------------------------------------------------------------------------


def to_amount(minor: int, currency_code: str) -> Decimal:
    """PayOps minor units → the Decimal MyFatoorah's ``Amount`` carries (major units, exact)."""
    return money.to_decimal(minor, currency_code)


def to_minor(value: Decimal | None, currency_code: str) -> int | None:
    """A reply's amount → minor units; None when absent or finer than the currency allows."""
    if value is None:
        return None
    try:
        return money.from_decimal(value, currency_code)
    except (money.AmountError, InvalidOperation):
        return None


# -- requests -------------------------------------------------------------------------------------


class GatewayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def body(self) -> dict[str, Any]:
        """The JSON object to send (field names are MyFatoorah's, exactly)."""
        return self.model_dump(exclude_none=True)


class PaymentStatusRequest(GatewayRequest):
    Key: str
    KeyType: Literal["InvoiceId", "PaymentId", "CustomerReference"]


class UpdatePaymentStatusRequest(GatewayRequest):
    Operation: Literal["capture", "release"]
    Amount: Decimal | None = None
    Key: str
    KeyType: Literal["InvoiceId", "PaymentId", "CustomerReference"]


class MakeRefundRequest(GatewayRequest):
    KeyType: Literal["InvoiceId", "PaymentId"]
    Key: str
    Amount: Decimal
    Comment: str
    ServiceChargeOnCustomer: bool = False
    RefundChargeOnCustomer: bool = False
    ExternalIdentifier: str


class RefundStatusRequest(GatewayRequest):
    KeyType: Literal["InvoiceId", "RefundReference", "RefundId"]
    Key: str


class _InvoiceRequest(GatewayRequest):
    """What ExecutePayment and SendPayment share (spec: payment acceptance §4.1 step 2)."""

    InvoiceValue: Decimal
    DisplayCurrencyIso: str
    CallBackUrl: str
    ErrorUrl: str
    CustomerName: str | None = None
    CustomerEmail: str | None = None
    CustomerMobile: str | None = None
    CustomerReference: str
    Language: Literal["en", "ar"] = "en"
    ExpiryDate: str | None = None
    SourceInfo: str = "PayOps"


class ExecutePaymentRequest(_InvoiceRequest):
    """An invoice for one payment method; the reply's ``PaymentURL`` is that method's page."""

    PaymentMethodId: int


class SendPaymentRequest(_InvoiceRequest):
    """An invoice link (``NotificationOption`` ``LNK``: the link comes back in the reply only);
    the customer chooses the method on MyFatoorah's page."""

    NotificationOption: Literal["LNK"] = "LNK"
    CustomerName: str  # required by SendPayment


# -- replies --------------------------------------------------------------------------------------


def _text(value: Any) -> Any:
    """Identifiers arrive as numbers or strings; keep them as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, Decimal)):
        return str(value)
    return value


def _decimal(value: Any) -> Any:
    """Amounts arrive as JSON numbers (parsed to Decimal/int) or, in places, numeric strings."""
    if value is None or isinstance(value, Decimal):
        return value
    if isinstance(value, bool):
        raise ValueError("not an amount")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, str) and _PLAIN_NUMBER.fullmatch(value.strip().replace(",", "")):
        return Decimal(value.strip().replace(",", ""))
    if isinstance(value, str) and not value.strip():
        return None
    raise ValueError("not an amount")


Text = Annotated[str | None, BeforeValidator(_text)]
Money = Annotated[Decimal | None, BeforeValidator(_decimal)]


class _Reply(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class FieldError(_Reply):
    Name: Text = None
    Error: Text = None


class Envelope(_Reply):
    IsSuccess: StrictBool
    Message: Text = None
    ValidationErrors: list[FieldError] | None = None
    FieldsErrors: list[FieldError] | None = None
    Data: Any = None

    def error_message(self) -> str:
        """The gateway's own words for a refusal, read the way MyFatoorah's libraries read them."""
        errors = self.ValidationErrors or self.FieldsErrors or []
        parts = []
        for item in errors:
            name, error = (item.Name or "").strip(), (item.Error or "").strip()
            if name and error:
                parts.append(f"{name}: {error}")
            elif error or name:
                parts.append(error or name)
        if parts:
            return ", ".join(parts)
        if isinstance(self.Data, Mapping):
            nested = self.Data.get("ErrorMessage")
            if isinstance(nested, str) and nested.strip():
                return nested.strip()
        return (self.Message or "").strip()


class InvoiceTransaction(_Reply):
    TransactionDate: Text = None
    PaymentGateway: Text = None
    ReferenceId: Text = None
    TrackId: Text = None
    TransactionId: Text = None
    PaymentId: Text = None
    AuthorizationId: Text = None
    TransactionStatus: Text = None
    TransationValue: Money = None  # sic: MyFatoorah's spelling
    PaidCurrency: Text = None
    Currency: Text = None
    Error: Text = None
    ErrorCode: Text = None
    CardNumber: Text = None

    @property
    def status(self) -> str:
        return normalise(self.TransactionStatus)


class PaymentStatus(_Reply):
    """``Data`` of GetPaymentStatus (and of UpdatePaymentStatus, which answers the same object)."""

    InvoiceId: Text = None
    InvoiceStatus: Text = None
    InvoiceReference: Text = None
    CustomerReference: Text = None
    InvoiceValue: Money = None
    InvoiceDisplayValue: Text = None
    ExpiryDate: Text = None
    ExpiryTime: Text = None
    InvoiceTransactions: list[InvoiceTransaction] | None = None

    @property
    def status(self) -> str:
        return normalise(self.InvoiceStatus)

    @property
    def transactions(self) -> list[InvoiceTransaction]:
        return list(self.InvoiceTransactions or [])

    def with_status(self, *statuses: str) -> list[InvoiceTransaction]:
        return [t for t in self.transactions if t.status in statuses]

    @property
    def captured(self) -> bool:
        """Money taken: the invoice is Paid, which means a ``Succss`` transaction."""
        return self.status in PAID_STATUSES and bool(self.with_status(*SUCCESS_STATUSES))

    # GUESS: v2 shows an authorized invoice as Pending with an ``Authorize`` transaction (as v3
    # does); an ``InvoiceStatus`` of ``Authorize`` is understood too.
    @property
    def released(self) -> bool:
        """An authorization given back: a ``Canceled`` transaction next to the ``Authorize`` one."""
        return (
            not self.with_status(*SUCCESS_STATUSES)
            and bool(self.with_status("authorize"))
            and bool(self.with_status("canceled"))
        )

    @property
    def authorized(self) -> bool:
        """An authorization still held: neither captured nor released."""
        return (
            bool(self.with_status("authorize"))
            and not self.with_status(*SUCCESS_STATUSES)
            and not self.with_status("canceled")
            and self.status != "canceled"
        )

    def latest(self, *statuses: str) -> InvoiceTransaction | None:
        found = self.with_status(*statuses) if statuses else self.transactions
        return found[-1] if found else None


class InvoiceCreated(_Reply):
    """``Data`` of ExecutePayment (``PaymentURL``) or SendPayment (``InvoiceURL``)."""

    InvoiceId: Text = None
    PaymentURL: Text = None
    InvoiceURL: Text = None
    CustomerReference: Text = None

    @property
    def url(self) -> str | None:
        return self.PaymentURL or self.InvoiceURL


class RefundCreated(_Reply):
    """``Data`` of MakeRefund."""

    Key: Text = None
    RefundId: Text = None
    RefundReference: Text = None
    RefundInvoiceId: Text = None
    Amount: Money = None
    Comment: Text = None
    ExternalIdentifier: Text = None


class RefundStatusEntry(_Reply):
    RefundId: Text = None
    RefundStatus: Text = None
    InvoiceId: Text = None
    Amount: Money = None
    RefundReference: Text = None
    ExternalIdentifier: Text = None
    RRN: Text = None
    RefundAmount: Money = None
    BaseCurrency: Text = None

    @property
    def status(self) -> str:
        return normalise(self.RefundStatus)

    @property
    def value(self) -> Decimal | None:
        return self.Amount if self.Amount is not None else self.RefundAmount


class RefundStatusList(_Reply):
    """``Data`` of GetRefundStatus."""

    RefundStatusResult: list[RefundStatusEntry] | None = None

    @property
    def refunds(self) -> list[RefundStatusEntry]:
        return list(self.RefundStatusResult or [])

    def by_external_identifier(self, reference: str) -> list[RefundStatusEntry]:
        return [r for r in self.refunds if (r.ExternalIdentifier or "") == reference]


M = TypeVar("M", bound=_Reply)


def parse_envelope(body: Any) -> Envelope | None:
    if not isinstance(body, Mapping):
        return None
    try:
        return Envelope.model_validate(body)
    except ValidationError:
        return None


def parse_data(model: type[M], data: Any) -> M | None:
    if not isinstance(data, Mapping):
        return None
    try:
        return model.model_validate(data)
    except ValidationError:
        return None


# -- statuses -------------------------------------------------------------------------------------


def normalise(status: str | None) -> str:
    """Statuses compare case-insensitively (``Paid``/``PAID``, ``InProgress``/``INPROGRESS``)."""
    return (status or "").strip().replace("_", "").replace(" ", "").lower()


# The API's own (misspelled) ``Succss``; the correct spelling and v3's upper case are accepted too,
# should MyFatoorah ever fix it.
SUCCESS_STATUSES = ("succss", "success")

# What an invoice status says of the customer's payment (GetPaymentStatus ``InvoiceStatus``).
# ``Authorize`` appears in the Authorize-Capture guide for an authorized invoice.
# ``DuplicatePayment``: the customer paid the invoice again; MyFatoorah's own library treats it
# as paid, like ``Paid``.
PAID_STATUSES = ("paid", "duplicatepayment")
INVOICE_STATUS_OUTCOME: dict[str, Outcome] = {
    "paid": Outcome.SUCCESS,
    "duplicatepayment": Outcome.SUCCESS,
    "pending": Outcome.PENDING,
    "authorize": Outcome.SUCCESS,
    "canceled": Outcome.FAILED,
}

# What one payment transaction's status says (``InvoiceTransactions[].TransactionStatus``).
TRANSACTION_STATUS_OUTCOME: dict[str, Outcome] = {
    "inprogress": Outcome.PENDING,
    "succss": Outcome.SUCCESS,
    "success": Outcome.SUCCESS,
    "authorize": Outcome.SUCCESS,
    "failed": Outcome.FAILED,
    "canceled": Outcome.FAILED,
}

# What a refund's status says (GetRefundStatus ``RefundStatus``; webhooks use upper case).
REFUND_STATUS_OUTCOME: dict[str, Outcome] = {
    "refunded": Outcome.SUCCESS,
    "pending": Outcome.PENDING,
    "canceled": Outcome.FAILED,
}


def status_outcome(table: Mapping[str, Outcome], status: str | None) -> Outcome:
    """An answer the map does not know is "not final yet" (PENDING), never a success."""
    return table.get(normalise(status), Outcome.PENDING)


def payment_outcome(payment: PaymentStatus, operation_mode: str) -> tuple[Outcome, str]:
    """What GetPaymentStatus says of the customer's payment, with a short reason."""
    status = payment.status
    if status not in INVOICE_STATUS_OUTCOME:
        return Outcome.PENDING, f"MyFatoorah invoice status {payment.InvoiceStatus!r} is not final"
    if payment.captured:
        return Outcome.SUCCESS, "Paid"
    if status in PAID_STATUSES:
        # "Paid" without a successful transaction contradicts the documented rule: wait.
        return Outcome.PENDING, "MyFatoorah shows the invoice paid without a successful transaction"
    if payment.authorized:
        if operation_mode == "authorize":
            return Outcome.SUCCESS, "Authorized"
        return Outcome.PENDING, "The payment is only authorized"
    if status == "canceled":
        return Outcome.FAILED, "The MyFatoorah invoice is canceled"
    if payment.released:
        return Outcome.FAILED, "The authorization was released"
    outcomes = [
        status_outcome(TRANSACTION_STATUS_OUTCOME, t.TransactionStatus)
        for t in payment.transactions
    ]
    if not outcomes or Outcome.PENDING in outcomes:
        return Outcome.PENDING, "Payment in progress"
    if all(outcome == Outcome.FAILED for outcome in outcomes):
        last = payment.latest()
        reason = (last.Error or "").strip() if last else ""
        return Outcome.FAILED, reason or "Payment failed"
    return Outcome.PENDING, "Payment not final"


# MyFatoorah's documented ``ErrorCode`` values for failed transactions.
ERROR_CODES = {
    "MF001": "3DS authentication failed",
    "MF002": "Declined by the issuer",
    "MF003": "Blocked by the gateway",
    "MF004": "Insufficient funds",
    "MF005": "Session timed out",
    "MF006": "Transaction cancelled",
    "MF007": "Card expired",
    "MF008": "The issuer did not respond",
    "MF009": "Denied by risk",
    "MF010": "Wrong CVV",
    "MF020": "Unspecified failure",
}


# -- what may be kept and shown -------------------------------------------------------------------


def transaction_params(
    transaction: InvoiceTransaction | None, reference: str, result: str, message: str
) -> dict[str, Any]:
    """Normalised ``pg_params`` (keys of transactions.presenters.PG_PARAM_KEYS)."""
    params: dict[str, Any] = {"ref": reference, "result": result, "pg_message": message}
    if transaction is not None:
        params.update(
            {
                "payment_id": transaction.PaymentId,
                "transaction_id": transaction.TransactionId,
                "auth_code": transaction.AuthorizationId,
                "rrn": transaction.ReferenceId,
                "track_id": transaction.TrackId,
                "card_type": transaction.PaymentGateway,
                "card_number": mask_first6_last4(transaction.CardNumber),
                "post_date": transaction.TransactionDate,
            }
        )
    return {key: value for key, value in params.items() if value not in (None, "")}


def refund_params(
    reference: str,
    result: str,
    message: str,
    *,
    refund_id: str | None = None,
    refund_reference: str | None = None,
    rrn: str | None = None,
) -> dict[str, Any]:
    params = {
        "ref": reference,
        "result": result,
        "pg_message": message,
        "transaction_id": refund_id,
        "receipt_no": refund_reference,
        "rrn": rrn,
    }
    return {key: value for key, value in params.items() if value not in (None, "")}


# -- taking payments (spec: payment acceptance §4) -----------------------------------------------

# The vendor's time zone, in which MyFatoorah reads and writes an invoice's ``ExpiryDate`` (its
# official library: Asia/Kuwait for test accounts; per country for live ones).
VENDOR_TIME_ZONES = {
    "KWT": "Asia/Kuwait",
    "BHR": "Asia/Kuwait",
    "SAU": "Asia/Riyadh",
    "ARE": "Asia/Dubai",
    "QAT": "Asia/Qatar",
    "OMN": "Asia/Muscat",
    "JOR": "Asia/Amman",
    "EGY": "Africa/Cairo",
}
TEST_TIME_ZONE = "Asia/Kuwait"

# The local currency names MyFatoorah writes in ``InvoiceDisplayValue`` and a transaction's
# ``Currency`` ("KD", "SR"); ISO codes are read as they are.
LOCAL_CURRENCY_NAMES = {
    "KD": "KWD",
    "SR": "SAR",
    "BD": "BHD",
    "QR": "QAR",
    "RO": "OMR",
    "JD": "JOD",
    "LE": "EGP",
}

# ``ErrorCode`` of a failed transaction that is not a decline (INFERRED, spec §4.3).
CANCELED_CODES = frozenset({"MF006"})
EXPIRED_CODES = frozenset({"MF005"})
DUPLICATE_REVIEW = (
    "MyFatoorah shows this invoice paid more than once (DuplicatePayment): "
    "the customer paid twice; refund the duplicate payment"
)


def iso_currency(name: str | None) -> str | None:
    """``KD`` → ``KWD``; an ISO code stays; None when not recognisable."""
    text = (name or "").strip().upper()
    if text in LOCAL_CURRENCY_NAMES:
        return LOCAL_CURRENCY_NAMES[text]
    return text if re.fullmatch(r"[A-Z]{3}", text) else None


def display_value(text: str | None) -> tuple[Decimal, str] | None:
    """``"1,234.500 KD"`` → (Decimal("1234.500"), "KWD"); None when unreadable."""
    parts = (text or "").strip().split()
    if len(parts) != 2:
        return None
    number, currency = parts
    if not currency[0].isalpha():  # "KD 12.500" is read too
        number, currency = currency, number
    number = number.replace(",", "")
    iso = iso_currency(currency)
    if iso is None or not _PLAIN_NUMBER.fullmatch(number):
        return None
    return Decimal(number), iso


def vendor_time_zone(country: str, is_sandbox: bool, override: str = "") -> ZoneInfo:
    name = override or (
        TEST_TIME_ZONE if is_sandbox else VENDOR_TIME_ZONES.get(country.upper(), TEST_TIME_ZONE)
    )
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(TEST_TIME_ZONE)


def expiry_text(moment: datetime | None, zone: ZoneInfo) -> str | None:
    """PayOps's session expiry as ExpiryDate: a local date-time in the vendor's zone."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")


_EXPIRY_FORMATS = (
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%d %H:%M:%S",
    "%B %d, %Y %H:%M:%S",
    "%b %d, %Y %H:%M:%S",
    "%d/%m/%Y %H:%M:%S",
    "%m/%d/%Y %H:%M:%S",
)


def invoice_expiry(found: PaymentStatus, zone: ZoneInfo) -> datetime | None:
    """When the invoice expires (``ExpiryDate`` + ``ExpiryTime``, vendor's local time) as an
    aware UTC moment; None when it cannot be read."""
    date = (found.ExpiryDate or "").strip()
    if not date:
        return None
    time = (found.ExpiryTime or "").strip().split(".")[0]
    if "T" in date:
        date, _, inline = date.partition("T")
        time = time or inline.split(".")[0]
    text = f"{date} {time or '23:59:59'}"
    for pattern in _EXPIRY_FORMATS:
        try:
            local = datetime.strptime(text, pattern.replace("T", " "))
        except ValueError:
            continue
        return local.replace(tzinfo=zone).astimezone(UTC)
    return None


def payment_url(text: str | None) -> str | None:
    """The page MyFatoorah named, when it is an absolute http(s) URL."""
    value = (text or "").strip()
    return value if value.startswith(("https://", "http://")) and len(value) < 2048 else None
