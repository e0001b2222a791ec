"""The customer's browser at the fake KNET payment page (tests/connectors/knet). KNET's server
posts the result to PayOps itself (the fake does it); the browser then follows REDIRECT=."""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import httpx

from tests.checkout.journeys import BrowserStep, CustomerAction
from tests.connectors.knet.fake_server import (
    EXPIRY_CAPTURED,
    EXPIRY_HELD,
    RESOURCE_KEY,
    TEST_BANK,
    TRANPORTAL_ID,
    TRANPORTAL_PASSWORD,
    FakeKnet,
)


class _Form(HTMLParser):
    """The first form of a page: its action and its named inputs/selects."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = found.get("action", "")
        elif tag in ("input", "select") and self.action is not None and found.get("name"):
            self.fields[found["name"]] = found.get("value", "")


class KnetDriver:
    connector = "knet"
    currency = "KWD"
    amount = "12.500"
    modes = ("purchase",)

    def fake(self) -> AbstractContextManager[Any]:
        return FakeKnet()

    def gateway_config(self, fake: FakeKnet, mode: str) -> dict[str, Any]:
        return {
            "connector": "knet",
            "default_currency": self.currency,
            "credentials": {
                "tranportal_id": TRANPORTAL_ID,
                "tranportal_password": TRANPORTAL_PASSWORD,
                "resource_key": RESOURCE_KEY,
            },
            "options": {"base_url": fake.url},
        }

    def pay(
        self, fake: FakeKnet, at_gateway: BrowserStep, action: CustomerAction
    ) -> BrowserStep | None:
        with httpx.Client(follow_redirects=False, timeout=30) as browser:
            page = browser.request(
                at_gateway.method, at_gateway.url, data=at_gateway.fields or None
            )
            if page.status_code in (302, 303):  # KNET refused the request: errorURL
                return BrowserStep("GET", urljoin(at_gateway.url, page.headers["location"]))
            assert page.status_code == 200, page.text
            form = _Form()
            form.feed(page.text)
            assert form.action is not None, "the KNET page has no form"
            month, year = {"success": EXPIRY_CAPTURED, "pending": EXPIRY_HELD}.get(
                action, ("10", "2021")
            )
            fields = {
                "bank": TEST_BANK,
                "cardN": "0000000001",
                "expmnth": month,
                "expyr": year,
                "pin": "1234",
            }
            fields["cancel" if action == "cancel" else "submit"] = "1"
            # The fake posts the result to PayOps and waits for REDIRECT= before answering.
            answer = browser.post(urljoin(str(page.url), form.action), data=fields)
        if answer.status_code in (302, 303):
            return BrowserStep("GET", urljoin(at_gateway.url, answer.headers["location"]))
        assert answer.status_code == 200, answer.text
        return None

    def forge_return(self, fake: FakeKnet, at_gateway: BrowserStep) -> BrowserStep:
        """The browser "back from KNET" on PayOps's error URL with made-up values: a success
        claim and an encrypted-looking ``trandata`` that KNET never made."""
        query = dict(parse_qsl(urlsplit(at_gateway.url).query))
        error_url = query["errorURL"]
        forged = urlencode(
            {
                "paymentid": "100200300400500",
                "result": "CAPTURED",
                "trandata": secrets.token_hex(64),
                "Error": "",
                "ErrorText": "",
            }
        )
        return BrowserStep("GET", f"{error_url}{'&' if '?' in error_url else '?'}{forged}")

    def pay_without_return(self, fake: FakeKnet, at_gateway: BrowserStep) -> None:
        fake.drop_notification = True
        try:
            assert self.pay(fake, at_gateway, "success") is None
        finally:
            fake.drop_notification = False

    def notify(self, fake: FakeKnet, notification_url: str) -> bool:
        return False  # KNET sends no notifications beyond its result post


DRIVER = KnetDriver()
