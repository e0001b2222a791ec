"""MyFatoorah's decisions: a reply, already decoded, becomes a ``GatewayResult``.

Pure functions (no I/O): the connector sends, these judge. ``classify`` reads the
``IsSuccess`` envelope once; ``judge_capture``/``judge_release`` read an invoice after
UpdatePaymentStatus or an inquiry; ``judge_refunds``/``judge_refund_entry`` read
GetRefundStatus, where PayOps's reference is the refund's ``ExternalIdentifier``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from payops.connectors import kit
from payops.connectors.base import GatewayResult, OperationRequest, Outcome, PaymentRef
from payops.connectors.kit import Reply, redaction, ref, result
from payops.connectors.myfatoorah.transformers import (
    CANCELED_CODES,
    DUPLICATE_REVIEW,
    ERROR_CODES,
    EXPIRED_CODES,
    INVOICE_STATUS_OUTCOME,
    REFUND_STATUS_OUTCOME,
    SUCCESS_STATUSES,
    PaymentStatus,
    RefundStatusEntry,
    RefundStatusList,
    display_value,
    invoice_expiry,
    parse_envelope,
    payment_outcome,
    refund_params,
    status_outcome,
    to_minor,
    transaction_params,
)
from payops.money import format_minor, is_known_currency

MSG_NO_ANSWER = "MyFatoorah did not answer"
MSG_UNPARSABLE = "MyFatoorah's reply could not be read"
MSG_BAD_TOKEN = "MyFatoorah rejected the API token"
MSG_REFUND_QUEUED = "Refund request created; MyFatoorah will review and execute it"

# What is kept of a reply: card numbers masked wherever they appear under a card-number key.
REDACTION = redaction(card_keys=("cardnumber", "card_number", "pan", "cardno"))


@dataclass(frozen=True)
class Answer:
    """A reply classified once: ``ok`` (IsSuccess true), ``refused`` (nothing was done) or
    ``unknown`` (we cannot tell whether MyFatoorah acted)."""

    kind: Literal["ok", "refused", "unknown"]
    raw: dict[str, Any]
    message: str = ""
    data: Any = None


def classify(reply: Reply) -> Answer:
    if reply.status is None:
        return Answer("unknown", reply.raw(REDACTION), MSG_NO_ANSWER)
    code = reply.status
    if code >= 500 or code == 408:
        return Answer("unknown", reply.raw(REDACTION), f"MyFatoorah answered HTTP {code}")
    envelope = parse_envelope(reply.body)
    if envelope is not None:
        if envelope.IsSuccess:
            return Answer("ok", reply.raw(REDACTION), envelope.Message or "", envelope.Data)
        return Answer(
            "refused",
            reply.raw(REDACTION),
            envelope.error_message() or f"MyFatoorah refused the request (HTTP {code})",
        )
    if code < 400:
        # A 2xx (or 3xx) that is not the envelope: whatever happened cannot be read.
        return Answer("unknown", reply.raw(REDACTION), MSG_UNPARSABLE)
    if code == 401:
        return Answer("refused", reply.raw(REDACTION), MSG_BAD_TOKEN)
    message = ""
    if isinstance(reply.body, dict) and isinstance(reply.body.get("Message"), str):
        message = reply.body["Message"].strip()
    return Answer(
        "refused", reply.raw(REDACTION), message or f"MyFatoorah refused the request (HTTP {code})"
    )


def simple(outcome: Outcome, raw: dict[str, Any], reference: str, message: str) -> GatewayResult:
    label = {Outcome.FAILED: "declined", Outcome.UNKNOWN: "unknown"}.get(outcome, outcome.value)
    return result(outcome, raw, {"ref": reference, "result": label, "pg_message": message}, message)


def not_ok(answer: Answer, reference: str, *, inquiry: bool = False) -> GatewayResult:
    """A refused or unreadable reply. A refused inquiry says nothing about the payment."""
    if answer.kind == "refused" and not inquiry:
        return simple(Outcome.FAILED, answer.raw, reference, answer.message)
    return simple(Outcome.UNKNOWN, answer.raw, reference, answer.message)


def judge_capture(
    request: OperationRequest, payment: PaymentStatus, raw: dict[str, Any], *, inquiry: bool
) -> GatewayResult:
    reference = request.reference_number
    currency = request.currency_code
    refs = {"invoice_id": payment.InvoiceId}
    if payment.status not in INVOICE_STATUS_OUTCOME:
        message = f"MyFatoorah invoice status {payment.InvoiceStatus!r} is not understood"
        outcome = Outcome.PENDING if inquiry else Outcome.UNKNOWN
        return result(
            outcome,
            raw,
            transaction_params(
                payment.latest(), reference, "pending" if inquiry else "unknown", message
            ),
            message,
            refs,
        )
    if payment.captured:
        transaction = payment.latest(*SUCCESS_STATUSES)
        refs["payment_id"] = transaction.PaymentId if transaction else None
        captured = to_minor(payment.InvoiceValue, currency)
        # After a partial capture InvoiceValue becomes the captured amount; the new Succss
        # transaction carries it too, so either one confirms this capture.
        taken = to_minor(transaction.TransationValue, currency) if transaction else None
        if request.amount in (captured, taken):
            return result(
                Outcome.SUCCESS,
                raw,
                transaction_params(transaction, reference, "success", "Captured"),
                "Captured",
                refs,
            )
        shown = (
            format_minor(captured, currency) if captured is not None else str(payment.InvoiceValue)
        )
        message = (
            f"MyFatoorah shows {shown} {currency} captured, not "
            f"{format_minor(request.amount, currency)}"
        )
        # One capture per invoice: another amount captured means this capture was not it.
        outcome = Outcome.FAILED if inquiry else Outcome.UNKNOWN
        return result(
            outcome,
            raw,
            transaction_params(transaction, reference, "mismatch", message),
            message,
            refs,
        )
    if not inquiry:
        message = "MyFatoorah accepted the capture but does not show the invoice paid"
        return result(
            Outcome.UNKNOWN,
            raw,
            transaction_params(payment.latest(), reference, "unknown", message),
            message,
            refs,
        )
    if payment.released:
        message = "The authorization was released; nothing was captured"
    elif payment.authorized:
        message = "Not captured: the authorization is still held at MyFatoorah"
    else:
        message = f"Not captured: the MyFatoorah invoice is {payment.InvoiceStatus}"
    return result(
        Outcome.FAILED,
        raw,
        transaction_params(payment.latest(), reference, "not_captured", message),
        message,
        refs,
    )


def judge_release(
    request: OperationRequest, payment: PaymentStatus, raw: dict[str, Any], *, inquiry: bool
) -> GatewayResult:
    reference = request.reference_number
    refs = {"invoice_id": payment.InvoiceId}
    if payment.status not in INVOICE_STATUS_OUTCOME:
        message = f"MyFatoorah invoice status {payment.InvoiceStatus!r} is not understood"
        outcome = Outcome.PENDING if inquiry else Outcome.UNKNOWN
        return result(
            outcome,
            raw,
            transaction_params(
                payment.latest(), reference, "pending" if inquiry else "unknown", message
            ),
            message,
            refs,
        )
    if payment.released:
        transaction = payment.latest("canceled")
        refs["payment_id"] = transaction.PaymentId if transaction else None
        return result(
            Outcome.SUCCESS,
            raw,
            transaction_params(transaction, reference, "success", "Released"),
            "Released",
            refs,
        )
    if not inquiry:
        message = "MyFatoorah accepted the release but does not show it"
        return result(
            Outcome.UNKNOWN,
            raw,
            transaction_params(payment.latest(), reference, "unknown", message),
            message,
            refs,
        )
    if payment.captured:
        message = "Not released: the invoice was captured"
    elif payment.authorized:
        message = "Not released: the authorization is still held at MyFatoorah"
    else:
        message = f"Not released: the MyFatoorah invoice is {payment.InvoiceStatus}"
    return result(
        Outcome.FAILED,
        raw,
        transaction_params(payment.latest(), reference, "not_released", message),
        message,
        refs,
    )


def judge_refunds(
    request: OperationRequest, listed: RefundStatusList, raw: dict[str, Any], invoice_id: str
) -> GatewayResult:
    reference = request.reference_number
    refs = {"invoice_id": invoice_id}
    entries = listed.by_external_identifier(reference)
    known_id = ref(request.gateway_refs or {}, "refund_id")
    if known_id and len(entries) != 1:
        # The refund id MyFatoorah gave when the refund was created settles it.
        entries = [r for r in listed.refunds if r.RefundId == known_id]
    if not entries:
        message = f"MyFatoorah has no refund with reference {reference}"
        return result(
            Outcome.FAILED, raw, refund_params(reference, "not_found", message), message, refs
        )
    if len(entries) > 1:
        message = f"MyFatoorah lists {len(entries)} refunds with reference {reference}"
        return result(
            Outcome.UNKNOWN, raw, refund_params(reference, "duplicate", message), message, refs
        )
    return judge_refund_entry(request, entries[0], raw, refs)


def judge_refund_entry(
    request: OperationRequest, entry: RefundStatusEntry, raw: dict[str, Any], refs: dict[str, Any]
) -> GatewayResult:
    reference = request.reference_number
    refs = {**refs, "refund_id": entry.RefundId, "refund_reference": entry.RefundReference}
    ids = {"refund_id": entry.RefundId, "refund_reference": entry.RefundReference, "rrn": entry.RRN}
    recorded = to_minor(entry.value, request.currency_code)
    different = kit.mismatch(
        request.amount,
        request.currency_code,
        recorded,
        gateway="MyFatoorah",
        what="this refund",
        shown=entry.value,
    )
    if different:
        return result(
            Outcome.UNKNOWN,
            raw,
            refund_params(reference, "mismatch", different, **ids),
            different,
            refs,
        )
    outcome = status_outcome(REFUND_STATUS_OUTCOME, entry.RefundStatus)
    message = {
        Outcome.SUCCESS: "Refunded",
        Outcome.FAILED: "MyFatoorah canceled the refund",
    }.get(
        outcome,
        MSG_REFUND_QUEUED
        if entry.status == "pending"
        else f"MyFatoorah refund status {entry.RefundStatus!r} is not final",
    )
    label = {Outcome.SUCCESS: "success", Outcome.FAILED: "canceled"}.get(outcome, "queued")
    return result(outcome, raw, refund_params(reference, label, message, **ids), message, refs)


# -- a customer's payment (an attempt) --------------------------------------------------------


def belongs_to(payment: PaymentRef, found: PaymentStatus) -> bool:
    """Whether an invoice read by an id the browser brought is this attempt's (the official
    library's "another order" check): the stored InvoiceId, or PayOps's CustomerReference."""
    stored = ref(payment.gateway_refs or {}, "invoice_id")
    if stored:
        return (found.InvoiceId or "") == stored
    return (found.CustomerReference or "") == payment.reference_number


def judge_payment(
    payment: PaymentRef, found: PaymentStatus, raw: dict[str, Any], *, now: datetime, zone: ZoneInfo
) -> GatewayResult:
    """GetPaymentStatus read for an attempt (spec §4.3): paid / authorized / failed (canceled,
    expired) / pending, with what MyFatoorah confirmed (the invoice's display value, in the
    currency PayOps sent) and, for ``DuplicatePayment``, a reason for review."""
    reference = payment.reference_number
    outcome, message = payment_outcome(found, payment.operation_mode)
    transaction = found.latest(*SUCCESS_STATUSES) or found.latest("authorize") or found.latest()
    state: str | None = None
    review = ""
    amount: int | None = None
    currency: str | None = None
    if outcome == Outcome.SUCCESS:
        shown = display_value(found.InvoiceDisplayValue)
        if shown is not None:
            currency = shown[1]
            amount = to_minor(shown[0], currency) if is_known_currency(currency) else None
        else:  # the invoice value is in the currency PayOps sent (DisplayCurrencyIso)
            amount = to_minor(found.InvoiceValue, payment.currency_code)
        if amount is None:
            message = (
                f"MyFatoorah confirmed an amount that cannot be read "
                f"({found.InvoiceDisplayValue or found.InvoiceValue})"
            )
            outcome = Outcome.PENDING
        elif found.status == "duplicatepayment":
            review = DUPLICATE_REVIEW
    elif outcome == Outcome.FAILED:
        code = (transaction.ErrorCode or "").strip().upper() if transaction else ""
        if found.status == "canceled" or code in CANCELED_CODES:
            state = "canceled"
        elif code in EXPIRED_CODES:
            state = "expired"
        if transaction is not None and code:
            message = (transaction.Error or "").strip() or ERROR_CODES.get(code, message)
    elif outcome == Outcome.PENDING and not found.authorized:
        expires = invoice_expiry(found, zone)
        if expires is not None and expires <= now:
            outcome, state = Outcome.FAILED, "expired"
            message = "The MyFatoorah invoice expired without a payment"
    label = {Outcome.SUCCESS: "success", Outcome.FAILED: state or "declined"}.get(
        outcome, "pending"
    )
    refs = {
        "invoice_id": found.InvoiceId,
        "payment_id": transaction.PaymentId if transaction else None,
    }
    found_result = result(
        outcome,
        raw,
        transaction_params(transaction, reference, label, message),
        message,
        refs,
        amount=amount,
        currency_code=currency,
    )
    return replace(found_result, payment_state=state, review_reason=review)
