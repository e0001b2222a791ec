"""Settles operations whose outcome is open by asking the gateway about their reference.

A ``processing`` operation (the gateway did not confirm, or the process died mid-operation) is
asked about once it is older than ``reconcile_after_seconds``; a ``queued`` refund is followed
until it is final. Several reconcilers may run at once (server processes, ``payops reconcile``):
each claims an operation with a conditional UPDATE on its lease column before asking, so no
operation is asked about, or settled, twice at the same time. Answers that settle nothing are
retried with backoff; after ``reconcile_max_attempts`` the operation becomes ``needs_review``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from payops.connectors.base import GatewayResult, OperationRequest, Outcome
from payops.connectors.registry import connector_class
from payops.context import AppContext
from payops.db.models import GatewayConfig, Operation
from payops.domain.states import OPEN
from payops.gateways.service import ask_gateway, supported_operations
from payops.operations import repository as operations
from payops.operations.service import settle
from payops.transactions import repository
from payops.transactions.service import payment_ref

log = logging.getLogger(__name__)

OPEN_STATES = OPEN


@dataclass
class ReconcileSummary:
    examined: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def add(self, outcome: str) -> None:
        self.examined += 1
        self.outcomes[outcome] += 1


def _now() -> datetime:
    return datetime.now(UTC)


async def candidates(ctx: AppContext, limit: int) -> list[int]:
    now = _now()
    threshold = now - timedelta(seconds=ctx.settings.reconcile_after_seconds)
    async with ctx.db.read() as session:
        return await operations.reconcile_candidates(
            session, processing_before=threshold, now=now, limit=limit
        )


async def claim(ctx: AppContext, operation_id: int) -> bool:
    """Take the lease on one operation; False if another reconciler holds it or it settled."""
    now = _now()
    async with ctx.db.write() as session:
        return await operations.take_lease(
            session,
            operation_id,
            states=OPEN_STATES,
            now=now,
            until=now + timedelta(seconds=ctx.settings.reconcile_lease_seconds),
        )


async def _request_for(
    ctx: AppContext, operation_id: int
) -> tuple[Operation, OperationRequest | None]:
    async with ctx.db.read() as session:
        op = await session.get_one(Operation, operation_id)
        attempt = await repository.successful_attempt(
            session, op.transaction_id, op.gateway_config_id
        )
        if attempt is None:
            return op, None
        known = await operations.gateway_ids_of_others(session, op.transaction_id, op.id)
        return op, OperationRequest(
            operation=op.operation,
            reference_number=op.reference_number,
            amount=op.amount,
            currency_code=op.currency_code,
            payment=payment_ref(attempt),
            gateway_refs=dict(op.gateway_refs or {}),
            known_gateway_ids=known,
        )


async def _ask(ctx: AppContext, op: Operation, request: OperationRequest) -> GatewayResult:
    return await ask_gateway(
        op.gateway_config, ctx.settings, lambda c: c.inquire_operation(request), op.reference_number
    )


async def _unresolved(
    ctx: AppContext, operation_id: int, *, review: bool, counts: bool = True
) -> str:
    """Record an ask that settled nothing: back off, or hand the operation to a human.

    ``counts`` is False when the gateway said the operation is still in progress: that is an
    answer, so it does not move the operation towards review; only silence does.
    """
    async with ctx.db.write() as session:
        op = await session.get_one(
            Operation, operation_id, with_for_update=True, populate_existing=True
        )
        if op.state not in OPEN_STATES:
            return op.state
        if counts:
            op.reconcile_attempts += 1
        if op.state == "queued" and review:
            return await _queued_to_review(session, op)  # its gateway cannot be asked
        if op.state == "processing" and (
            review or op.reconcile_attempts >= ctx.settings.reconcile_max_attempts
        ):
            op.state = "needs_review"
            op.claimed_until = None
            log.warning("operation %s needs review", op.reference_number)
            return "needs_review"
        backoff = min(
            ctx.settings.reconcile_after_seconds * 2 ** min(op.reconcile_attempts, 10), 3600.0
        )
        op.claimed_until = _now() + timedelta(seconds=backoff)
        return "still_open"


async def reconcile_operation(ctx: AppContext, operation_id: int) -> str:
    """Ask the gateway about one claimed operation and settle it; returns what happened."""
    op, request = await _request_for(ctx, operation_id)
    if request is None or "inquiry" not in supported_operations(op.gateway_config):
        return await _unresolved(ctx, operation_id, review=True)
    result = await _ask(ctx, op, request)
    if (
        result.outcome == Outcome.UNKNOWN
        and op.operation == "refund"
        and op.state == "processing"
        and not _documents_refund_status(op.gateway_config)
    ):
        # A refund whose reply was lost at a gateway that cannot be asked about refunds (KNET,
        # QPay): waiting and asking again cannot tell, and resending could refund twice.
        return await _unresolved(ctx, operation_id, review=True)
    if result.outcome in (Outcome.SUCCESS, Outcome.FAILED) or (
        result.outcome == Outcome.PENDING and op.operation == "refund" and op.state == "processing"
    ):
        async with ctx.db.write() as session:
            settled, _ = await settle(session, operation_id, result)
            # The settled row is locked without its relationships: the configuration is op's.
            if settled.state == "queued" and not _waits_for_refund_status(
                ctx, settled, op.gateway_config
            ):
                return await _queued_to_review(session, settled)
            return settled.state
    if op.state == "queued" and not _waits_for_refund_status(ctx, op, op.gateway_config):
        async with ctx.db.write() as session:
            queued = await session.get_one(
                Operation, operation_id, with_for_update=True, populate_existing=True
            )
            return await _queued_to_review(session, queued)
    return await _unresolved(
        ctx, operation_id, review=False, counts=result.outcome != Outcome.PENDING
    )


def _waits_for_refund_status(ctx: AppContext, op: Operation, config: GatewayConfig) -> bool:
    """Is a queued refund still worth waiting for? Not when its gateway documents no refund
    status (nothing will ever finish it), nor after PAYOPS_QUEUED_REVIEW_AFTER."""
    if not _documents_refund_status(config):
        return False
    queued_at = op.queued_at or op.settled_at or op.created_at
    return _now() - queued_at < ctx.settings.queued_review_after


async def _queued_to_review(session: Any, op: Operation) -> str:
    """A queued refund without a final answer goes to an operator. It stays reserved, and its
    child stays ``refund_queued`` (``queued_at`` is kept), until resolved."""
    if op.state != "queued":
        return op.state
    op.state = "needs_review"
    op.queued_at = op.queued_at or op.settled_at or op.created_at
    op.claimed_until = None
    log.warning("queued refund %s needs review", op.reference_number)
    return "needs_review"


def _documents_refund_status(config: GatewayConfig) -> bool:
    return connector_class(config.connector).reports_refund_status(config.options or {})


async def reconcile_once(
    ctx: AppContext,
    *,
    limit: int = 500,
    on_progress: Callable[[int, int], None] | None = None,
) -> ReconcileSummary:
    summary = ReconcileSummary()
    ids = await candidates(ctx, limit)
    for index, operation_id in enumerate(ids, start=1):
        if await claim(ctx, operation_id):
            summary.add(await reconcile_operation(ctx, operation_id))
        if on_progress:
            on_progress(index, len(ids))
    return summary
