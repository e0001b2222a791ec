"""Journey driver for Tabby: a customer's browser at the fake Tabby hosted page (OTP form)."""

from __future__ import annotations

import uuid
from contextlib import AbstractContextManager
from typing import Any

import httpx

from payops.connectors.tabby.notifications import DEFAULT_HEADER_NAME
from tests.checkout.journeys import BrowserStep, CustomerAction
from tests.checkout.journeys.html_forms import the_form
from tests.connectors.tabby.fake_server import TEST_OTP, TEST_SECRET_KEY, FakeTabby, _with_query

WEBHOOK_SECRET = "tabby-webhook-header-value-7c1f0a9d2b"
DECISIONS = {"success": "approve", "decline": "reject", "cancel": "cancel"}


class TabbyDriver:
    connector = "tabby"
    currency = "KWD"
    amount = "12.500"
    modes = ("purchase", "authorize")

    def fake(self) -> AbstractContextManager[Any]:
        return FakeTabby()

    def gateway_config(self, fake: FakeTabby, mode: str) -> dict[str, Any]:
        return {
            "connector": "tabby",
            "default_currency": self.currency,
            "credentials": {"secret_key": TEST_SECRET_KEY},
            "options": {"base_url": fake.url, "merchant_code": "KW"},
            "webhook_secret": WEBHOOK_SECRET,
        }

    @staticmethod
    def _open(browser: httpx.Client, at_gateway: BrowserStep) -> httpx.Response:
        page = browser.request(at_gateway.method, at_gateway.url, data=at_gateway.fields or None)
        assert page.status_code == 200, page.text
        return page

    def _decide(self, fake: FakeTabby, at_gateway: BrowserStep, decision: str) -> httpx.Response:
        with httpx.Client(follow_redirects=False, timeout=20.0) as browser:
            page = self._open(browser, at_gateway)
            form = the_form(page.text, str(page.url))
            assert decision in form.buttons.get("decision", []), form
            return browser.request(
                form.method,
                form.action,
                data={**form.fields, "otp": TEST_OTP, "decision": decision},
            )

    def pay(
        self, fake: FakeTabby, at_gateway: BrowserStep, action: CustomerAction
    ) -> BrowserStep | None:
        if action == "pending":
            # The customer opens the page and leaves it without confirming: Tabby keeps the
            # payment CREATED (no final answer) until it expires.
            with httpx.Client(follow_redirects=False, timeout=20.0) as browser:
                self._open(browser, at_gateway)
            return None
        answer = self._decide(fake, at_gateway, DECISIONS[action])
        assert answer.status_code == 302, answer.text
        return BrowserStep("GET", answer.headers["location"])

    def forge_return(self, fake: FakeTabby, at_gateway: BrowserStep) -> BrowserStep:
        session = fake.session_of(at_gateway.url)
        return BrowserStep(
            "GET", _with_query(session["merchant_urls"]["success"], payment_id=str(uuid.uuid4()))
        )

    def pay_without_return(self, fake: FakeTabby, at_gateway: BrowserStep) -> None:
        fake.redirect_after_approve = False
        try:
            answer = self._decide(fake, at_gateway, "approve")
        finally:
            fake.redirect_after_approve = True
        assert answer.status_code == 200, answer.text

    def notify(self, fake: FakeTabby, notification_url: str) -> bool:
        with fake.lock:
            latest = max(fake.payments.values(), key=lambda p: p.created_at)
        fake.send_webhook(latest.id, notification_url, DEFAULT_HEADER_NAME, WEBHOOK_SECRET)
        return True


DRIVER = TabbyDriver()
