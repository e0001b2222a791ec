"""MPGS wire shapes (pydantic) and the map from the gateway's documented statuses to ``Outcome``.

Everything here is pure: no I/O. Amounts leave as decimal strings in major units with exactly the
currency's ISO 4217 decimals (``money.format_minor``) and come back through ``money.from_decimal``;
replies are parsed with ``Decimal`` for JSON numbers, never floats.

Status vocabulary (MPGS REST API, "Response shape and outcome signalling" in the protocol notes):
- top-level ``result``: SUCCESS, FAILURE, PENDING, UNKNOWN, ERROR;
- ``response.gatewayCode``: the gateway's detailed decision for a transaction;
- ``error.cause``: INVALID_REQUEST, REQUEST_REJECTED, SERVER_BUSY, SERVER_FAILED;
- ``order.status``: the order's summary state (used for payment inquiries).
Anything the gateway sends that is not listed here maps to PENDING (or UNKNOWN where the reply
contradicts itself), never to SUCCESS.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from payops.connectors.base import Outcome
from payops.connectors.kit import decode_json as kit_decode_json
from payops.connectors.kit import redaction
from payops.money import AmountError, UnknownCurrency, format_minor, from_decimal

# -- requests -----------------------------------------------------------------------------------


class _Wire(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", coerce_numbers_to_str=True)


class RequestTransaction(_Wire):
    amount: str | None = None
    currency: str | None = None
    reference: str | None = None
    target_transaction_id: str | None = Field(default=None, alias="targetTransactionId")


class OperationBody(_Wire):
    """The body of ``PUT …/order/{orderId}/transaction/{transactionId}`` for a follow-up operation."""

    api_operation: Literal["CAPTURE", "REFUND", "VOID"] = Field(alias="apiOperation")
    transaction: RequestTransaction

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True)


def capture_body(amount_minor: int, currency: str, reference: str) -> OperationBody:
    return OperationBody(
        apiOperation="CAPTURE",
        transaction=RequestTransaction(
            amount=format_minor(amount_minor, currency),
            currency=currency.upper(),
            reference=reference,
        ),
    )


def refund_body(amount_minor: int, currency: str, reference: str) -> OperationBody:
    # No sourceOfFunds: with it MPGS would make a standalone refund on a new order.
    return OperationBody(
        apiOperation="REFUND",
        transaction=RequestTransaction(
            amount=format_minor(amount_minor, currency),
            currency=currency.upper(),
            reference=reference,
        ),
    )


def void_body(target_transaction_id: str, reference: str) -> OperationBody:
    return OperationBody(
        apiOperation="VOID",
        transaction=RequestTransaction(
            targetTransactionId=target_transaction_id, reference=reference
        ),
    )


# -- replies ------------------------------------------------------------------------------------


class ErrorInfo(_Wire):
    cause: str | None = None
    explanation: str | None = None
    field: str | None = None
    validation_type: str | None = Field(default=None, alias="validationType")


class ResponseInfo(_Wire):
    gateway_code: str | None = Field(default=None, alias="gatewayCode")
    acquirer_code: str | None = Field(default=None, alias="acquirerCode")
    acquirer_message: str | None = Field(default=None, alias="acquirerMessage")


class TransactionInfo(_Wire):
    id: str | None = None
    type: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    reference: str | None = None
    authorization_code: str | None = Field(default=None, alias="authorizationCode")
    receipt: str | None = None
    target_transaction_id: str | None = Field(default=None, alias="targetTransactionId")


class OrderInfo(_Wire):
    id: str | None = None
    status: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    total_authorized_amount: Decimal | None = Field(default=None, alias="totalAuthorizedAmount")
    total_captured_amount: Decimal | None = Field(default=None, alias="totalCapturedAmount")
    total_refunded_amount: Decimal | None = Field(default=None, alias="totalRefundedAmount")


class CardExpiry(_Wire):
    month: str | int | None = None
    year: str | int | None = None


class CardInfo(_Wire):
    brand: str | None = None
    scheme: str | None = None
    number: str | None = None
    expiry: CardExpiry | None = None
    name_on_card: str | None = Field(default=None, alias="nameOnCard")


class ProvidedFunds(_Wire):
    card: CardInfo | None = None


class SourceOfFunds(_Wire):
    type: str | None = None
    provided: ProvidedFunds | None = None


class TransactionReply(_Wire):
    """A transaction response: the reply to PUT, Retrieve Transaction, and each entry of an
    order's ``transaction[]``; also the body of a webhook notification."""

    result: str | None = None
    merchant: str | None = None
    response: ResponseInfo | None = None
    transaction: TransactionInfo | None = None
    order: OrderInfo | None = None
    error: ErrorInfo | None = None
    source_of_funds: SourceOfFunds | None = Field(default=None, alias="sourceOfFunds")

    @property
    def gateway_code(self) -> str | None:
        return self.response.gateway_code if self.response else None


class OrderReply(_Wire):
    """Retrieve Order: the order's own fields at the top level, plus every transaction."""

    result: str | None = None
    merchant: str | None = None
    id: str | None = None
    status: str | None = None
    amount: Decimal | None = None
    currency: str | None = None
    total_authorized_amount: Decimal | None = Field(default=None, alias="totalAuthorizedAmount")
    total_captured_amount: Decimal | None = Field(default=None, alias="totalCapturedAmount")
    total_refunded_amount: Decimal | None = Field(default=None, alias="totalRefundedAmount")
    transaction: list[TransactionReply] = Field(default_factory=list)
    error: ErrorInfo | None = None
    source_of_funds: SourceOfFunds | None = Field(default=None, alias="sourceOfFunds")

    def find(self, transaction_id: str) -> TransactionReply | None:
        for entry in self.transaction:
            if entry.transaction is not None and entry.transaction.id == transaction_id:
                return entry
        return None


def parse_transaction(body: dict[str, Any]) -> TransactionReply | None:
    try:
        return TransactionReply.model_validate(body)
    except ValidationError:
        return None


def parse_order(body: dict[str, Any]) -> OrderReply | None:
    try:
        return OrderReply.model_validate(body)
    except ValidationError:
        return None


def decode_json(content: bytes) -> dict[str, Any] | None:
    """Parse a reply body: JSON numbers become ``Decimal`` (never float); anything that is not a
    JSON object (HTML error pages, truncated bodies, NaN) is ``None``."""
    try:
        value = kit_decode_json(content)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# -- what is kept as the raw reply: JSON-safe, without card data -------------------------------

# Secrets dropped, and full card numbers (Luhn-valid 13-19 digits) masked wherever they appear.
REDACTION = redaction(
    drop=(
        "securitycode",
        "cvv",
        "cvc",
        "cvv2",
        "pin",
        "track1",
        "track2",
        "trackdata",
        "password",
        "apipassword",
        "authorization",
    ),
    mask_pan_strings=True,
)
safe_raw = REDACTION.scrub


def mask_pan(value: str) -> str:
    return f"{value[:6]}{'x' * (len(value) - 10)}{value[-4:]}"


# -- statuses → Outcome -------------------------------------------------------------------------

RESULTS = ("SUCCESS", "FAILURE", "PENDING", "UNKNOWN", "ERROR")

# response.gatewayCode, every value of the documented enumeration (VERIFY against the API
# reference of the pinned version; new values map to PENDING).
GATEWAY_CODE_OUTCOME: dict[str, Outcome] = {
    # approved
    "APPROVED": Outcome.SUCCESS,
    "APPROVED_AUTO": Outcome.SUCCESS,
    "APPROVED_PENDING_SETTLEMENT": Outcome.SUCCESS,  # approved; money moves at batch settlement
    # accepted, not decided yet
    "PENDING": Outcome.PENDING,
    "SUBMITTED": Outcome.PENDING,
    "AUTHENTICATION_IN_PROGRESS": Outcome.PENDING,
    "DEFERRED_TRANSACTION_RECEIVED": Outcome.PENDING,
    "PARTIALLY_APPROVED": Outcome.PENDING,  # not the amount asked for: never a plain success
    "BALANCE_AVAILABLE": Outcome.PENDING,  # balance inquiries; not an operation outcome
    # the gateway itself cannot tell
    "UNKNOWN": Outcome.UNKNOWN,
    "TIMED_OUT": Outcome.UNKNOWN,
    "ACQUIRER_SYSTEM_ERROR": Outcome.UNKNOWN,
    "SYSTEM_ERROR": Outcome.UNKNOWN,
    "LOCK_FAILURE": Outcome.UNKNOWN,
    "BALANCE_UNKNOWN": Outcome.UNKNOWN,
    # declined / refused
    "ABORTED": Outcome.FAILED,
    "AUTHENTICATION_FAILED": Outcome.FAILED,
    "BLOCKED": Outcome.FAILED,
    "CANCELLED": Outcome.FAILED,
    "DECLINED": Outcome.FAILED,
    "DECLINED_AVS": Outcome.FAILED,
    "DECLINED_AVS_CSC": Outcome.FAILED,
    "DECLINED_CSC": Outcome.FAILED,
    "DECLINED_DO_NOT_CONTACT": Outcome.FAILED,
    "DECLINED_INVALID_PIN": Outcome.FAILED,
    "DECLINED_PAYMENT_PLAN": Outcome.FAILED,
    "DECLINED_PIN_REQUIRED": Outcome.FAILED,
    "DUPLICATE_BATCH": Outcome.FAILED,
    "EXCEEDED_RETRY_LIMIT": Outcome.FAILED,
    "EXPIRED_CARD": Outcome.FAILED,
    "INSUFFICIENT_FUNDS": Outcome.FAILED,
    "INVALID_CSC": Outcome.FAILED,
    "NOT_ENROLLED_3D_SECURE": Outcome.FAILED,
    "NOT_SUPPORTED": Outcome.FAILED,
    "NO_BALANCE": Outcome.FAILED,
    "REFERRED": Outcome.FAILED,
    "UNSPECIFIED_FAILURE": Outcome.FAILED,
}

# error.cause on result=ERROR (and on 4xx replies).
ERROR_CAUSE_OUTCOME: dict[str, Outcome] = {
    "INVALID_REQUEST": Outcome.FAILED,  # validation: nothing was processed
    "REQUEST_REJECTED": Outcome.FAILED,  # credentials / security: nothing was processed
    # "resend an identical request several minutes later, it will not be re-processed":
    # the first one may have been, so the outcome is open.
    "SERVER_BUSY": Outcome.UNKNOWN,
    "SERVER_FAILED": Outcome.UNKNOWN,
}

GATEWAY_CODE_TEXT: dict[str, str] = {
    "APPROVED": "Approved",
    "APPROVED_AUTO": "Approved automatically",
    "APPROVED_PENDING_SETTLEMENT": "Approved, pending settlement",
    "PENDING": "Pending at the acquirer",
    "SUBMITTED": "Submitted to the acquirer",
    "DECLINED": "Declined",
    "INSUFFICIENT_FUNDS": "Declined: insufficient funds",
    "EXPIRED_CARD": "Declined: expired card",
    "BLOCKED": "Blocked by the gateway's risk rules",
    "NOT_SUPPORTED": "Not supported by the acquirer",
    "REFERRED": "Declined: referred to the issuer",
    "TIMED_OUT": "The acquirer did not answer in time",
    "ACQUIRER_SYSTEM_ERROR": "Acquirer system error",
    "SYSTEM_ERROR": "Gateway system error",
    "UNSPECIFIED_FAILURE": "Failed for an unspecified reason",
    "UNKNOWN": "Outcome unknown at the gateway",
}


def transaction_outcome(
    result: str | None, gateway_code: str | None, error_cause: str | None = None
) -> Outcome:
    """Outcome of one MPGS transaction reply (PUT reply, Retrieve Transaction, order entry)."""
    result = (result or "").upper()
    if result == "ERROR":
        return ERROR_CAUSE_OUTCOME.get((error_cause or "").upper(), Outcome.UNKNOWN)
    if result == "FAILURE":
        return Outcome.FAILED
    if result == "PENDING":
        return Outcome.PENDING
    if result == "UNKNOWN":
        return Outcome.UNKNOWN
    if result == "SUCCESS":
        by_code = GATEWAY_CODE_OUTCOME.get((gateway_code or "").upper(), Outcome.PENDING)
        # SUCCESS with a decline code contradicts itself: nobody can say what happened.
        return Outcome.UNKNOWN if by_code == Outcome.FAILED else by_code
    return Outcome.PENDING


def error_outcome(error_cause: str | None) -> Outcome:
    return ERROR_CAUSE_OUTCOME.get((error_cause or "").upper(), Outcome.UNKNOWN)


# order.status, for "what happened to this payment" (VERIFY the full enumeration per version).
_PAID = Outcome.SUCCESS
ORDER_STATUS_OUTCOME: dict[str, Outcome] = {
    "CAPTURED": _PAID,
    "PARTIALLY_CAPTURED": _PAID,
    "REFUNDED": _PAID,
    "PARTIALLY_REFUNDED": _PAID,
    "EXCESSIVELY_REFUNDED": _PAID,
    "REFUND_REQUESTED": _PAID,
    "CHARGEBACK_PROCESSED": _PAID,
    "DISPUTED": _PAID,
    "AUTHORIZED": _PAID,  # only for authorize-mode payments, see order_outcome
    "CANCELLED": Outcome.FAILED,
    "VOID_AUTHORIZATION": Outcome.FAILED,
    "FAILED": Outcome.FAILED,
    "DECLINED": Outcome.FAILED,
    "AUTHENTICATION_UNSUCCESSFUL": Outcome.FAILED,
    "INITIATED": Outcome.PENDING,
    "AUTHENTICATION_INITIATED": Outcome.PENDING,
    "AUTHENTICATION_NOT_NEEDED": Outcome.PENDING,
    "AUTHENTICATED": Outcome.PENDING,
    "VERIFIED": Outcome.PENDING,
    "FUNDING": Outcome.PENDING,
    "DISBURSED": Outcome.PENDING,
    "PENDING": Outcome.PENDING,
}


def order_outcome(status: str | None, operation_mode: str) -> Outcome:
    """Outcome of a customer's payment from the order's status; unknown statuses are PENDING."""
    status = (status or "").upper()
    if status == "AUTHORIZED" and operation_mode != "authorize":
        return Outcome.PENDING  # a purchase that is only authorized has not been paid yet
    return ORDER_STATUS_OUTCOME.get(status, Outcome.PENDING)


OPERATION_TYPES: dict[str, tuple[str, ...]] = {
    "capture": ("CAPTURE",),
    "refund": ("REFUND",),
    "void": ("VOID_AUTHORIZATION", "VOID_CAPTURE", "VOID_PAYMENT", "VOID_REFUND", "VOID"),
}


def type_matches(operation: str, transaction_type: str | None) -> bool:
    """Whether a transaction's ``type`` fits the operation (absent type: nothing to contradict)."""
    if not transaction_type:
        return True
    return transaction_type.upper() in OPERATION_TYPES.get(operation, ())


def minor_units(value: Decimal | None, currency: str) -> int | None:
    """A reply amount in minor units, or None when absent or finer than the currency allows."""
    if value is None:
        return None
    try:
        return from_decimal(value, currency)
    except (AmountError, UnknownCurrency, ArithmeticError):
        return None


# -- messages and pg_params ---------------------------------------------------------------------


def error_message(error: ErrorInfo | None) -> str:
    if error is None:
        return "MPGS returned an error without details"
    cause = error.cause or "ERROR"
    return f"{cause}: {error.explanation}" if error.explanation else cause


def reply_message(reply: TransactionReply) -> str:
    if (reply.result or "").upper() == "ERROR" or reply.error is not None:
        return error_message(reply.error)
    code = reply.gateway_code or ""
    text = (reply.response.acquirer_message if reply.response else None) or GATEWAY_CODE_TEXT.get(
        code.upper(), ""
    )
    if text and code:
        return f"{text} ({code})"
    return text or code or f"MPGS result {reply.result or 'missing'}"


def card_params(source: SourceOfFunds | None) -> dict[str, Any]:
    card = source.provided.card if source and source.provided else None
    if card is None:
        return {}
    number = card.number or ""
    if number.isdigit() and len(number) >= 10:  # never hand on an unmasked card number
        number = mask_pan(number)
    params: dict[str, Any] = {"card_number": number, "card_type": card.brand or card.scheme}
    if card.expiry is not None:
        params["card_expiry_month"] = str(card.expiry.month or "")
        params["card_expiry_year"] = str(card.expiry.year or "")
    return params


def transaction_params(reply: TransactionReply, order_id: str) -> dict[str, Any]:
    """Normalised pg_params (presenters.PG_PARAM_KEYS) for one transaction reply."""
    txn = reply.transaction
    params: dict[str, Any] = {
        "ref": order_id,
        "transaction_id": txn.id if txn else None,
        "result": reply.gateway_code or reply.result,
        "decision": reply.result,
        "pg_message": reply_message(reply),
        "auth_code": txn.authorization_code if txn else None,
        "receipt_no": txn.receipt if txn else None,
        "rrn": txn.receipt if txn else None,
        **card_params(reply.source_of_funds),
    }
    return {key: value for key, value in params.items() if value not in (None, "")}
