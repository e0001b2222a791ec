"""One payment per checkout session, and the amount a success records (decisions §13).

A session takes no new charge while an attempt is in flight, after a success, or while a
confirmation for another amount awaits review; repeated submissions get the session's current
result page. A success records what the attempt charged, never what the session says later.
"""

from __future__ import annotations

import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, update

from payops.auth.secrets import new_api_key
from payops.config import Settings
from payops.context import AppContext
from payops.db.models import ApiKey, PaymentAttempt, PaymentTransaction
from payops.domain import messages
from payops.gateways.service import add_gateway
from payops.transactions.expiry import expire_due
from tests.helpers import DECLINED_CARD, PENDING_CARD, SUCCESS_CARD, Seed
from tests.live import live_server, run_with_context

URL = "/b/checkout/v1/pymt-txn/"
FORM = {"expiry": "12/39", "cvv": "123", "cardholder_name": "Test Customer"}


def ledger_rows(settings: Settings, table: str) -> list[dict[str, Any]]:
    """What the sandbox gateway's own books hold (it plays the remote gateway)."""
    with sqlite3.connect(settings.effective_sandbox_ledger) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute(f"SELECT * FROM {table}")]  # noqa: S608


def set_ledger_amount(settings: Settings, amount: int) -> None:
    with sqlite3.connect(settings.effective_sandbox_ledger) as conn:
        conn.execute("UPDATE payments SET amount = ?", (amount,))


async def new_session(
    client: httpx.AsyncClient, seed: Seed, auth: dict[str, str], **fields: Any
) -> dict[str, Any]:
    await seed.gateway("sandbox-kwd", "purchase", "KWD")
    body = {
        "type": "e_commerce",
        "amount": "1.000",
        "currency_code": "KWD",
        "pg_codes": ["sandbox-kwd"],
        **fields,
    }
    response = await client.post(URL, json=body, headers=auth)
    assert response.status_code == 201, response.text
    return response.json()


async def attempts(seed: Seed) -> list[PaymentAttempt]:
    async with seed.ctx.db.read() as session:
        return list(await session.scalars(select(PaymentAttempt).order_by(PaymentAttempt.id)))


def page(created: dict[str, Any]) -> str:
    return "/checkout/" + created["session_id"]


def test_three_simultaneous_submissions_start_one_charge(settings: Settings) -> None:
    # A slow gateway keeps the first charge in flight while the other submissions arrive.
    slow = settings.model_copy(update={"sandbox_latency_ms": 400})
    key, prefix, secret_hash = new_api_key()

    async def prepare(ctx: AppContext) -> None:
        async with ctx.db.write() as session:
            session.add(ApiKey(prefix=prefix, secret_hash=secret_hash, name="t"))
            await add_gateway(
                session,
                ctx.settings,
                pg_code="sandbox-kwd",
                connector="sandbox",
                operation_mode="purchase",
                default_currency="KWD",
            )

    run_with_context(slow, prepare)
    with live_server(slow) as base:
        created = httpx.post(
            f"{base}{URL}",
            headers={"Authorization": f"Api-Key {key}"},
            json={
                "type": "e_commerce",
                "amount": "7.000",
                "currency_code": "KWD",
                "pg_codes": ["sandbox-kwd"],
                "order_no": "RACE-1",
            },
        )
        assert created.status_code == 201, created.text
        start = threading.Barrier(3)

        def submit(_: int) -> httpx.Response:
            start.wait()
            return httpx.post(
                created.json()["checkout_url"],
                timeout=30,
                data={**FORM, "card_number": SUCCESS_CARD},
            )

        with ThreadPoolExecutor(3) as pool:
            responses = list(pool.map(submit, range(3)))
        statuses = sorted(r.status_code for r in responses)
        assert all(s in (200, 202) for s in statuses), [(r.status_code, r.text) for r in responses]
        assert sum("Payment successful" in r.text for r in responses) >= 1
        # Afterwards the page shows the result, and a further submission charges nothing.
        again = httpx.post(
            created.json()["checkout_url"], timeout=30, data={**FORM, "card_number": SUCCESS_CARD}
        )
        assert again.status_code == 200 and "Payment successful" in again.text

    async def stored(ctx: AppContext) -> tuple[int, str, int]:
        async with ctx.db.read() as session:
            count = await session.scalar(select(func.count()).select_from(PaymentAttempt))
            parent = (await session.scalars(select(PaymentTransaction))).one()
            return int(count or 0), parent.state, parent.paid_total

    assert run_with_context(slow, stored) == (1, "paid", 7000)
    # The gateway's own books: one charge, not three.
    assert len(ledger_rows(slow, "payments")) == 1


async def test_late_success_records_what_the_attempt_charged(
    client: httpx.AsyncClient, seed: Seed, settings: Settings
) -> None:
    auth = await seed.api_key()
    created = await new_session(client, seed, auth, order_no="LATE-1")
    sid = created["session_id"]
    pending = await client.post(page(created), data={**FORM, "card_number": PENDING_CARD})
    assert pending.status_code == 202 and "being processed" in pending.text

    locked = {"detail": messages.PAYMENT_TERMS_LOCKED}
    for change in (
        {"amount": "900.000"},
        {"pg_codes": ["sandbox-kwd", "sandbox-usd"]},
        {"currency_code": "USD", "amount": "1.00"},
    ):
        if "sandbox-usd" in str(change) or "USD" in str(change):
            await seed.gateway("sandbox-usd", "purchase", "USD")
        refused = await client.patch(f"{URL}{sid}", json=change, headers=auth)
        assert (refused.status_code, refused.json()) == (400, locked), change
    put = await client.put(
        f"{URL}{sid}",
        headers=auth,
        json={
            "type": "e_commerce",
            "amount": "900.000",
            "currency_code": "KWD",
            "pg_codes": ["sandbox-kwd"],
        },
    )
    assert (put.status_code, put.json()) == (400, locked)
    # Fields that do not decide the charge may still change, and so may a resend of the same terms.
    same_terms = await client.put(
        f"{URL}{sid}",
        headers=auth,
        json={
            "type": "e_commerce",
            "amount": "1.000",
            "currency_code": "KWD",
            "pg_codes": ["sandbox-kwd"],
            "customer_first_name": "Noor",
        },
    )
    assert same_terms.status_code == 200, same_terms.text
    assert same_terms.json()["customer_first_name"] == "Noor"

    # While the attempt is in flight the page takes no second charge.
    second = await client.post(page(created), data={**FORM, "card_number": SUCCESS_CARD})
    assert second.status_code == 202 and "being processed" in second.text
    assert len(await attempts(seed)) == 1

    inquiry = await client.post("/b/pbl/v1/inquiry/LATE-1", headers=auth)
    assert inquiry.status_code == 200, inquiry.text
    body = inquiry.json()
    assert (body["state"], body["amount"], body["paid_amount"]) == ("paid", "1.000", "1.000")

    refund = await client.post(
        "/b/pbl/v1/operation/LATE-1",
        headers=auth,
        json={"operation": "refund", "amount": "900.000"},
    )
    assert refund.status_code == 400
    assert refund.json()["detail"] == "Amount exceeds the refundable amount (1.000 KWD)"
    assert ledger_rows(settings, "operations") == []
    whole = await client.post(
        "/b/pbl/v1/operation/LATE-1", headers=auth, json={"operation": "refund"}
    )
    assert whole.status_code == 200 and whole.json()["amount"] == "1.000"


async def test_success_never_takes_the_amount_from_a_changed_session(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    """A session whose amount changed under an attempt before this rule existed: the success
    still records what the attempt charged."""
    auth = await seed.api_key()
    created = await new_session(client, seed, auth, order_no="OLD-1")
    await client.post(page(created), data={**FORM, "card_number": PENDING_CARD})
    async with seed.ctx.db.write() as session:
        await session.execute(update(PaymentTransaction).values(amount=900_000))
    inquiry = await client.post("/b/pbl/v1/inquiry/OLD-1", headers=auth)
    assert inquiry.status_code == 200
    body = inquiry.json()
    assert (body["state"], body["amount"], body["paid_amount"], body["settled_amount"]) == (
        "paid",
        "1.000",
        "1.000",
        "1.000",
    )
    parent = await seed.find("OLD-1")
    assert parent is not None and (parent.amount, parent.paid_total) == (1000, 1000)


async def test_a_confirmation_for_another_amount_waits_for_review(
    client: httpx.AsyncClient, seed: Seed, settings: Settings
) -> None:
    auth = await seed.api_key()
    created = await new_session(client, seed, auth, order_no="ODD-1")
    await client.post(page(created), data={**FORM, "card_number": PENDING_CARD})
    set_ledger_amount(settings, 900)  # the gateway's books say it charged 0.900 KWD

    inquiry = await client.post("/b/pbl/v1/inquiry/ODD-1", headers=auth)
    assert inquiry.status_code == 200, inquiry.text
    assert (inquiry.json()["state"], inquiry.json()["paid_amount"]) == ("pending", "0.000")
    [attempt] = await attempts(seed)
    assert attempt.state == "needs_review"
    assert "0.900 KWD" in attempt.message and "1.000 KWD" in attempt.message

    # No new attempt, no change of terms, no expiry while it waits.
    assert (await client.get(page(created))).status_code == 202
    again = await client.post(page(created), data={**FORM, "card_number": SUCCESS_CARD})
    assert again.status_code == 202 and len(await attempts(seed)) == 1
    patched = await client.patch(
        f"{URL}{created['session_id']}", json={"amount": "0.900"}, headers=auth
    )
    assert patched.status_code == 400
    async with seed.ctx.db.write() as session:
        await session.execute(
            update(PaymentTransaction).values(expires_at=datetime.now(UTC) - timedelta(minutes=1))
        )
    assert await expire_due(seed.ctx) == 0
    for operation in ("expire", "cancel"):
        refused = await client.post(
            "/b/pbl/v2/operation/", headers=auth, json={"operation": operation, "order_no": "ODD-1"}
        )
        assert refused.status_code == 400, refused.text
        assert refused.json()["detail"] == messages.NOT_ALLOWED
    parent = await seed.find("ODD-1")
    assert parent is not None and (parent.state, parent.amount, parent.paid_total) == (
        "pending",
        1000,
        0,
    )
    assert len(ledger_rows(settings, "payments")) == 1

    # Asking again changes nothing while the gateway still says 0.900; its answer for the
    # amount asked settles the attempt as a normal success.
    assert (await client.post("/b/pbl/v1/inquiry/ODD-1", headers=auth)).json()["state"] == "pending"
    assert [a.state for a in await attempts(seed)] == ["needs_review"]
    set_ledger_amount(settings, 1000)
    settled = await client.post("/b/pbl/v1/inquiry/ODD-1", headers=auth)
    assert (settled.json()["state"], settled.json()["paid_amount"]) == ("paid", "1.000")


async def test_after_a_decline_terms_stay_fixed_but_the_customer_may_try_again(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    auth = await seed.api_key()
    created = await new_session(client, seed, auth, order_no="DEC-1")
    declined = await client.post(page(created), data={**FORM, "card_number": DECLINED_CARD})
    assert declined.status_code == 200 and "declined" in declined.text
    # A declined attempt can still be confirmed late by an inquiry (decisions §4).
    patched = await client.patch(
        f"{URL}{created['session_id']}", json={"amount": "2.000"}, headers=auth
    )
    assert (patched.status_code, patched.json()) == (400, {"detail": messages.PAYMENT_TERMS_LOCKED})
    paid = await client.post(page(created), data={**FORM, "card_number": SUCCESS_CARD})
    assert paid.status_code == 200 and "Payment successful" in paid.text
    assert [a.state for a in await attempts(seed)] == ["failed", "success"]


async def test_a_session_without_attempts_can_change_its_terms(
    client: httpx.AsyncClient, seed: Seed
) -> None:
    auth = await seed.api_key()
    created = await new_session(client, seed, auth)
    patched = await client.patch(
        f"{URL}{created['session_id']}", json={"amount": "2.500"}, headers=auth
    )
    assert patched.status_code == 200 and patched.json()["amount"] == "2.500"


async def test_the_page_never_echoes_the_card_number(client: httpx.AsyncClient, seed: Seed) -> None:
    auth = await seed.api_key()
    created = await new_session(client, seed, auth)
    for number in (SUCCESS_CARD, "4111 1111 1111 1112"):
        response = await client.post(
            page(created), data={**FORM, "card_number": number, "cvv": "12"}
        )
        assert response.status_code == 400
        digits = number.replace(" ", "")
        assert digits not in response.text.replace(" ", "")
        assert digits[:8] not in response.text.replace(" ", "")
        assert 'name="card_number" value=""' in response.text
    assert "ending in 1112" in response.text
    assert await attempts(seed) == []
