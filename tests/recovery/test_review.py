"""Nothing stays stuck: operator recheck and resolve of operations in review (decisions §13), on
SQLite and PostgreSQL, through the HTTP API and the CLI.

Operations reach ``needs_review`` the real way: a refund the sandbox performed but whose reply was
lost (amount ending 993) on a configuration without inquiry, or a refund the sandbox queued (992)
that no final answer reached in time.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from payops.cli.main import app as cli_app
from payops.config import Settings, get_settings
from payops.context import AppContext
from payops.db.models import Operation
from payops.operations.reconciler import reconcile_once
from payops.transactions import repository
from payops.transactions.presenters import child_state
from tests.connectors.mpgs.fake_server import mpgs_fake  # noqa: F401 - a fixture
from tests.helpers import Seed

ORDER = "ORD-1"
PATH = f"/b/pbl/v1/operation/{ORDER}"
HOOK = "http://127.0.0.1:9/hook"


def review_path(reference: str, action: str) -> str:
    return f"/b/payops/v1/operations/{reference}/{action}"


async def only_operation(seed: Seed) -> Operation:
    [op] = await seed.operations(ORDER)
    return op


async def refunded_and_reserved(ctx: AppContext) -> tuple[int, int]:
    async with ctx.db.read() as session:
        parent = await repository.find_parent(session, order_no=ORDER)
        assert parent is not None
        held = await repository.reservations(session, parent.id)
        return parent.refunded, held["refund"]


async def lost_reply_in_review(client: httpx.AsyncClient, seed: Seed, ctx: AppContext) -> str:
    """A refund of 10.993 the gateway performed, on a configuration that cannot be asked: after
    one reconciliation pass it is needs_review. Returns its reference."""
    key = await seed.api_key()
    await seed.transaction(
        "100.000",
        order_no=ORDER,
        gateway_code="sandbox-no-inquiry",
        enabled_operations=["refund"],
        webhook_url=HOOK,
    )
    response = await client.post(
        PATH, json={"operation": "refund", "amount": "10.993"}, headers=key
    )
    assert response.status_code == 504, response.text
    assert dict((await reconcile_once(ctx)).outcomes) == {"needs_review": 1}
    op = await only_operation(seed)
    assert op.state == "needs_review"
    return op.reference_number


async def operation_webhooks(seed: Seed) -> list[dict[str, object]]:
    return [e.payload for e in await seed.outbox() if e.kind == "operation"]


async def test_resolve_succeeded_settles_like_a_gateway_success(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
) -> None:
    reference = await lost_reply_in_review(client, seed, ctx)
    admin = await seed.superuser()
    assert await refunded_and_reserved(ctx) == (0, 10_993)
    assert await operation_webhooks(seed) == []

    queue = await client.get("/b/payops/v1/operations/review", headers=admin)
    assert queue.status_code == 200, queue.text
    assert [r["reference_number"] for r in queue.json()["results"]] == [reference]
    assert queue.json()["results"][0]["amount"] == "10.993"

    response = await client.post(
        review_path(reference, "resolve"),
        headers=admin,
        json={
            "outcome": "succeeded",
            "reason": "Dashboard shows the refund captured",
            "evidence": "gateway refund id R-77",
        },
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (
        body["reference_number"],
        body["state"],
        body["amount"],
        body["currency_code"],
        body["order_no"],
    ) == (reference, "succeeded", "10.993", "KWD", ORDER)
    op = await only_operation(seed)
    assert (op.state, child_state(op)) == ("succeeded", "refunded")
    assert await refunded_and_reserved(ctx) == (10_993, 0)
    [hook] = await operation_webhooks(seed)
    assert (hook["result"], hook["success"], hook["reference_number"]) == (
        "success",
        True,
        reference,
    )
    assert hook["txn"]["state"] == "refunded"  # type: ignore[index]

    [entry] = [a for a in await seed.audit() if a.action == "resolve"]
    assert (entry.actor, entry.actor_type, entry.result) == ("admin", "user", "succeeded")
    assert entry.details["reason"] == "Dashboard shows the refund captured"
    assert entry.details["evidence"] == "gateway refund id R-77"
    assert entry.at is not None

    # Resolving twice is refused, and changes nothing.
    again = await client.post(
        review_path(reference, "resolve"),
        headers=admin,
        json={"outcome": "failed", "reason": "changed my mind"},
    )
    assert again.status_code == 400, again.text
    assert again.json() == {
        "detail": f"Operation {reference} was already resolved as succeeded by admin",
        "result": "failed",
    }
    assert await refunded_and_reserved(ctx) == (10_993, 0)
    assert len(await operation_webhooks(seed)) == 1
    queue = await client.get("/b/payops/v1/operations/review", headers=admin)
    assert queue.json() == {"count": 0, "results": []}


async def test_refund_resolved_as_failed_is_rejected_and_released(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
) -> None:
    reference = await lost_reply_in_review(client, seed, ctx)
    admin = await seed.superuser()
    response = await client.post(
        review_path(reference, "resolve"),
        headers=admin,
        json={"outcome": "failed", "reason": "Not on the gateway's dashboard"},
    )
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "rejected"
    op = await only_operation(seed)
    assert (op.state, child_state(op)) == ("rejected", "refund_rejected")
    assert await refunded_and_reserved(ctx) == (0, 0)
    [hook] = await operation_webhooks(seed)
    assert (hook["result"], hook["txn"]["state"]) == ("rejected", "refund_rejected")  # type: ignore[index]
    # The reservation is released: PayOps counts the whole 100.000 as refundable again.
    key = await seed.api_key()
    over = await client.post(PATH, json={"operation": "refund", "amount": "100.001"}, headers=key)
    assert over.status_code == 400
    assert over.json()["detail"] == "Amount exceeds the refundable amount (100.000 KWD)"


async def test_resolve_and_recheck_refusals(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
) -> None:
    key = await seed.api_key()
    admin = await seed.superuser()
    await seed.transaction("100.000", order_no=ORDER)
    done = await client.post(PATH, json={"operation": "refund", "amount": "5.000"}, headers=key)
    assert done.status_code == 200, done.text
    reference = done.json()["reference_number"]

    not_in_review = await client.post(
        review_path(reference, "resolve"),
        headers=admin,
        json={"outcome": "failed", "reason": "test"},
    )
    assert not_in_review.status_code == 400
    assert not_in_review.json() == {
        "detail": f"Operation {reference} is succeeded, not needs_review: only an operation in "
        "review can be resolved",
        "result": "failed",
    }
    unknown = await client.post(
        review_path("NOSUCHREFERENCE1", "resolve"),
        headers=admin,
        json={"outcome": "failed", "reason": "test"},
    )
    assert unknown.status_code == 404
    recheck_unknown = await client.post(review_path("NOSUCHREFERENCE1", "recheck"), headers=admin)
    assert recheck_unknown.status_code == 404
    bad = await client.post(
        review_path(reference, "resolve"), headers=admin, json={"outcome": "maybe", "reason": ""}
    )
    assert bad.status_code == 400
    assert bad.json() == {"outcome": ['"maybe" is not a valid choice.']}
    no_reason = await client.post(
        review_path(reference, "resolve"), headers=admin, json={"outcome": "failed"}
    )
    assert no_reason.json() == {"reason": ["This field is required."]}
    assert (await refunded_and_reserved(ctx)) == (5_000, 0)


async def test_payment_resolve_is_never_an_api_key_permission(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
) -> None:
    reference = await lost_reply_in_review(client, seed, ctx)
    key = await seed.api_key()
    refunder = await seed.user("refunder", permissions=["payment.refund", "payment.inquiry"])
    resolver = await seed.user("resolver", permissions=["payment.resolve"])
    resolve_body = {"outcome": "succeeded", "reason": "seen on the dashboard"}
    for headers in (key, refunder):
        for method, path, body in (
            ("POST", review_path(reference, "resolve"), resolve_body),
            ("POST", review_path(reference, "recheck"), None),
            ("GET", "/b/payops/v1/operations/review", None),
        ):
            response = await client.request(method, path, headers=headers, json=body)
            assert response.status_code == 403, (headers, path, response.text)
            assert response.json() == {
                "detail": "You do not have permission to perform this action."
            }
    assert (await only_operation(seed)).state == "needs_review"
    response = await client.post(
        review_path(reference, "resolve"), headers=resolver, json=resolve_body
    )
    assert response.status_code == 200, response.text
    assert (await only_operation(seed)).resolution["actor"] == "resolver"  # type: ignore[index]


async def test_queued_refund_goes_to_review_after_the_setting(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
) -> None:
    # The gateway keeps the refund queued (for a minute); the review deadline has passed.
    settings.sandbox_queue_seconds = 60
    key = await seed.api_key()
    await seed.transaction("100.000", order_no=ORDER)
    queued = await client.post(
        PATH,
        json={"operation": "refund", "amount": "10.992"},
        headers={**key, "Tracking-Key": "q-1"},
    )
    assert queued.status_code == 200 and queued.json()["result"] == "queued", queued.text
    # With the default (7 days) a pass leaves it queued.
    assert settings.queued_review_after == timedelta(days=7)
    assert dict((await reconcile_once(ctx)).outcomes) == {"still_open": 1}
    settings.queued_review_after = timedelta(seconds=0)
    async with ctx.db.write() as session:  # the next ask is due now, not after the backoff
        op = await session.get_one(Operation, (await only_operation(seed)).id)
        op.claimed_until = None
    assert dict((await reconcile_once(ctx)).outcomes) == {"needs_review": 1}
    op = await only_operation(seed)
    # Still reserved, and the merchant still sees a queued refund.
    assert (op.state, child_state(op)) == ("needs_review", "refund_queued")
    assert await refunded_and_reserved(ctx) == (0, 10_992)
    assert (await reconcile_once(ctx)).examined == 0
    # To the merchant it is still the queued refund: a retry with its key replays it.
    replay = await client.post(
        PATH,
        json={"operation": "refund", "amount": "10.992"},
        headers={**key, "Tracking-Key": "q-1"},
    )
    assert replay.status_code == 200 and replay.json() == queued.json(), replay.text

    admin = await seed.superuser()
    resolved = await client.post(
        review_path(op.reference_number, "resolve"),
        headers=admin,
        json={"outcome": "succeeded", "reason": "refunded per dashboard"},
    )
    assert resolved.status_code == 200, resolved.text
    assert await refunded_and_reserved(ctx) == (10_992, 0)


async def no_status_refund_in_review(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
) -> str:
    """A refund queued at a gateway that documents no refund status: in review at once. The
    sandbox keeps it queued until ``gateway_finishes_queued_refunds``."""
    ctx.settings.sandbox_queue_seconds = 3600
    key = await seed.api_key()
    await seed.transaction(
        "100.000",
        order_no=ORDER,
        gateway_code="sandbox-no-status",
        options={"refund_status": "false"},
        webhook_url=HOOK,
    )
    queued = await client.post(PATH, json={"operation": "refund", "amount": "10.992"}, headers=key)
    assert queued.status_code == 200 and queued.json()["result"] == "queued", queued.text
    assert dict((await reconcile_once(ctx)).outcomes) == {"needs_review": 1}
    op = await only_operation(seed)
    assert (op.state, child_state(op)) == ("needs_review", "refund_queued")
    assert await refunded_and_reserved(ctx) == (0, 10_992)
    return op.reference_number


def gateway_finishes_queued_refunds(settings: Settings) -> None:
    settings.sandbox_queue_seconds = 0  # the sandbox reads it at every inquiry


async def test_recheck_settles_through_the_normal_path(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
) -> None:
    reference = await no_status_refund_in_review(client, seed, ctx)
    gateway_finishes_queued_refunds(settings)
    admin = await seed.superuser()
    response = await client.post(review_path(reference, "recheck"), headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "succeeded"
    assert await refunded_and_reserved(ctx) == (10_992, 0)
    hooks = await operation_webhooks(seed)
    assert [h["result"] for h in hooks] == ["queued", "success"]
    [entry] = [a for a in await seed.audit() if a.action == "recheck"]
    assert (entry.actor, entry.result) == ("admin", "succeeded")
    # Nothing left to recheck.
    done = await client.post(review_path(reference, "recheck"), headers=admin)
    assert done.status_code == 400
    assert "only processing, queued or needs_review" in done.json()["detail"]


async def test_contradicting_gateway_answer_changes_nothing_and_alerts(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
) -> None:
    reference = await no_status_refund_in_review(client, seed, ctx)
    admin = await seed.superuser()
    resolved = await client.post(
        review_path(reference, "resolve"),
        headers=admin,
        json={"outcome": "failed", "reason": "not on the dashboard"},
    )
    assert resolved.status_code == 200 and resolved.json()["state"] == "rejected", resolved.text
    before = await seed.snapshot()

    def alerts(text: str) -> float:
        for line in text.splitlines():
            if line.startswith('payops_resolution_contradicted_total{operation="refund"}'):
                return float(line.split()[-1])
        return 0.0

    settings.metrics_token = "metrics-reader"  # /metrics is served only with its token
    metrics_auth = {"Authorization": "Bearer metrics-reader"}
    counted = alerts((await client.get("/metrics", headers=metrics_auth)).text)
    gateway_finishes_queued_refunds(settings)  # the gateway now says the refund was done
    response = await client.post(review_path(reference, "recheck"), headers=admin)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "rejected"
    assert "contradicting the resolution" in response.json()["message"]
    assert await seed.snapshot() == before  # no totals, operation or webhook changed
    assert alerts((await client.get("/metrics", headers=metrics_auth)).text) == counted + 1
    [entry] = [a for a in await seed.audit() if a.action == "contradiction"]
    assert (entry.result, entry.details["resolved_as"], entry.details["gateway_outcome"]) == (
        "alert",
        "failed",
        "success",
    )


async def test_cli_recheck_and_resolve_record_the_operator(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
) -> None:
    reference = await lost_reply_in_review(client, seed, ctx)
    env = {
        "PAYOPS_DATA_DIR": str(Path(settings.data_dir)),
        "PAYOPS_DATABASE_URL": settings.database_url,
        "PAYOPS_SECRET_KEY": settings.secret_key,
        "COLUMNS": "300",
    }

    def payops(*args: str) -> tuple[int, str, str]:
        get_settings.cache_clear()
        try:
            result = CliRunner().invoke(cli_app, list(args), env=env)
        finally:
            get_settings.cache_clear()
        return result.exit_code, result.stdout, result.stderr

    # The configuration cannot be asked: recheck says so, and changes nothing.
    code, _, err = await asyncio.to_thread(payops, "ops", "recheck", reference)
    assert code == 2 and "cannot be asked" in err
    # --operator is required.
    code, _, err = await asyncio.to_thread(
        payops, "ops", "resolve", reference, "--outcome", "succeeded", "--reason", "seen"
    )
    assert code != 0 and "--operator" in err
    assert (await only_operation(seed)).state == "needs_review"
    # The API's limits hold at this door too; a name so long that the OS user would be cut
    # from the audit's actor is refused.
    for args, message in (
        (("--reason", "r" * 2001, "--operator", "Dana"), "--reason"),
        (("--reason", "seen", "--evidence", "e" * 2001, "--operator", "Dana"), "--evidence"),
        (("--reason", "seen", "--operator", "D" * 101), "--operator"),
    ):
        code, _, err = await asyncio.to_thread(
            payops, "ops", "resolve", reference, "--outcome", "succeeded", *args
        )
        assert code == 2 and message in err and "at most" in err, err
    assert (await only_operation(seed)).state == "needs_review"
    code, out, err = await asyncio.to_thread(
        payops,
        "ops",
        "resolve",
        reference,
        "--outcome",
        "succeeded",
        "--reason",
        "refund R-1 on the dashboard",
        "--evidence",
        "screenshot-1.png",
        "--operator",
        "Dana",
    )
    assert code == 0, err
    assert '"state": "succeeded"' in out
    assert await refunded_and_reserved(ctx) == (10_993, 0)
    [entry] = [a for a in await seed.audit() if a.action == "resolve"]
    assert entry.actor_type == "cli"
    assert entry.details["operator"] == "Dana" and entry.details["os_user"]
    assert entry.actor.startswith("Dana (os user ")
    assert entry.details["evidence"] == "screenshot-1.png"
    code, _, err = await asyncio.to_thread(
        payops,
        "ops",
        "resolve",
        reference,
        "--outcome",
        "failed",
        "--reason",
        "x",
        "--operator",
        "Eve",
    )
    assert code == 2 and "already resolved as succeeded" in err


async def test_gateway_notification_contradicting_a_resolution_raises_the_alert(
    client: httpx.AsyncClient,
    seed: Seed,
    ctx: AppContext,
    settings: Settings,
    mpgs_fake: Any,  # noqa: F811
) -> None:
    """MPGS queues a refund; it goes to review; the operator resolves it as failed; later MPGS
    approves it and notifies PayOps. Nothing changes, and the alert is raised."""
    from tests.connectors.mpgs.test_notifications import (
        SECRET,
        URL,
        notification,
        queued_refund,
    )

    admin = await seed.superuser()
    reference = await queued_refund(client, seed, mpgs_fake, admin)
    settings.queued_review_after = timedelta(seconds=0)
    assert dict((await reconcile_once(ctx)).outcomes) == {"needs_review": 1}
    resolved = await client.post(
        review_path(reference, "resolve"),
        headers=admin,
        json={"outcome": "failed", "reason": "MPGS shows it pending"},
    )
    assert resolved.status_code == 200 and resolved.json()["state"] == "rejected", resolved.text
    before = await seed.snapshot()

    mpgs_fake.settle_pending("MPGS-ORD-9", reference)
    notified = await client.post(
        URL, json=notification(reference), headers={"X-Notification-Secret": SECRET}
    )
    assert notified.status_code == 200, notified.text
    assert await seed.snapshot() == before
    [alert] = [a for a in await seed.audit() if a.action == "contradiction"]
    assert (alert.details["reference_number"], alert.details["gateway_outcome"]) == (
        reference,
        "success",
    )


async def test_review_queue_includes_old_processing_operations_on_request(
    client: httpx.AsyncClient,
    seed: Seed,
) -> None:
    key = await seed.api_key()
    admin = await seed.superuser()
    await seed.transaction("100.000", order_no=ORDER)
    pending = await client.post(PATH, json={"operation": "refund", "amount": "10.994"}, headers=key)
    assert pending.status_code == 504, pending.text
    queue = "/b/payops/v1/operations/review"
    assert (await client.get(queue, headers=admin)).json()["count"] == 0
    listed = (await client.get(f"{queue}?include_processing_older_than=0", headers=admin)).json()
    assert [(r["reference_number"], r["state"]) for r in listed["results"]] == [
        (pending.json()["reference_number"], "processing")
    ]
    for bad in ("nan", "-1", "1e300", "inf", "x"):
        response = await client.get(f"{queue}?include_processing_older_than={bad}", headers=admin)
        assert response.status_code == 400, (bad, response.text)
        assert list(response.json()) == ["include_processing_older_than"]


def test_queued_review_after_reads_seconds_or_iso_8601(monkeypatch: pytest.MonkeyPatch) -> None:
    for text, expected in (
        ("604800", timedelta(days=7)),
        ("P7D", timedelta(days=7)),
        ("90.5", timedelta(seconds=90.5)),
    ):
        monkeypatch.setenv("PAYOPS_QUEUED_REVIEW_AFTER", text)
        assert Settings().queued_review_after == expected
    monkeypatch.delenv("PAYOPS_QUEUED_REVIEW_AFTER")
    assert Settings().queued_review_after == timedelta(days=7)
