"""The payment webhook tried before the customer is redirected (decisions §10, issue 16).

Ottu sends the payment webhook before it redirects the customer and lets the merchant's answer
decide: 200 → on to ``redirect_url``; 201 → the payment summary page; anything else → the summary
page, and the webhook is retried later. PayOps does the same through the outbox row itself, so
the try is an ordinary delivery attempt: the event is claimed with the delivery worker's lease,
sent and recorded by the worker's own functions, and a failure is left to the usual retries.

The try happens only when no older event of the transaction is still pending (events of one
transaction go out in order), and the customer never waits longer than the deadline: a try still
running then finishes in the background and is recorded as usual.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import TYPE_CHECKING

from payops.webhooks import delivery, repository

if TYPE_CHECKING:  # the context is built from this package: name its type only
    from payops.context import AppContext

log = logging.getLogger(__name__)

MAX_DEADLINE_SECONDS = 10.0
# Kept for the outer wait beyond the send's own timeout, so a normal send is recorded in time.
RECORDING_MARGIN_SECONDS = 0.5


async def _event_to_try(ctx: AppContext, transaction_id: int, target_url: str) -> int | None:
    """The newest pending payment event of the transaction for ``target_url``, unless an older
    event of the same transaction is still pending."""
    async with ctx.db.read() as session:
        event = await repository.newest_pending_payment_event(session, transaction_id, target_url)
        if event is None:
            return None
        blocked = await repository.has_older_pending(session, transaction_id, event.id)
        return None if blocked else event.id


async def _answer_of(ctx: AppContext, event_id: int) -> int | None:
    async with ctx.db.read() as session:
        return await repository.last_status_code(session, event_id)


async def try_payment_webhook(ctx: AppContext, transaction_id: int, webhook_url: str) -> int | None:
    """Try the transaction's pending payment webhook once, now. Returns the receiver's HTTP
    status, or None when it was not tried (an older event is pending, a worker holds it) or did
    not answer in time."""
    deadline = min(ctx.settings.webhook_redirect_deadline_seconds, MAX_DEADLINE_SECONDS)
    loop = asyncio.get_running_loop()
    started = loop.time()
    event_id = await _event_to_try(ctx, transaction_id, webhook_url)
    if event_id is None or not await delivery.claim(ctx, event_id):
        return None
    remaining = deadline - (loop.time() - started)
    if remaining <= RECORDING_MARGIN_SECONDS:
        # The claim is released by its lease; the worker delivers the event later.
        return None
    # The worker's own send, with a timeout that fits what is left of the deadline.
    hurried = dataclasses.replace(
        ctx,
        settings=ctx.settings.model_copy(
            update={"webhook_timeout_seconds": remaining - RECORDING_MARGIN_SECONDS}
        ),
    )
    task = asyncio.create_task(delivery.deliver_event(hurried, event_id))
    ctx.background.add(task)
    task.add_done_callback(ctx.background.discard)
    try:
        await asyncio.wait_for(asyncio.shield(task), remaining)
    except TimeoutError:
        log.info("payment webhook %s not answered before the redirect deadline", event_id)
        return None
    except Exception as exc:  # noqa: BLE001 - the customer still gets a page
        log.warning("payment webhook %s try failed: %s", event_id, type(exc).__name__)
        return None
    return await _answer_of(ctx, event_id)


async def last_payment_answer(ctx: AppContext, transaction_id: int, target_url: str) -> int | None:
    """What the receiver answered the transaction's latest payment webhook, when it was
    delivered (a repeated return decides the redirect as the first one did)."""
    async with ctx.db.read() as session:
        event_id = await repository.newest_delivered_payment_event_id(
            session, transaction_id, target_url
        )
    return None if event_id is None else await _answer_of(ctx, event_id)
