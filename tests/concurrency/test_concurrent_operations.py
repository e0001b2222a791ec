"""Concurrent capture/refund/void through the HTTP app (decisions §3–§6, §8).

Every test runs on SQLite and PostgreSQL (the ``backend`` fixture). Requests are fired at once with
``asyncio.gather`` against the ASGI app, authenticated with an API key (no argon2 per request).

What must hold under any interleaving (decisions §5): captures never exceed the authorized total,
refunds never exceed the refundable amount, a void and a capture never both succeed, no gateway
call is made twice for one operation, and the parent's totals equal the sums of its succeeded
operations. The sandbox gateway keeps its own ledger (a separate SQLite file), which is checked
against PayOps's records: exactly one ledger row per accepted operation, and no other.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest

from payops.connectors.sandbox.connector import SandboxConnector
from payops.context import AppContext
from payops.db.models import Operation
from payops.operations.reconciler import reconcile_once
from payops.transactions import repository
from tests.e2e import post_op
from tests.helpers import Seed

# A guard against hangs (a deadlock must fail, not stall CI); each test takes a fraction of it.
pytestmark = pytest.mark.timeout(120)

NOT_ALLOWED = "Operation is not allowed"
TRACKING_IN_PROGRESS = {
    "detail": "An operation with this Tracking-Key is in progress",
    "operation": "operation_tracking",
    "result": "failed",
}
OPEN_STATES = ("processing", "queued", "needs_review")


# -- helpers ------------------------------------------------------------------------------------


def failure(detail: str, operation: str) -> dict[str, str]:
    return {"detail": detail, "operation": operation, "result": "failed"}


def exceeds(kind: str, amount: str, currency: str = "KWD") -> str:
    return f"Amount exceeds the {kind} amount ({amount} {currency})"


def ledger_operations(ctx: AppContext, payment_reference: str) -> list[dict[str, Any]]:
    """The sandbox gateway's own record of the operations it performed on one payment."""
    conn = sqlite3.connect(ctx.settings.effective_sandbox_ledger)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT * FROM operations WHERE payment_reference = ? ORDER BY created",
            (payment_reference,),
        ).fetchall()
        return [dict(row) for row in rows]
    finally:
        conn.close()


async def payment_reference(ctx: AppContext, order_no: str) -> str:
    async with ctx.db.read() as session:
        parent = await repository.find_parent(session, order_no=order_no)
        assert parent is not None
        attempts = [
            a for a in await repository.attempts(session, parent.id) if a.state == "success"
        ]
    assert len(attempts) == 1, attempts
    return attempts[0].reference_number


async def check_books(ctx: AppContext, seed: Seed, order_no: str) -> list[Operation]:
    """Totals = sums of succeeded operations; nothing left open; ledger = succeeded operations.

    Returns the parent's operations.
    """
    parent = await seed.find(order_no)
    assert parent is not None
    operations = await seed.operations(order_no)

    def succeeded(kind: str) -> int:
        return sum(
            op.amount for op in operations if op.operation == kind and op.state == "succeeded"
        )

    assert (parent.captured, parent.refunded, parent.voided) == (
        succeeded("capture"),
        succeeded("refund"),
        succeeded("void"),
    )
    assert [op for op in operations if op.state in OPEN_STATES] == []
    assert parent.captured <= parent.amount + parent.fee
    if parent.operation_mode == "authorize":
        assert parent.refunded <= min(parent.captured, parent.amount)
        assert not (parent.voided and parent.captured)
    else:
        assert parent.refunded <= parent.amount

    ledger = ledger_operations(ctx, await payment_reference(ctx, order_no))
    done = {op.reference_number: op for op in operations if op.state == "succeeded"}
    assert len(ledger) == len({row["reference"] for row in ledger})
    assert {row["reference"] for row in ledger} == set(done), (
        "the gateway's ledger and PayOps disagree on which operations were performed"
    )
    for row in ledger:
        op = done[row["reference"]]
        assert (row["operation"], row["amount"], row["currency"]) == (
            op.operation,
            op.amount,
            op.currency_code,
        )
        # the sandbox keeps a queued refund's row as "queued" and reports it done once it is old
        # enough (decisions §8)
        queued = op.operation == "refund" and op.amount % 1000 == 992
        assert row["status"] == ("queued" if queued else "done")
    return operations


@pytest.fixture
async def auth(seed: Seed) -> dict[str, str]:
    return await seed.api_key()


@pytest.fixture
def gateway_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, int]]:
    """Every capture/refund/void sent to the sandbox gateway: (operation, reference, minor)."""
    calls: list[tuple[str, str, int]] = []
    original = SandboxConnector.run

    async def spy(self: SandboxConnector, request: Any) -> Any:
        calls.append((request.operation, request.reference_number, request.amount))
        return await original(self, request)

    monkeypatch.setattr(SandboxConnector, "run", spy)
    return calls


# -- many partial operations racing for the same money ------------------------------------------


async def test_concurrent_partial_refunds_never_over_refund(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    auth: dict[str, str],
    gateway_calls: list[tuple[str, str, int]],
) -> None:
    await seed.transaction("10.000", "KWD", order_no="ORD-R")
    responses = await asyncio.gather(
        *(post_op(client, auth, "refund", "0.070", order_no="ORD-R") for _ in range(200))
    )

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 142, 400: 58}, statuses  # floor(10000 / 70) = 142
    refused = [r.json() for r in responses if r.status_code == 400]
    # After 142 refunds of 0.070, 0.060 remains: every refusal names exactly that.
    expected = failure(exceeds("refundable", "0.060"), "refund")
    assert all(body == expected for body in refused), refused
    accepted = [r.json() for r in responses if r.status_code == 200]
    assert all(body["result"] == "success" and body["amount"] == "0.070" for body in accepted)

    operations = await check_books(ctx, seed, "ORD-R")
    parent = await seed.find("ORD-R")
    assert parent is not None
    assert parent.refunded == 142 * 70
    assert [op.state for op in operations] == ["succeeded"] * 142
    references = sorted(op.reference_number for op in operations)
    assert sorted(body["reference_number"] for body in accepted) == references
    # One gateway call per operation, never two for the same reference.
    assert sorted(ref for _, ref, _ in gateway_calls) == references


async def test_concurrent_partial_captures_never_over_capture(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    auth: dict[str, str],
    gateway_calls: list[tuple[str, str, int]],
) -> None:
    # capturable = amount + fee = 10.250 → floor(10250 / 70) = 146 captures, 0.030 left over
    await seed.transaction("10.000", "KWD", order_no="ORD-C", mode="authorize", fee="0.250")
    responses = await asyncio.gather(
        *(post_op(client, auth, "capture", "0.070", order_no="ORD-C") for _ in range(200))
    )

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 146, 400: 54}, statuses
    refused = [r.json() for r in responses if r.status_code == 400]
    expected = failure(exceeds("capturable", "0.030"), "capture")
    assert all(body == expected for body in refused), refused
    accepted = [r.json() for r in responses if r.status_code == 200]

    operations = await check_books(ctx, seed, "ORD-C")
    parent = await seed.find("ORD-C")
    assert parent is not None
    assert parent.captured == 146 * 70 <= parent.amount + parent.fee
    assert (parent.refunded, parent.voided) == (0, 0)
    assert [op.state for op in operations] == ["succeeded"] * 146
    references = sorted(op.reference_number for op in operations)
    assert sorted(body["reference_number"] for body in accepted) == references
    assert sorted(ref for _, ref, _ in gateway_calls) == references


async def test_void_racing_captures_never_both_succeed(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    auth: dict[str, str],
    gateway_calls: list[tuple[str, str, int]],
) -> None:
    # The void is fired first, in the middle and last among 50 captures of fresh authorizations.
    for round_no, void_at in enumerate((0, 25, 50)):
        order_no = f"ORD-V{round_no}"
        await seed.transaction("10.000", "KWD", order_no=order_no, mode="authorize", fee="0.500")
        requests = [post_op(client, auth, "capture", "0.070", order_no=order_no) for _ in range(50)]
        requests.insert(void_at, post_op(client, auth, "void", order_no=order_no))
        responses = await asyncio.gather(*requests)
        void = responses.pop(void_at)
        captures = Counter(r.status_code for r in responses)

        operations = await check_books(ctx, seed, order_no)
        parent = await seed.find(order_no)
        assert parent is not None
        if void.status_code == 200:
            # The void locked the parent first: every capture is refused by the rules.
            assert void.json()["amount"] == "10.500"
            assert captures == {400: 50}, captures
            assert all(r.json() == failure(NOT_ALLOWED, "capture") for r in responses)
            assert (parent.voided, parent.captured) == (10_500, 0)
            assert [(op.operation, op.state) for op in operations] == [("void", "succeeded")]
        else:
            # A capture got in first: the void is refused by the rules, never by the gateway,
            # and the captures (3.500 in all, well under 10.500) all go through.
            assert void.status_code == 400, void.text
            assert void.json() == failure(NOT_ALLOWED, "void")
            assert captures == {200: 50}, captures
            assert (parent.voided, parent.captured) == (0, 50 * 70)
            assert [(op.operation, op.state) for op in operations] == [
                ("capture", "succeeded")
            ] * 50

    all_ops = [ref for _, ref, _ in gateway_calls]
    assert len(all_ops) == len(set(all_ops))


# -- Tracking-Key under concurrency (decisions §6) -----------------------------------------------


@pytest.mark.parametrize("settings_overrides", [{"sandbox_latency_ms": 300}], ids=["slow-sandbox"])
async def test_concurrent_same_tracking_key_runs_once(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    auth: dict[str, str],
    gateway_calls: list[tuple[str, str, int]],
) -> None:
    assert ctx.settings.sandbox_latency_ms == 300
    await seed.transaction("10.000", "KWD", order_no="ORD-T")
    responses = await asyncio.gather(
        *(
            post_op(client, auth, "refund", "1.000", tracking_key="TK-1", order_no="ORD-T")
            for _ in range(20)
        )
    )

    operations = await seed.operations("ORD-T")
    assert len(operations) == 1, operations
    (op,) = operations
    assert (op.state, op.amount, op.tracking_key) == ("succeeded", 1000, "TK-1")
    statuses = Counter(r.status_code for r in responses)
    assert set(statuses) <= {200, 409}, [(r.status_code, r.text) for r in responses]
    assert statuses[200] >= 1
    for response in responses:
        if response.status_code == 200:
            assert response.json()["reference_number"] == op.reference_number
            assert response.json()["amount"] == "1.000"
        else:
            assert response.json() == TRACKING_IN_PROGRESS
    await check_books(ctx, seed, "ORD-T")
    assert [ref for _, ref, _ in gateway_calls] == [op.reference_number]

    # Once settled, the same key answers from storage: same operation, no new gateway call;
    # a different amount under it is refused (decisions §13).
    other = await post_op(client, auth, "refund", "2.000", tracking_key="TK-1", order_no="ORD-T")
    assert other.status_code == 409, other.text
    retry = await post_op(client, auth, "refund", "1.000", tracking_key="TK-1", order_no="ORD-T")
    assert retry.status_code == 200, retry.text
    assert retry.json()["reference_number"] == op.reference_number
    assert retry.json()["amount"] == "1.000"
    assert len(await seed.operations("ORD-T")) == 1
    assert [ref for _, ref, _ in gateway_calls] == [op.reference_number]
    assert len(ledger_operations(ctx, await payment_reference(ctx, "ORD-T"))) == 1
    parent = await seed.find("ORD-T")
    assert parent is not None and parent.refunded == 1000


# -- unconfirmed operations, queued refunds and several reconcilers at once ----------------------


async def test_concurrent_reconcilers_settle_each_operation_once(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    auth: dict[str, str],
    gateway_calls: list[tuple[str, str, int]],
) -> None:
    """Refunds the sandbox leaves unconfirmed (993 done, 994/995 not done) or queues (992), racing
    each other, then three reconciliation passes at once beside more refunds."""
    await seed.transaction("10.000", "KWD", order_no="ORD-Q")
    amounts = ["0.993", "0.994", "0.995", "0.992", "0.070"] * 6  # 30 asks for 12.132 in all
    first = await asyncio.gather(
        *(post_op(client, auth, "refund", a, order_no="ORD-Q") for a in amounts)
    )
    for response in first:
        assert response.status_code in (200, 400, 504), response.text
        if response.status_code == 504:
            assert response.json()["result"] == "pending"
        elif response.status_code == 400:
            assert response.json()["detail"].startswith("Amount exceeds the refundable amount ("), (
                response.text
            )
    pending = [r.json()["reference_number"] for r in first if r.status_code == 504]
    assert pending, "expected unconfirmed refunds"
    by_ref = {op.reference_number: op for op in await seed.operations("ORD-Q")}
    assert {by_ref[ref].state for ref in pending} == {"processing"}

    second = await asyncio.gather(
        reconcile_once(ctx),
        reconcile_once(ctx),
        reconcile_once(ctx),
        *(post_op(client, auth, "refund", "0.070", order_no="ORD-Q") for _ in range(10)),
    )
    for response in second[3:]:
        assert response.status_code in (200, 400), response.text
    examined = sum(summary.examined for summary in second[:3])
    assert examined >= len(pending)  # every unconfirmed one was asked about (queued ones too)

    await asyncio.sleep(ctx.settings.sandbox_queue_seconds)  # queued refunds become final
    await reconcile_once(ctx)

    operations = await check_books(ctx, seed, "ORD-Q")
    states = Counter((op.amount % 1000, op.state) for op in operations)
    # 993 was done by the gateway, 994/995 were not, 992 was queued and then done
    assert set(states) <= {
        (993, "succeeded"),
        (994, "failed"),
        (995, "failed"),
        (992, "succeeded"),
        (70, "succeeded"),
    }, states
    assert {op.reference_number for op in operations} >= set(pending)
    # one gateway call per operation: the reconcilers only asked, they never sent one again
    sent = [ref for _, ref, _ in gateway_calls]
    assert len(sent) == len(set(sent)) == len(operations)


# -- the settle transaction cannot get the database after the gateway acted ---------------------


async def test_settle_failure_after_gateway_call_answers_pending(
    app: Any,
    seed: Seed,
    ctx: AppContext,
    auth: dict[str, str],
    gateway_calls: list[tuple[str, str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A burst of operations on one parent can hold every pooled connection with intents waiting
    for the parent's lock, so a settle (after the gateway acted) waits past the pool timeout:
    600 concurrent refunds on PostgreSQL (pool 20 + 20, 30 s timeout) end in
    ``sqlalchemy.exc.TimeoutError: QueuePool limit of size 20 overflow 20 reached`` raised from
    ``settle``. Whatever stops the settle, the outcome is then unknown to the client: decisions §5
    says 504 "pending" with the operation left ``processing`` for the reconciler — never a 500.
    The pool timeout is injected here, deterministically."""
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    from payops.operations import reconciler, service

    failures = []

    def without_a_connection(original: Any) -> Any:
        async def settle_without_a_connection(*args: Any, **kwargs: Any) -> Any:
            if not failures:
                failures.append(True)
                raise PoolTimeout(
                    "QueuePool limit of size 20 overflow 20 reached, connection "
                    "timed out, timeout 30.00"
                )
            return await original(*args, **kwargs)

        return settle_without_a_connection

    # The operation path settles its own fresh operation with _settle_fresh (issue 11), and
    # falls back to settle(): the first settlement attempt fails, whichever it is.
    for name in ("_settle_fresh", "settle"):
        monkeypatch.setattr(service, name, without_a_connection(getattr(service, name)))
    await seed.transaction("10.000", "KWD", order_no="ORD-P")
    transport = httpx.ASGITransport(
        app=app, raise_app_exceptions=False, client=("127.0.0.1", 40000)
    )
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        response = await post_op(client, auth, "refund", "1.000", order_no="ORD-P")

    (op,) = await seed.operations("ORD-P")
    assert [ref for _, ref, _ in gateway_calls] == [op.reference_number]  # the gateway acted
    assert (response.status_code, response.json()) == (
        504,
        {
            "detail": "The payment gateway did not confirm the operation; it will be reconciled",
            "operation": "refund",
            "result": "pending",
            "reference_number": op.reference_number,
        },
    ), response.text
    assert op.state == "processing"

    # Once the in-flight call's lease has run out, the reconciler settles it from the gateway's
    # own record, without a second gateway call.
    later = reconciler._now() + timedelta(hours=1)
    monkeypatch.setattr(reconciler, "_now", lambda: later)
    await reconcile_once(ctx)
    (op,) = await check_books(ctx, seed, "ORD-P")
    assert op.state == "succeeded"
    assert len(gateway_calls) == 1
