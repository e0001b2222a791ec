from __future__ import annotations

import httpx

from tests.helpers import Seed


async def test_partial_refund_then_over_refund(client: httpx.AsyncClient, seed: Seed) -> None:
    auth = await seed.superuser()
    await seed.transaction("25.000", "KWD")
    ok = await client.post(
        "/b/pbl/v1/operation/ORD-1", json={"operation": "refund", "amount": "5.000"}, headers=auth
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["txn"]["state"] == "refunded"
    over = await client.post(
        "/b/pbl/v1/operation/ORD-1", json={"operation": "refund", "amount": "50.000"}, headers=auth
    )
    assert over.status_code == 400
    assert over.json() == {
        "detail": "Amount exceeds the refundable amount (20.000 KWD)",
        "operation": "refund",
        "result": "failed",
    }
