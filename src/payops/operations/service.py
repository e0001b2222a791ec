"""Capture, refund, void, cancel, expire and delete on a parent transaction.

External operations follow decisions §5: the intent is committed under the parent's lock after the
rules (with in-flight reservations) pass; the gateway is called outside any DB transaction; the
result is settled in a second transaction. An outcome nobody can confirm stays ``processing`` for
the reconciler, and the client hears 504, never success and never failure.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession

from payops import audit, crashpoints
from payops.auth.permissions import OPERATION_PERMISSIONS
from payops.auth.service import SETTLEMENT, Principal
from payops.connectors.base import Connector, GatewayResult, OperationRequest, Outcome
from payops.context import AppContext
from payops.db.direct import DirectConnection
from payops.db.engine import DATABASE_UNAVAILABLE
from payops.db.models import GatewayConfig, Operation, PaymentTransaction
from payops.domain import messages
from payops.domain.rules import (
    DeleteKind,
    RuleViolation,
    Totals,
    check_external,
    check_internal,
)
from payops.domain.states import RESERVING, UNSETTLED
from payops.errors import (
    ApiError,
    GatewayUnconfirmed,
    OperationFailed,
    PermissionDenied,
    TrackingKeyInProgress,
    TrackingKeyMismatch,
    field_error,
)
from payops.gateways.cache import CachedGateway
from payops.gateways.service import (
    ask_gateway,
    ask_gateway_for_operations,
    call_budget_seconds,
    gateway_facts,
)
from payops.ids import new_event_id, new_reference_number, new_session_id
from payops.money import AmountError, format_minor, parse_amount
from payops.operations import alerts
from payops.transactions import repository
from payops.transactions.lookup import Lookup, find_or_fail
from payops.transactions.presenters import operation_body, payment_body
from payops.transactions.service import payment_ref
from payops.webhooks import outbox

log = logging.getLogger(__name__)
# A settlement that could not be written: the database failed or is unreachable.
SETTLE_FAILURES: tuple[type[Exception], ...] = (SQLAlchemyError, *DATABASE_UNAVAILABLE)


async def totals_of(
    session: AsyncSession, parent: PaymentTransaction, held: dict[str, int] | None = None
) -> Totals:
    if held is None:
        held = await repository.reservations(session, parent.id)
    return totals_with(parent, held)


def totals_with(parent: Any, held: dict[str, int]) -> Totals:
    """The rules' view of a parent (an ORM object or the operation path's row) and what its
    open operations hold."""
    return Totals(
        state=parent.state,
        currency_code=parent.currency_code,
        operation_mode=parent.operation_mode,
        amount=parent.amount,
        fee=parent.fee,
        captured=parent.captured,
        refunded=parent.refunded,
        voided=parent.voided,
        reserved_capture=held["capture"],
        reserved_refund=held["refund"],
        void_in_flight=held["void_count"] > 0,
    )


async def _audit_refusal(
    ctx: AppContext, principal: Principal, operation: str, lookup: Lookup, error: ApiError
) -> None:
    async with ctx.db.write() as session:
        parent = await repository.find_parent(
            session, order_no=lookup.order_no, session_id=lookup.session_id
        )
        audit.record(
            session,
            principal,
            operation,
            "refused",
            parent,
            order_no=lookup.label,
            status=error.status_code,
            body=error.body,
        )


async def run_operation(
    ctx: AppContext,
    principal: Principal,
    lookup: Lookup,
    operation: str,
    raw_amount: Any = None,
    tracking_key: str | None = None,
) -> dict[str, Any]:
    try:
        if operation in ("capture", "refund", "void"):
            return await _run_external(ctx, principal, lookup, operation, raw_amount, tracking_key)
        return await _run_internal(ctx, principal, lookup, operation)
    except (OperationFailed, TrackingKeyInProgress, TrackingKeyMismatch) as error:
        await _audit_refusal(ctx, principal, operation, lookup, error)
        raise


# -- external operations ------------------------------------------------------------------------


async def _run_external(
    ctx: AppContext,
    principal: Principal,
    lookup: Lookup,
    operation: str,
    raw_amount: Any,
    tracking_key: str | None,
) -> dict[str, Any]:
    async with ctx.db.intent_slots, ctx.db.direct_write() as conn:
        # Rows, not ORM objects, on the driver's own connection (db/direct.py, issue 11).
        # SQLite reads the successful attempt and the reservations with the parent; PostgreSQL
        # must read them after the parent's lock is taken, in a statement of their own (below).
        parent, attempt, held = await _lock_for_operation(
            conn, lookup, operation, with_attempt=not conn.postgresql
        )
        requested = None
        if raw_amount is not None and operation != "void":
            try:
                requested = parse_amount(raw_amount, parent.currency_code)
            except AmountError as exc:
                raise field_error("amount", str(exc)) from None
        fingerprint = request_fingerprint(operation, requested, parent.currency_code)
        if tracking_key and await repository.tracking_key_in_use(conn, parent.id, tracking_key):
            return await _replay(ctx, parent, tracking_key, fingerprint, principal)
        cached = await _gateway_of(ctx, parent)
        if conn.postgresql:
            attempt, held = await repository.successful_attempt_row_and_reservations(
                conn, parent.id, parent.gateway_config_id
            )
        if cached is None or attempt is None:
            raise OperationFailed(messages.NOT_ALLOWED, operation)
        gateway = cached.config
        try:
            amount = check_external(
                operation,
                totals_with(parent, held),
                gateway_facts(gateway),
                requested,
            )
        except RuleViolation as violation:
            raise OperationFailed(violation.message, operation) from None
        now = datetime.now(UTC)
        merchant, settings_version = await _merchant_settings(ctx, parent.settings_version)
        intent = Intent(
            parent_id=parent.id,
            gateway_config_id=gateway.id,
            operation=operation,
            amount=amount,
            currency_code=parent.currency_code,
            reference_number=new_reference_number(),
            child_session_id=new_session_id(),
            initiator=principal.initiator,
            stamp=now,
            parent=parent,
            merchant=merchant,
            settings_version=settings_version,
        )
        intent.id = await repository.insert_intent(
            conn,
            {
                "transaction_id": parent.id,
                "gateway_config_id": gateway.id,
                "operation": operation,
                "state": "processing",
                "amount": amount,
                "currency_code": parent.currency_code,
                "reference_number": intent.reference_number,
                "child_session_id": intent.child_session_id,
                "tracking_key": tracking_key,
                "request_fingerprint": fingerprint if tracking_key else None,
                "source": "input",
                "initiator": principal.initiator,
                # The in-flight call holds the reconciliation lease, so no reconciler asks the
                # gateway about it before this call has had its full time; settling releases it.
                "claimed_until": now
                + timedelta(seconds=call_budget_seconds(gateway, ctx.settings)),
                "created_at": now,
                "updated_at": now,
            },
            repository.audit_values(
                "audit_",
                actor_type=principal.kind,
                actor=principal.audit_actor,
                action=operation,
                result="intent",
                parent=parent,
                at=now,
                details={"reference_number": intent.reference_number, "amount": amount},
            ),
            last=True,
        )
        request = OperationRequest(
            operation=operation,
            reference_number=intent.reference_number,
            amount=amount,
            currency_code=parent.currency_code,
            payment=payment_ref(attempt),
        )
    # The intent is committed. From here a crash leaves a `processing` row for the reconciler.
    task = asyncio.create_task(_call_and_settle(ctx, cached, intent, request))
    ctx.background.add(task)
    task.add_done_callback(ctx.background.discard)
    settled, parent, key = await asyncio.shield(task)
    return _answer(settled, parent, key, gateway)


@dataclass
class Intent:
    """What the operation path knows of the operation it has just written."""

    parent_id: int
    gateway_config_id: int
    operation: str
    amount: int
    currency_code: str
    reference_number: str
    child_session_id: str
    initiator: dict[str, Any]
    stamp: datetime  # its created_at and updated_at
    # The locked parent's row (its columns that settling reads do not change once it is paid),
    # and the merchant settings with their version, as the intent saw them.
    parent: Any = None
    merchant: dict[str, str] = field(default_factory=dict)
    settings_version: int = 0
    id: int = 0


@dataclass
class SettledOperation:
    """An operation as the lean settlement wrote it: the columns the presenter and the answer
    read (``Operation``'s names)."""

    id: int
    operation: str
    state: str
    amount: int
    currency_code: str
    reference_number: str
    child_session_id: str
    initiator: dict[str, Any]
    pg_response: dict[str, Any]
    pg_params: dict[str, Any]
    message: str
    settled_at: datetime
    queued_at: datetime | None
    source: str = "input"
    response: dict[str, Any] | None = None


async def _lock_for_operation(
    conn: DirectConnection, lookup: Lookup, operation: str, *, with_attempt: bool = False
) -> tuple[Any, Any, dict[str, int]]:
    """``find_or_fail`` for the operation path: the locked parent as a row, with the versions of
    its gateway configuration and of the merchant settings (for the process's caches), and with
    ``with_attempt`` (SQLite) its successful attempt and reservations, else None and {}."""
    if with_attempt:
        found = await repository.lock_parent_row_with_attempt(
            conn, order_no=lookup.order_no, session_id=lookup.session_id
        )
        parent, attempt, held = found if found is not None else (None, None, {})
    else:
        parent, attempt, held = (
            await repository.lock_parent_row(
                conn, order_no=lookup.order_no, session_id=lookup.session_id
            ),
            None,
            {},
        )
    if parent is None:
        raise OperationFailed(lookup.not_found_message, operation)
    if lookup.names_other_than(parent):
        raise OperationFailed(messages.LOOKUP_MISMATCH, operation)
    return parent, attempt, held


async def _gateway_of(ctx: AppContext, parent: Any) -> CachedGateway | None:
    """The parent's gateway configuration and connector from the process's cache, read (beside
    the operation's transaction) only when the version read with the parent's lock is not the
    cache's."""
    if parent.gateway_config_id is None:
        return None
    found = ctx.gateways.current(parent.gateway_config_id, parent.gateway_version)
    if found is None:
        async with ctx.db.read() as session:
            found = await ctx.gateways.get(
                session, parent.gateway_config_id, parent.gateway_version
            )
    return found


async def _merchant_settings(ctx: AppContext, version: int) -> tuple[dict[str, str], int]:
    """The merchant settings and their version, from the process's cache while the version read
    with the parent's lock is the cache's; else read now, beside the operation's transaction
    (the settlement checks that the version it was built with is still current)."""
    values = ctx.merchant_settings.current(version)
    if values is not None:
        return values, version
    async with ctx.db.read() as session:
        values = await ctx.merchant_settings.get(session, version)
        return values, cast(int, ctx.merchant_settings.version)


async def _replay(
    ctx: AppContext, parent: Any, tracking_key: str, fingerprint: str, principal: Principal
) -> dict[str, Any]:
    """The answer to a request whose Tracking-Key an operation of this parent holds. Read
    beside the caller's transaction, which holds the parent's lock (on SQLite the database's):
    nothing settles that operation meanwhile, as settling takes the same lock first."""
    async with ctx.db.read() as session:
        prior = await repository.operation_by_tracking_key(session, parent.id, tracking_key)
        if prior is None:  # freed between the probe and this read: the client retries
            raise TrackingKeyInProgress()
        _check_replay(prior, fingerprint, principal)
        if prior.state == "needs_review" and prior.response is not None:
            return prior.response  # a queued refund awaiting an operator: still queued
        # Rebuilt, not the stored copy: the replay shows the operation's latest state in
        # exactly the ExternalOperation shape (rows stored by older versions carried more
        # fields).
        key = await outbox.merchant_setting(session, outbox.HMAC_KEY_SETTING)
        return operation_body(prior, parent, key)


def request_fingerprint(operation: str, requested: int | None, currency_code: str) -> str:
    """What a Tracking-Key is bound to: the operation and the amount as requested, normalised to
    the currency's decimals ("refund:5.000"), or "absent" when the request named no amount."""
    shown = "absent" if requested is None else format_minor(requested, currency_code)
    return f"{operation}:{shown}"


def _check_replay(prior: Operation, fingerprint: str, principal: Principal) -> None:
    """May this request get the stored result of the operation that holds its Tracking-Key?"""
    if prior.request_fingerprint is not None:
        mismatch = prior.request_fingerprint != fingerprint
    else:  # stored before fingerprints existed: matched on the operation alone
        mismatch = not fingerprint.startswith(f"{prior.operation}:")
    if mismatch:
        raise TrackingKeyMismatch()
    # A queued refund waiting for an operator is still "queued" to the merchant: it replays.
    if prior.state in UNSETTLED and not (prior.state == "needs_review" and prior.response):
        raise TrackingKeyInProgress()
    # The fingerprint names the operation, whose permission the endpoint checked; kept explicit
    # so a replay can never show one operation's result to a caller without its permission.
    if not principal.can(OPERATION_PERMISSIONS[prior.operation]):
        raise PermissionDenied()


async def _call_and_settle(
    ctx: AppContext,
    gateway: CachedGateway,
    intent: Intent,
    request: OperationRequest,
) -> tuple[Any, Any, str]:
    crashpoints.reach(crashpoints.AFTER_INTENT)
    result = await call_gateway(ctx, gateway.config, request, gateway.connector)
    crashpoints.reach(crashpoints.AFTER_GATEWAY)
    settled: Any
    try:
        try:
            async with ctx.db.direct_alone() as conn:
                settled, parent, key = await _settle_fresh(conn, ctx, gateway, intent, result)
        except repository.SettleConflict:
            settled = None
        if settled is None:  # touched since the intent, or an answer the lean path leaves
            async with ctx.db.write() as session:
                settled, parent = await settle(
                    session, intent.id, result, ctx=ctx, parent_id=intent.parent_id
                )
                # settle() has just checked the cache against the database: no statement here.
                key = (await ctx.merchant_settings.get(session, ctx.merchant_settings.version)).get(
                    outbox.HMAC_KEY_SETTING, ""
                )
    except SETTLE_FAILURES as exc:
        # The gateway has answered but the answer could not be recorded (the database is down:
        # asyncpg raises OSErrors, not SQLAlchemy errors): the operation stays processing under
        # its lease and the reconciler will learn the truth from the gateway.
        log.error("settling %s failed: %s", request.reference_number, type(exc).__name__)
        raise GatewayUnconfirmed(request.operation, request.reference_number) from None
    crashpoints.reach(crashpoints.AFTER_SETTLE)
    return settled, parent, key


_TOTAL_OF = {"capture": "captured", "refund": "refunded", "void": "voided"}


async def _settle_fresh(
    conn: DirectConnection,
    ctx: AppContext,
    gateway: CachedGateway,
    intent: Intent,
    result: GatewayResult,
) -> tuple[SettledOperation | None, Any, str]:
    """``settle`` for the operation this request has just written, on the condition that nobody
    touched it since its intent and that the gateway configuration and merchant settings the
    answer is built with (the intent's) are still current; else ``repository.SettleConflict``
    (nothing written) and the caller settles the general way. PostgreSQL: one statement, which
    also takes the parent's lock. SQLite: a statement per write (the transaction holds the
    database's lock). The parent's columns it reads do not change once the parent is paid.
    Returns no operation (and writes nothing) for an answer it leaves to ``settle``: an unknown
    outcome."""
    if result.outcome == Outcome.SUCCESS:
        state = "succeeded"
    elif result.outcome == Outcome.PENDING and intent.operation == "refund":
        state = "queued"
    elif result.outcome == Outcome.FAILED:
        state = "failed"  # never queued nor resolved by an operator: not "rejected"
    else:
        return None, None, ""
    parent, merchant, settings_version = intent.parent, intent.merchant, intent.settings_version
    key = merchant.get(outbox.HMAC_KEY_SETTING, "")
    now = datetime.now(UTC)
    op = SettledOperation(
        id=intent.id,
        operation=intent.operation,
        state=state,
        amount=intent.amount,
        currency_code=intent.currency_code,
        reference_number=intent.reference_number,
        child_session_id=intent.child_session_id,
        initiator=intent.initiator,
        pg_response=result.raw,
        pg_params=result.pg_params,
        message=result.message,
        settled_at=now,
        queued_at=now if state == "queued" else None,
    )
    values: dict[str, Any] = {
        "state": state,
        "pg_response": result.raw,
        "pg_params": result.pg_params,
        "gateway_refs": dict(result.gateway_refs),
        "message": result.message,
        "claimed_until": None,
        "settled_at": now,
        "queued_at": op.queued_at,
        "updated_at": now,
    }
    events: list[dict[str, Any]] = []
    if state != "failed":
        op.response = values["response"] = operation_body(
            cast(Any, op), parent, key, gateway.config
        )
        for target in {parent.webhook_url, merchant.get(outbox.OPERATIONS_URL_SETTING, "")} - {""}:
            events.append(
                {
                    "event_id": new_event_id(),
                    "kind": "operation",
                    "target_url": target,
                    "payload": op.response,
                    "transaction_id": parent.id,
                }
            )
    await repository.settle_fresh_operation(
        conn,
        operation_id=intent.id,
        stamp=intent.stamp,
        values=values,
        parent_id=parent.id,
        total=_TOTAL_OF[intent.operation] if state == "succeeded" else None,
        amount=intent.amount,
        audit_entry=repository.audit_values(
            "audit_",
            actor_type=SETTLEMENT.kind,
            actor=SETTLEMENT.audit_actor,
            action=intent.operation,
            result=state,
            parent=parent,
            at=now,
            details={"reference_number": intent.reference_number, "amount": intent.amount},
        ),
        events=events,
        gateway_id=intent.gateway_config_id,
        gateway_version=gateway.version,
        settings_version=settings_version,
    )
    return op, parent, key


async def call_gateway(
    ctx: AppContext, gateway: Any, request: OperationRequest, connector: Connector | None = None
) -> GatewayResult:
    return await ask_gateway(
        gateway, ctx.settings, lambda c: c.run(request), request.reference_number, connector
    )


async def settle(
    session: AsyncSession,
    operation_id: int,
    result: GatewayResult,
    *,
    resolution: dict[str, Any] | None = None,
    ctx: AppContext | None = None,
    parent_id: int | None = None,
) -> tuple[Operation, PaymentTransaction]:
    """Apply a gateway's answer to a processing (or queued) operation, exactly once.

    ``resolution`` is an operator's decision on a needs_review operation (operations/review.py),
    applied exactly as the gateway's answer would be and kept with the operation. With ``ctx``
    the gateway configuration and merchant settings come from the process's caches, checked
    against the versions read with the parent's lock; with ``parent_id`` the operation is not
    read before the locks are taken."""
    if parent_id is None:
        parent_id = await repository.operation_parent_id(session, operation_id)
    # Lock order everywhere: parent, then operation.
    found = await repository.lock_parent_for_operation(session, parent_id=parent_id)
    assert found is not None
    parent, gateway_version, settings_version = found
    op = await repository.lock_operation_row(session, operation_id)
    if ctx is not None:
        merchant = await ctx.merchant_settings.get(session, settings_version)
    else:
        merchant, _ = await outbox.all_merchant_settings(session)
    if op.state not in RESERVING:
        # Already settled by someone else (a reconciler, a retry). An answer that contradicts
        # an operator's resolution changes nothing, but a human must hear of it.
        if op.resolution and resolution is None:
            alerts.report_contradiction(session, op, parent, result)
        return op, parent
    op.claimed_until = None
    if resolution is not None:
        op.resolution = resolution
    before = op.state
    op.pg_response = result.raw
    op.pg_params = result.pg_params
    op.gateway_refs = {**(op.gateway_refs or {}), **result.gateway_refs}
    op.message = result.message
    if result.outcome == Outcome.SUCCESS:
        op.state = "succeeded"
        if op.operation == "capture":
            parent.captured += op.amount
        elif op.operation == "refund":
            parent.refunded += op.amount
        else:
            parent.voided += op.amount
    elif result.outcome == Outcome.PENDING and op.operation == "refund":
        op.state = "queued"
        op.queued_at = op.queued_at or datetime.now(UTC)
    elif result.outcome == Outcome.FAILED:
        # A refund the gateway had queued, or one an operator resolved as failed, is "rejected":
        # the merchant was told of it (queued), so it hears the end too.
        was_accepted = before == "queued" or op.queued_at is not None or resolution is not None
        op.state = "rejected" if op.operation == "refund" and was_accepted else "failed"
    if op.state != before:
        op.settled_at = datetime.now(UTC)
        audit.record(
            session,
            SETTLEMENT,
            op.operation,
            op.state,
            parent,
            reference_number=op.reference_number,
            amount=op.amount,
        )
        if op.state in ("succeeded", "queued", "rejected"):
            cached = (
                await ctx.gateways.get(
                    session,
                    op.gateway_config_id,
                    gateway_version if op.gateway_config_id == parent.gateway_config_id else None,
                )
                if ctx is not None
                else None
            )
            gateway = (
                cached.config
                if cached is not None
                else await session.get_one(GatewayConfig, op.gateway_config_id)
            )
            op.response = operation_body(
                op, parent, merchant.get(outbox.HMAC_KEY_SETTING, ""), gateway
            )
            await _notify_operation(
                session, parent, op.response, merchant.get(outbox.OPERATIONS_URL_SETTING, "")
            )
    return op, parent


async def _notify_operation(
    session: AsyncSession,
    parent: PaymentTransaction,
    body: dict[str, Any],
    operations_url: str | None = None,
) -> None:
    if operations_url is None:
        operations_url = await outbox.merchant_setting(session, outbox.OPERATIONS_URL_SETTING)
    for target in {parent.webhook_url, operations_url} - {""}:
        outbox.enqueue(
            session, kind="operation", target_url=target, payload=body, transaction_id=parent.id
        )


def _answer(
    op: Operation | SettledOperation,
    parent: PaymentTransaction,
    hmac_key: str,
    gateway: GatewayConfig | None = None,
) -> dict[str, Any]:
    if op.state in ("succeeded", "queued"):
        if isinstance(op, SettledOperation) and op.response is not None:
            return op.response  # built (and signed) by this request's settlement just now
        return operation_body(cast(Any, op), parent, hmac_key, gateway)
    if op.state in ("failed", "rejected"):
        raise OperationFailed(
            op.message or messages.GATEWAY_DECLINED, op.operation, pg_response=op.pg_response or {}
        )
    raise GatewayUnconfirmed(op.operation, op.reference_number)


# -- operations done on the gateway's own dashboard ---------------------------------------------


async def record_gateway_side_operations(ctx: AppContext, parent_id: int) -> int:
    """Record, with ``source: "pg"``, the successful operations the gateway's books show for this
    payment that PayOps did not send (done on the gateway's dashboard). Returns how many."""
    async with ctx.db.read() as session:
        parent = await session.get(PaymentTransaction, parent_id)
        attempt = (
            await repository.successful_attempt(session, parent.id, parent.gateway_config_id)
            if parent
            else None
        )
        if parent is None or attempt is None or parent.gateway_config is None:
            return 0
        gateway = parent.gateway_config
    listed = await ask_gateway_for_operations(gateway, ctx.settings, payment_ref(attempt))
    if not listed:
        return 0
    recorded = 0
    async with ctx.db.write() as session:
        parent = await repository.lock_parent_by_id(session, parent_id)
        ours = await repository.operations(session, parent_id)
        if any(op.state in repository.RESERVING_STATES for op in ours):
            # One of our own operations is unresolved: its gateway entry would look foreign.
            # Record nothing until the reconciler has settled it.
            return 0
        known = {str(v) for v in (attempt.gateway_refs or {}).values()}
        for op in ours:
            known.add(op.reference_number)
            known.update(str(v) for v in (op.gateway_refs or {}).values())
        key = await outbox.merchant_setting(session, outbox.HMAC_KEY_SETTING)
        for seen in listed:
            if seen.outcome != Outcome.SUCCESS or seen.gateway_id in known:
                continue
            known.add(seen.gateway_id)
            op = Operation(
                transaction_id=parent.id,
                gateway_config_id=gateway.id,
                operation=seen.operation,
                state="succeeded",
                amount=seen.amount,
                currency_code=parent.currency_code,
                reference_number=new_reference_number(),
                child_session_id=new_session_id(),
                source="pg",
                initiator={},
                gateway_refs={"gateway_id": seen.gateway_id},
                message="Performed on the gateway's dashboard",
                settled_at=datetime.now(UTC),
            )
            session.add(op)
            if seen.operation == "capture":
                parent.captured += seen.amount
            elif seen.operation == "refund":
                parent.refunded += seen.amount
            else:
                parent.voided += seen.amount
            await session.flush()
            await session.refresh(op, ["gateway_config"])
            op.response = operation_body(op, parent, key)
            await _notify_operation(session, parent, op.response)
            audit.record(
                session,
                SETTLEMENT,
                seen.operation,
                "recorded",
                parent,
                reference_number=op.reference_number,
                gateway_id=seen.gateway_id,
                amount=seen.amount,
                source="pg",
            )
            recorded += 1
    return recorded


# -- internal operations ------------------------------------------------------------------------

DONE_BODY = {"detail": messages.DONE, "message": messages.DONE, "result": "success"}


async def _run_internal(
    ctx: AppContext, principal: Principal, lookup: Lookup, operation: str
) -> dict[str, Any]:
    async with ctx.db.write() as session:
        parent = await find_or_fail(session, lookup, operation, for_update=True)
        try:
            outcome = check_internal(operation, parent.state)
            if operation in ("cancel", "expire") and await repository.attempt_in_review(
                session, parent.id
            ):
                raise RuleViolation(messages.NOT_ALLOWED)  # an operator decides first (§13)
        except RuleViolation as violation:
            raise OperationFailed(violation.message, operation) from None
        audit.record(
            session,
            principal,
            operation,
            "success",
            parent,
            previous_state=parent.state,
            outcome=str(outcome),
        )
        if outcome == DeleteKind.SOFT:
            parent.deleted_at = datetime.now(UTC)
        elif outcome == DeleteKind.HARD:
            await session.delete(parent)
        else:
            parent.state = outcome
            if parent.webhook_url:
                key = await outbox.merchant_setting(session, outbox.HMAC_KEY_SETTING)
                outbox.enqueue(
                    session,
                    kind="payment",
                    target_url=parent.webhook_url,
                    payload=payment_body(
                        parent,
                        await repository.attempts(session, parent.id),
                        await repository.operations(session, parent.id),
                        key,
                    ),
                    transaction_id=parent.id,
                )
    return {**DONE_BODY, "operation": operation}
