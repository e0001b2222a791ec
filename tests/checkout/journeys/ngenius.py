"""Journey driver for N-Genius: a customer's browser at the fake N-Genius payment page."""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from typing import Any

import httpx

from payops.connectors.ngenius.notifications import DEFAULT_HEADER_NAME
from tests.checkout.journeys import BrowserStep, CustomerAction
from tests.checkout.journeys.html_forms import the_form
from tests.connectors.ngenius.fake_server import (
    API_KEY,
    CARD_3DS_PENDING,
    CARD_APPROVED,
    CARD_DECLINED,
    OUTLET,
    FakeNgenius,
    _with_query,
)

WEBHOOK_SECRET = "ngenius-webhook-header-value-3e8b51c2"
CARDS = {"success": CARD_APPROVED, "decline": CARD_DECLINED, "pending": CARD_3DS_PENDING}


class NgeniusDriver:
    connector = "ngenius"
    currency = "AED"
    amount = "125.50"
    modes = ("purchase", "authorize")

    def fake(self) -> AbstractContextManager[Any]:
        return FakeNgenius()

    def gateway_config(self, fake: FakeNgenius, mode: str) -> dict[str, Any]:
        return {
            "connector": "ngenius",
            "default_currency": self.currency,
            "credentials": {"api_key": API_KEY, "outlet_reference": OUTLET},
            # The payer's email is required by N-Genius; sessions without one use this.
            "options": {"base_url": fake.url, "default_email": "payments@merchant.example"},
            "webhook_secret": WEBHOOK_SECRET,
        }

    @staticmethod
    def _submit(at_gateway: BrowserStep, action: str, card: str = "") -> httpx.Response:
        with httpx.Client(follow_redirects=False, timeout=20.0) as browser:
            page = browser.request(
                at_gateway.method, at_gateway.url, data=at_gateway.fields or None
            )
            assert page.status_code == 200, page.text
            form = the_form(page.text, str(page.url))
            assert action in form.buttons.get("action", []), form
            fields = {**form.fields, "action": action}
            if action == "pay":
                fields.update(pan=card, expiry="04/29", cvv="123", cardholderName="Test Holder")
            return browser.request(form.method, form.action, data=fields)

    def pay(
        self, fake: FakeNgenius, at_gateway: BrowserStep, action: CustomerAction
    ) -> BrowserStep | None:
        if action == "cancel":
            answer = self._submit(at_gateway, "cancel")
        else:
            answer = self._submit(at_gateway, "pay", CARDS[action])
        if action == "pending":
            assert answer.status_code == 200, answer.text  # the 3-D Secure page never finishes
            return None
        assert answer.status_code == 302, answer.text
        return BrowserStep("GET", answer.headers["location"])

    def forge_return(self, fake: FakeNgenius, at_gateway: BrowserStep) -> BrowserStep:
        order = fake.order_of_page(at_gateway.url)
        assert order.redirect_url
        made_up = "-".join(secrets.token_hex(n) for n in (4, 2, 2, 2, 6))
        return BrowserStep("GET", _with_query(order.redirect_url, ref=made_up))

    def pay_without_return(self, fake: FakeNgenius, at_gateway: BrowserStep) -> None:
        fake.redirect_after_payment = False
        try:
            answer = self._submit(at_gateway, "pay", CARD_APPROVED)
        finally:
            fake.redirect_after_payment = True
        assert answer.status_code == 200, answer.text

    def notify(self, fake: FakeNgenius, notification_url: str) -> bool:
        with fake.lock:
            latest = max((o for o in fake.orders.values() if o.code), key=lambda o: o.created_at)
        fake.send_webhook(latest.ref, notification_url, DEFAULT_HEADER_NAME, WEBHOOK_SECRET)
        return True


DRIVER = NgeniusDriver()
