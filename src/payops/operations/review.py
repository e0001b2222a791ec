"""Operator review of operations no machine could settle (decisions §13).

An operation in ``needs_review`` keeps its amount reserved until someone learns the truth. Two ways
out, both through the same idempotent ``settle`` a gateway answer takes (totals, child
transaction, operation webhook):

- **recheck**: ask the gateway now about a ``processing``, ``queued`` or ``needs_review``
  operation. Asking about an operation an operator already resolved only verifies the
  resolution: a contradicting answer changes nothing and raises an alert.
- **resolve**: an operator's decision (``succeeded`` or ``failed``), taken after checking the
  gateway's own dashboard, with a reason and the evidence, under the parent's lock. Only for
  ``needs_review``; resolving twice is refused.

Both are audited with the actor (a Basic or dashboard user holding ``payment.resolve``, or the
CLI's ``--operator`` together with the OS user), the time, the reason and the evidence.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from payops import audit
from payops.auth.service import SETTLEMENT, Principal
from payops.connectors.base import GatewayResult, Outcome
from payops.context import AppContext
from payops.db.models import Operation, PaymentTransaction
from payops.domain import messages
from payops.domain.states import RESERVING
from payops.errors import ApiError
from payops.gateways.service import call_budget_seconds, supported_operations
from payops.money import format_minor
from payops.operations import alerts, reconciler
from payops.operations import repository as operations
from payops.operations.service import settle
from payops.transactions import repository
from payops.transactions.presenters import child_state

log = logging.getLogger(__name__)

OUTCOMES = ("succeeded", "failed")
RECHECKABLE = RESERVING


class ReviewRefused(ApiError):
    """A recheck or resolution that cannot be done: 400 with a message saying why."""

    def __init__(self, detail: str) -> None:
        super().__init__({"detail": detail, "result": "failed"})


class OperationNotFound(ApiError):
    status_code = 404

    def __init__(self) -> None:
        super().__init__({"detail": messages.REVIEW_UNKNOWN, "result": "failed"})


def _now() -> datetime:
    return datetime.now(UTC)


def describe(
    op: Operation, parent: PaymentTransaction, message: str | None = None
) -> dict[str, Any]:
    """An operation as the review API, CLI and dashboard show it."""
    return {
        "reference_number": op.reference_number,
        "operation": op.operation,
        "state": op.state,
        "child_state": child_state(op),
        "amount": format_minor(op.amount, op.currency_code),
        "currency_code": op.currency_code,
        "order_no": parent.order_no or "",
        "session_id": parent.session_id,
        "pg_code": op.gateway_config.pg_code if op.gateway_config else "",
        "created_at": op.created_at.isoformat() if op.created_at else "",
        "reconcile_attempts": op.reconcile_attempts,
        "resolution": op.resolution,
        "message": message if message is not None else op.message,
    }


async def _find(ctx: AppContext, reference_number: str) -> Operation:
    async with ctx.db.read() as session:
        op = await operations.by_reference(session, reference_number)
    if op is None:
        raise OperationNotFound()
    return op


async def _current(ctx: AppContext, operation_id: int, message: str | None) -> dict[str, Any]:
    async with ctx.db.read() as session:
        op = await session.get_one(Operation, operation_id, populate_existing=True)
        parent = await session.get_one(PaymentTransaction, op.transaction_id)
        return describe(op, parent, message)


async def review_queue(
    ctx: AppContext, *, include_processing_older_than: float | None = None
) -> list[dict[str, Any]]:
    """Operations waiting for a human (``needs_review``), oldest first; with
    ``include_processing_older_than`` also ``processing`` ones older than that many seconds."""
    threshold = None
    if include_processing_older_than is not None:
        threshold = _now() - timedelta(seconds=include_processing_older_than)
    async with ctx.db.read() as session:
        rows = await operations.in_review(session, processing_before=threshold)
        return [describe(op, parent) for op, parent in rows]


# -- recheck ------------------------------------------------------------------------------------


async def _claim(ctx: AppContext, op: Operation) -> bool:
    """Take the reconciliation lease, so no reconciler (and no other recheck) asks at once, and
    an operation whose own gateway call is still in flight is never asked about too early."""
    now = _now()
    lease = now + timedelta(seconds=call_budget_seconds(op.gateway_config, ctx.settings))
    async with ctx.db.write() as session:
        return await operations.take_lease(session, op.id, states=RECHECKABLE, now=now, until=lease)


async def _release(ctx: AppContext, operation_id: int) -> None:
    async with ctx.db.write() as session:
        await operations.release_lease(session, operation_id)


async def _audit(
    ctx: AppContext, actor: Principal, action: str, result: str, operation_id: int, **details: Any
) -> None:
    async with ctx.db.write() as session:
        op = await session.get_one(Operation, operation_id)
        parent = await session.get(PaymentTransaction, op.transaction_id)
        audit.record(
            session, actor, action, result, parent, reference_number=op.reference_number, **details
        )


async def recheck_operation(
    ctx: AppContext, reference_number: str, actor: Principal
) -> dict[str, Any]:
    """Ask the gateway about the operation now and settle it through the normal path."""
    op = await _find(ctx, reference_number)
    if op.state not in RECHECKABLE and not op.resolution:
        raise ReviewRefused(
            messages.REVIEW_NOT_OPEN.format(reference=reference_number, state=op.state)
        )
    _, request = await reconciler._request_for(ctx, op.id)
    if request is None or "inquiry" not in supported_operations(op.gateway_config):
        raise ReviewRefused(messages.REVIEW_CANNOT_ASK.format(reference=reference_number))
    if op.state not in RECHECKABLE:
        _, answer = await _verify_resolution(ctx, op, request, actor)
        return answer
    if not await _claim(ctx, op):
        raise ReviewRefused(messages.REVIEW_IN_FLIGHT.format(reference=reference_number))
    message: str | None = None
    try:
        result = await reconciler._ask(ctx, op, request)
        final = result.outcome in (Outcome.SUCCESS, Outcome.FAILED) or (
            result.outcome == Outcome.PENDING
            and op.operation == "refund"
            and op.state == "processing"
        )
        if final:
            async with ctx.db.write() as session:
                settled, _ = await settle(session, op.id, result)
                state = settled.state
        else:
            state = op.state
            message = messages.REVIEW_NO_ANSWER
    finally:
        await _release(ctx, op.id)
    await _audit(
        ctx,
        actor,
        "recheck",
        state,
        op.id,
        gateway_outcome=result.outcome.value,
        previous_state=op.state,
    )
    return await _current(ctx, op.id, message)


async def _verify_resolution(
    ctx: AppContext, op: Operation, request: Any, actor: Principal
) -> tuple[bool, dict[str, Any]]:
    """Ask the gateway about an operation an operator resolved: nothing changes; an answer that
    contradicts the resolution raises the alert."""
    result = await reconciler._ask(ctx, op, request)
    async with ctx.db.write() as session:
        parent = await repository.lock_parent_by_id(session, op.transaction_id)
        locked = await repository.lock_operation(session, op.id)
        contradicted = alerts.report_contradiction(session, locked, parent, result)
        audit.record(
            session,
            actor,
            "recheck",
            locked.state,
            parent,
            reference_number=locked.reference_number,
            gateway_outcome=result.outcome.value,
            contradicts_resolution=contradicted,
        )
    message = (
        messages.REVIEW_CONTRADICTED if contradicted else messages.REVIEW_RESOLUTION_STANDS
    ).format(outcome=result.outcome.value)
    return contradicted, await _current(ctx, op.id, message)


async def verify_resolutions(ctx: AppContext, parent_id: int) -> int:
    """Ask the gateway again about every operation on this payment that an operator resolved
    (after a gateway notification about it). Changes nothing; returns how many answers
    contradicted their resolution (each raised the alert)."""
    async with ctx.db.read() as session:
        resolved = [
            op
            for op in await repository.operations(session, parent_id)
            if op.resolution and op.state not in RECHECKABLE
        ]
    contradicted = 0
    for op in resolved:
        _, request = await reconciler._request_for(ctx, op.id)
        if request is None or "inquiry" not in supported_operations(op.gateway_config):
            continue
        contradicted += (await _verify_resolution(ctx, op, request, SETTLEMENT))[0]
    return contradicted


# -- resolve ------------------------------------------------------------------------------------


async def resolve_operation(
    ctx: AppContext,
    reference_number: str,
    *,
    outcome: str,
    reason: str,
    evidence: str,
    actor: Principal,
) -> dict[str, Any]:
    """Settle a ``needs_review`` operation with an operator's decision, exactly as the gateway's
    answer would: ``succeeded`` adds to the totals and notifies ``success``; ``failed`` releases
    the reservation (a refund becomes ``rejected`` and is notified as such)."""
    if outcome not in OUTCOMES:
        raise ReviewRefused(messages.REVIEW_BAD_OUTCOME)
    if not reason or not reason.strip():
        raise ReviewRefused(messages.REVIEW_REASON_REQUIRED)
    found = await _find(ctx, reference_number)
    async with ctx.db.write() as session:
        # Lock order everywhere: parent, then operation.
        parent = await repository.lock_parent_by_id(session, found.transaction_id)
        op = await repository.lock_operation(session, found.id)
        if op.resolution:
            raise ReviewRefused(
                messages.REVIEW_ALREADY_RESOLVED.format(
                    reference=reference_number,
                    outcome=op.resolution.get("outcome"),
                    actor=op.resolution.get("actor"),
                )
            )
        if op.state != "needs_review":
            raise ReviewRefused(
                messages.REVIEW_NOT_IN_REVIEW.format(reference=reference_number, state=op.state)
            )
        resolution = {
            "outcome": outcome,
            "reason": reason.strip(),
            "evidence": evidence.strip(),
            "actor": actor.audit_actor,
            "actor_type": actor.kind,
            "at": _now().isoformat(),
            **_operator_of(actor),
        }
        answer = GatewayResult(
            Outcome.SUCCESS if outcome == "succeeded" else Outcome.FAILED,
            raw=dict(op.pg_response or {}),
            pg_params=dict(op.pg_params or {}),
            message=messages.REVIEW_RESOLVED_MESSAGE.format(outcome=outcome),
            gateway_refs={},
        )
        settled, parent = await settle(session, op.id, answer, resolution=resolution)
        audit.record(
            session,
            actor,
            "resolve",
            outcome,
            parent,
            reference_number=reference_number,
            state=settled.state,
            reason=resolution["reason"],
            evidence=resolution["evidence"],
            **_operator_of(actor),
        )
        log.warning(
            "operation %s resolved as %s by %s", reference_number, outcome, actor.audit_actor
        )
        return describe(settled, parent)


def _operator_of(actor: Principal) -> dict[str, Any]:
    """The CLI records the operator named with --operator together with the OS user."""
    return {key: actor.initiator[key] for key in ("operator", "os_user") if key in actor.initiator}
