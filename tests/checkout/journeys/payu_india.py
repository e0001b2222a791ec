"""The customer's browser at the PayU India fake (``tests/connectors/payu_india/fake_server.py``).

PayOps's page auto-submits the ``_payment`` form; PayU's page shows a card form and a cancel
button; a decided payment answers with an auto-submitting form that POSTs the result (and its
reverse hash) to ``surl`` or ``furl``, which is the browser's next request to PayOps.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urljoin

import httpx

from tests.checkout.journeys import BrowserStep, CustomerAction
from tests.connectors.payu_india.fake_server import (
    DECLINE_CARD,
    MERCHANT_KEY,
    PENDING_CARD,
    PREAUTH_KEY,
    PREAUTH_SALT,
    SALT,
    SUCCESS_CARD,
    FakePayu,
)


@dataclass
class HtmlForm:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: list[str] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[HtmlForm] = []
        self._button = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(HtmlForm(found.get("action", ""), found.get("method", "get").upper()))
        elif tag == "input" and self.forms and found.get("name"):
            self.forms[-1].fields[found["name"]] = found.get("value", "")
        elif tag == "button":
            self._button = True

    def handle_data(self, data: str) -> None:
        if self._button and self.forms and data.strip():
            self.forms[-1].buttons.append(data.strip())

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._button = False


def forms(page: str, base_url: str) -> list[HtmlForm]:
    """Every form of an HTML page, actions made absolute against the page's URL."""
    parser = _FormParser()
    parser.feed(page)
    for form in parser.forms:
        form.action = urljoin(base_url, form.action)
    return parser.forms


def browser(step: BrowserStep) -> httpx.Response:
    """One browser request (forms form-encoded); redirects are not followed."""
    with httpx.Client(timeout=15, follow_redirects=False) as client:
        if step.method.upper() == "POST":
            return client.post(step.url, data=step.fields)
        return client.get(step.url, params=step.fields or None)


def submit(form: HtmlForm, **values: str) -> httpx.Response:
    return browser(BrowserStep(form.method, form.action, {**form.fields, **values}))


def auto_post(response: httpx.Response) -> BrowserStep | None:
    """The request an auto-submitting page makes (its only form), or None for a page without
    one (the payment is processing, or the customer was thanked and left)."""
    found = forms(response.text, str(response.url))
    if len(found) != 1 or "submit()" not in response.text:
        return None
    return BrowserStep(found[0].method, found[0].action, dict(found[0].fields))


CARDS = {"success": SUCCESS_CARD, "decline": DECLINE_CARD, "pending": PENDING_CARD}


class PayuDriver:
    connector = "payu_india"
    currency = "INR"
    amount = "1250.00"
    modes = ("purchase", "authorize")

    @contextmanager
    def fake(self) -> Iterator[FakePayu]:
        with FakePayu() as fake:
            yield fake

    def settle_operations(self, fake: FakePayu) -> None:
        """PayU queues captures, refunds and cancels: its back office settles every queued
        action (the reconciler then reads them)."""
        for payment in list(fake.payments.values()):
            for action in payment.actions:
                if action.status == "QUEUED":
                    fake.settle_action(action.request_id, "SUCCESS")

    def gateway_config(self, fake: FakePayu, mode: str) -> dict[str, Any]:
        # PayU sets pre-authorisation up per merchant account: authorize mode uses the fake's
        # pre-auth account.
        key, salt = (PREAUTH_KEY, PREAUTH_SALT) if mode == "authorize" else (MERCHANT_KEY, SALT)
        return {
            "connector": "payu_india",
            "default_currency": "INR",
            "credentials": {"merchant_key": key, "salt": salt},
            "options": {
                "base_url": fake.url,
                "default_first_name": "Asha",
                "default_email": "asha@example.com",
                "default_phone": "9876543210",
            },
        }

    def page(self, at_gateway: BrowserStep) -> list[HtmlForm]:
        response = browser(at_gateway)
        assert response.status_code == 200, response.text
        return forms(response.text, str(response.url))

    def pay(
        self, fake: FakePayu, at_gateway: BrowserStep, action: CustomerAction
    ) -> BrowserStep | None:
        response = self.act(at_gateway, action)
        step = auto_post(response)
        if action == "pending":
            assert step is None and "processed" in response.text, response.text
        else:
            assert step is not None, response.text
        return step

    def act(self, at_gateway: BrowserStep, action: CustomerAction) -> httpx.Response:
        """Open PayU's page and do ``action``: PayU's answer to the browser."""
        card_form, cancel_form = self.page(at_gateway)
        if action == "cancel":
            response = submit(cancel_form)
        else:
            response = submit(
                card_form,
                card_number=CARDS[action],
                expiry="12/30",
                cvv="123",
                name_on_card="Asha Rao",
            )
        assert response.status_code == 200, response.text
        return response

    def forge_return(self, fake: FakePayu, at_gateway: BrowserStep) -> BrowserStep:
        sent = at_gateway.fields
        fields = {
            name: sent.get(name, "")
            for name in ("key", "txnid", "productinfo", "firstname", "email", "phone")
        }
        fields.update(
            {
                "mihpayid": "403993715599999999",
                "status": "success",
                "unmappedstatus": "captured",
                "amount": sent.get("amount", ""),
                "error": "E000",
                "hash": secrets.token_hex(64),
            }
        )
        return BrowserStep("POST", sent["surl"], fields)

    def pay_without_return(self, fake: FakePayu, at_gateway: BrowserStep) -> None:
        fake.never_return = True
        try:
            response = self.act(at_gateway, "success")
            assert auto_post(response) is None and "successful" in response.text
        finally:
            fake.never_return = False

    def notify(self, fake: FakePayu, notification_url: str) -> bool:
        fake.send_webhook(notification_url)
        return True


DRIVER = PayuDriver()
