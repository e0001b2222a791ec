"""The dashboard in a real browser: Playwright for Python driving the system's Chromium (Debian's
``chromium`` package; never ``playwright install``) against a live server.

The tests take a lock so only one browser runs at a time, even across xdist workers. They skip
with the reason when no Chromium is found, and fail instead when ``CI=true``. They use SQLite: the
httpx tests cover both databases. Screenshots of the main pages go to ``$PAYOPS_SCREENSHOTS``
when it is set (``PAYOPS_SCREENSHOTS=docs/dashboard`` refreshes the ones in the docs).
"""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from payops.config import Settings
from payops.context import AppContext
from payops.db.models import Operation, OutboxEvent, PaymentTransaction
from tests.conftest import IN_CI, basic
from tests.helpers import Seed
from tests.live import live_server, run_with_context
from tests.webhooks.receiver import Receiver, receiving

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]
PASSWORD = "correct horse battery"
CHROMIUM_CANDIDATES = ("chromium", "chromium-browser", "google-chrome")


def find_chromium() -> str | None:
    explicit = os.environ.get("PAYOPS_TEST_CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in CHROMIUM_CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason + " (CI=true: the browser tests are mandatory)")
    pytest.skip(reason)


@pytest.fixture
def backend() -> str:
    return "sqlite"


@pytest.fixture(scope="session")
def browser_lock(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    # The parent of the per-worker base temp folder is shared by every xdist worker.
    yield tmp_path_factory.getbasetemp().parent / "payops-browser.lock"


@pytest.fixture
def browser(browser_lock: Path) -> Iterator[Any]:
    executable = find_chromium()
    if executable is None:
        _unavailable("no Chromium found (apt-get install chromium, or set PAYOPS_TEST_CHROMIUM)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("Playwright for Python is not installed (pip install -e '.[test]')")
    with open(browser_lock, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one browser at a time: tests run serially
        try:
            with sync_playwright() as playwright:
                instance = playwright.chromium.launch(
                    executable_path=executable, args=["--no-sandbox", "--disable-dev-shm-usage"]
                )
                try:
                    yield instance
                finally:
                    instance.close()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@pytest.fixture
def shots(tmp_path: Path) -> Any:
    target = Path(os.environ.get("PAYOPS_SCREENSHOTS") or tmp_path / "screenshots")
    target.mkdir(parents=True, exist_ok=True)

    def take(page: Any, name: str) -> Path:
        path = target / f"{name}.png"
        page.screenshot(path=str(path), full_page=False)
        assert path.stat().st_size > 1000
        return path

    return take


def seeded(settings: Settings, work: Any) -> Any:
    """Seed or inspect through the service layer, on a thread of its own: Playwright's sync API
    keeps an event loop running on the test's thread."""

    async def run(ctx: AppContext) -> Any:
        return await work(Seed(ctx), ctx)

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run_with_context, settings, run).result()


def sign_in(page: Any, base: str, username: str = "admin") -> None:
    page.goto(f"{base}/dashboard")
    assert "/dashboard/login" in page.url
    page.get_by_label("User name").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/dashboard")


def new_page(browser: Any) -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    page.problems = problems  # CSP violations and failed loads show up as console errors
    return page


def test_find_a_transaction_refund_part_and_see_the_timeline(
    browser: Any,
    settings: Settings,
    shots: Any,
) -> None:
    async def seed(s: Seed, ctx: AppContext) -> None:
        await s.superuser("admin")
        await s.set_hmac_key("k" * 32)
        for number, amount in ((1, "25.000"), (2, "180.500"), (3, "7.250")):
            parent = await s.transaction(amount, order_no=f"ORDER-{number:04d}")
            async with ctx.db.write() as session:
                stored = await session.get(PaymentTransaction, parent.id)
                stored.customer = {"customer_email": f"customer{number}@example.com"}
        await s.transaction("60.000", order_no="ORDER-AUTH", mode="authorize")
        await s.transaction("12.000", order_no="ORDER-DECLINED", card="4000000000000002")

    seeded(settings, seed)
    with live_server(settings) as base:
        from playwright.sync_api import expect

        page = new_page(browser)
        page.goto(f"{base}/dashboard/login")
        shots(page, "01-sign-in")
        sign_in(page, base)
        page.get_by_role("link", name="Transactions", exact=True).click()
        page.get_by_label("Search").fill("ORDER-0002")
        page.get_by_role("button", name="Search").click()
        page.get_by_role("link", name="ORDER-0002").click()
        # is_visible() answers at once; expect() waits for the page the click opened.
        expect(page.get_by_role("heading", name="Transaction ORDER-0002")).to_be_visible()
        page.get_by_role("link", name="Refund (up to 180.500 KWD)").click()
        amount = page.get_by_label("Amount (KWD)")
        assert amount.input_value() == "180.500"  # prefilled with what remains
        amount.fill("30.250")
        page.get_by_label("Reason (kept in the audit log)").fill("Damaged item, partial refund")
        shots(page, "04-confirm-refund")
        # A double click sends the form twice with one Tracking-Key: money moves once.
        page.get_by_role("button", name="Confirm refund").dblclick()
        page.wait_for_url("**/dashboard/transactions/*?done=*")
        status = page.get_by_role("status")
        assert "succeeded" in status.inner_text()
        timeline = page.locator("ol.timeline")
        assert "Refund 30.250 KWD" in timeline.inner_text()
        assert "by admin" in timeline.inner_text()
        assert "150.250" in page.locator("dl.amounts").first.inner_text()  # still refundable
        shots(page, "05-transaction")
        assert page.locator("ol.timeline li").count() == 1
        page.goto(f"{base}/dashboard")
        shots(page, "02-home")
        page.goto(f"{base}/dashboard/transactions")
        shots(page, "03-transactions")
        for path, name in (
            ("gateways", "08-gateways"),
            ("users", "09-users"),
            ("api-keys", "10-api-keys"),
            ("audit", "11-audit"),
        ):
            page.goto(f"{base}/dashboard/{path}")
            shots(page, name)
        assert "dashboard.refund" in page.content()
        assert page.problems == [], page.problems

    async def check(s: Seed, ctx: AppContext) -> None:
        parent = await s.find("ORDER-0002")
        assert parent.refunded == 30_250
        (operation,) = await s.operations("ORDER-0002")
        assert operation.state == "succeeded"

    seeded(settings, check)


def test_resolve_a_review_item(browser: Any, settings: Settings, shots: Any) -> None:
    async def seed(s: Seed, ctx: AppContext) -> None:
        await s.superuser("admin")
        await s.user("api", PASSWORD, permissions=["payment.refund"])
        await s.transaction("100.000", order_no="ORDER-STUCK")
        await s.transaction("40.000", order_no="ORDER-SLOW")

    seeded(settings, seed)
    with live_server(settings) as base:
        for order, amount in (("ORDER-STUCK", "0.994"), ("ORDER-SLOW", "1.994")):
            answer = httpx.post(
                f"{base}/b/pbl/v1/operation/{order}",
                headers=basic("api", PASSWORD),
                json={"operation": "refund", "amount": amount},
                timeout=30,
            )
            assert answer.status_code == 504, answer.text

        async def give_up(s: Seed, ctx: AppContext) -> str:
            (stuck,) = await s.operations("ORDER-STUCK")
            async with ctx.db.write() as session:
                await session.execute(
                    update(Operation)
                    .where(Operation.id == stuck.id)
                    .values(state="needs_review", claimed_until=None, reconcile_attempts=10)
                )
            return stuck.reference_number

        reference = seeded(settings, give_up)
        page = new_page(browser)
        sign_in(page, base)
        page.get_by_role("link", name="Needs review").click()
        item = page.locator("article", has_text=reference)
        shots(page, "06-needs-review")
        item.get_by_label("It failed (nothing moved)").check()
        item.get_by_label("Reason").fill("Gateway settlement report has no such refund")
        item.get_by_label("Evidence (optional: a gateway report, a ticket)").fill(
            "report 2026-11-30"
        )
        item.get_by_role("button", name="Resolve").click()
        page.wait_for_url("**/dashboard/review?done=*")
        assert "resolved as failed" in page.get_by_role("status").inner_text()
        assert page.locator("article", has_text=reference).count() == 0
        assert page.problems == [], page.problems

    async def check(s: Seed, ctx: AppContext) -> None:
        (operation,) = await s.operations("ORDER-STUCK")
        assert operation.state == "rejected" and operation.resolution["actor"] == "admin"
        assert (await s.find("ORDER-STUCK")).refunded == 0

    seeded(settings, check)


def test_retry_a_webhook(browser: Any, settings: Settings, shots: Any) -> None:
    with receiving(Receiver(script=[410], default=200)) as receiver:

        async def seed(s: Seed, ctx: AppContext) -> int:
            await s.superuser("admin")
            parent = await s.transaction("100.000", order_no="ORDER-HOOK")
            async with ctx.db.write() as session:
                event = OutboxEvent(
                    event_id="evt-browser",
                    kind="payment",
                    target_url=receiver.url,
                    state="failed",
                    attempts=10,
                    last_error="HTTP 500",
                    payload={"order_no": "ORDER-HOOK", "state": "paid"},
                    transaction_id=parent.id,
                )
                session.add(event)
                await session.flush()
                return event.id

        event_id = seeded(settings, seed)
        with live_server(settings) as base:
            page = new_page(browser)
            sign_in(page, base)
            page.get_by_role("link", name="Webhooks").click()
            shots(page, "07-webhooks")
            page.get_by_role("link", name=f"#{event_id}").click()
            page.get_by_role("button", name="Retry now").click()  # answered 410: failed again
            page.wait_for_url(f"**/dashboard/webhooks/{event_id}?retried=failed")
            assert "410" in page.locator("table").inner_text()
            page.get_by_role("button", name="Retry now").click()
            page.wait_for_url(f"**/dashboard/webhooks/{event_id}?retried=delivered")
            assert (
                page.get_by_role("heading", name=f"Webhook event #{event_id}")
                .inner_text()
                .endswith("delivered")
            )
            assert page.get_by_role("button", name="Retry now").count() == 0
            shots(page, "12-webhook")
            assert page.problems == [], page.problems
    assert len(receiver.delivered) == 1
