"""Creating parent transactions and recording customers' payment attempts."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payops.config import Settings
from payops.connectors.base import GatewayResult, Outcome, PaymentRef
from payops.db import Database
from payops.db.models import GatewayConfig, PaymentAttempt, PaymentTransaction
from payops.domain import messages
from payops.domain.rules import state_after_attempt
from payops.domain.states import ATTEMPT_ENDED, LATE_SUCCESS, PAYABLE, SETTLED
from payops.gateways.service import connector_for, without_personal_data
from payops.ids import new_reference_number, new_session_id
from payops.money import format_minor
from payops.transactions import repository
from payops.transactions.presenters import payment_body
from payops.webhooks import outbox

log = logging.getLogger(__name__)

DEFAULT_LIFETIME = timedelta(hours=24)
ATTEMPT_IN_REVIEW = "needs_review"
ATTEMPT_STATE = {
    Outcome.SUCCESS: "success",
    Outcome.FAILED: "failed",
    Outcome.PENDING: "pending",
    Outcome.UNKNOWN: "pending",
}


# What a FAILED attempt result may say instead of a decline (GatewayResult.payment_state).
ENDED_ATTEMPT_STATES = ATTEMPT_ENDED
PAYABLE_STATES = PAYABLE
LATE_SUCCESS_STATES = LATE_SUCCESS


class TransactionError(ValueError):
    pass


class NoNewAttempt(TransactionError):
    """The session is closed, already paid, or has an attempt whose outcome is still open: a new
    attempt could charge the customer twice (decisions §13)."""


def new_parent(
    *,
    amount: int,
    currency_code: str,
    pg_codes: list[str],
    order_no: str | None = None,
    fee: int = 0,
    customer: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    webhook_url: str = "",
    redirect_url: str = "",
    lifetime: timedelta = DEFAULT_LIFETIME,
    type_: str = "e_commerce",
) -> PaymentTransaction:
    now = datetime.now(UTC)
    return PaymentTransaction(
        created_at=now,
        session_id=new_session_id(),
        order_no=order_no,
        type=type_,
        state="created",
        currency_code=currency_code.upper(),
        amount=amount,
        fee=fee,
        pg_codes=pg_codes,
        customer=customer or {},
        extra=extra or {},
        webhook_url=webhook_url,
        redirect_url=redirect_url,
        expires_at=now + lifetime,
    )


def payment_ref(attempt: PaymentAttempt) -> PaymentRef:
    return PaymentRef(
        reference_number=attempt.reference_number,
        amount=attempt.amount,
        currency_code=attempt.currency_code,
        operation_mode=attempt.operation_mode,
        gateway_refs=attempt.gateway_refs or {},
    )


async def start_attempt(
    db: Database,
    parent_id: int,
    gateway: GatewayConfig,
    *,
    token: str | None = None,
    start: dict[str, Any] | None = None,
) -> PaymentAttempt:
    """A new attempt, unless the session takes none; ``token`` and ``start`` are a gateway
    checkout's return token and its start marker (checkout/gateway_flow.py)."""
    async with db.write() as session:
        parent = await repository.lock_parent_by_id(session, parent_id)
        if parent.state not in PAYABLE_STATES:
            raise NoNewAttempt(f"a {parent.state} transaction takes no new payment attempt")
        # Checked under the parent's lock, so concurrent submissions start one charge at most.
        blocking = await repository.blocking_attempt(session, parent.id)
        if blocking is not None:
            raise NoNewAttempt(f"the transaction has a {blocking.state} payment attempt")
        if parent.currency_code not in gateway.accepted_currencies:
            raise TransactionError(f"{gateway.pg_code} does not accept {parent.currency_code}")
        attempt = PaymentAttempt(
            transaction_id=parent.id,
            gateway_config_id=gateway.id,
            reference_number=new_reference_number(),
            state="pending",
            operation_mode=gateway.operation_mode,
            amount=parent.amount + parent.fee,
            fee=parent.fee,
            currency_code=parent.currency_code,
            token=token,
            start=start,
        )
        session.add(attempt)
        parent.state = "pending"
        await session.flush()
        await session.refresh(attempt, ["gateway_config"])
        return attempt


async def apply_attempt_result(
    session: AsyncSession,
    parent: PaymentTransaction,
    attempt: PaymentAttempt,
    result: GatewayResult,
) -> bool:
    """Record what the gateway said of an attempt; returns True if the parent's state changed.

    A late success is applied to a parent that is still able to acknowledge a payment
    (created, pending, attempted, failed, expired), never over a final decision. The parent's
    amount and fee become what the attempt charged: the amount the attempt asked for, as the
    gateway confirmed it. A gateway confirming another amount or currency puts the attempt in
    review and changes nothing else (decisions §13).
    """
    if attempt.state == ATTEMPT_IN_REVIEW and result.outcome != Outcome.SUCCESS:
        return False  # only a success for the amount asked ends a review on its own
    attempt.pg_response = result.raw
    attempt.pg_params = result.pg_params
    attempt.message = result.message
    attempt.gateway_refs = {**(attempt.gateway_refs or {}), **result.gateway_refs}
    if (
        result.outcome == Outcome.SUCCESS
        and attempt.state != "success"
        and not _confirms(attempt, result)
    ):
        attempt.state = ATTEMPT_IN_REVIEW
        attempt.message = messages.ATTEMPT_AMOUNT_MISMATCH.format(
            asked=format_minor(attempt.amount, attempt.currency_code),
            asked_currency=attempt.currency_code,
            confirmed=_confirmed_text(result),
        )
        log.warning(
            "payment attempt %s confirmed for another amount; it needs review",
            attempt.reference_number,
        )
        return False
    was_success = attempt.state == "success"
    new_attempt_state = ATTEMPT_STATE[result.outcome]
    if result.outcome == Outcome.FAILED and result.payment_state in ENDED_ATTEMPT_STATES:
        new_attempt_state = result.payment_state  # canceled / expired rather than a decline
    if attempt.state != "success":
        attempt.state = new_attempt_state
    if result.outcome == Outcome.SUCCESS and result.review_reason:
        # Paid, and an operator must still look at it (e.g. a duplicate payment to refund).
        attempt.review_reason = result.review_reason
        log.warning(
            "payment attempt %s succeeded but needs review: %s",
            attempt.reference_number,
            result.review_reason,
        )
    gateway = attempt.gateway_config
    before = parent.state
    if result.outcome == Outcome.SUCCESS:
        if parent.state in LATE_SUCCESS_STATES:
            parent.state = state_after_attempt(
                "success", gateway.operation_mode, gateway.multi_attempt
            )
            parent.operation_mode = gateway.operation_mode
            parent.gateway_config_id = gateway.id
            parent.gateway_config = gateway
            # What was charged, never what a later change to the session says.
            parent.currency_code = attempt.currency_code
            parent.amount = attempt.amount - attempt.fee
            parent.fee = attempt.fee
            total = attempt.amount
            if gateway.operation_mode == "authorize":
                parent.authorized_total = total
            else:
                parent.paid_total = total
        elif not was_success and not attempt.review_reason:
            # Money taken that the session cannot acknowledge: it was already paid by another
            # attempt (a second payment page left open), or canceled. An operator refunds it.
            attempt.review_reason = messages.ATTEMPT_UNAPPLIED_SUCCESS.format(state=parent.state)
            log.warning(
                "payment attempt %s succeeded on a %s session; it needs review",
                attempt.reference_number,
                parent.state,
            )
    elif result.outcome == Outcome.FAILED and parent.state in ("created", "pending"):
        parent.state = state_after_attempt("failed", gateway.operation_mode, gateway.multi_attempt)
    parent.message = result.message
    changed = parent.state != before
    if changed and parent.webhook_url:
        key = await outbox.merchant_setting(session, outbox.HMAC_KEY_SETTING)
        attempts = await repository.attempts(session, parent.id)
        operations = await repository.operations(session, parent.id)
        outbox.enqueue(
            session,
            kind="payment",
            target_url=parent.webhook_url,
            payload=payment_body(parent, attempts, operations, key),
            transaction_id=parent.id,
        )
    return changed


def _confirms(attempt: PaymentAttempt, result: GatewayResult) -> bool:
    """Does the gateway's confirmation match what the attempt asked for? A gateway that does not
    report the amount (or currency) confirms the one asked."""
    amount_ok = result.amount is None or result.amount == attempt.amount
    currency_ok = (
        result.currency_code is None
        or result.currency_code.upper() == attempt.currency_code.upper()
    )
    return amount_ok and currency_ok


def _confirmed_text(result: GatewayResult) -> str:
    currency = (result.currency_code or "").upper()
    if result.amount is None:
        return f"? {currency}".strip()
    try:
        return f"{format_minor(result.amount, currency)} {currency}"
    except Exception:  # noqa: BLE001 - an unknown currency code from the gateway
        return f"{result.amount} (minor units) {currency}"


async def pay_with_sandbox(
    db: Database, settings: Settings, parent_id: int, gateway: GatewayConfig, card_number: str
) -> PaymentTransaction:
    """One customer attempt at the sandbox gateway (hosted page and `payops txn create`)."""
    attempt = await start_attempt(db, parent_id, gateway)
    connector = connector_for(gateway, settings)
    result = without_personal_data(gateway, await connector.pay(payment_ref(attempt), card_number))  # type: ignore[attr-defined]
    async with db.write() as session:
        parent = await repository.lock_parent_by_id(session, parent_id)
        stored = await session.get(PaymentAttempt, attempt.id)
        assert stored is not None
        await apply_attempt_result(session, parent, stored, result)
        return parent


IMPORTABLE_STATES = SETTLED


async def import_transaction(
    session: AsyncSession,
    *,
    gateway: GatewayConfig,
    amount: int,
    currency_code: str,
    state: str,
    gateway_refs: dict[str, Any],
    order_no: str | None = None,
    reference_number: str | None = None,
) -> PaymentTransaction:
    """Register a payment taken at a real gateway outside PayOps (decisions §9).

    The gateway's own identifiers (``gateway_refs``: MPGS order id, Tabby payment id, ...) are
    what the connector uses to operate on it later.
    """
    if state not in IMPORTABLE_STATES:
        raise TransactionError(f"state must be one of {', '.join(IMPORTABLE_STATES)}")
    mode = "authorize" if state == "authorized" else "purchase"
    if currency_code.upper() not in gateway.accepted_currencies:
        raise TransactionError(f"{gateway.pg_code} does not accept {currency_code.upper()}")
    parent = new_parent(
        amount=amount, currency_code=currency_code, pg_codes=[gateway.pg_code], order_no=order_no
    )
    parent.state = state
    parent.operation_mode = mode
    parent.gateway_config_id = gateway.id
    if mode == "authorize":
        parent.authorized_total = amount
    else:
        parent.paid_total = amount
    session.add(parent)
    await session.flush()
    session.add(
        PaymentAttempt(
            transaction_id=parent.id,
            gateway_config_id=gateway.id,
            reference_number=reference_number or new_reference_number(),
            state="success",
            operation_mode=mode,
            amount=amount,
            currency_code=parent.currency_code,
            gateway_refs=gateway_refs,
            message="Imported",
        )
    )
    await session.flush()
    await session.refresh(parent, ["gateway_config"])
    return parent
