"""Incoming gateway notifications: verify, match, then confirm by asking the gateway.

A notification is verified by the configuration's connector (its secret or signature), and is then
only a hint: PayOps asks the gateway itself before changing anything. Open operations named by
the notification (or on the payment it names) are reconciled; a payment that can still
acknowledge a late success is inquired.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from payops.connectors.base import Notification, NotificationRejected
from payops.context import AppContext
from payops.db.models import GatewayConfig
from payops.domain.states import INQUIRABLE, OPEN
from payops.gateways import repository as gateways
from payops.gateways.service import connector_for
from payops.inquiry.service import ask_gateways_about
from payops.notifications import repository
from payops.operations import reconciler, review
from payops.operations.service import record_gateway_side_operations

log = logging.getLogger(__name__)


class NotAccepted(Exception):
    """This configuration's connector takes no notifications."""


async def gateway_named(ctx: AppContext, pg_code: str) -> GatewayConfig | None:
    async with ctx.db.read() as session:
        return await gateways.get_by_code(session, pg_code)


def _names_one_of(known: Mapping[str, Any], named: Mapping[str, Any], *, refunds: bool) -> bool:
    """Any one shared identifier is enough: gateways name a payment by whichever id the event is
    about (invoice id, payment id, order id). ``refunds``: compare only the ``refund…`` ids."""
    return any(
        key in known and str(known[key]) == str(value)
        for key, value in named.items()
        if value and (not refunds or key.startswith("refund"))
    )


async def matching_parents(ctx: AppContext, gateway_id: int, notice: Notification) -> set[int]:
    """The parent transactions the notification names, by PayOps reference or gateway ids."""
    parents: set[int] = set()
    async with ctx.db.read() as session:
        if notice.reference:
            for found in (
                await repository.operation_parent(session, gateway_id, notice.reference),
                await repository.attempt_parent(session, gateway_id, notice.reference),
            ):
                if found is not None:
                    parents.add(found)
        if notice.gateway_refs:
            # Gateway ids live in JSON; compare in Python over this gateway's attempts.
            for parent_id, refs, reference in await repository.recent_attempt_refs(
                session, gateway_id
            ):
                known = {**(refs or {}), "order_id": (refs or {}).get("order_id", reference)}
                if _names_one_of(known, notice.gateway_refs, refunds=False):
                    parents.add(parent_id)
            # An event about one operation (a refund named by the gateway's own refund id) is
            # matched against the ids earlier answers gave that operation.
            for parent_id, op_refs in await repository.recent_operation_refs(session, gateway_id):
                if _names_one_of(op_refs or {}, notice.gateway_refs, refunds=True):
                    parents.add(parent_id)
    return parents


async def confirm(ctx: AppContext, parent_id: int) -> None:
    """Ask the gateway about everything still open on this parent."""
    async with ctx.db.read() as session:
        state = await repository.parent_state(session, parent_id)
        if state is None:
            return
        open_ops = await repository.operation_ids_in(session, parent_id, OPEN)
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


async def receive(
    ctx: AppContext, gateway: GatewayConfig, headers: dict[str, str], body: bytes
) -> bool:
    """Verify and act on one notification. False when it is not authentic; ``NotAccepted`` when
    the gateway sends none."""
    connector = connector_for(gateway, ctx.settings)
    try:
        notice = connector.parse_notification(headers, body)
    except NotImplementedError:
        raise NotAccepted() from None
    except NotificationRejected as exc:
        log.warning("notification for %s refused: %s", gateway.pg_code, exc)
        return False
    finally:
        await connector.aclose()
    for parent_id in await matching_parents(ctx, gateway.id, notice):
        await confirm(ctx, parent_id)
    return True
