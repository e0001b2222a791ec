"""The customer's browser at the PayU India fake (``tests/connectors/payu_india/fake_server.py``).

PayOps's page auto-submits the ``_payment`` form; PayU's page shows a card form and a cancel
button; a decided payment answers with an auto-submitting form that POSTs the result (and its
reverse hash) to ``surl`` or ``furl``, which is the browser's next request to PayOps.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from tests.checkout.journeys import BrowserStep, CustomerAction
from tests.checkout.journeys.html_forms import (
    FormPostDriver,
    HtmlForm,
    auto_post,
    browser,
    forms,
    submit,
)
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

CARDS = {"success": SUCCESS_CARD, "decline": DECLINE_CARD, "pending": PENDING_CARD}


class PayuDriver(FormPostDriver):
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

    def notify(self, fake: FakePayu, notification_url: str) -> bool:
        fake.send_webhook(notification_url)
        return True


DRIVER = PayuDriver()
