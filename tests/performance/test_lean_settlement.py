"""The operation path settles the operation it has just written in one statement on PostgreSQL
(issue 11): conditional on nobody having touched the operation since its intent and on the
gateway configuration and merchant settings the answer was built with still being current.
These tests check that it writes the same books as the general settlement, and that each
condition sends it back to the general settlement instead of writing a stale answer."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from payops.connectors.sandbox.connector import SandboxConnector
from payops.context import AppContext
from payops.db.models import Operation
from payops.webhooks import outbox
from payops.webhooks.signing import sign
from tests.helpers import Seed


async def refund(
    client: httpx.AsyncClient, auth: dict[str, str], order_no: str, amount: str = "1.000"
) -> httpx.Response:
    return await client.post(
        f"/b/pbl/v1/operation/{order_no}",
        headers=auth,
        json={"operation": "refund", "amount": amount},
    )


def during_the_gateway_call(
    monkeypatch: pytest.MonkeyPatch, action: Callable[[], Awaitable[None]]
) -> None:
    """Run ``action`` once, while the sandbox gateway performs the next refund (after the
    intent is committed, before the settlement)."""
    original = SandboxConnector.refund
    done: list[bool] = []

    async def refund_meanwhile(self: SandboxConnector, request: Any) -> Any:
        if not done:
            done.append(True)
            await action()
        return await original(self, request)

    monkeypatch.setattr(SandboxConnector, "refund", refund_meanwhile)


async def test_a_refund_writes_the_books_in_full(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext
) -> None:
    auth = await seed.api_key()
    await seed.transaction(
        "100.000", "KWD", order_no="ORD-B", webhook_url="https://merchant.example/payment-hook"
    )
    async with ctx.db.write() as session:
        await outbox.set_merchant_setting(session, outbox.HMAC_KEY_SETTING, "books-key")
        await outbox.set_merchant_setting(
            session, outbox.OPERATIONS_URL_SETTING, "https://merchant.example/operations-hook"
        )
    before = len(await seed.audit())

    response = await refund(client, auth, "ORD-B", "2.500")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["signature"] == sign(
        {k: v for k, v in body.items() if k != "signature"}, "books-key"
    )
    assert (await seed.find("ORD-B")).refunded == 2500
    (op,) = await seed.operations("ORD-B")
    assert (op.state, op.amount, op.claimed_until) == ("succeeded", 2500, None)
    assert op.settled_at is not None and op.response == body
    assert op.pg_response == body["pg_response"]
    assert op.gateway_refs == {"transaction_id": body["pg_response"]["transaction_id"]}
    assert [(e.result, e.actor, e.details) for e in (await seed.audit())[before:]] == [
        (
            "intent",
            f"api_key:{auth['Authorization'].split()[1].split('.')[0]}",
            {"reference_number": op.reference_number, "amount": 2500},
        ),
        ("succeeded", "settlement", {"reference_number": op.reference_number, "amount": 2500}),
    ]
    events = [e for e in await seed.outbox() if e.kind == "operation"]
    assert sorted(e.target_url for e in events) == [
        "https://merchant.example/operations-hook",
        "https://merchant.example/payment-hook",
    ]
    assert all(
        e.payload == body and e.state == "pending" and e.transaction_id == op.transaction_id
        for e in events
    )


async def test_a_key_rotated_during_the_gateway_call_signs_the_answer(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The intent read the merchant settings; another process rotates the HMAC key while the
    gateway works: the answer, the stored response and the webhook are signed with the new key."""
    auth = await seed.api_key()
    await seed.transaction(
        "100.000", "KWD", order_no="ORD-R", webhook_url="https://merchant.example/hook"
    )
    async with ctx.db.write() as session:
        await outbox.set_merchant_setting(session, outbox.HMAC_KEY_SETTING, "old-key")
    assert (await refund(client, auth, "ORD-R")).status_code == 200  # caches hold "old-key"

    async def rotate() -> None:
        async with ctx.db.write() as session:
            await outbox.set_merchant_setting(session, outbox.HMAC_KEY_SETTING, "new-key")

    during_the_gateway_call(monkeypatch, rotate)
    response = await refund(client, auth, "ORD-R")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["signature"] == sign({k: v for k, v in body.items() if k != "signature"}, "new-key")
    latest = (await seed.operations("ORD-R"))[-1]
    assert latest.response == body
    assert (await seed.outbox())[-1].payload == body
    assert (await seed.find("ORD-R")).refunded == 2000


async def test_an_operation_settled_during_the_gateway_call_is_settled_once(
    client: httpx.AsyncClient, seed: Seed, ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone else (a reconciler whose lease ran out, an operator) settles the operation while
    the gateway works: the request's own settlement leaves it as it is, and the refund counts
    once."""
    from payops.connectors.base import GatewayResult, Outcome
    from payops.operations import service

    auth = await seed.api_key()
    await seed.transaction("100.000", "KWD", order_no="ORD-T")

    async def settle_meanwhile() -> None:
        async with ctx.db.write() as session:
            op = await session.scalar(select(Operation).where(Operation.state == "processing"))
            assert op is not None
            await service.settle(
                session,
                op.id,
                GatewayResult(
                    Outcome.SUCCESS, {"result": "SUCCESS", "by": "reconciler"}, {}, "Approved"
                ),
            )

    during_the_gateway_call(monkeypatch, settle_meanwhile)
    before = len(await seed.audit())
    response = await refund(client, auth, "ORD-T", "3.000")

    assert response.status_code == 200, response.text
    assert response.json()["txn"]["state"] == "refunded"
    (op,) = await seed.operations("ORD-T")
    assert (op.state, op.claimed_until) == ("succeeded", None)
    assert op.pg_response == {"result": "SUCCESS", "by": "reconciler"}  # the first answer stays
    assert op.response == response.json()
    assert (await seed.find("ORD-T")).refunded == 3000
    assert [e.result for e in (await seed.audit())[before:]] == ["intent", "succeeded"]


async def test_a_declined_refund_is_settled_failed(client: httpx.AsyncClient, seed: Seed) -> None:
    auth = await seed.api_key()
    await seed.transaction(
        "100.000", "KWD", order_no="ORD-D", webhook_url="https://merchant.example/hook"
    )
    response = await refund(client, auth, "ORD-D", "1.991")  # the sandbox declines ...991

    assert response.status_code == 400, response.text
    (op,) = await seed.operations("ORD-D")
    assert (op.state, op.response, op.claimed_until) == ("failed", None, None)
    assert op.message == response.json()["detail"]
    assert (await seed.find("ORD-D")).refunded == 0
    assert not [e for e in await seed.outbox() if e.kind == "operation"]
    # The settlement's entry, then the refusal the client heard (as for every refused operation).
    assert [e.result for e in (await seed.audit())[-3:]] == ["intent", "failed", "refused"]
