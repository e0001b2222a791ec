"""Tabby's decisions: a decoded reply becomes a ``GatewayResult``. Pure functions (no I/O).

A capture or refund is judged by its entry (``reference_id``) in the payment object Tabby
returns; a void (close) by the payment's status and captures.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from payops.connectors import kit
from payops.connectors.base import GatewayResult, OperationRequest, Outcome, PaymentRef
from payops.connectors.kit import Reply
from payops.connectors.tabby.transformers import (
    FALLBACK_MESSAGES,
    Movement,
    TabbyPayment,
    amount_minor,
    error_outcome,
    parse_error,
)

MSG_NO_ANSWER = "Tabby did not answer"
MSG_UNPARSABLE = "Tabby's reply could not be read"


def unknown(reply: Reply, reference: str, message: str = MSG_NO_ANSWER) -> GatewayResult:
    return GatewayResult(
        Outcome.UNKNOWN,
        reply.raw(),
        {"ref": reference, "result": "unknown", "pg_message": message},
        message,
    )


def not_ok(reply: Reply, reference: str, *, inquiry: bool = False) -> GatewayResult:
    """A reply that is not a 200 payment: refusal, server error or no reply at all."""
    if reply.status is None:
        return unknown(reply, reference)
    if reply.status >= 500:
        return unknown(reply, reference, f"Tabby answered HTTP {reply.status}")
    outcome = error_outcome(reply.status)
    if inquiry and not (outcome == Outcome.FAILED and reply.status == 404):
        # An inquiry that is refused (credentials, throttling…) tells nothing about the payment.
        outcome = Outcome.UNKNOWN
    error = parse_error(reply.body if reply.body is not None else reply.text)
    message = error.message() or FALLBACK_MESSAGES.get(
        reply.status, f"Tabby answered HTTP {reply.status}"
    )
    params = {"ref": reference, "result": error.error_type or "error", "pg_message": message}
    return GatewayResult(outcome, reply.raw(), params, message)


def params(
    payment: TabbyPayment, reference: str, result: str, message: str, entry: Movement | None = None
) -> dict[str, Any]:
    params: dict[str, Any] = {
        "payment_id": payment.id,
        "ref": reference,
        "result": result,
        "pg_message": message,
    }
    if entry is not None and entry.id:
        params["transaction_id"] = entry.id
    return params


def movement_result(
    request: OperationRequest,
    payment: TabbyPayment,
    entry: Movement | None,
    raw: dict[str, Any],
    *,
    absent: Outcome,
    refund_delay: float | None = None,
) -> GatewayResult:
    """The outcome of a capture or refund, judged by its entry in the payment object.
    ``refund_delay``: seconds a refund stays queued (Delayed Refunds), None when immediate."""
    reference = request.reference_number
    kind = request.operation
    if entry is None:
        if absent == Outcome.FAILED:
            message = f"Tabby has no {kind} with reference {reference}"
        else:
            message = f"Tabby's reply does not list the {kind}"
        return GatewayResult(
            absent, raw, params(payment, reference, absent.value, message), message
        )
    recorded = amount_minor(entry.amount, request.currency_code)
    different = kit.mismatch(
        request.amount,
        request.currency_code,
        recorded,
        gateway="Tabby",
        what=f"this {kind}",
        shown=str(entry.amount),
    )
    if different:
        return GatewayResult(
            Outcome.UNKNOWN,
            raw,
            params(payment, reference, "mismatch", different, entry),
            different,
        )
    refs = {"payment_id": payment.id, f"{kind}_id": entry.id}
    if kind == "refund" and refund_delay is not None and not delay_passed(entry, refund_delay):
        message = "Refund scheduled by Tabby (Delayed Refunds)"
        return GatewayResult(
            Outcome.PENDING,
            raw,
            params(payment, reference, "queued", message, entry),
            message,
            refs,
            amount=recorded,
            currency_code=request.currency_code,
        )
    return GatewayResult(
        Outcome.SUCCESS,
        raw,
        params(payment, reference, "success", "Approved", entry),
        "Approved",
        refs,
        amount=recorded,
        currency_code=request.currency_code,
    )


def void_state(payment: TabbyPayment, raw: dict[str, Any], reference: str) -> GatewayResult | None:
    """Judge a payment before a close: None means "close it"."""
    status = payment.normalised_status
    if status == "AUTHORIZED" and not payment.captures:
        return None
    if status == "CLOSED" and not payment.captures:
        return void_success(payment, raw, reference, "Already closed at Tabby")
    if payment.captures:
        message = "The Tabby payment has captures; it can no longer be voided"
    else:
        message = f"The Tabby payment is {payment.status}; only an authorized payment can be voided"
    return GatewayResult(
        Outcome.FAILED, raw, params(payment, reference, status.lower(), message), message
    )


def void_success(
    payment: TabbyPayment, raw: dict[str, Any], reference: str, message: str
) -> GatewayResult:
    return GatewayResult(
        Outcome.SUCCESS,
        raw,
        params(payment, reference, "success", message),
        message,
        {"payment_id": payment.id},
    )


def delay_passed(entry: Movement, refund_delay: float, now: datetime | None = None) -> bool:
    created = parse_time(entry.created_at)
    if created is None:
        return False
    return ((now or datetime.now(UTC)) - created).total_seconds() >= refund_delay


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


# -- payment acceptance --------------------------------------------------------------------------


def captured_minor(payment: TabbyPayment, currency_code: str) -> int | None:
    """The sum of the payment's captures in minor units; None when one cannot be read."""
    total = 0
    for entry in payment.captures:
        value = amount_minor(entry.amount, currency_code)
        if value is None:
            return None
        total += value
    return total


def attempt_result(
    payment: TabbyPayment,
    attempt: PaymentRef,
    raw: dict[str, Any],
    *,
    via_cancel: bool = False,
) -> GatewayResult:
    """What a payment read from Tabby says of a customer's attempt, before any capture
    (section 2.3 of the payment-acceptance spec). AUTHORIZED is a SUCCESS here: the connector
    captures it first for a purchase-mode configuration. The amount and currency are what Tabby
    holds (the authorized amount, or the captured total of a CLOSED payment)."""
    reference = attempt.reference_number
    status = payment.normalised_status
    currency = (payment.currency or attempt.currency_code).upper()
    refs = {"payment_id": payment.id}
    message = f"Tabby payment {payment.status}"
    base = params(payment, reference, status.lower(), message)
    if status == "AUTHORIZED":
        return GatewayResult(
            Outcome.SUCCESS,
            raw,
            base,
            message,
            refs,
            amount=amount_minor(payment.amount, currency),
            currency_code=currency,
        )
    if status == "CLOSED":
        if not payment.captures:
            message = "The Tabby payment was closed without a capture"
            return GatewayResult(
                Outcome.FAILED,
                raw,
                params(payment, reference, "closed", message),
                message,
                refs,
                payment_state="canceled",
            )
        return GatewayResult(
            Outcome.SUCCESS,
            raw,
            base,
            message,
            refs,
            amount=captured_minor(payment, currency),
            currency_code=currency,
        )
    if status == "REJECTED":
        message = "Tabby rejected the payment"
        return GatewayResult(
            Outcome.FAILED, raw, params(payment, reference, "rejected", message), message, refs
        )
    if status == "EXPIRED":
        state = "canceled" if via_cancel else "expired"
        message = (
            "The customer cancelled the Tabby payment"
            if via_cancel
            else "The Tabby payment expired"
        )
        return GatewayResult(
            Outcome.FAILED,
            raw,
            params(payment, reference, "expired", message),
            message,
            refs,
            payment_state=state,
        )
    if status != "CREATED":
        message = f"Tabby payment status {payment.status} is not understood"
    return GatewayResult(
        Outcome.PENDING, raw, params(payment, reference, status.lower(), message), message, refs
    )


def needs_capture(payment: TabbyPayment, attempt: PaymentRef) -> bool:
    """A purchase-mode attempt whose payment Tabby authorized for exactly the amount asked and
    that this attempt has not captured yet (Tabby only authorizes at checkout)."""
    if attempt.operation_mode != "purchase" or payment.normalised_status != "AUTHORIZED":
        return False
    return payment.capture(attempt.reference_number) is None


def authorized_as_asked(payment: TabbyPayment, attempt: PaymentRef) -> bool:
    currency = (payment.currency or "").upper()
    return (
        currency == attempt.currency_code.upper()
        and amount_minor(payment.amount, attempt.currency_code) == attempt.amount
    )


def captured_result(
    payment: TabbyPayment, attempt: PaymentRef, raw: dict[str, Any]
) -> GatewayResult | None:
    """SUCCESS when the payment lists this attempt's capture (reference_id = the attempt's
    reference) for the amount asked; None when it lists none."""
    entry = payment.capture(attempt.reference_number)
    if entry is None:
        return None
    reference = attempt.reference_number
    recorded = amount_minor(entry.amount, attempt.currency_code)
    message = "Authorized and captured"
    return GatewayResult(
        Outcome.SUCCESS,
        raw,
        params(payment, reference, "captured", message, entry),
        message,
        {"payment_id": payment.id, "capture_id": entry.id},
        amount=recorded,
        currency_code=(payment.currency or attempt.currency_code).upper(),
    )


def capture_pending(
    payment: TabbyPayment, attempt: PaymentRef, raw: dict[str, Any], why: str
) -> GatewayResult:
    """An authorized purchase-mode payment whose capture is not confirmed: it stays pending and
    the next confirmation or inquiry sends the capture again under the same reference_id
    (Tabby's idempotency key), so it can never be captured twice."""
    message = f"Tabby authorized the payment; the capture is not confirmed yet ({why})"
    return GatewayResult(
        Outcome.PENDING,
        raw,
        params(payment, attempt.reference_number, "authorized", message),
        message,
        {"payment_id": payment.id},
    )


def not_this_attempt(payment: TabbyPayment, attempt: PaymentRef) -> bool:
    order_reference = payment.order.reference_id if payment.order else None
    return order_reference != attempt.reference_number


def pick_for_attempt(payments: list[TabbyPayment], attempt: PaymentRef) -> TabbyPayment | None:
    """Among listed payments, this attempt's: one that took money first, else the newest."""
    mine = [p for p in payments if not not_this_attempt(p, attempt)]
    taken = [p for p in mine if p.normalised_status in ("AUTHORIZED", "CLOSED")]
    if taken:
        return taken[0]
    return max(mine, key=lambda p: p.created_at or "", default=None)
