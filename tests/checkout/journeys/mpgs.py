"""The customer's browser at the MPGS fake's Hosted Checkout page (JourneyDriver for "mpgs")."""

from __future__ import annotations

import re
import secrets
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urljoin

import httpx

from tests.checkout.journeys import BrowserStep, CustomerAction
from tests.connectors.mpgs.checkout_fake import DECLINED_CARD, PENDING_CARD, SUCCESS_CARD
from tests.connectors.mpgs.fake_server import API_PASSWORD, MERCHANT_ID, FakeMpgs

NOTIFICATION_SECRET = "mpgs-notification-secret-5b1f0c2e"
CARD_FOR = {"success": SUCCESS_CARD, "decline": DECLINED_CARD, "pending": PENDING_CARD}


def _browser() -> httpx.Client:
    return httpx.Client(follow_redirects=False, timeout=15)


class MpgsDriver:
    connector = "mpgs"
    currency = "KWD"
    amount = "12.500"
    modes = ("purchase", "authorize")

    def fake(self) -> AbstractContextManager[Any]:
        return FakeMpgs()

    def gateway_config(self, fake: FakeMpgs, mode: str) -> dict[str, Any]:
        fake.checkout.notification_secret = NOTIFICATION_SECRET
        return {
            "connector": "mpgs",
            "default_currency": self.currency,
            "credentials": {"merchant_id": MERCHANT_ID, "api_password": API_PASSWORD},
            "options": {"base_url": fake.url},
            "webhook_secret": NOTIFICATION_SECRET,
        }

    def pay(
        self, fake: FakeMpgs, at_gateway: BrowserStep, action: CustomerAction
    ) -> BrowserStep | None:
        with _browser() as browser:
            page = browser.get(at_gateway.url)
            assert page.status_code == 200, page.text
            if action == "cancel":
                link = re.search(r'id="cancel" href="([^"]+)"', page.text)
                assert link is not None, page.text
                gone = browser.get(urljoin(at_gateway.url, link.group(1)))
            else:
                form = re.search(r'<form method="post" action="([^"]+)"', page.text)
                assert form is not None, page.text
                gone = browser.post(
                    urljoin(at_gateway.url, form.group(1)),
                    data={"cardNumber": CARD_FOR[action], "expiry": "05/39", "securityCode": "123"},
                )
            if action == "pending":
                assert gone.status_code == 200 and "Waiting for your bank" in gone.text
                return None
            assert gone.status_code == 303, gone.text
            return BrowserStep("GET", gone.headers["location"])

    def forge_return(self, fake: FakeMpgs, at_gateway: BrowserStep) -> BrowserStep:
        session = fake.checkout.session_for(at_gateway.url)
        return BrowserStep(
            "GET",
            f"{session.return_url}?resultIndicator={secrets.token_hex(8)}"
            f"&sessionVersion={session.version}",
        )

    def pay_without_return(self, fake: FakeMpgs, at_gateway: BrowserStep) -> None:
        fake.checkout.never_return = True
        try:
            with _browser() as browser:
                paid = browser.post(
                    at_gateway.url.split("?", 1)[0],
                    data={"cardNumber": SUCCESS_CARD, "expiry": "05/39", "securityCode": "123"},
                )
                assert paid.status_code == 200 and "Payment complete" in paid.text
        finally:
            fake.checkout.never_return = False

    def notify(self, fake: FakeMpgs, notification_url: str) -> bool:
        assert fake.checkout.notify(notification_url)
        return True


DRIVER = MpgsDriver()
