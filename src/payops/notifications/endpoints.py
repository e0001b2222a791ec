"""Incoming gateway notifications: ``POST /b/pg/notifications/{pg_code}``.

A notification is verified by the configuration's connector (its secret or signature), and is then
only a hint: PayOps asks the gateway itself before changing anything. Open operations named by
the notification (or on the payment it names) are reconciled; a payment that can still
acknowledge a late success is inquired. Answers are deliberately uninformative.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from payops.api.dependencies import get_context
from payops.api.requests import read_limited
from payops.connectors.base import Notification, NotificationRejected
from payops.context import AppContext
from payops.db.models import Operation, PaymentAttempt, PaymentTransaction
from payops.domain.rules import INQUIRABLE
from payops.errors import NotFound
from payops.gateways import repository
from payops.gateways.service import connector_for
from payops.inquiry.service import ask_gateways_about
from payops.operations import reconciler, review
from payops.operations.service import record_gateway_side_operations

log = logging.getLogger(__name__)
router = APIRouter(tags=["gateway notifications"])
NOTIFICATION_LIMIT = 262_144
OPEN = ("processing", "queued")


async def _matching_parents(ctx: AppContext, gateway_id: int, notice: Notification) -> set[int]:
    parents: set[int] = set()
    async with ctx.db.read() as session:
        if notice.reference:
            op = await session.scalar(select(Operation).where(
                Operation.reference_number == notice.reference,
                Operation.gateway_config_id == gateway_id))
            if op is not None:
                parents.add(op.transaction_id)
            attempt = await session.scalar(select(PaymentAttempt).where(
                PaymentAttempt.reference_number == notice.reference,
                PaymentAttempt.gateway_config_id == gateway_id))
            if attempt is not None:
                parents.add(attempt.transaction_id)
        if notice.gateway_refs:
            # Gateway ids live in JSON; compare in Python over this gateway's attempts.
            rows = await session.execute(
                select(PaymentAttempt.transaction_id, PaymentAttempt.gateway_refs,
                       PaymentAttempt.reference_number)
                .where(PaymentAttempt.gateway_config_id == gateway_id)
                .order_by(PaymentAttempt.id.desc()).limit(10_000))
            for parent_id, refs, reference in rows:
                known = {**(refs or {}), "order_id": (refs or {}).get("order_id", reference)}
                # Any one shared identifier is enough: gateways name a payment by whichever
                # id the event is about (invoice id, payment id, order id).
                if any(k in known and str(known[k]) == str(v)
                       for k, v in notice.gateway_refs.items() if v):
                    parents.add(parent_id)
            # An event about one operation (a refund named by the gateway's own refund id) is
            # matched against the ids earlier answers gave that operation.
            ops = await session.execute(
                select(Operation.transaction_id, Operation.gateway_refs)
                .where(Operation.gateway_config_id == gateway_id)
                .order_by(Operation.id.desc()).limit(10_000))
            for parent_id, refs in ops:
                if any(k.startswith("refund") and k in (refs or {}) and str(refs[k]) == str(v)
                       for k, v in notice.gateway_refs.items() if v):
                    parents.add(parent_id)
    return parents


async def _confirm(ctx: AppContext, parent_id: int) -> None:
    async with ctx.db.read() as session:
        parent = await session.get(PaymentTransaction, parent_id)
        if parent is None:
            return
        state = parent.state
        open_ops = list(await session.scalars(select(Operation.id).where(
            Operation.transaction_id == parent_id, Operation.state.in_(OPEN))))
    for operation_id in open_ops:
        if await reconciler.claim(ctx, operation_id):
            await reconciler.reconcile_operation(ctx, operation_id)
    # A later answer about an operation an operator resolved changes nothing, but an answer
    # that contradicts the resolution raises the alert (decisions §13).
    await review.verify_resolutions(ctx, parent_id)
    if state in INQUIRABLE:
        await ask_gateways_about(ctx, parent_id)
    else:
        await record_gateway_side_operations(ctx, parent_id)


async def receive(pg_code: str, request: Request) -> JSONResponse:
    ctx = get_context(request)
    async with ctx.db.read() as session:
        gateway = await repository.get_by_code(session, pg_code)
    if gateway is None:
        raise NotFound()
    body = await read_limited(request, NOTIFICATION_LIMIT)
    connector = connector_for(gateway, ctx.settings)
    try:
        notice = connector.parse_notification(dict(request.headers), body)
    except NotImplementedError:
        raise NotFound() from None
    except NotificationRejected as exc:
        log.warning("notification for %s refused: %s", pg_code, exc)
        return JSONResponse({"detail": "Unable to verify notification"}, status_code=401)
    finally:
        await connector.aclose()
    for parent_id in await _matching_parents(ctx, gateway.id, notice):
        await _confirm(ctx, parent_id)
    return JSONResponse({"detail": "Success"})


RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "Accepted (and confirmed by inquiry where it named something known)"},
    401: {"description": "Not authentic"}, 404: {"description": "No such gateway configuration"},
}
router.add_api_route("/b/pg/notifications/{pg_code}", receive, methods=["POST"],
                     operation_id="gateway_notification", responses=RESPONSES,
                     summary="Receive a gateway's notification (verified, then confirmed by inquiry)")
router.add_api_route("/b/pg/notifications/{pg_code}/", receive, methods=["POST"],
                     operation_id="gateway_notification_slash", responses=RESPONSES,
                     include_in_schema=False)
