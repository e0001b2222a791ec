"""The customer's browser at the QPay fake (``tests/connectors/qpay/fake_server.py``).

PayOps's page auto-submits the signed Action 0 form; QPay's page takes a debit card (or a
cancel); a decided payment answers with an auto-submitting form that POSTs the signed
``Response.*`` fields to ``ExtraFields_f14``, the browser's next request to PayOps. QPay sends
no server-to-server notification: a payer who never returns is settled by the automatic attempt
inquiry (Action 14).
"""

from __future__ import annotations

import secrets
from contextlib import AbstractContextManager
from typing import Any

from tests.checkout.journeys import BrowserStep, CustomerAction
from tests.checkout.journeys.html_forms import FormPostDriver
from tests.connectors.qpay.fake_server import (
    BANK_ID,
    CARDS,
    MERCHANT_ID,
    SECRET,
    FakeQpay,
)


class QpayDriver(FormPostDriver):
    connector = "qpay"
    currency = "QAR"
    amount = "200.00"
    modes = ("purchase",)

    def fake(self) -> AbstractContextManager[Any]:
        return FakeQpay()

    def gateway_config(self, fake: FakeQpay, mode: str) -> dict[str, Any]:
        fake.partial_refunds = True  # the merchant account allows partial refunds
        return {
            "connector": "qpay",
            "default_currency": "QAR",
            "credentials": {"merchant_id": MERCHANT_ID, "bank_id": BANK_ID, "secret_key": SECRET},
            # Partial refunds are enabled per QPay merchant account (the journey refunds half).
            "options": {"base_url": fake.url, "partial_refunds": True},
        }

    def card(self, action: CustomerAction) -> dict[str, str]:
        return {"card_number": CARDS[action], "expiry": "06/30", "pin": "1234"}

    def forge_return(self, fake: FakeQpay, at_gateway: BrowserStep) -> BrowserStep:
        sent = at_gateway.fields
        fields = {
            "Response.Amount": sent.get("Amount", ""),
            "Response.BankID": BANK_ID,
            "Response.CurrencyCode": "634",
            "Response.MerchantID": MERCHANT_ID,
            "Response.PUN": sent.get("PUN", ""),
            "Response.Status": "0000",
            "Response.StatusMessage": "Payment Processed Successfully",
            "Response.ConfirmationID": "202311309999999999",
            "Response.SecureHash": secrets.token_hex(32),
        }
        return BrowserStep("POST", sent["ExtraFields_f14"], fields)

    def notify(self, fake: FakeQpay, notification_url: str) -> bool:
        return False  # QPay sends no notification (spec §7.1 step 3)


DRIVER = QpayDriver()
