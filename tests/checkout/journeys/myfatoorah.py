"""The customer's browser at the fake MyFatoorah's invoice page (tests/connectors/myfatoorah)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx

from tests.checkout.journeys import BrowserStep, CustomerAction
from tests.connectors.myfatoorah.fake_server import (
    CARD_DECLINE,
    CARD_PENDING,
    CARD_SUCCESS,
    TEST_API_TOKEN,
    FakeInvoice,
    FakeMyFatoorah,
)

WEBHOOK_SECRET = "mf-webhook-secret-journeys"  # made up here


class _Form(HTMLParser):
    """The first form of a page: its action and its input fields."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "form" and self.action is None:
            self.action = found.get("action", "")
        elif tag == "input" and self.action is not None and found.get("name"):
            self.fields[found["name"]] = found.get("value", "")


def _form(page: str) -> _Form:
    parser = _Form()
    parser.feed(page)
    return parser


class MyFatoorahDriver:
    connector = "myfatoorah"
    currency = "KWD"
    amount = "12.500"
    modes = ("purchase", "authorize")

    def __init__(self) -> None:
        self.last_invoice: str | None = None

    @contextmanager
    def fake(self) -> Iterator[FakeMyFatoorah]:
        with FakeMyFatoorah() as fake:
            fake.webhook_secret = WEBHOOK_SECRET
            yield fake

    def gateway_config(self, fake: FakeMyFatoorah, mode: str) -> dict[str, Any]:
        # An authorize-mode configuration is an Authorize-Capture account; both have MyFatoorah's
        # Auto Refund, so a refund is done at once rather than queued for finance review.
        fake.authorize_only = mode == "authorize"
        fake.auto_refund = True
        return {
            "connector": "myfatoorah",
            "default_currency": self.currency,
            "credentials": {"api_token": TEST_API_TOKEN},
            "options": {"base_url": fake.url, "auto_refund": "true"},
            "webhook_secret": WEBHOOK_SECRET,
        }

    def _invoice(self, fake: FakeMyFatoorah, at_gateway: BrowserStep) -> FakeInvoice:
        key = dict(parse_qsl(urlsplit(at_gateway.url).query)).get("invoiceKey", "")
        invoice = fake.invoice_by_key(key)
        assert invoice is not None, f"no invoice behind {at_gateway.url}"
        self.last_invoice = str(invoice.id)
        return invoice

    def pay(
        self, fake: FakeMyFatoorah, at_gateway: BrowserStep, action: CustomerAction
    ) -> BrowserStep | None:
        self._invoice(fake, at_gateway)
        with httpx.Client(follow_redirects=False, timeout=15) as browser:
            page = browser.request(
                at_gateway.method, at_gateway.url, data=at_gateway.fields or None
            )
            assert page.status_code == 200, page.text
            form = _form(page.text)
            if form.action is None:
                return None  # the page takes no card (invoice expired or already paid)
            card = {"success": CARD_SUCCESS, "decline": CARD_DECLINE, "pending": CARD_PENDING}.get(
                action, CARD_SUCCESS
            )
            fields = {
                **form.fields,
                "card_number": card,
                "expiry": "12/30",
                "cvv": "123",
                "cardholder_name": "Test Customer",
                "action": "cancel" if action == "cancel" else "pay",
            }
            answer = browser.post(urljoin(at_gateway.url, form.action), data=fields)
        if answer.status_code in (302, 303):
            return BrowserStep("GET", urljoin(at_gateway.url, answer.headers["location"]))
        assert answer.status_code == 200, answer.text
        return None  # held (3-D Secure), or a page that never sends the browser back

    def forge_return(self, fake: FakeMyFatoorah, at_gateway: BrowserStep) -> BrowserStep:
        invoice = self._invoice(fake, at_gateway)
        made_up = "0707" + "".join(secrets.choice("0123456789") for _ in range(16))
        joiner = "&" if "?" in invoice.callback_url else "?"
        return BrowserStep("GET", f"{invoice.callback_url}{joiner}paymentId={made_up}&Id={made_up}")

    def pay_without_return(self, fake: FakeMyFatoorah, at_gateway: BrowserStep) -> None:
        fake.never_return = True
        try:
            assert self.pay(fake, at_gateway, "success") is None
        finally:
            fake.never_return = False

    def notify(self, fake: FakeMyFatoorah, notification_url: str) -> bool:
        assert self.last_invoice is not None, "no payment to notify about"
        status = fake.send_webhook(self.last_invoice, notification_url)
        assert status < 500, status
        return True


DRIVER = MyFatoorahDriver()
