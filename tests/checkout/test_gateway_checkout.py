"""The gateway checkout framework around the journeys (issue 17), through PayOps's HTTP surface
with the MPGS fake as the gateway: a start whose reply was lost ("try again" starts the same
attempt again), a start the gateway refused, a confirmation for another amount (review), the
KNET-style response endpoint's one-line answer, secrets kept off every page, and `gateway add`
refusing a payment mode the gateway cannot take.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from payops.checkout.gateway_flow import public_refs
from payops.checkout.hosted import send_to_start
from payops.connectors.mpgs.connector import MpgsConnector
from payops.db.models import PaymentAttempt
from payops.gateways.service import GatewayConfigError, add_gateway
from tests.connectors.mpgs.fake_server import API_PASSWORD, MERCHANT_ID, FakeMpgs
from tests.helpers import Seed

URL = "/b/checkout/v1/pymt-txn/"


@pytest.fixture
def fake() -> Iterator[FakeMpgs]:
    yield from FakeMpgs().serving()  # type: ignore[misc]


async def session(
    client: httpx.AsyncClient,
    seed: Seed,
    fake: FakeMpgs,
    *,
    password: str = API_PASSWORD,
    timeout: float = 5.0,
    **fields: Any,
) -> dict[str, Any]:
    async with seed.ctx.db.write() as db:
        await add_gateway(
            db,
            seed.ctx.settings,
            pg_code="mpgs-kwd",
            connector="mpgs",
            operation_mode="purchase",
            default_currency="KWD",
            credentials={"merchant_id": MERCHANT_ID, "api_password": password},
            options={"base_url": fake.url, "timeout_seconds": timeout},
        )
    auth = await seed.api_key()
    created = await client.post(
        URL,
        headers=auth,
        json={
            "type": "e_commerce",
            "amount": "12.500",
            "currency_code": "KWD",
            "pg_codes": ["mpgs-kwd"],
            **fields,
        },
    )
    assert created.status_code == 201, created.text
    return created.json()


async def attempts(seed: Seed) -> list[PaymentAttempt]:
    async with seed.ctx.db.read() as db:
        return list(await db.scalars(select(PaymentAttempt).order_by(PaymentAttempt.id)))


def gateway_link(page: httpx.Response) -> str:
    found = re.search(r'<a id="go" href="([^"]+)">', page.text)
    assert found is not None, page.text
    return found[1].replace("&amp;", "&")


async def test_lost_start_reply_then_try_again_starts_the_same_attempt(
    client: httpx.AsyncClient, seed: Seed, fake: FakeMpgs
) -> None:
    # The configuration's timeout is how long the lost reply is waited for, and also the time
    # every later call (the retry's order read and session) has: 0.5 s was exceeded once in a
    # full parallel run on a loaded 2-core machine, so the retry too looked lost.
    created = await session(client, seed, fake, timeout=1.5)
    page = f"/checkout/{created['session_id']}"
    fake.fail_next("timeout", method="POST", suffix="/session", apply=True)
    lost = await client.post(page, data={"pg_code": "mpgs-kwd"}, timeout=30)
    fake.release_hanging()
    assert lost.status_code == 200 and "Try again" in lost.text, lost.text
    [attempt] = await attempts(seed)
    assert attempt.state == "pending" and attempt.start["outcome"] == "unknown"
    # A reload offers the same "try again"; choosing again creates no second attempt.
    assert "Try again" in (await client.get(page)).text
    again = await client.post(page, data={"pg_code": "mpgs-kwd"}, timeout=30)
    assert "Try again" in again.text and len(await attempts(seed)) == 1
    retried = await client.post(page, data={"action": "retry"}, timeout=30)
    assert retried.status_code == 200, retried.text
    [attempt] = await attempts(seed)
    session_id = attempt.gateway_refs["session_id"]
    assert gateway_link(retried) == f"{fake.url}/checkout/pay/{session_id}?checkoutVersion=1.0.0"
    # The retry read the order first (lost-reply rule), then opened a session for it.
    posts = fake.requests_to(method="POST")
    assert [p.path.rsplit("/", 1)[-1] for p in posts] == ["session", "session"]
    assert fake.requests_to(method="GET", suffix=f"/order/{attempt.reference_number}")
    # Back to the page: the browser is sent to the stored start, nothing new is started.
    reload = await client.get(page)
    assert reload.status_code == 303 and reload.headers["location"] == gateway_link(retried)
    assert len(fake.requests_to(method="POST")) == 2


async def test_refused_start_fails_the_attempt_and_lets_the_customer_choose_again(
    client: httpx.AsyncClient, seed: Seed, fake: FakeMpgs
) -> None:
    created = await session(client, seed, fake, password="not-the-password")
    page = f"/checkout/{created['session_id']}"
    refused = await client.post(page, data={"pg_code": "mpgs-kwd"})
    assert refused.status_code == 200 and "could not be started" in refused.text
    assert 'value="mpgs-kwd"' in refused.text  # choose again
    [attempt] = await attempts(seed)
    assert attempt.state == "failed"
    shown = await client.get(page)
    assert shown.status_code == 200 and 'value="mpgs-kwd"' in shown.text


async def test_confirmation_for_another_amount_goes_to_review(
    client: httpx.AsyncClient, seed: Seed, fake: FakeMpgs
) -> None:
    created = await session(client, seed, fake)
    page = f"/checkout/{created['session_id']}"
    at_gateway = gateway_link(await client.post(page, data={"pg_code": "mpgs-kwd"}))
    fake.checkout.charge_amount = Decimal("1.000")  # MPGS takes another amount
    paid = httpx.post(
        at_gateway.split("?", 1)[0],
        data={"cardNumber": "5123450000000008", "expiry": "05/39", "securityCode": "123"},
    )
    back = httpx.URL(paid.headers["location"])
    returned = await client.get(back.raw_path.decode())
    assert returned.status_code == 202  # "being processed": an operator decides
    [attempt] = await attempts(seed)
    assert attempt.state == "needs_review"
    inquiry = await client.post(
        "/b/pbl/v2/inquiry/",
        headers=await seed.api_key(),
        json={"session_id": created["session_id"]},
    )
    assert inquiry.json()["state"] == "pending"
    # The session takes no new attempt while the review is open.
    again = await client.post(page, data={"pg_code": "mpgs-kwd"})
    assert again.status_code == 202 and len(await attempts(seed)) == 1


async def test_response_endpoint_answers_one_redirect_line(
    client: httpx.AsyncClient, seed: Seed, fake: FakeMpgs
) -> None:
    created = await session(client, seed, fake)
    await client.post(f"/checkout/{created['session_id']}", data={"pg_code": "mpgs-kwd"})
    [attempt] = await attempts(seed)
    for token, expected in (
        (attempt.token, attempt.token),
        ("x" * 43, "x" * 43),
        ("bad%20token", "unknown"),
    ):
        answer = await client.post(
            f"/checkout/response/{token}", data={"trandata": "00FF", "paymentid": "1"}
        )
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert answer.text == f"REDIRECT=http://testserver/checkout/receipt/{expected}"
    # MPGS posts no results: nothing was applied.
    [attempt] = await attempts(seed)
    assert attempt.state == "pending"
    huge = await client.post(
        f"/checkout/response/{attempt.token}",
        content=b"a=" + b"x" * 70_000,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert huge.status_code == 200 and huge.text.startswith("REDIRECT=")


async def test_secret_references_are_never_shown(
    client: httpx.AsyncClient, seed: Seed, fake: FakeMpgs
) -> None:
    created = await session(client, seed, fake)
    page = f"/checkout/{created['session_id']}"
    shown = [await client.post(page, data={"pg_code": "mpgs-kwd"}), await client.get(page)]
    [attempt] = await attempts(seed)
    secret = attempt.gateway_refs["secret_success_indicator"]
    shown.append(
        await client.post(
            "/b/pbl/v2/inquiry/",
            headers=await seed.api_key(),
            json={"session_id": created["session_id"]},
        )
    )
    for response in shown:
        assert secret not in response.text
    assert secret not in str(attempt.start)
    assert public_refs(attempt.gateway_refs) == {
        "order_id": attempt.reference_number,
        "session_id": attempt.gateway_refs["session_id"],
    }


async def test_gateway_add_refuses_a_payment_mode_the_gateway_cannot_take(
    seed: Seed, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MpgsConnector, "payment_modes", frozenset({"purchase"}))
    async with seed.ctx.db.write() as db:
        with pytest.raises(GatewayConfigError, match="takes payments only in purchase mode"):
            await add_gateway(
                db,
                seed.ctx.settings,
                pg_code="m",
                connector="mpgs",
                operation_mode="authorize",
                default_currency="KWD",
                credentials={"merchant_id": "M", "api_password": "p"},
            )


def test_a_gateway_taking_a_form_post_gets_a_self_posting_page() -> None:
    # PayU, QPay and KNET take the browser's form POST: the only page whose CSP lets a form
    # leave PayOps, and only to that gateway's origin.
    page = send_to_start(
        {
            "method": "POST",
            "url": "https://pay.example/_payment?x=1&y=2",
            "fields": {"hash": 'a"b<c>', "txnid": "R1"},
        }
    )
    csp = page.headers["content-security-policy"]
    nonce = re.search(r"script-src 'nonce-([^']+)'", csp)
    assert nonce is not None and f'<script nonce="{nonce[1]}">' in page.body.decode()
    assert csp.endswith("form-action 'self' https://pay.example")
    body = page.body.decode()
    assert 'action="https://pay.example/_payment?x=1&amp;y=2"' in body
    assert '<input type="hidden" name="hash" value="a&quot;b&lt;c&gt;">' in body
    assert '<button type="submit">Continue to the payment page</button>' in body  # no JS
    # A gateway reached by a link: a redirect on a reload, a page that moves on after a post.
    link = {"method": "GET", "url": "https://gw.example/pay/S1"}
    assert send_to_start(link).status_code == 303
    moved = send_to_start(link, after_form=True)
    assert (
        moved.status_code == 200
        and "form-action 'self'" in moved.headers["content-security-policy"]
        and 'content="0;url=https://gw.example/pay/S1"' in moved.body.decode()
    )


async def test_gateway_time_out_expires_the_attempt(
    client: httpx.AsyncClient, seed: Seed, fake: FakeMpgs
) -> None:
    created = await session(client, seed, fake)
    page = f"/checkout/{created['session_id']}"
    at_gateway = gateway_link(await client.post(page, data={"pg_code": "mpgs-kwd"}))
    fake.checkout.expire_sessions()
    expired = httpx.get(at_gateway)
    link = re.search(r'id="timeout" href="([^"]+)"', expired.text)
    assert expired.status_code == 410 and link is not None
    back = httpx.URL(link[1].replace("&amp;", "&"))
    assert back.params["outcome"] == "timeout"
    returned = await client.get(back.raw_path.decode())
    assert returned.status_code == 200 and "Payment expired" in returned.text
    [attempt] = await attempts(seed)
    assert attempt.state == "expired"
    # The session itself is still open: the customer may pay again.
    again = await client.get(page)
    assert again.status_code == 200 and 'value="mpgs-kwd"' in again.text


async def test_a_session_with_the_sandbox_and_a_gateway_offers_both(
    client: httpx.AsyncClient, seed: Seed, fake: FakeMpgs
) -> None:
    await seed.gateway("sandbox-kwd", "purchase", "KWD")
    created = await session(client, seed, fake, pg_codes=["sandbox-kwd", "mpgs-kwd"])
    page = f"/checkout/{created['session_id']}"
    shown = await client.get(page)
    assert 'name="card_number"' in shown.text  # the sandbox's card form, as before
    assert "Pay with mpgs-kwd" in shown.text
    assert shown.headers["content-security-policy"].endswith("form-action 'self'")
    # The sandbox's form still pays with the sandbox, and nothing reached MPGS.
    paid = await client.post(
        page,
        data={
            "pg_code": "sandbox-kwd",
            "card_number": "4111111111111111",
            "expiry": "12/39",
            "cvv": "123",
            "cardholder_name": "Test Customer",
        },
    )
    assert paid.status_code == 200 and "Payment successful" in paid.text
    assert fake.requests == []
