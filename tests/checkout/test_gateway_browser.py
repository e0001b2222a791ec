"""One gateway journey in a real browser (issue 17): Chromium through Playwright pays a checkout
session at the MPGS fake's Hosted Checkout page and comes back to PayOps.

It checks what httpx cannot: the hosted page's Content-Security-Policy lets the browser go to
the gateway and back (a form-action that blocked the redirect would stop it here), and nothing
on PayOps's pages breaks the policy. Screenshots go to ``$PAYOPS_SCREENSHOTS`` when set
(``PAYOPS_SCREENSHOTS=docs/checkout`` refreshes the ones in the docs).
"""

from __future__ import annotations

from typing import Any

import pytest

from payops.config import Settings
from tests.checkout.test_gateway_journeys import shop
from tests.connectors.mpgs.checkout_fake import SUCCESS_CARD
from tests.dashboard.test_browser import browser, browser_lock, new_page, shots  # noqa: F401

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("browser")]


@pytest.fixture
def backend() -> str:
    return "sqlite"


def test_mpgs_payment_in_a_real_browser(
    browser: Any,
    settings: Settings,  # noqa: F811
    shots: Any,
) -> None:  # noqa: F811
    with shop(settings, "mpgs", "purchase") as s:
        # No redirect_url: the customer ends on PayOps's own summary page.
        created = s.create(order_no="BROWSER-1", redirect_url="")
        page = new_page(browser)
        failed: list[str] = []
        page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)
        page.goto(created["checkout_url"])
        page.get_by_role("heading", name="Choose how to pay").wait_for()
        shots(page, "hosted-page-methods")
        page.get_by_role("button", name=f"Pay with {s.pg_code}").click()
        page.wait_for_url(f"{s.fake.url}/checkout/pay/**")
        page.get_by_label("Card number").fill(SUCCESS_CARD)
        page.get_by_label("Expiry (MM/YY)").fill("05/39")
        page.get_by_label("Security code").fill("123")
        shots(page, "gateway-fake-page")
        page.get_by_role("button", name="Pay").click()
        page.wait_for_url(f"{s.base}/checkout/return/**")
        page.get_by_role("heading", name="Payment successful").wait_for()
        shots(page, "hosted-page-paid")
        # Nothing failed or broke the pages' policies (a missing favicon is not a problem).
        assert [u for u in failed if not u.endswith("/favicon.ico")] == []
        assert len([p for p in page.problems if "404" not in p]) == 0, page.problems
        assert s.parent(created["session_id"]).state == "paid"
        [attempt] = s.attempts(created["session_id"])
        assert attempt.reference_number in page.content()
