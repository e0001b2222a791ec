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

Payment side (spec/gateways-payment-acceptance.md §7.5):

- ``Action=0`` posted by the customer's browser: MerchantID/BankID, the SecureHash and the fields
  (Amount in minor units, CurrencyCode 634, ExtraFields_f14, Lang, PUN ≤ 20,
  MerchantModuleSessionID, PaymentDescription, Quantity, TransactionRequestDate ddMMyyyyHHmmss)
  are checked; a refusal is an HTML error page. A PUN already decided is refused (GUESS: what
  QPay does with a re-posted PUN is not public); an open one shows the same page again. One
  record per PUN, so inquiry (Action 14) tells the truth after a lost browser post: 1220 while
  the payer is on the page or the bank has not answered, 0000 + OriginalStatus once decided,
  8106 when the page expired without a payment (as for a PUN never seen).
- The page takes ``SUCCESS_CARD`` (0000), ``DECLINE_CARD`` (3000 "Payment Failed."),
  ``PENDING_CARD`` (processing: no post-back, 1220 until ``settle``) and a cancel button (3000,
  GUESS: QPay publishes no cancel code). A decided payment answers with an auto-submitting form
  posting the signed ``Response.*`` fields to ``ExtraFields_f14``; a page older than
  ``page_seconds`` (or ``expire(pun)``) takes nothing more, and inquiry answers 8106 for it.
- Switches: ``never_return`` (paid, no post-back), ``forge_returns`` (nothing paid, a "0000"
  post-back with a wrong hash), ``record_amount`` (QPay records and signs another amount).

Faults: the base vocabulary; ``decline`` answers the ``Status_1`` code given as ``message``
(default 5019); ``queue`` is the normal 5002 answer.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar
from urllib.parse import parse_qsl, quote_plus

import pytest

from tests.fakes import pages
from tests.fakes.base import Answer, FakeGateway, Fault, RecordedRequest

MERCHANT_ID = "simulator123"
BANK_ID = "QIB"
SECRET = "3aJYQWELpNywSw3O"  # the guide's example secret
PATH = "/qcb-pg/api/gateway/2.0"
FORM = "application/x-www-form-urlencoded; charset=UTF-8"
DATE_SHAPE = re.compile(r"^[0-9]{14}$")
PAGE_PATH = "/qcb-pg/pay"  # the fake's own card page (QPay's page addresses are not public)
SUCCESS_CARD = "4215375500883243"
DECLINE_CARD = "4215375500880001"
PENDING_CARD = "4215375500889999"
# The card a customer uses at the page for each outcome (the journey drivers).
CARDS = {"success": SUCCESS_CARD, "decline": DECLINE_CARD, "pending": PENDING_CARD}
PAYMENT_FIELDS = (
    "Action",
    "Amount",
    "BankID",
    "CurrencyCode",
    "ExtraFields_f14",
    "Lang",
    "MerchantID",
    "MerchantModuleSessionID",
    "PUN",
    "PaymentDescription",
    "Quantity",
    "TransactionRequestDate",
)
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


def signed_result_hash(fields: dict[str, str]) -> str:
    """The SecureHash of a browser post-back: the browser form-encodes the values, and the
    ``StatusMessage`` enters the hash as encoded (spec §7.2)."""
    return sign(
        {
            name: (quote_plus(value) if "StatusMessage" in name else value)
            for name, value in fields.items()
        }
    )


@dataclass
class QpayPayment:
    pun: str
    amount: int
    status: str = "0000"
    refunds: dict[str, int] = field(default_factory=dict)
    # Hosted checkout: ``decided`` (status says how), ``open`` (the payer is on the page),
    # ``processing`` (the bank has not answered) or ``expired`` (the page closed unpaid).
    stage: str = "decided"
    form: dict[str, str] = field(default_factory=dict)
    page: str = ""
    opened: float = 0.0
    message: str = ""
    confirmation: str = ""

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
        self.page_seconds = 1200.0
        self.never_return = False
        self.forge_returns = False
        self.record_amount: int | None = None

    def add_payment(self, pun: str, amount: int = 20_000, status: str = "0000") -> None:
        self.payments[pun] = QpayPayment(pun, amount, status)

    # -- protocol -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        if path.partition("?")[0] not in (PATH, PAGE_PATH + "/submit", PAGE_PATH + "/cancel"):
            return Answer(404, "<html>Not Found</html>", "text/html")
        if method != "POST":
            return Answer(405, "<html>Method Not Allowed</html>", "text/html")
        if path.partition("?")[0].startswith(PAGE_PATH) and method == "POST":
            with self.lock:
                return self._page_action(path.partition("?")[0], body)
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        if method == "POST" and form.get("Action") == "0" and path.partition("?")[0] == PATH:
            with self.lock:
                return self._open(form)
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
        if payment is not None:
            self._age(payment)
        if payment is not None and payment.stage in ("open", "processing"):
            return self._reply({"Status": "1220", "StatusMessage": "Transaction in progress"})
        if payment is None or payment.stage == "expired":
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
        if payment is None or payment.status != "0000" or payment.stage != "decided":
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

    # -- payment side: the hosted page -----------------------------------------------------------
    def _age(self, payment: QpayPayment) -> bool:
        """A page left open longer than ``page_seconds`` takes nothing more (expired)."""
        if payment.stage == "open" and time.monotonic() - payment.opened > self.page_seconds:
            payment.stage = "expired"
            return True
        return False

    def _open(self, form: dict[str, str]) -> Answer:
        problem = self._payment_problem(form)
        if problem:
            return pages.page_answer("Error", f"<p>{html.escape(problem)}</p>", 400)
        pun = form["PUN"]
        payment = self.payments.get(pun)
        if payment is not None:
            self._age(payment)
        if payment is not None and payment.stage != "open":
            return pages.page_answer(
                "Error", "<p>Duplicate PUN: this transaction was already submitted.</p>", 400
            )
        if payment is None:
            payment = QpayPayment(pun, int(form["Amount"]), status="", stage="open")
            self.payments[pun] = payment
            payment.page = secrets.token_urlsafe(16)
            payment.opened = time.monotonic()
        payment.form = dict(form)
        return self._card_page(payment, "")

    @staticmethod
    def _payment_problem(form: dict[str, str]) -> str:
        for name in PAYMENT_FIELDS:
            if not form.get(name, "").strip():
                return f"Missing field {name}"
        if form["MerchantID"] != MERCHANT_ID or form["BankID"] != BANK_ID:
            return "Invalid merchant"
        if form.get("SecureHash") != sign(form):
            return "Invalid secure hash"
        if not form["Amount"].isdigit() or int(form["Amount"]) <= 0:
            return "Invalid amount"
        if form["CurrencyCode"] != "634":
            return "Currency not supported"
        if len(form["PUN"]) > 20 or not DATE_SHAPE.match(form["TransactionRequestDate"]):
            return "Invalid request"
        return ""

    def _card_page(self, payment: QpayPayment, error: str) -> Answer:
        inputs = (
            '<label>Debit card number <input name="card_number"></label>'
            '<label>Expiry <input name="expiry" placeholder="MM/YY"></label>'
            '<label>PIN <input name="pin" type="password"></label>'
        )
        body = (
            f"<p>Pay QAR {payment.amount / 100:.2f} to {MERCHANT_ID}</p>"
            f"{pages.error_notice(error)}{pages.card_forms(PAGE_PATH, payment.page, inputs)}"
        )
        return pages.page_answer("QPay", body)

    def _page_action(self, base: str, body: bytes) -> Answer:
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        payment = next(
            (p for p in self.payments.values() if p.page and p.page == form.get("session")), None
        )
        if payment is None or payment.stage != "open":
            return pages.page_answer("Error", "<p>This payment session is not open.</p>", 400)
        if self._age(payment):
            return pages.page_answer("Expired", "<p>Your session has expired.</p>")
        if base == PAGE_PATH + "/cancel":
            return self._decide(payment, "3000", "Payment Cancelled by the customer")
        card = form.get("card_number", "").replace(" ", "")
        if card == PENDING_CARD:
            payment.stage = "processing"
            return pages.page_answer("Processing", "<p>Your payment is being processed.</p>")
        if card not in (SUCCESS_CARD, DECLINE_CARD) or not form.get("pin"):
            return self._card_page(payment, "Invalid card details")
        if self.forge_returns:
            fields = self._result_fields(payment, "0000", "Payment Processed Successfully")
            return pages.auto_post(
                payment.form["ExtraFields_f14"],
                {**fields, "SecureHash": secrets.token_hex(32)},
                form_id="qpay_return",
                prefix="Response.",
            )
        if card == DECLINE_CARD:
            return self._decide(payment, "3000", "Payment Failed.")
        if self.record_amount is not None:
            payment.amount = self.record_amount
        if self.never_return:
            self._record(payment, "0000", "Payment Processed Successfully")
            return pages.page_answer(
                "Thank you", "<p>Payment successful. You may close this window.</p>"
            )
        return self._decide(payment, "0000", "Payment Processed Successfully")

    def _record(self, payment: QpayPayment, status: str, message: str) -> None:
        payment.stage, payment.status, payment.message = "decided", status, message
        payment.confirmation = str(next(self._confirmations))

    def _decide(self, payment: QpayPayment, status: str, message: str) -> Answer:
        self._record(payment, status, message)
        fields = self._result_fields(payment, status, message)
        fields["SecureHash"] = signed_result_hash(fields)
        return pages.auto_post(
            payment.form["ExtraFields_f14"], fields, form_id="qpay_return", prefix="Response."
        )

    def _result_fields(self, payment: QpayPayment, status: str, message: str) -> dict[str, str]:
        form = payment.form
        return {
            "AcquirerID": "030003",
            "Amount": str(payment.amount),
            "BankID": BANK_ID,
            "CardExpiryDate": "3006",
            "CardHolderName": "NOT_CAPTURED",
            "CardNumber": "421537******3243",
            "ConfirmationID": payment.confirmation or "0",
            "CurrencyCode": "634",
            "EZConnectResponseDate": "30112026161626",
            "Lang": form.get("Lang", "en"),
            "MerchantID": MERCHANT_ID,
            "MerchantModuleSessionID": form.get("MerchantModuleSessionID", ""),
            "PUN": payment.pun,
            "Status": status,
            "StatusMessage": message,
        }

    # -- payment side: controls for tests --------------------------------------------------------
    def expire(self, pun: str) -> None:
        """The payer's page closed without a payment."""
        with self.lock:
            payment = self.payments[pun]
            assert payment.stage == "open", payment.stage
            payment.stage = "expired"

    def settle(self, pun: str, status: str = "0000") -> None:
        """A processing payment gets the bank's answer."""
        with self.lock:
            payment = self.payments[pun]
            assert payment.stage == "processing", payment.stage
            self._record(
                payment,
                status,
                "Payment Processed Successfully" if status == "0000" else "Payment Failed.",
            )

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
