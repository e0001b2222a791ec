"""The reconciler (decisions §5, §8) with the sandbox gateway, on SQLite and PostgreSQL.

The sandbox chooses an operation's fate by the last three digits of its amount in minor units:
992 refund queued (final after ``sandbox_queue_seconds``, 0.3 s in tests), 993 performed but the
reply is lost, 994 timeout with nothing done, 995 HTTP 500 with nothing done. Its own ledger is
what its inquiry reports, so the reconciler can learn the truth after a lost reply.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from payops.config import Settings
from payops.connectors.sandbox import connector as sandbox_connector
from payops.connectors.sandbox.ledger import SandboxLedger
from payops.context import AppContext
from payops.db.models import Operation
from payops.operations import reconciler
from payops.operations.reconciler import claim, reconcile_once
from payops.transactions import repository
from payops.transactions.presenters import child_state
from tests.helpers import Seed

ORDER = "ORD-1"
PATH = f"/b/pbl/v1/operation/{ORDER}"
UNCONFIRMED = "The payment gateway did not confirm the operation; it will be reconciled"


async def refund(
    client: httpx.AsyncClient, auth: dict[str, str], amount: str, tracking_key: str | None = None
) -> httpx.Response:
    headers = dict(auth)
    if tracking_key:
        headers["Tracking-Key"] = tracking_key
    return await client.post(PATH, json={"operation": "refund", "amount": amount}, headers=headers)


def assert_pending(response: httpx.Response) -> str:
    assert response.status_code == 504, response.text
    body = response.json()
    assert body["detail"] == UNCONFIRMED
    assert body["operation"] == "refund"
    assert body["result"] == "pending"
    assert set(body) == {"detail", "operation", "result", "reference_number"}
    return str(body["reference_number"])


async def only_operation(seed: Seed) -> Operation:
    [op] = await seed.operations(ORDER)
    return op


async def refunded_and_reserved(ctx: AppContext) -> tuple[int, int]:
    async with ctx.db.read() as session:
        parent = await repository.find_parent(session, order_no=ORDER)
        assert parent is not None
        held = await repository.reservations(session, parent.id)
        return parent.refunded, held["refund"]


def ledger_row(settings: Settings, reference: str) -> dict[str, Any] | None:
    return SandboxLedger(settings.effective_sandbox_ledger).operation(reference)


@pytest.fixture
async def paid(seed: Seed) -> dict[str, str]:
    """A KWD 100.000 purchase paid at the sandbox; returns API-key auth headers."""
    auth = await seed.api_key()
    parent = await seed.transaction("100.000", order_no=ORDER)
    assert parent.state == "paid"
    return auth


async def test_performed_but_timed_out_settles_as_succeeded(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
    paid: dict[str, str],
) -> None:
    reference = assert_pending(await refund(client, paid, "10.993"))
    op = await only_operation(seed)
    assert (op.state, op.reference_number) == ("processing", reference)
    assert await refunded_and_reserved(ctx) == (0, 10_993)
    row = ledger_row(settings, reference)
    assert row is not None and row["amount"] == 10_993, "the sandbox did perform it"

    summary = await reconcile_once(ctx)
    assert (summary.examined, dict(summary.outcomes)) == (1, {"succeeded": 1})
    op = await only_operation(seed)
    assert op.state == "succeeded"
    assert child_state(op) == "refunded"
    assert op.settled_at is not None and op.claimed_until is None
    assert await refunded_and_reserved(ctx) == (10_993, 0)

    # Settled operations are not asked about again, and totals never move twice.
    assert (await reconcile_once(ctx)).examined == 0
    assert await refunded_and_reserved(ctx) == (10_993, 0)


@pytest.mark.parametrize("trigger", ["994", "995"])
async def test_nothing_done_settles_as_failed_and_releases_the_reservation(
    trigger: str,
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
    paid: dict[str, str],
) -> None:
    amount = f"10.{trigger}"
    minor = 10_000 + int(trigger)
    reference = assert_pending(await refund(client, paid, amount, tracking_key="k-1"))
    assert await refunded_and_reserved(ctx) == (0, minor)
    assert ledger_row(settings, reference) is None, "the sandbox did nothing"
    # While the outcome is open, the reserved amount is not refundable.
    over = await refund(client, paid, "100.000")
    assert over.status_code == 400, over.text
    remaining = f"{(100_000 - minor) // 1000}.{(100_000 - minor) % 1000:03d}"
    assert over.json()["detail"] == f"Amount exceeds the refundable amount ({remaining} KWD)"
    # ... and the Tracking-Key is busy.
    busy = await refund(client, paid, amount, tracking_key="k-1")
    assert busy.status_code == 409, busy.text
    assert busy.json()["operation"] == "operation_tracking"

    summary = await reconcile_once(ctx)
    assert dict(summary.outcomes) == {"failed": 1}
    ops = await seed.operations(ORDER)
    assert [(o.reference_number, o.state) for o in ops] == [(reference, "failed")]
    assert child_state(ops[0]) is None
    assert await refunded_and_reserved(ctx) == (0, 0)

    # The whole amount is refundable again, and it goes through once.
    full = await refund(client, paid, "100.000")
    assert full.status_code == 200, full.text
    assert full.json()["result"] == "success"
    assert await refunded_and_reserved(ctx) == (100_000, 0)
    assert ledger_row(settings, reference) is None


async def test_queued_refund_is_followed_until_final(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
    paid: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert settings.sandbox_queue_seconds == pytest.approx(0.3)
    # The sandbox decides "still queued" by its own clock. Hold that clock still while the refund
    # is queued and first reconciled, so a slow machine cannot turn "before" into "after".
    frozen = time.time()
    monkeypatch.setattr(sandbox_connector, "time", SimpleNamespace(time=lambda: frozen))
    response = await refund(client, paid, "10.992")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["result"], body["txn"]["state"]) == ("queued", "refund_queued")
    op = await only_operation(seed)
    assert op.state == "queued"
    assert await refunded_and_reserved(ctx) == (0, 10_992)

    # Before the gateway's queue time: asked, still queued, still reserved, totals unchanged.
    for _ in range(2):
        summary = await reconcile_once(ctx)
        assert (summary.examined, dict(summary.outcomes)) == (1, {"still_open": 1})
        op = await only_operation(seed)
        assert op.state == "queued"
        assert child_state(op) == "refund_queued"
        assert await refunded_and_reserved(ctx) == (0, 10_992)

    # After it (the real clock again): refunded, counted once.
    monkeypatch.undo()
    row = ledger_row(settings, op.reference_number)
    assert row is not None and row["status"] == "queued"
    await asyncio.sleep(
        max(0.0, row["created"] + settings.sandbox_queue_seconds - time.time()) + 0.05
    )
    summary = await reconcile_once(ctx)
    assert dict(summary.outcomes) == {"succeeded": 1}
    op = await only_operation(seed)
    assert op.state == "succeeded"
    assert child_state(op) == "refunded"
    assert await refunded_and_reserved(ctx) == (10_992, 0)
    assert (await reconcile_once(ctx)).examined == 0
    assert await refunded_and_reserved(ctx) == (10_992, 0)
    parent = await seed.find(ORDER)
    assert parent is not None and parent.refunded == 10_992


async def test_concurrent_reconcilers_settle_once(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
    paid: dict[str, str],
) -> None:
    reference = assert_pending(await refund(client, paid, "10.993"))
    # A second context plays a second process (its own engine and connection pool).
    other = AppContext.build(settings)
    try:
        first, second = await asyncio.gather(reconcile_once(ctx), reconcile_once(other))
    finally:
        await other.aclose()
    assert first.examined + second.examined == 1, (first, second)
    assert first.outcomes + second.outcomes == {"succeeded": 1}
    op = await only_operation(seed)
    assert (op.reference_number, op.state) == (reference, "succeeded")
    assert await refunded_and_reserved(ctx) == (10_993, 0)


async def test_many_concurrent_reconcilers_settle_several_operations_once_each(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
    paid: dict[str, str],
) -> None:
    amounts = ["10.993", "5.993", "1.994", "2.995"]
    for amount in amounts:
        assert_pending(await refund(client, paid, amount))
    others = [AppContext.build(settings) for _ in range(3)]
    try:
        summaries = await asyncio.gather(reconcile_once(ctx), *(reconcile_once(o) for o in others))
    finally:
        for other in others:
            await other.aclose()
    assert sum(s.examined for s in summaries) == len(amounts)
    total = sum((s.outcomes for s in summaries), start=type(summaries[0].outcomes)())
    assert total == {"succeeded": 2, "failed": 2}
    assert await refunded_and_reserved(ctx) == (10_993 + 5_993, 0)


async def test_two_claims_on_one_operation_exactly_one_wins(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
    paid: dict[str, str],
) -> None:
    assert_pending(await refund(client, paid, "10.993"))
    op = await only_operation(seed)
    other = AppContext.build(settings)
    try:
        won = await asyncio.gather(claim(ctx, op.id), claim(other, op.id), claim(ctx, op.id))
    finally:
        await other.aclose()
    assert sorted(won) == [False, False, True]
    # The lease holder is the only one that may act: a later claim still loses.
    assert await claim(ctx, op.id) is False
    # The candidate list skips a leased operation, so a full pass does nothing meanwhile.
    assert (await reconcile_once(ctx)).examined == 0
    assert (await only_operation(seed)).state == "processing"
    # The winner settles it; afterwards nothing can be claimed.
    assert await reconciler.reconcile_operation(ctx, op.id) == "succeeded"
    assert await claim(ctx, op.id) is False
    assert await refunded_and_reserved(ctx) == (10_993, 0)


async def test_gateway_without_inquiry_goes_to_needs_review(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
) -> None:
    auth = await seed.api_key()
    await seed.transaction(
        "100.000", order_no=ORDER, gateway_code="sandbox-no-inquiry", enabled_operations=["refund"]
    )
    reference = assert_pending(await refund(client, auth, "10.993", tracking_key="k-1"))
    assert ledger_row(settings, reference) is not None  # performed, but nobody may ask

    summary = await reconcile_once(ctx)
    assert dict(summary.outcomes) == {"needs_review": 1}
    op = await only_operation(seed)
    assert op.state == "needs_review"
    assert op.reconcile_attempts == 1
    # Never retried blindly: not a candidate any more, the amount stays reserved, key stays busy.
    assert (await reconcile_once(ctx)).examined == 0
    assert await refunded_and_reserved(ctx) == (0, 10_993)
    busy = await refund(client, auth, "10.993", tracking_key="k-1")
    assert busy.status_code == 409, busy.text
    assert (await only_operation(seed)).state == "needs_review"
