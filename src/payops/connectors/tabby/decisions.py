"""Tabby's decisions: a decoded reply becomes a ``GatewayResult``. Pure functions (no I/O).

A capture or refund is judged by its entry (``reference_id``) in the payment object Tabby
returns; a void (close) by the payment's status and captures.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from payops.connectors import kit
from payops.connectors.base import GatewayResult, OperationRequest, Outcome
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
