"""The customer's browser at the PayU India fake (``tests/connectors/payu_india/fake_server.py``).

PayOps's page auto-submits the ``_payment`` form; PayU's page shows a card form and a cancel
button; a decided payment answers with an auto-submitting form that POSTs the result (and its
reverse hash) to ``surl`` or ``furl``, which is the browser's next request to PayOps.
"""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from typing import Any

from tests.checkout.journeys import BrowserStep, CustomerAction
from tests.checkout.journeys.html_forms import FormPostDriver
from tests.connectors.payu_india.fake_server import (
    CARDS,
    MERCHANT_KEY,
    PREAUTH_KEY,
    PREAUTH_SALT,
    SALT,
    FakePayu,
)


class PayuDriver(FormPostDriver):
    connector = "payu_india"
    currency = "INR"
    amount = "1250.00"
    modes = ("purchase", "authorize")

    def fake(self) -> AbstractContextManager[Any]:
        return FakePayu()

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

    def card(self, action: CustomerAction) -> dict[str, str]:
        return {
            "card_number": CARDS[action],
            "expiry": "12/30",
            "cvv": "123",
            "name_on_card": "Asha Rao",
        }

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
