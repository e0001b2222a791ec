"""A customer pays a checkout session at a real gateway's hosted page (issue 17): one journey
test, run for every gateway's driver (``tests.checkout.journeys.DRIVERS``) against its fake.

PayOps runs as a live server (each fake sends the browser, and KNET's server, back over real
HTTP). The browser here is httpx without automatic redirects: every step it takes is visible.
The success journey runs on both databases; the failure matrix on PostgreSQL only (issue 17's
time budget). A driver that does not import fails its tests: none is skipped.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select, update

from payops.auth.secrets import new_api_key
from payops.config import Settings
from payops.connectors.registry import connector_class
from payops.context import AppContext
from payops.db.models import ApiKey, Operation, PaymentAttempt, PaymentTransaction
from payops.gateways.service import add_gateway
from payops.money import from_decimal
from payops.operations.reconciler import reconcile_once
from payops.transactions.expiry import expire_due
from tests.checkout.journeys import DRIVERS, BrowserStep, JourneyDriver, driver
from tests.conftest import BACKENDS
from tests.live import live_server, run_with_context
from tests.webhooks.receiver import Receiver, receiving

REDIRECT = "https://merchant.example/thanks"
CHECKOUT = "/b/checkout/v1/pymt-txn/"
OPERATION = "/b/pbl/v2/operation/"
PG = [b for b in BACKENDS if b == "postgresql"]
CONNECTORS = list(DRIVERS)


@pytest.fixture
def settings_overrides() -> dict[str, Any]:
    return {
        "webhook_redirect_deadline_seconds": 5.0,
        "webhook_timeout_seconds": 5.0,
        "webhook_backoff_base_seconds": 60,
    }


@dataclass
class Shop:
    """PayOps (live) with one configuration of the driver's gateway, and the merchant's key."""

    settings: Settings
    base: str
    auth: dict[str, str]
    pg_code: str
    journey: JourneyDriver
    fake: Any
    mode: str

    def create(self, **fields: Any) -> dict[str, Any]:
        body = {
            "type": "e_commerce",
            "amount": self.journey.amount,
            "currency_code": self.journey.currency,
            "pg_codes": [self.pg_code],
            "redirect_url": REDIRECT,
            **fields,
        }
        created = httpx.post(f"{self.base}{CHECKOUT}", json=body, headers=self.auth, timeout=30)
        assert created.status_code == 201, created.text
        return created.json()

    def choose(self, created: dict[str, Any]) -> BrowserStep:
        """On PayOps's page, choose the gateway: where PayOps sends the browser."""
        page = httpx.get(created["checkout_url"], timeout=30)
        assert page.status_code == 200 and f'value="{self.pg_code}"' in page.text, page.text
        chosen = httpx.post(created["checkout_url"], data={"pg_code": self.pg_code}, timeout=60)
        return at_gateway(chosen)

    def back(self, step: BrowserStep) -> httpx.Response:
        """The browser's request to PayOps (the return, or KNET's REDIRECT target)."""
        assert step.url.startswith(self.base), step.url
        if step.method.upper() == "POST":
            answer = httpx.post(step.url, data=step.fields, timeout=60)
        else:
            answer = httpx.get(step.url, timeout=60)
        if answer.headers.get("content-type", "").startswith(
            "text/plain"
        ) and answer.text.startswith("REDIRECT="):
            # A step to PayOps's response URL (KNET's server post): the browser then goes
            # where the one-line answer says.
            return httpx.get(answer.text.removeprefix("REDIRECT=").strip(), timeout=60)
        return answer

    def parent(self, session_id: str) -> PaymentTransaction:
        async def work(ctx: AppContext) -> PaymentTransaction:
            async with ctx.db.read() as session:
                found = await session.scalar(
                    select(PaymentTransaction).where(PaymentTransaction.session_id == session_id)
                )
                assert found is not None
                return found

        return run(self.settings, work)

    def attempts(self, session_id: str) -> list[PaymentAttempt]:
        async def work(ctx: AppContext) -> list[PaymentAttempt]:
            async with ctx.db.read() as session:
                return list(
                    await session.scalars(
                        select(PaymentAttempt)
                        .join(
                            PaymentTransaction,
                            PaymentTransaction.id == PaymentAttempt.transaction_id,
                        )
                        .where(PaymentTransaction.session_id == session_id)
                        .order_by(PaymentAttempt.id)
                    )
                )

        return run(self.settings, work)

    def operate(self, operation: str, session_id: str, amount: str | None = None) -> httpx.Response:
        body = {"operation": operation, "session_id": session_id}
        if amount is not None:
            body["amount"] = amount
        return httpx.post(f"{self.base}{OPERATION}", json=body, headers=self.auth, timeout=60)

    def operation_state(self, reference_number: str) -> str:
        async def work(ctx: AppContext) -> str:
            async with ctx.db.read() as session:
                return str(
                    await session.scalar(
                        select(Operation.state).where(
                            Operation.reference_number == reference_number
                        )
                    )
                )

        return run(self.settings, work)

    def minor(self, amount: str) -> int:
        return from_decimal(Decimal(amount), self.journey.currency)


def run(settings: Settings, work: Any) -> Any:
    """Service-layer work beside the live server, on a thread of its own when this thread runs
    an event loop already (Playwright's sync API does)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return run_with_context(settings, work)
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run_with_context, settings, work).result()


def at_gateway(chosen: httpx.Response) -> BrowserStep:
    """Where PayOps's answer to "pay with this gateway" sends the browser: a redirect, or a page
    whose form posts itself to the gateway."""
    if chosen.status_code == 303:
        return BrowserStep("GET", chosen.headers["location"])
    assert chosen.status_code == 200, chosen.text
    link = re.search(r'<a id="go" href="([^"]+)">', chosen.text)
    if link is not None:
        # A page that moves the browser on (a redirect after a form post would meet the
        # hosted page's form-action policy in a browser).
        target = unescape(link[1])
        assert f'content="0;url={link[1]}"' in chosen.text
        return BrowserStep("GET", target)
    form = re.search(
        r'<form id="go" method="post" action="([^"]+)">(.*?)</form>', chosen.text, re.S
    )
    assert form is not None, chosen.text
    fields = dict(re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', form[2]))
    csp = chosen.headers["content-security-policy"]
    action = unescape(form[1])
    parts = urlsplit(action)
    assert f"form-action 'self' {parts.scheme}://{parts.netloc}" in csp, csp
    return BrowserStep("POST", action, {unescape(k): unescape(v) for k, v in fields.items()})


@contextmanager
def shop(settings: Settings, connector: str, mode: str | None = None) -> Iterator[Shop]:
    journey = driver(connector)
    mode = mode or journey.modes[0]
    key, prefix, secret_hash = new_api_key()
    with journey.fake() as fake:
        config = journey.gateway_config(fake, mode)
        pg_code = f"{connector}-{mode}"

        async def prepare(ctx: AppContext) -> None:
            async with ctx.db.write() as session:
                session.add(ApiKey(prefix=prefix, secret_hash=secret_hash, name="journeys"))
                await add_gateway(
                    session, ctx.settings, pg_code=pg_code, operation_mode=mode, **config
                )

        run(settings, prepare)
        with live_server(settings) as base:
            yield Shop(
                settings.model_copy(update={"public_url": base}),
                base,
                {"Authorization": f"Api-Key {key}"},
                pg_code,
                journey,
                fake,
                mode,
            )


def redirected_with(response: httpx.Response, created: dict[str, Any], reference: str) -> None:
    assert response.status_code == 303, response.text
    target = response.headers["location"]
    assert target.startswith(REDIRECT)
    query = parse_qs(urlsplit(target).query)
    assert query["session_id"] == [created["session_id"]]
    assert query["reference_number"] == [reference]
    assert "order_no" in query or created.get("order_no") is None


def wait_for(check: Any, seconds: float = 10.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def pay_successfully(s: Shop, created: dict[str, Any]) -> httpx.Response:
    step = s.journey.pay(s.fake, s.choose(created), "success")
    assert step is not None
    return s.back(step)


# -- success: both databases, every mode the gateway takes ------------------------------------


def success_cases() -> list[Any]:
    cases = []
    for connector in CONNECTORS:
        try:
            modes = driver(connector).modes
        except ImportError:
            modes = ("purchase",)  # the missing driver fails in the test itself
        cases += [pytest.param(connector, mode, id=f"{connector}-{mode}") for mode in modes]
    return cases


@pytest.mark.parametrize(("connector", "mode"), success_cases())
def test_success_then_operations(settings: Settings, connector: str, mode: str) -> None:
    with receiving(Receiver(default=200)) as receiver, shop(settings, connector, mode) as s:
        created = s.create(order_no=f"J-{connector}-{mode}", webhook_url=receiver.url)
        back = pay_successfully(s, created)
        [attempt] = s.attempts(created["session_id"])
        # The webhook arrived before the browser was sent on, and said what was paid.
        assert len(receiver.received) == 1, back.text
        expected = "authorized" if mode == "authorize" else "paid"
        assert receiver.received[0].body["state"] == expected
        redirected_with(back, created, attempt.reference_number)
        parent = s.parent(created["session_id"])
        assert parent.state == expected and attempt.state == "success"
        assert parent.amount + parent.fee == s.minor(s.journey.amount)
        assert (parent.authorized_total if mode == "authorize" else parent.paid_total) == s.minor(
            s.journey.amount
        )
        # No secret of the gateway's (MPGS's success indicator) shows anywhere.
        inquiry = httpx.post(
            f"{s.base}/b/pbl/v2/inquiry/",
            headers=s.auth,
            timeout=30,
            json={"session_id": created["session_id"]},
        )
        assert inquiry.status_code == 200, inquiry.text
        secrets = [str(v) for k, v in attempt.gateway_refs.items() if k.startswith("secret_")]
        for secret in secrets:
            assert secret not in inquiry.text and secret not in back.text
            assert secret not in str(receiver.received[0].body) and secret not in str(attempt.start)
        operations_work(s, created, mode)


def operations_work(s: Shop, created: dict[str, Any], mode: str) -> None:
    capabilities = connector_class(s.journey.connector).capabilities
    total = Decimal(s.journey.amount)
    sid = created["session_id"]
    if mode == "authorize" and "capture" in capabilities:
        captured = s.operate("capture", sid, s.journey.amount)
        follow(s, captured)
        assert s.parent(sid).captured == s.minor(s.journey.amount)
    if "refund" in capabilities:
        part = str((total / 2).quantize(total))
        refunded = s.operate("refund", sid, part)
        if follow(s, refunded):
            assert s.parent(sid).refunded == s.minor(part)
    if mode == "authorize" and "void" in capabilities:
        # A second session, authorized and then voided.
        other = s.create(order_no=f"J-void-{s.journey.connector}")
        pay_successfully(s, other)
        assert s.parent(other["session_id"]).state == "authorized"
        voided = s.operate("void", other["session_id"])
        follow(s, voided)
        assert s.parent(other["session_id"]).voided == s.minor(s.journey.amount)


def follow(s: Shop, answer: httpx.Response) -> bool:
    """An operation on the paid session, as the gateway does it: done at once (200 success), or
    queued at the gateway (200 queued, or 504 not confirmed yet) and then settled by the gateway's
    back office and read by the reconciler. Returns False for a queued refund at a gateway that
    documents no refund status (it goes to an operator's review, decisions §13)."""
    assert answer.status_code in (200, 504), answer.text
    body = answer.json()
    if answer.status_code == 200 and body["result"] == "success":
        return True
    assert body["result"] in ("queued", "pending"), answer.text
    settle = getattr(s.journey, "settle_operations", None)
    if settle is not None:
        settle(s.fake)

    async def reconcile(ctx: AppContext) -> None:
        await reconcile_once(ctx)

    run(s.settings, reconcile)
    cls = connector_class(s.journey.connector)
    state = s.operation_state(body["reference_number"])
    if body.get("operation") == "refund" and not cls.documents_refund_status:
        assert state == "needs_review", state
        return False
    assert state == "succeeded", state
    return True


# -- the failure matrix: PostgreSQL -----------------------------------------------------------


@pytest.mark.parametrize("backend", PG)
@pytest.mark.parametrize("connector", CONNECTORS)
def test_decline_then_retry(settings: Settings, connector: str) -> None:
    with shop(settings, connector) as s:
        created = s.create(redirect_url="")  # no redirect: the summary page shows the result
        step = s.journey.pay(s.fake, s.choose(created), "decline")
        assert step is not None
        declined = s.back(step)
        assert declined.status_code == 200 and "Payment declined" in declined.text
        assert f'href="/checkout/{created["session_id"]}"' in declined.text  # choose again
        [first] = s.attempts(created["session_id"])
        assert first.state == "failed"
        assert s.parent(created["session_id"]).state in ("attempted", "failed")
        # The customer chooses again on the same session: a new attempt, and it is paid.
        paid = pay_successfully(s, created)
        assert paid.status_code == 200 and "Payment successful" in paid.text, paid.text
        attempts = s.attempts(created["session_id"])
        assert [a.state for a in attempts] == ["failed", "success"]
        assert attempts[0].reference_number != attempts[1].reference_number
        assert s.parent(created["session_id"]).state == "paid"


@pytest.mark.parametrize("backend", PG)
@pytest.mark.parametrize("connector", CONNECTORS)
def test_cancel_lets_the_customer_choose_again(settings: Settings, connector: str) -> None:
    with shop(settings, connector) as s:
        created = s.create()
        step = s.journey.pay(s.fake, s.choose(created), "cancel")
        assert step is not None
        canceled = s.back(step)
        # Decided, so the customer goes back to the merchant (no webhook_url: Ottu's rule).
        [attempt] = s.attempts(created["session_id"])
        redirected_with(canceled, created, attempt.reference_number)
        assert attempt.state in ("canceled", "failed")
        assert s.parent(created["session_id"]).state in ("attempted", "failed")
        assert pay_successfully(s, created).status_code == 303
        assert s.parent(created["session_id"]).state == "paid"


@pytest.mark.parametrize("backend", PG)
@pytest.mark.parametrize("connector", CONNECTORS)
def test_forged_return_changes_nothing(settings: Settings, connector: str) -> None:
    with shop(settings, connector) as s:
        created = s.create()
        gateway = s.choose(created)
        forged = s.back(s.journey.forge_return(s.fake, gateway))
        assert forged.status_code == 202 and "being processed" in forged.text, forged.text
        [attempt] = s.attempts(created["session_id"])
        assert attempt.state == "pending"
        assert s.parent(created["session_id"]).state == "pending"
        # A made-up token is not an attempt at all.
        unknown = httpx.get(f"{s.base}/checkout/return/{'x' * 43}", timeout=30)
        assert unknown.status_code == 404
        # The customer's real payment still goes through on the same attempt.
        step = s.journey.pay(s.fake, gateway, "success")
        assert step is not None and s.back(step).status_code == 303
        [attempt] = s.attempts(created["session_id"])
        assert attempt.state == "success" and s.parent(created["session_id"]).state == "paid"


@pytest.mark.parametrize("backend", PG)
@pytest.mark.parametrize("connector", CONNECTORS)
def test_double_return_is_answered_from_storage(settings: Settings, connector: str) -> None:
    with shop(settings, connector) as s:
        created = s.create()
        step = s.journey.pay(s.fake, s.choose(created), "success")
        assert step is not None
        first = s.back(step)
        assert first.status_code == 303, first.text
        calls = len(s.fake.requests)
        second = s.back(step)
        assert second.status_code == 303 and second.headers["location"] == first.headers["location"]
        assert len(s.fake.requests) == calls  # no second gateway call
        # A reload of PayOps's page shows the result and starts nothing.
        page = httpx.get(created["checkout_url"], timeout=30)
        assert "Payment successful" in page.text and len(s.fake.requests) == calls
        assert len(s.attempts(created["session_id"])) == 1


@pytest.mark.parametrize("backend", PG)
@pytest.mark.parametrize("connector", CONNECTORS)
def test_double_click_starts_one_attempt(settings: Settings, connector: str) -> None:
    with shop(settings, connector) as s:
        created = s.create()

        def click(_: int) -> BrowserStep:
            return at_gateway(
                httpx.post(created["checkout_url"], data={"pg_code": s.pg_code}, timeout=60)
            )

        # Three clicks at once, then one more: every one lands on the same stored start.
        with ThreadPoolExecutor(max_workers=3) as pool:
            starts = list(pool.map(click, range(3)))
        starts.append(click(3))
        assert all(step == starts[0] for step in starts), starts
        reload = httpx.get(created["checkout_url"], timeout=30)
        assert (
            reload.status_code == 303
            and reload.headers["location"] == starts[0].url
            or at_gateway(reload) == starts[0]
        )
        assert len(s.attempts(created["session_id"])) == 1


@pytest.mark.parametrize("backend", PG)
@pytest.mark.parametrize("connector", CONNECTORS)
def test_pending_keeps_the_attempt_open(settings: Settings, connector: str) -> None:
    with shop(settings, connector) as s:
        created = s.create()
        gateway = s.choose(created)
        assert s.journey.pay(s.fake, gateway, "pending") is None
        [attempt] = s.attempts(created["session_id"])
        assert attempt.state == "pending"
        page = httpx.get(created["checkout_url"], timeout=30)
        assert page.status_code in (200, 202, 303)
        assert s.parent(created["session_id"]).state == "pending"


@pytest.mark.parametrize("backend", PG)
@pytest.mark.parametrize("connector", CONNECTORS)
def test_never_returned_settled_by_notification(settings: Settings, connector: str) -> None:
    with receiving(Receiver(default=200)) as receiver, shop(settings, connector) as s:
        created = s.create(webhook_url=receiver.url)
        s.journey.pay_without_return(s.fake, s.choose(created))
        assert s.parent(created["session_id"]).state == "pending"
        notified = s.journey.notify(s.fake, f"{s.base}/b/pg/notifications/{s.pg_code}")
        if not notified:
            run_attempt_inquiry(s)
        assert wait_for(lambda: s.parent(created["session_id"]).state == "paid")
        # The merchant's webhook says so (the delivery worker sends it; run it once here).
        run(s.settings, deliver_webhooks)
        assert [r.body["state"] for r in receiver.received] == ["paid"]


async def deliver_webhooks(ctx: AppContext) -> None:
    from payops.webhooks.delivery import deliver_due

    await deliver_due(ctx)


def run_attempt_inquiry(s: Shop) -> None:
    """The one-shot automatic attempt inquiry (issue 17 §6,
    ``payops.transactions.attempt_inquiry``), run as if its window had passed."""
    from payops.transactions import attempt_inquiry as inquiry

    async def work(ctx: AppContext) -> None:
        await inquiry.inquire_due_attempts(ctx, now=datetime.now(UTC) + timedelta(hours=1))

    run(s.settings, work)


@pytest.mark.parametrize("backend", PG)
@pytest.mark.parametrize("connector", CONNECTORS)
def test_never_returned_settled_by_attempt_inquiry(settings: Settings, connector: str) -> None:
    with receiving(Receiver(default=200)) as receiver, shop(settings, connector) as s:
        created = s.create(webhook_url=receiver.url)
        s.journey.pay_without_return(s.fake, s.choose(created))
        assert s.parent(created["session_id"]).state == "pending"
        run_attempt_inquiry(s)
        assert s.parent(created["session_id"]).state == "paid"
        run(s.settings, deliver_webhooks)
        assert [r.body["state"] for r in receiver.received] == ["paid"]


@pytest.mark.parametrize("backend", PG)
@pytest.mark.parametrize("connector", CONNECTORS)
def test_late_success_after_expiry_still_applies(settings: Settings, connector: str) -> None:
    with shop(settings, connector) as s:
        created = s.create()
        gateway = s.choose(created)

        async def expire(ctx: AppContext) -> None:
            async with ctx.db.write() as session:
                await session.execute(
                    update(PaymentTransaction).values(
                        expires_at=datetime.now(UTC) - timedelta(seconds=1)
                    )
                )
            await expire_due(ctx)

        run(s.settings, expire)
        step = s.journey.pay(s.fake, gateway, "success")
        assert step is not None
        s.back(step)
        assert s.parent(created["session_id"]).state == "paid"
        # A session that expired without any attempt takes none.
        closed = s.create(expiration_time="00:00:01")
        time.sleep(1.2)
        page = httpx.get(closed["checkout_url"], timeout=30)
        assert page.status_code == 410
        chosen = httpx.post(closed["checkout_url"], data={"pg_code": s.pg_code}, timeout=30)
        assert chosen.status_code == 409 and s.attempts(closed["session_id"]) == []


@pytest.mark.parametrize("backend", PG)
@pytest.mark.parametrize("connector", CONNECTORS)
@pytest.mark.parametrize("answer", [200, 201])
def test_webhook_before_redirect(settings: Settings, connector: str, answer: int) -> None:
    with receiving(Receiver(script=[answer])) as receiver, shop(settings, connector) as s:
        created = s.create(webhook_url=receiver.url, order_no=f"W-{answer}")
        back = pay_successfully(s, created)
        assert len(receiver.received) == 1 and receiver.received[0].body["state"] == "paid"
        [attempt] = s.attempts(created["session_id"])
        if answer == 200:
            redirected_with(back, created, attempt.reference_number)
        else:
            assert back.status_code == 200 and "Payment successful" in back.text
            assert attempt.reference_number in back.text
