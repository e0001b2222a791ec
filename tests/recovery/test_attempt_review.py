"""Operator review of payment attempts (issue 17, decisions §13), on SQLite and PostgreSQL,
through the HTTP API and the CLI.

Attempts reach review the real way: the sandbox gateway's books confirm another amount than the
attempt asked for (needs_review), or the gateway has no answer for every automatic inquiry
(the sandbox's ``pending_inquiries`` option).
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import update
from typer.testing import CliRunner

from payops.cli.main import app as cli_app
from payops.config import Settings, get_settings
from payops.db.models import PaymentAttempt, PaymentTransaction
from payops.domain import messages
from payops.transactions.attempt_inquiry import inquire_due_attempts
from payops.transactions.expiry import expire_due
from tests.checkout.test_one_payment import set_ledger_amount
from tests.helpers import SUCCESS_CARD, Seed
from tests.recovery.test_attempt_inquiry import (
    FORM,
    WINDOW,
    gateway_inquiries,
    only_attempt,
    payment_webhooks,
    pending_attempt,
)

QUEUE = "/b/payops/v1/attempts/review"


def path(reference: str, action: str) -> str:
    return f"/b/payops/v1/attempts/{reference}/{action}"


async def in_review_for_another_amount(
    client: httpx.AsyncClient, seed: Seed, settings: Settings
) -> str:
    """The gateway's books say 4.500 KWD for an attempt of 5.000: needs_review."""
    attempt = await pending_attempt(client, seed)
    set_ledger_amount(settings, 4500)
    assert (
        await inquire_due_attempts(seed.ctx, attempt.created_at + WINDOW + timedelta(seconds=1))
        == 1
    )
    stored = await only_attempt(seed)
    assert stored.state == "needs_review"
    return stored.reference_number


def cli(settings: Settings):  # type: ignore[no-untyped-def]
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

    async def run(*args: str) -> tuple[int, str, str]:
        return await asyncio.to_thread(payops, *args)

    return run


async def test_only_operators_with_payment_resolve_may_review(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    reference = await in_review_for_another_amount(client, seed, settings)
    key = await seed.api_key()
    clerk = await seed.user("clerk", permissions=["payment.inquiry", "payment.refund"])
    before = await seed.snapshot()
    body = {"outcome": "paid", "reason": "seen"}
    for headers in (key, clerk):
        assert (await client.get(QUEUE, headers=headers)).status_code == 403
        assert (await client.post(path(reference, "recheck"), headers=headers)).status_code == 403
        refused = await client.post(path(reference, "resolve"), headers=headers, json=body)
        assert refused.status_code == 403, refused.text
    assert (await client.get(QUEUE)).status_code == 401
    assert await seed.snapshot() == before
    assert gateway_inquiries(settings, reference) == 1


async def test_resolve_paid_for_the_amount_the_gateway_charged(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    reference = await in_review_for_another_amount(client, seed, settings)
    admin = await seed.superuser()
    auth = await seed.api_key()

    queue = (await client.get(QUEUE, headers=admin)).json()
    [listed] = queue["results"]
    assert (listed["reference_number"], listed["review"], listed["amount"]) == (
        reference,
        "amount_mismatch",
        "5.000",
    )
    assert "4.500 KWD" in listed["review_reason"]
    # While in review the merchant sees pending; the session takes no new attempt, nor changes.
    inquiry = await client.post("/b/pbl/v1/inquiry/AUTO-1", headers=auth)
    assert (inquiry.json()["state"], inquiry.json()["result"]) == ("pending", "pending")
    assert await payment_webhooks(seed) == []
    sid = listed["session_id"]
    again = await client.post(f"/checkout/{sid}", data={**FORM, "card_number": SUCCESS_CARD})
    assert again.status_code == 202
    patched = await client.patch(
        f"/b/checkout/v1/pymt-txn/{sid}", headers=auth, json={"amount": "4.500"}
    )
    assert (patched.status_code, patched.json()) == (400, {"detail": messages.PAYMENT_TERMS_LOCKED})

    # Field checks before anything is decided.
    for bad, field in (
        ({"outcome": "succeeded", "reason": "x"}, "outcome"),
        ({"outcome": "paid"}, "reason"),
        ({"outcome": "paid", "reason": "x", "amount": "4.5000"}, "amount"),
        ({"outcome": "paid", "reason": "x", "amount": None}, "amount"),
        ({"outcome": "paid", "reason": "x", "evidence": "e" * 2001}, "evidence"),
    ):
        response = await client.post(path(reference, "resolve"), headers=admin, json=bad)
        assert response.status_code == 400 and list(response.json()) == [field], response.text
    unknown = await client.post(
        path("NOPE1234", "resolve"), headers=admin, json={"outcome": "paid", "reason": "x"}
    )
    assert (unknown.status_code, unknown.json()["detail"]) == (404, messages.ATTEMPT_UNKNOWN)

    resolved = await client.post(
        path(reference, "resolve"),
        headers=admin,
        json={
            "outcome": "paid",
            "amount": "4.500",
            "reason": "MPGS dashboard shows 4.500 captured",
            "evidence": "gateway txn 123",
        },
    )
    assert resolved.status_code == 200, resolved.text
    answer = resolved.json()
    assert (answer["state"], answer["session_state"], answer["amount"]) == (
        "success",
        "paid",
        "4.500",
    )
    assert answer["resolution"]["asked"] == "5.000" and answer["resolution"]["charged"] == "4.500"
    parent = await seed.find("AUTO-1")
    assert parent is not None and (parent.state, parent.amount, parent.paid_total) == (
        "paid",
        4500,
        4500,
    )
    [webhook] = [e.payload for e in await seed.outbox() if e.kind == "payment"]
    assert (webhook["state"], webhook["amount"], webhook["paid_amount"]) == (
        "paid",
        "4.500",
        "4.500",
    )
    [entry] = [a for a in await seed.audit() if a.action == "attempt.resolve"]
    assert (entry.actor, entry.actor_type, entry.result) == ("admin", "user", "paid")
    assert entry.details["reason"] == "MPGS dashboard shows 4.500 captured"
    assert entry.details["evidence"] == "gateway txn 123"
    assert (await client.get(QUEUE, headers=admin)).json()["count"] == 0
    # Refunds follow the amount charged.
    refund = await client.post(
        "/b/pbl/v1/operation/AUTO-1", headers=auth, json={"operation": "refund", "amount": "5.000"}
    )
    assert refund.json()["detail"] == "Amount exceeds the refundable amount (4.500 KWD)"
    twice = await client.post(
        path(reference, "resolve"), headers=admin, json={"outcome": "failed", "reason": "x"}
    )
    assert (
        twice.status_code == 400 and "already resolved as paid by admin" in twice.json()["detail"]
    )


async def test_cli_resolve_failed_frees_the_session(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    reference = await in_review_for_another_amount(client, seed, settings)
    payops = cli(settings)
    code, _, err = await payops(
        "attempt", "resolve", reference, "--outcome", "failed", "--reason", "seen"
    )
    assert code != 0 and "--operator" in err
    code, _, err = await payops(
        "attempt",
        "resolve",
        reference,
        "--outcome",
        "refunded",
        "--reason",
        "seen",
        "--operator",
        "Dana",
    )
    assert code == 2 and "paid, failed" in err
    assert (await only_attempt(seed)).state == "needs_review"

    code, out, err = await payops("attempt", "review")
    assert code == 0 and reference in out and "amount_mismatch" in out
    code, out, err = await payops(
        "attempt",
        "resolve",
        reference,
        "--outcome",
        "failed",
        "--reason",
        "voided the 4.500 charge at the gateway",
        "--evidence",
        "void V-9",
        "--operator",
        "Dana",
    )
    assert code == 0, err
    assert '"state": "failed"' in out
    parent = await seed.find("AUTO-1")
    assert parent is not None and (parent.state, parent.paid_total) == ("attempted", 0)
    assert await payment_webhooks(seed) == [("attempted", "failed")]
    [entry] = [a for a in await seed.audit() if a.action == "attempt.resolve"]
    assert entry.actor_type == "cli" and entry.actor.startswith("Dana (os user ")
    assert (entry.details["operator"], entry.details["evidence"]) == ("Dana", "void V-9")

    # The customer may pay again.
    paid = await client.post(
        f"/checkout/{parent.session_id}", data={**FORM, "card_number": SUCCESS_CARD}, timeout=30
    )
    assert paid.status_code in (200, 303), paid.text
    parent = await seed.find("AUTO-1")
    assert parent is not None and (parent.state, parent.paid_total) == ("paid", 5000)
    code, _, err = await payops(
        "attempt", "resolve", reference, "--outcome", "paid", "--reason", "x", "--operator", "Eve"
    )
    assert code == 2 and "already resolved as failed" in err


async def test_recheck_of_an_attempt_without_answer(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    attempt = await pending_attempt(client, seed, pending_inquiries=4)
    reference, start = attempt.reference_number, attempt.created_at
    payops = cli(settings)
    admin = await seed.superuser()
    # Not in review yet: nothing to resolve.
    early = await client.post(
        path(reference, "resolve"), headers=admin, json={"outcome": "paid", "reason": "x"}
    )
    assert early.status_code == 400 and "not in review" in early.json()["detail"]
    for n in (1, 2, 3):
        await inquire_due_attempts(seed.ctx, start + n * WINDOW + timedelta(seconds=1))
    assert [r["review"] for r in (await client.get(QUEUE, headers=admin)).json()["results"]] == [
        "no_answer"
    ]

    # The gateway still has no answer: nothing changes.
    code, out, err = await payops("attempt", "recheck", reference, "--operator", "Dana")
    assert code == 0, err
    assert messages.ATTEMPT_NO_ANSWER in out and '"state": "pending"' in out
    # Now it answers: the success applies, with its webhook.
    code, out, err = await payops("attempt", "recheck", reference, "--operator", "Dana")
    assert code == 0, err
    assert '"state": "success"' in out and '"session_state": "paid"' in out
    assert await payment_webhooks(seed) == [("paid", "success")]
    assert gateway_inquiries(settings, reference) == 5
    rechecks = [a for a in await seed.audit() if a.action == "attempt.recheck"]
    assert [(a.result, a.details["gateway_outcome"], a.details["operator"]) for a in rechecks] == [
        ("pending", "pending", "Dana"),
        ("success", "success", "Dana"),
    ]
    # A settled attempt is not rechecked.
    code, _, err = await payops("attempt", "recheck", reference)
    assert code == 2 and "only pending or needs_review" in err
    assert (await client.get(QUEUE, headers=admin)).json()["count"] == 0


async def test_an_attempt_in_review_keeps_its_session_from_expiring(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    reference = await in_review_for_another_amount(client, seed, settings)
    async with seed.ctx.db.write() as session:
        await session.execute(
            update(PaymentTransaction).values(expires_at=(await only_attempt(seed)).created_at)
        )
    assert await expire_due(seed.ctx) == 0
    admin = await seed.superuser()
    # The gateway now confirms the amount asked: the recheck settles the review as a success.
    set_ledger_amount(settings, 5000)
    rechecked = await client.post(path(reference, "recheck"), headers=admin)
    assert rechecked.status_code == 200, rechecked.text
    assert (rechecked.json()["state"], rechecked.json()["session_state"]) == ("success", "paid")
    assert await expire_due(seed.ctx) == 0
    assert await payment_webhooks(seed) == [("paid", "success")]


async def test_a_configuration_that_cannot_be_asked_goes_to_review_when_its_window_ends(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    attempt = await pending_attempt(client, seed, enabled_operations=["refund"])
    reference = attempt.reference_number
    async with seed.ctx.db.write() as session:
        await session.execute(update(PaymentTransaction).values(expires_at=attempt.created_at))
    assert await expire_due(seed.ctx) == 0  # its window has not ended
    assert (
        await inquire_due_attempts(seed.ctx, attempt.created_at + WINDOW + timedelta(seconds=1))
        == 0
    )
    assert gateway_inquiries(settings, reference) == 0
    admin = await seed.superuser()
    [listed] = (await client.get(QUEUE, headers=admin)).json()["results"]
    assert (listed["review"], listed["review_reason"]) == (
        "no_answer",
        messages.ATTEMPT_REVIEW_CANNOT_ASK,
    )
    refused = await client.post(path(reference, "recheck"), headers=admin)
    assert refused.status_code == 400 and "cannot be asked" in refused.json()["detail"]
    # Nothing more to wait for: the session expires; the operator's decision still counts.
    assert await expire_due(seed.ctx) == 1
    resolved = await client.post(
        path(reference, "resolve"),
        headers=admin,
        json={"outcome": "paid", "reason": "the gateway's dashboard shows it captured"},
    )
    assert resolved.status_code == 200, resolved.text
    assert (resolved.json()["state"], resolved.json()["session_state"]) == ("success", "paid")
    assert await payment_webhooks(seed) == [("expired", "failed"), ("paid", "success")]


async def test_a_flagged_payment_is_acknowledged_not_failed(
    client: httpx.AsyncClient,
    seed: Seed,
    settings: Settings,
) -> None:
    """A gateway that took the payment but flags it (MyFatoorah's DuplicatePayment: the
    connector reports ``review_reason`` with the success)."""
    attempt = await pending_attempt(client, seed)
    await inquire_due_attempts(seed.ctx, attempt.created_at + WINDOW + timedelta(seconds=1))
    async with seed.ctx.db.write() as session:  # what the connector's answer records
        await session.execute(
            update(PaymentAttempt).values(review_reason="DuplicatePayment: the customer paid twice")
        )
    admin = await seed.superuser()
    [listed] = (await client.get(QUEUE, headers=admin)).json()["results"]
    assert (listed["review"], listed["state"], listed["session_state"]) == (
        "flagged",
        "success",
        "paid",
    )
    reference = attempt.reference_number
    failed = await client.post(
        path(reference, "resolve"), headers=admin, json={"outcome": "failed", "reason": "duplicate"}
    )
    assert failed.status_code == 400 and "is paid" in failed.json()["detail"]
    assert (await client.post(path(reference, "recheck"), headers=admin)).status_code == 400
    before = await seed.snapshot()
    done = await client.post(
        path(reference, "resolve"),
        headers=admin,
        json={"outcome": "paid", "reason": "refunded the duplicate", "evidence": "refund R-2"},
    )
    assert done.status_code == 200, done.text
    assert done.json()["resolution"]["review"] == "flagged"
    after = await seed.snapshot()
    assert after["transactions"] == before["transactions"] and after["outbox"] == before["outbox"]
    assert (await client.get(QUEUE, headers=admin)).json()["count"] == 0


async def test_a_success_the_session_cannot_take_is_flagged_for_a_refund(
    client: httpx.AsyncClient,
    seed: Seed,
) -> None:
    """The gateway takes a payment after the session stopped taking one (the merchant canceled
    it, or another attempt paid it while this page was still open): the session is left as it
    is, and the attempt goes to the review queue so an operator refunds the money."""
    attempt = await pending_attempt(client, seed)
    await seed.set_state("AUTO-1", "canceled")
    await inquire_due_attempts(seed.ctx, attempt.created_at + WINDOW + timedelta(seconds=1))
    parent = await seed.find("AUTO-1")
    assert parent is not None and parent.state == "canceled" and parent.paid_total == 0
    admin = await seed.superuser()
    [listed] = (await client.get(QUEUE, headers=admin)).json()["results"]
    assert (listed["review"], listed["state"], listed["session_state"]) == (
        "flagged",
        "success",
        "canceled",
    )
    assert "refund it at the gateway" in listed["review_reason"]
