"""Operator review of payment attempts (issue 17, decisions §13).

An attempt is in review when
- the gateway confirmed another amount or currency than the attempt asked for (``needs_review``):
  the session takes no new attempt, does not expire and cannot change, and its payment webhook
  says ``pending``;
- the gateway gave no final answer to every automatic inquiry (the attempt stays ``pending``;
  the session takes no new attempt);
- it was paid with a reason to look (``review_reason``, e.g. MyFatoorah's DuplicatePayment: the
  customer paid twice and the duplicate must be refunded).

Two ways out, both audited with who, why and the evidence:
- **recheck**: ask the gateway now (under the attempt's inquiry lease, outside the merchant's
  inquiry throttle) and apply a final answer as any other (``apply_attempt_result``);
- **resolve**: an operator holding ``payment.resolve`` (never an API key) decides ``paid`` or
  ``failed`` after checking the gateway's own dashboard. ``paid`` applies the success for the
  amount the operator confirms (by default the one the attempt asked for): the session's amount
  becomes it. ``failed`` fails the attempt and frees the session for a new one.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from payops import audit
from payops.auth.service import Principal
from payops.connectors.base import GatewayResult, Outcome
from payops.context import AppContext
from payops.db.models import PaymentAttempt, PaymentTransaction
from payops.domain import messages
from payops.errors import ApiError
from payops.gateways.service import call_budget_seconds, supported_operations
from payops.money import format_minor
from payops.transactions import attempt_repository, repository
from payops.transactions.attempt_inquiry import FINAL, _ask, apply_answer
from payops.transactions.attempt_repository import MAX_AUTOMATIC_INQUIRIES
from payops.transactions.service import LATE_SUCCESS_STATES, apply_attempt_result

log = logging.getLogger(__name__)

OUTCOMES = ("paid", "failed")
RECHECKABLE = ("pending", "needs_review")


class AttemptReviewRefused(ApiError):
    """A recheck or resolution that cannot be done: 400 with a message saying why."""

    def __init__(self, detail: str) -> None:
        super().__init__({"detail": detail, "result": "failed"})


class AttemptNotFound(ApiError):
    status_code = 404

    def __init__(self) -> None:
        super().__init__({"detail": messages.ATTEMPT_UNKNOWN, "result": "failed"})


def _now() -> datetime:
    return datetime.now(UTC)


def review_kind(attempt: PaymentAttempt) -> str | None:
    """Why an operator must decide on this attempt, or None when nothing waits for one."""
    if attempt.resolution:
        return None
    if attempt.state == "needs_review":
        return "amount_mismatch"
    if attempt.state == "pending" and attempt.inquiry_count >= MAX_AUTOMATIC_INQUIRIES:
        return "no_answer"
    if attempt.state == "success" and attempt.review_reason:
        return "flagged"
    return None


def describe(
    attempt: PaymentAttempt, parent: PaymentTransaction, message: str | None = None
) -> dict[str, Any]:
    """An attempt as the review API and CLI show it."""
    kind = review_kind(attempt)
    no_answer = (
        messages.ATTEMPT_REVIEW_NO_ANSWER.format(count=attempt.inquiry_count)
        if attempt.gateway_config is None
        or "inquiry" in supported_operations(attempt.gateway_config)
        else messages.ATTEMPT_REVIEW_CANNOT_ASK
    )
    reason = {
        "amount_mismatch": attempt.message,
        "no_answer": no_answer,
        "flagged": attempt.review_reason,
    }.get(kind or "", "")
    return {
        "reference_number": attempt.reference_number,
        "state": attempt.state,
        "review": kind,
        "review_reason": reason,
        "amount": format_minor(attempt.amount, attempt.currency_code),
        "fee": format_minor(attempt.fee, attempt.currency_code),
        "currency_code": attempt.currency_code,
        "order_no": parent.order_no or "",
        "session_id": parent.session_id,
        "session_state": parent.state,
        "pg_code": attempt.gateway_config.pg_code if attempt.gateway_config else "",
        "gateway_refs": {
            k: v
            for k, v in (attempt.gateway_refs or {}).items()
            if not str(k).startswith("secret_")
        },
        "created_at": attempt.created_at.isoformat() if attempt.created_at else "",
        "automatic_inquiries": attempt.inquiry_count,
        "next_inquiry_at": attempt.next_inquiry_at.isoformat() if attempt.next_inquiry_at else None,
        "resolution": attempt.resolution,
        "message": message if message is not None else attempt.message,
    }


async def review_queue(ctx: AppContext) -> list[dict[str, Any]]:
    """Attempts waiting for an operator, oldest first."""
    async with ctx.db.read() as session:
        return [describe(a, p) for a, p in await attempt_repository.review_queue(session)]


async def _find(ctx: AppContext, reference_number: str) -> PaymentAttempt:
    async with ctx.db.read() as session:
        attempt = await attempt_repository.by_reference(session, reference_number)
    if attempt is None:
        raise AttemptNotFound()
    return attempt


async def _current(ctx: AppContext, attempt_id: int, message: str | None = None) -> dict[str, Any]:
    async with ctx.db.read() as session:
        attempt = await session.get_one(PaymentAttempt, attempt_id, populate_existing=True)
        parent = await session.get_one(
            PaymentTransaction, attempt.transaction_id, populate_existing=True
        )
        return describe(attempt, parent, message)


# -- recheck ------------------------------------------------------------------------------------


async def recheck_attempt(
    ctx: AppContext, reference_number: str, actor: Principal
) -> dict[str, Any]:
    """Ask the gateway about a pending or needs_review attempt now and apply a final answer."""
    attempt = await _find(ctx, reference_number)
    if attempt.state not in RECHECKABLE:
        raise AttemptReviewRefused(
            messages.ATTEMPT_NOT_OPEN.format(reference=reference_number, state=attempt.state)
        )
    config = attempt.gateway_config
    if "inquiry" not in supported_operations(config):
        raise AttemptReviewRefused(messages.ATTEMPT_CANNOT_ASK.format(reference=reference_number))
    now = _now()
    async with ctx.db.write() as session:
        claimed = await attempt_repository.claim_recheck(
            session,
            attempt.id,
            states=RECHECKABLE,
            now=now,
            lease_until=now + timedelta(seconds=call_budget_seconds(config, ctx.settings)),
        )
    if not claimed:
        raise AttemptReviewRefused(messages.ATTEMPT_IN_FLIGHT.format(reference=reference_number))
    message: str | None = None
    try:
        result = await _ask(ctx, attempt.id)
        if result.outcome in FINAL:
            state = await apply_answer(ctx, attempt.id, result, open_states=RECHECKABLE)
        else:
            state, message = attempt.state, messages.ATTEMPT_NO_ANSWER
    finally:
        async with ctx.db.write() as session:
            await attempt_repository.release(session, attempt.id)
    async with ctx.db.write() as session:
        parent = await session.get_one(PaymentTransaction, attempt.transaction_id)
        audit.record(
            session,
            actor,
            "attempt.recheck",
            state,
            parent,
            reference_number=reference_number,
            gateway_outcome=result.outcome.value,
            previous_state=attempt.state,
            **_operator_of(actor),
        )
    return await _current(ctx, attempt.id, message)


# -- resolve ------------------------------------------------------------------------------------


async def resolve_attempt(
    ctx: AppContext,
    reference_number: str,
    *,
    outcome: str,
    reason: str,
    evidence: str,
    actor: Principal,
    amount: int | None = None,
) -> dict[str, Any]:
    """Settle an attempt in review with an operator's decision. ``amount`` (minor units, the
    attempt's currency, fee included) is what the gateway's dashboard shows was charged; by
    default the amount the attempt asked for."""
    if outcome not in OUTCOMES:
        raise AttemptReviewRefused(messages.ATTEMPT_BAD_OUTCOME)
    if not reason or not reason.strip():
        raise AttemptReviewRefused(messages.REVIEW_REASON_REQUIRED)
    found = await _find(ctx, reference_number)
    async with ctx.db.write() as session:
        parent = await repository.lock_parent_by_id(session, found.transaction_id)
        attempt = await attempt_repository.lock(session, found.id)
        if attempt.resolution:
            raise AttemptReviewRefused(
                messages.ATTEMPT_ALREADY_RESOLVED.format(
                    reference=reference_number,
                    outcome=attempt.resolution.get("outcome"),
                    actor=attempt.resolution.get("actor"),
                )
            )
        kind = review_kind(attempt)
        if kind is None:
            raise AttemptReviewRefused(
                messages.ATTEMPT_NOT_IN_REVIEW.format(
                    reference=reference_number, state=attempt.state
                )
            )
        if attempt.inquiry_claimed_until is not None and attempt.inquiry_claimed_until > _now():
            raise AttemptReviewRefused(
                messages.ATTEMPT_IN_FLIGHT.format(reference=reference_number)
            )
        asked = attempt.amount
        charged = asked if amount is None else amount
        if kind == "flagged":
            if outcome != "paid":
                raise AttemptReviewRefused(
                    messages.ATTEMPT_PAID_STAYS_PAID.format(reference=reference_number)
                )
            charged = asked  # already applied; the operator acknowledges it
        elif outcome == "paid":
            if parent.state not in LATE_SUCCESS_STATES:
                raise AttemptReviewRefused(
                    messages.ATTEMPT_SESSION_CLOSED.format(
                        reference=reference_number, state=parent.state
                    )
                )
            if charged < attempt.fee or charged <= 0:
                raise AttemptReviewRefused(
                    messages.ATTEMPT_AMOUNT_BELOW_FEE.format(
                        fee=format_minor(attempt.fee, attempt.currency_code),
                        currency=attempt.currency_code,
                    )
                )
        resolution = {
            "outcome": outcome,
            "reason": reason.strip(),
            "evidence": evidence.strip(),
            "review": kind,
            "previous_state": attempt.state,
            "asked": format_minor(asked, attempt.currency_code),
            "charged": format_minor(charged, attempt.currency_code) if outcome == "paid" else None,
            "currency_code": attempt.currency_code,
            "actor": actor.audit_actor,
            "actor_type": actor.kind,
            "at": _now().isoformat(),
            **_operator_of(actor),
        }
        if kind != "flagged":
            # Settled exactly as the gateway's own answer would be: reopened, then the decision
            # applied (state, totals, payment webhook).
            attempt.amount = charged
            attempt.state = "pending"
            answer = GatewayResult(
                Outcome.SUCCESS if outcome == "paid" else Outcome.FAILED,
                raw=dict(attempt.pg_response or {}),
                pg_params=dict(attempt.pg_params or {}),
                message=messages.ATTEMPT_RESOLVED_MESSAGE.format(outcome=outcome),
            )
            await apply_attempt_result(session, parent, attempt, answer)
        attempt.resolution = resolution
        audit.record(
            session,
            actor,
            "attempt.resolve",
            outcome,
            parent,
            reference_number=reference_number,
            state=attempt.state,
            review=kind,
            reason=resolution["reason"],
            evidence=resolution["evidence"],
            asked=resolution["asked"],
            charged=resolution["charged"],
            **_operator_of(actor),
        )
        log.warning(
            "payment attempt %s resolved as %s by %s", reference_number, outcome, actor.audit_actor
        )
        return describe(attempt, parent)


def _operator_of(actor: Principal) -> dict[str, Any]:
    """The CLI records the operator named with --operator together with the OS user."""
    return {key: actor.initiator[key] for key in ("operator", "os_user") if key in actor.initiator}
