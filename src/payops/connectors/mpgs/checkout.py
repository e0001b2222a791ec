"""MPGS Hosted Checkout (spec: gateways-payment-acceptance.md §1): the INITIATE_CHECKOUT body,
its reply, and the decision a return makes from Retrieve Order. Pure functions (no I/O).

- ``INITIATE_CHECKOUT`` (API v63 and later) creates a checkout session for the order; the order id
  is the attempt's reference number, so the order collects every transaction of the attempt and
  can be read back by Retrieve Order.
- The reply's ``successIndicator`` is a per-session secret. It is kept on the server only
  (``secret_success_indicator`` in the attempt's gateway references, never shown) and compared in
  constant time with the ``resultIndicator`` the browser brings back; the comparison is a hint,
  Retrieve Order decides.
- The browser goes to ``{host}/checkout/pay/{session.id}?checkoutVersion=1.0.0`` (the hosted
  payment page without JavaScript).
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from payops.connectors.base import CheckoutRequest, GatewayResult, Outcome, PaymentRef
from payops.connectors.mpgs import transformers as t
from payops.money import format_minor

INDICATOR_REF = "secret_success_indicator"
SESSION_REF = "session_id"
# The gateway caps the payer's time on its page (interaction.timeout, seconds); one integration
# calls 1800 s the maximum (secondary), the gateway's own default is about 15 minutes.
MAX_TIMEOUT_SECONDS = 1800
MIN_TIMEOUT_SECONDS = 60
PAYMENT_TYPES = ("AUTHORIZATION", "PAYMENT")


def interaction_operation(operation_mode: str) -> str:
    return "AUTHORIZE" if operation_mode == "authorize" else "PURCHASE"


def initiate_checkout_body(request: CheckoutRequest, order_id: str) -> dict[str, Any]:
    payment = request.payment
    interaction: dict[str, Any] = {
        "operation": interaction_operation(payment.operation_mode),
        "returnUrl": request.return_url,
        # INFERRED field names (Hosted Checkout's redirect URLs for a cancel and a time-out).
        "cancelUrl": request.cancel_url,
        "timeoutUrl": request.timeout_url or request.failure_url,
        "displayControl": {"billingAddress": "HIDE", "customerEmail": "HIDE", "shipping": "HIDE"},
    }
    if request.merchant_name:
        interaction["merchant"] = {"name": request.merchant_name[:40]}
    if request.language:
        interaction["locale"] = request.language
    if request.expires_at is not None:
        left = int((request.expires_at - datetime.now(UTC)).total_seconds())
        interaction["timeout"] = max(MIN_TIMEOUT_SECONDS, min(MAX_TIMEOUT_SECONDS, left))
    order: dict[str, Any] = {
        "id": order_id,
        "amount": format_minor(payment.amount, payment.currency_code),
        "currency": payment.currency_code.upper(),
        "description": (request.description or f"Order {payment.reference_number}")[:127],
        "reference": payment.reference_number,
        "notificationUrl": request.notification_url,
    }
    body: dict[str, Any] = {
        "apiOperation": "INITIATE_CHECKOUT",
        "interaction": interaction,
        "order": order,
        "transaction": {"reference": payment.reference_number, "source": "INTERNET"},
    }
    customer = {
        key: value
        for key, value in (
            ("email", request.customer.get("email", "")),
            ("firstName", request.customer.get("first_name", "")),
            ("lastName", request.customer.get("last_name", "")),
            ("mobilePhone", request.customer.get("phone", "")),
        )
        if value
    }
    if customer:
        body["customer"] = customer
    return body


class _Session(BaseModel):
    model_config = ConfigDict(extra="ignore")
    id: str | None = None
    version: str | None = None


class SessionReply(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    result: str | None = None
    session: _Session | None = None
    success_indicator: str | None = Field(default=None, alias="successIndicator")
    error: t.ErrorInfo | None = None


def parse_session(body: Any) -> SessionReply | None:
    if not isinstance(body, dict):
        return None
    try:
        return SessionReply.model_validate(body)
    except ValidationError:
        return None


def without_indicator(body: Any) -> dict[str, Any]:
    """A session reply fit to store: the success indicator is a secret."""
    if not isinstance(body, dict):
        return {}
    return {key: value for key, value in body.items() if key != "successIndicator"}


def pay_page_url(base_url: str, session_id: str) -> str:
    return f"{base_url}/checkout/pay/{session_id}?checkoutVersion=1.0.0"


def indicator_hint(payment: PaymentRef, params: Mapping[str, str]) -> str:
    """ "matched", "mismatched" or "absent": only ever a hint."""
    presented = params.get("resultIndicator") or ""
    stored = str((payment.gateway_refs or {}).get(INDICATOR_REF) or "")
    if not presented:
        return "absent"
    if stored and hmac.compare_digest(presented.encode("utf-8"), stored.encode("utf-8")):
        return "matched"
    return "mismatched"


def payment_entries(order: t.OrderReply) -> list[t.TransactionReply]:
    return [
        entry
        for entry in order.transaction
        if entry.transaction is not None and (entry.transaction.type or "").upper() in PAYMENT_TYPES
    ]


def latest_payment(order: t.OrderReply) -> tuple[t.TransactionReply | None, Outcome]:
    """The payment transaction that decides: the latest successful AUTHORIZATION/PAYMENT, else
    the latest one of any result (the payer may have retried on the gateway's page)."""
    entries = payment_entries(order)
    outcomes = [
        (e, t.transaction_outcome(e.result, e.gateway_code, e.error.cause if e.error else None))
        for e in entries
    ]
    for entry, outcome in reversed(outcomes):
        if outcome == Outcome.SUCCESS:
            return entry, outcome
    if outcomes:
        return outcomes[-1]
    return None, Outcome.PENDING


def order_decision(
    payment: PaymentRef, order_id: str, order: t.OrderReply, raw: dict[str, Any], hint: str
) -> GatewayResult:
    """What an order read by Retrieve Order says of the attempt (§1.3). ``hint`` is the
    return's ``outcome`` query value ("cancel", "timeout", "failure" or ""), never trusted
    on its own: it only names why a payer came back without any payment on the order."""
    entry, txn_outcome = latest_payment(order)
    refs: dict[str, Any] = {"order_id": order_id}
    params: dict[str, Any] = {"ref": order_id, "result": order.status}
    if entry is not None:
        params = {**t.transaction_params(entry, order_id), "result": order.status}
        if entry.transaction is not None and entry.transaction.id:
            refs["transaction_id"] = entry.transaction.id
    status_outcome = t.order_outcome(order.status, payment.operation_mode)
    message = f"MPGS order status {order.status or 'unknown'}"
    if entry is None:
        return no_payment(hint, raw, params, refs, message)
    if txn_outcome == Outcome.SUCCESS:
        if status_outcome == Outcome.SUCCESS:
            currency = (order.currency or "").upper() or None
            total = order.total_authorized_amount
            if total is None and entry.transaction is not None:
                total = entry.transaction.amount
            amount = t.minor_units(total, currency) if currency and total is not None else None
            return GatewayResult(
                Outcome.SUCCESS,
                raw,
                params,
                t.reply_message(entry),
                refs,
                amount=amount,
                currency_code=currency,
            )
        if status_outcome == Outcome.FAILED:
            # Approved, then voided or cancelled at the gateway: not a payment PayOps keeps.
            return GatewayResult(Outcome.FAILED, raw, params, message, refs)
        return GatewayResult(Outcome.PENDING, raw, params, message, refs)
    if txn_outcome == Outcome.FAILED:
        state = {"cancel": "canceled", "timeout": "expired"}.get(hint)
        return GatewayResult(
            Outcome.FAILED, raw, params, t.reply_message(entry), refs, payment_state=state
        )
    if txn_outcome == Outcome.UNKNOWN:
        return GatewayResult(Outcome.UNKNOWN, raw, params, t.reply_message(entry), refs)
    return GatewayResult(Outcome.PENDING, raw, params, t.reply_message(entry), refs)


def no_payment(
    hint: str, raw: dict[str, Any], params: dict[str, Any], refs: dict[str, Any], message: str
) -> GatewayResult:
    """No payment transaction on the order (or no order yet): the payer has not paid. Only a
    cancel or time-out return ends the attempt; anything else leaves it open."""
    if hint == "cancel":
        return GatewayResult(
            Outcome.FAILED,
            raw,
            params,
            "The payer cancelled at MPGS",
            refs,
            payment_state="canceled",
        )
    if hint == "timeout":
        return GatewayResult(
            Outcome.FAILED,
            raw,
            params,
            "The MPGS checkout session timed out",
            refs,
            payment_state="expired",
        )
    return GatewayResult(Outcome.PENDING, raw, params, message or "No payment at MPGS yet", refs)
