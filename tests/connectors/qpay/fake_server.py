"""A local fake of QPay's EZ-Connect gateway (refund Action 6, inquiry Action 14), written from the
protocol document (spec/gateway-protocol-check.md §8, gateways-knet-payu-qpay-tap-checkoutcom.md
§3), not from the connector.

- ``POST /qcb-pg/api/gateway/2.0``, form-encoded. ``MerchantID``/``BankID`` must be the merchant's
  and ``SecureHash`` must be SHA-256(secret + values sorted by name); otherwise an envelope
  refusal ``EZConnectRequestStatus=EZConnect-0009`` (GUESS: the code QPay uses for a bad hash is
  not public; ``EZConnect-0008`` is the documented IP refusal, served by ``blocked_ip``).
- Replies are form-encoded with ``Response.`` names and a ``Response.SecureHash`` computed with
  the guide's quirk (fields whose name contains ``StatusMessage`` hashed as sent, ``+`` for
  spaces). ``bad_signature`` makes the next reply's hash wrong.
- Ledger: payments by PUN (``0000`` paid, ``3000`` failed) with their refunds. Refund: 5002 when
  accepted; 5004 unknown original; 5006/8108 currency; 8107 amount ≤ 0; 5008 more than what is
  left (or a partial refund when ``partial_refunds`` is off, as one integration reports); 5015
  fully refunded already; 5003 a PUN_1 used before. Inquiry: 0000 + the payment's status, or 8106.

Faults: the base vocabulary; ``decline`` answers the ``Status_1`` code given as ``message``
(default 5019); ``queue`` is the normal 5002 answer.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import parse_qsl, quote_plus

import pytest

from tests.fakes.base import Answer, FakeGateway, Fault, RecordedRequest

MERCHANT_ID = "simulator123"
BANK_ID = "QIB"
SECRET = "3aJYQWELpNywSw3O"  # the guide's example secret
PATH = "/qcb-pg/api/gateway/2.0"
FORM = "application/x-www-form-urlencoded; charset=UTF-8"
DATE_SHAPE = re.compile(r"^[0-9]{14}$")
MESSAGES = {
    "5002": "Refund Transaction is pending",
    "5003": "Duplicate request",
    "5004": "Original transaction not found",
    "5006": "Currency mismatch",
    "5008": "Refund amount cannot be higher than booking amount",
    "5015": "Transaction already refunded",
    "5019": "Payment validation failed",
    "8107": "Amount must be greater than zero",
    "8108": "Currency not supported",
}


def sign(fields: dict[str, str]) -> str:
    joined = "".join(
        fields[k]
        for k in sorted(fields, key=lambda n: n.encode())
        if k != "SecureHash" and fields[k]
    )
    return hashlib.sha256((SECRET + joined).encode()).hexdigest()


def encode_reply(fields: dict[str, str], *, corrupt: bool = False) -> str:
    """``Response.``-prefixed form body, signed with the StatusMessage quirk."""
    wire = {name: quote_plus(value) for name, value in fields.items()}
    hashed = {
        name: (wire[name] if "StatusMessage" in name else value) for name, value in fields.items()
    }
    digest = sign(hashed)
    if corrupt:
        digest = digest[::-1]
    pairs = [f"Response.{name}={wire[name]}" for name in fields]
    return "&".join([*pairs, f"Response.SecureHash={digest}"])


@dataclass
class QpayPayment:
    pun: str
    amount: int
    status: str = "0000"
    refunds: dict[str, int] = field(default_factory=dict)

    @property
    def refunded(self) -> int:
        return sum(self.refunds.values())


class FakeQpay(FakeGateway):
    EXTRA_FAULTS: ClassVar[tuple[str, ...]] = ("bad_signature", "blocked_ip")
    malformed_body: ClassVar[str] = "<html>Service Unavailable</html>"
    malformed_content_type: ClassVar[str] = "text/html"

    def __init__(self) -> None:
        super().__init__()
        self.payments: dict[str, QpayPayment] = {}
        self.partial_refunds = False
        self._confirmations = itertools.count(202311300000000001)

    def add_payment(self, pun: str, amount: int = 20_000, status: str = "0000") -> None:
        self.payments[pun] = QpayPayment(pun, amount, status)

    # -- protocol -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if path.partition("?")[0] != PATH:
            return Answer(404, "<html>Not Found</html>", "text/html")
        if method != "POST":
            return Answer(405, "<html>Method Not Allowed</html>", "text/html")
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        if form.get("MerchantID") != MERCHANT_ID or form.get("BankID") != BANK_ID:
            return self._envelope("EZConnect-0001", "Invalid merchant")  # GUESS
        if form.get("SecureHash") != sign(form):
            return self._envelope("EZConnect-0009", "Invalid secure hash")  # GUESS
        with self.lock:
            if form.get("Action") == "14":
                return self._inquiry(form)
            if form.get("Action") == "6":
                return self._refund(form)
        return self._reply({"Status": "8200", "StatusMessage": "Action not supported"})

    def _reply(self, fields: dict[str, str], *, corrupt: bool = False) -> Answer:
        fields = {**fields, "EZConnectResponseDate": "30112026101500"}
        return Answer(200, encode_reply(fields, corrupt=corrupt), FORM)

    def _envelope(self, code: str, text: str) -> Answer:
        return self._reply({"EZConnectRequestStatus": code, "EZConnectStatusMessage": text})

    def _inquiry(self, form: dict[str, str]) -> Answer:
        payment = self.payments.get(form.get("OriginalPUN", ""))
        if payment is None:
            return self._reply(
                {"Status": "8106", "StatusMessage": "Try to Inquiry about unfounded transaction"}
            )
        paid = payment.status == "0000"
        return self._reply(
            {
                "Status": "0000",
                "StatusMessage": "Inquiry Processed Successfully",
                "OriginalStatus": payment.status,
                "OriginalStatusMessage": "Payment Processed Successfully"
                if paid
                else "Payment Failed.",
                "OriginalPUN": payment.pun,
                "OriginalConfirmationID": "202311290113174499433083352",
                "OriginalExtractStatus": "",
                "OriginalReversalStatus": "",
                "Amount": str(payment.amount),
                "CurrencyCode": "634",
                "ApprovalCode": "123456",
                "CardNumber": "421537******3243",
                "TransactionResponseDate": "29112026101010",
            }
        )

    def _refund(self, form: dict[str, str]) -> Answer:
        code = self._refund_code(form)
        fields = {
            "Status_1": code,
            "StatusMessage_1": MESSAGES.get(code, "Refund refused"),
            "Amount_1": form.get("Amount_1", ""),
            "CurrencyCode_1": "634",
            "PUN_1": form.get("PUN_1", ""),
            "OriginalTransactionPaymentUniqueNumber_1": form.get(
                "OriginalTransactionPaymentUniqueNumber_1", ""
            ),
            "ConfirmationID_1": str(next(self._confirmations)) if code == "5002" else "",
            "Lang_1": form.get("Lang", ""),
            "TransactionRequestDate_1": "30/11/2026 10:15:00",
            "EZConnectRequestStatus": "EZConnect-0000",
        }
        return self._reply(fields)

    def _refund_code(self, form: dict[str, str]) -> str:
        for name in (
            "Amount_1",
            "OriginalTransactionPaymentUniqueNumber_1",
            "PUN_1",
            "Lang",
            "TransactionRequestDate",
        ):
            if not form.get(name):
                return "5019"
        if "RequestDate" not in form or not DATE_SHAPE.match(form["TransactionRequestDate"]):
            return "5019"
        if form.get("CurrencyCode") != "634":
            return "8108"
        if not form["Amount_1"].isdigit():
            return "5019"
        amount = int(form["Amount_1"])
        if amount <= 0:
            return "8107"
        payment = self.payments.get(form["OriginalTransactionPaymentUniqueNumber_1"])
        if payment is None or payment.status != "0000":
            return "5004"
        if any(form["PUN_1"] in p.refunds for p in self.payments.values()):
            return "5003"
        if payment.refunded >= payment.amount:
            return "5015"
        if amount > payment.amount - payment.refunded:
            return "5008"
        if not self.partial_refunds and amount != payment.amount:
            return "5008"
        payment.refunds[form["PUN_1"]] = amount
        return "5002"

    def decline_answer(self, fault: Fault, request: RecordedRequest) -> Answer:
        code = fault.message or "5019"
        form = dict(parse_qsl(request.body.decode(), keep_blank_values=True))
        return self._reply(
            {
                "Status_1": code,
                "StatusMessage_1": MESSAGES.get(code, "Refused"),
                "Amount_1": form.get("Amount_1", ""),
                "PUN_1": form.get("PUN_1", ""),
                "EZConnectRequestStatus": "EZConnect-0000",
            }
        )

    def queue_answer(self, fault: Fault, request: RecordedRequest) -> Answer:
        return self.answer(request)

    def extra_fault(self, fault: Fault, request: RecordedRequest) -> Answer | None:
        if fault.kind == "blocked_ip":
            return self._envelope("EZConnect-0008", "Merchant IP is not supported")
        answer = self.answer(request)
        body = str(answer.body)
        head, _, digest = body.rpartition("Response.SecureHash=")
        return Answer(answer.status, f"{head}Response.SecureHash={digest[::-1]}", FORM)

    def sent(self, index: int = -1) -> dict[str, str]:
        return dict(parse_qsl(self.requests[index].body.decode(), keep_blank_values=True))


@pytest.fixture
def fake_qpay() -> Iterator[FakeQpay]:
    yield from FakeQpay().serving()
