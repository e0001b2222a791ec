"""The dashboard's Needs review page lists payment attempts in review and settles them through
the same service as the API (transactions/attempt_review.py)."""

from __future__ import annotations

from typing import Any

import httpx

from payops.config import Settings
from tests.helpers import Seed
from tests.recovery.test_attempt_inquiry import only_attempt, payment_webhooks
from tests.recovery.test_attempt_review import in_review_for_another_amount


async def test_an_attempt_in_review_is_resolved_from_the_page(
    operator_for: Any,
    seed: Seed,
    client: httpx.AsyncClient,
    settings: Settings,
) -> None:
    reference = await in_review_for_another_amount(client, seed, settings)
    clerk = await operator_for(["payment.inquiry", "payment.refund"])
    for action, form in (("recheck", {}), ("resolve", {"outcome": "paid", "reason": "r"})):
        refused = await clerk.post(f"/dashboard/review/attempts/{reference}/{action}", form)
        assert refused.status_code == 403, refused.text
    assert (await only_attempt(seed)).state == "needs_review"

    op = await operator_for(["payment.resolve"], username="reviewer")
    page = (await op.get("/dashboard/review")).text
    assert reference in page and "4.500 KWD" in page
    assert f"/dashboard/review/attempts/{reference}/resolve" in page
    bad = await op.post(
        f"/dashboard/review/attempts/{reference}/resolve",
        {"outcome": "paid", "reason": "seen", "amount": "4.5x"},
    )
    assert bad.status_code == 400
    done = await op.post(
        f"/dashboard/review/attempts/{reference}/resolve",
        {
            "outcome": "paid",
            "reason": "dashboard shows 4.500",
            "amount": "4.500",
            "evidence": "txn 7",
        },
    )
    assert done.status_code == 303, done.text
    stored = await only_attempt(seed)
    assert (stored.state, stored.amount, stored.resolution["actor"]) == (
        "success",
        4500,
        "reviewer",
    )
    assert await payment_webhooks(seed) == [("paid", "success")]
    assert reference not in (await op.get("/dashboard/review")).text
    actions = [a.action for a in await seed.audit()]
    assert "attempt.resolve" in actions and "dashboard.attempt_resolve" in actions
