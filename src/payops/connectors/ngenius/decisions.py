"""N-Genius's decisions: what a decoded reply or order means. Pure functions (no I/O).

N-Genius keeps no merchant reference on captures and refunds, so an operation is recognised
among the payment's children (captures, refunds) by kind, amount and currency
(``match_operation``), or by the child id an earlier answer gave.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from payops import money
from payops.connectors import kit
from payops.connectors.base import GatewayResult, OperationRequest, Outcome, PaymentRef
from payops.connectors.ngenius import transformers as t


def payment_ref(payment: PaymentRef, kind: str) -> str | None:
    """A gateway reference of the imported payment: ``order_reference`` (required) or
    ``payment_reference`` (optional: without it the order's paid payment is used)."""
    value = payment.gateway_refs.get(f"{kind}_reference")
    return str(value) if value else None


def problem(reply: kit.Reply) -> str:
    """What went wrong with a reply, as stored (``raw["error"]``): the transport fault, or
    ``unparsable`` for a body that could not be decoded; "" when nothing did."""
    if reply.fault is not None:
        return reply.fault.value
    return "" if reply.decoded else "unparsable"


def reverses_whole_purchase(
    request: OperationRequest, payment: t.Payment, value: int | None
) -> bool:
    """May this refund be sent as the purchase's reversal (``cnp:cancel``)? Only a refund of
    the whole paid amount of a single-stage purchase that has no refund done or in flight at
    N-Genius (PayOps refuses a full refund while any of its own refunds is reserved)."""
    return (
        request.operation == "refund"
        and request.amount == request.payment.amount
        and payment.amount is not None
        and value is not None
        and payment.amount.value == value
        and payment.amount.currency_code.upper() == request.currency_code.upper()
        and not payment.captures
        and not [r for r in payment.refunds if t.child_outcome(r.state) != Outcome.FAILED]
    )


def result(
    request: OperationRequest, reply: kit.Reply, value: int | None, *, reversal: bool = False
) -> GatewayResult:
    """Read the answer to a capture, refund or void (``reversal``: a full refund sent as the
    purchase's ``cnp:cancel``, judged like a void)."""
    order_reference = payment_ref(request.payment, "order") or ""
    kind = request.operation
    if reply.status is None and not reply.delivered:
        message = f"N-Genius could not be reached ({problem(reply)}); nothing was sent"
        return GatewayResult(
            Outcome.FAILED, {"error": problem(reply)}, {"pg_message": message}, message
        )
    if reply.outcome_unknown:
        raw: dict[str, Any] = {"status": reply.status} if reply.status else {}
        if problem(reply):
            raw["error"] = problem(reply)
        if isinstance(reply.body, dict):
            raw["body"] = t.REDACTION.scrub(reply.body)
        return GatewayResult(
            Outcome.UNKNOWN,
            raw,
            {},
            f"N-Genius did not confirm the {kind} ({problem(reply) or f'HTTP {reply.status}'})",
        )
    assert reply.status is not None
    if reply.status >= 300:
        message = (
            t.error_message(reply.body) or f"N-Genius refused the {kind} (HTTP {reply.status})"
        )
        raw = (
            t.REDACTION.scrub(reply.body)
            if isinstance(reply.body, dict)
            else {"status": reply.status}
        )
        return GatewayResult(
            Outcome.FAILED,
            raw,
            {"ref": order_reference, "pg_message": message, "result": "error"},
            message,
        )
    payment = t.parse(t.Payment, reply.body)
    raw = t.REDACTION.scrub(reply.body) if isinstance(reply.body, dict) else {}
    if payment is None:
        return GatewayResult(
            Outcome.UNKNOWN, raw, {}, f"N-Genius answered the {kind} without a payment object"
        )
    refs = {"order_reference": order_reference, "payment_reference": payment.ref}
    if kind == "void" or reversal:
        outcome = Outcome.SUCCESS if payment.state.upper() == "REVERSED" else Outcome.UNKNOWN
        done = "Purchase reversed (full refund)" if reversal else "Authorisation reversed"
        message = (
            done
            if outcome == Outcome.SUCCESS
            else (f"N-Genius answered the {kind} with payment state {payment.state or 'none'}")
        )
        if reversal:
            refs["reversal"] = True
        return GatewayResult(
            outcome,
            raw,
            t.payment_params(payment, order_reference=order_reference, message=message),
            message,
            refs,
        )
    children = payment.captures if kind == "capture" else payment.refunds
    child = next((c for c in reversed(children) if same_amount(c, value, request)), None)
    if child is None:
        return GatewayResult(
            Outcome.UNKNOWN, raw, {}, f"N-Genius's answer does not show the {kind}"
        )
    outcome = t.child_outcome(child.state)
    message = {
        Outcome.SUCCESS: f"{kind.capitalize()} successful",
        Outcome.PENDING: f"{kind.capitalize()} requested; N-Genius settles it later",
        Outcome.FAILED: f"N-Genius reports the {kind} as {child.state}",
    }[outcome]
    refs[f"{kind}_reference"] = child.ref
    return GatewayResult(
        outcome,
        raw,
        t.payment_params(payment, order_reference=order_reference, child=child, message=message),
        message,
        refs,
    )


def same_amount(child: t.Child, value: int | None, request: OperationRequest) -> bool:
    return (
        child.amount is not None
        and child.amount.value == value
        and child.amount.currency_code.upper() == request.currency_code.upper()
    )


def pick_payment(order: t.Order, payment_reference: str | None) -> t.Payment | None:
    payments = order.payments
    if payment_reference:
        return next((p for p in payments if p.ref == payment_reference), None)
    taken = [
        p
        for p in payments
        if t.payment_outcome(p.state) == Outcome.SUCCESS or p.state.upper() == "REVERSED"
    ]
    candidates = taken or payments
    return candidates[-1] if candidates else None


def unreadable(reply: kit.Reply, what: str) -> GatewayResult:
    raw: dict[str, Any] = {"status": reply.status}
    if problem(reply):
        raw["error"] = problem(reply)
    if isinstance(reply.body, dict):
        raw["body"] = t.REDACTION.scrub(reply.body)
    detail = t.error_message(reply.body)
    return GatewayResult(
        Outcome.UNKNOWN,
        raw,
        {},
        detail
        or f"N-Genius did not answer the {what} ({problem(reply) or f'HTTP {reply.status}'})",
    )


def match_operation(
    request: OperationRequest,
    payment: t.Payment,
    value: int,
    raw: dict[str, Any],
    order_reference: str,
    refs: dict[str, Any],
) -> GatewayResult:
    """Which of the payment's children is the capture or refund of ``request``."""
    children = payment.captures if request.operation == "capture" else payment.refunds
    kind = request.operation
    # An earlier answer may have named the child already (a queued refund, a capture whose
    # settlement crashed): then it is looked up by its id, with no guessing.
    own = (getattr(request, "gateway_refs", None) or {}).get(f"{kind}_reference")
    if own:
        matches = [c for c in children if c.ref == str(own)]
        if not matches:
            return GatewayResult(
                Outcome.UNKNOWN,
                raw,
                {"ref": order_reference},
                f"N-Genius no longer shows {kind} {own}",
            )
    else:
        matches = [c for c in children if same_amount(c, value, request)]
        known = getattr(request, "known_gateway_ids", None)
        if known is not None:
            matches = [c for c in matches if c.ref not in known]
    if not matches:
        return GatewayResult(
            Outcome.FAILED,
            raw,
            {"ref": order_reference},
            f"N-Genius shows no {kind} of this amount: it was not performed",
        )
    if len(matches) > 1:
        return GatewayResult(
            Outcome.UNKNOWN,
            raw,
            {"ref": order_reference},
            f"N-Genius shows {len(matches)} {kind}s of this amount; "
            "which one is this operation cannot be told",
        )
    child = matches[0]
    outcome = t.child_outcome(child.state)
    message = f"N-Genius {kind} state {child.state or 'unknown'}"
    refs[f"{kind}_reference"] = child.ref
    return GatewayResult(
        outcome,
        raw,
        t.payment_params(payment, order_reference=order_reference, child=child, message=message),
        message,
        refs,
    )


# -- payment acceptance ------------------------------------------------------------------------


def _created_at(order: t.Order) -> datetime | None:
    text = order.create_date_time
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def attempt_result(
    order: t.Order,
    attempt: PaymentRef,
    raw: dict[str, Any],
    *,
    via_cancel: bool = False,
    page_minutes: float | None = None,
    now: datetime | None = None,
    overrides: dict[str, Any] | None = None,
) -> GatewayResult:
    """What an order read from N-Genius says of a customer's attempt (section 3.3 of the
    payment-acceptance spec), from its latest payment (or the one that took money).

    ``via_cancel``: the browser came back through the page's cancel link (only a hint, used
    only while the order is still STARTED). ``page_minutes``: after that long a STARTED order
    is expired (the page's lifetime is not documented; INFERRED, configurable)."""
    order_reference = order.reference or payment_ref(attempt, "order") or ""
    chosen = pick_payment(order, payment_ref(attempt, "payment"))
    refs: dict[str, Any] = {"order_reference": order_reference}
    state = (chosen.state if chosen is not None else "").upper()
    if chosen is not None:
        refs["payment_reference"] = chosen.ref
    outcome = t.payment_outcome(state) if chosen is not None else Outcome.PENDING
    message = f"N-Genius payment state {state or 'none'}"
    payment_state: str | None = None
    amount: int | None = None
    currency: str | None = None
    if outcome == Outcome.SUCCESS and chosen is not None:
        confirmed = chosen.amount or order.amount
        if confirmed is not None:
            currency = confirmed.currency_code.upper()
            try:
                amount = t.from_gateway_value(confirmed.value, currency, overrides)
            except (money.AmountError, money.UnknownCurrency, t.AmountNotRepresentable):
                # Paid, but for an amount PayOps cannot read: never taken as the one asked.
                outcome, amount, currency = Outcome.PENDING, None, None
                message = "N-Genius's paid amount cannot be read in its currency"
    elif state in ("REVERSED", "CANCELLED"):
        payment_state = "canceled"
    elif outcome == Outcome.PENDING and state in ("STARTED", ""):
        created = _created_at(order)
        if via_cancel:
            outcome, payment_state = Outcome.FAILED, "canceled"
            message = "The customer cancelled on the N-Genius payment page"
        elif (
            page_minutes is not None
            and created is not None
            and ((now or datetime.now(UTC)) - created).total_seconds() >= page_minutes * 60
        ):
            outcome, payment_state = Outcome.FAILED, "expired"
            message = "The N-Genius payment page expired without a payment"
    params = t.payment_params(chosen, order_reference=order_reference, message=message)
    return GatewayResult(
        outcome,
        raw,
        params,
        message,
        refs,
        amount=amount,
        currency_code=currency,
        payment_state=payment_state,
    )


def order_of_attempt(order: t.Order, attempt: PaymentRef) -> bool:
    """Is this order the attempt's (its merchant reference)?"""
    return order.merchant_order_reference == attempt.reference_number
