"""A local fake of PayU India's postservice command API, written from the protocol document
(spec/gateway-protocol-check.md §7, gateways-knet-payu-qpay-tap-checkoutcom.md §2), not from the
connector.

- ``POST /merchant/postservice.php?form=2``, ``application/x-www-form-urlencoded`` with ``key``,
  ``command``, ``var1``… and ``hash`` = sha512(``key|command|var1|salt``). An unknown key or a
  wrong hash is refused (``status 0``); the reply is JSON (``form=2``).
- Ledger: payments by ``mihpayid`` (``captured`` or ``auth``) with their actions (``request_id``,
  ``action``, ``token``, ``amt``, ``status``). Every action starts ``QUEUED``; a test settles it
  with ``settle_action`` (SUCCESS / FAILURE), as PayU does later.
- ``cancel_refund_transaction`` (var1 mihpayid, var2 token ≤ 23 characters, var3 amount with two
  decimals): a refund of a captured payment within what is left (partial allowed unless
  ``partial_refunds`` is off: 128), or the cancel of an ``auth`` payment for exactly the
  authorised amount (117 otherwise), answered with ``txn_update_id``. A token used before: 106.
- ``capture_transaction``: ``auth`` payments only, once (109 for a second), amount ≤ authorised
  (303).
- ``check_action_status``: by request id, or mihpayid + ``payuid``; ``{"status":0,"msg":"No action
  status found"}`` when nothing matches. ``verify_payment``: txnids joined by ``|``.

Faults: the base vocabulary; ``decline`` answers ``status 0`` with the ``message`` given as the
error code (default 111); ``queue`` is the normal queued answer (every command is queued).
GUESS: the texts of the refusals other than those the document quotes, and the invalid-hash reply.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import parse_qsl

import pytest

from tests.fakes.base import Answer, FakeGateway, Fault, RecordedRequest

MERCHANT_KEY = "gtKFFx"  # made up here
SALT = "eCwWELxi-made-up-salt"  # made up here
PATH = "/merchant/postservice.php"
AMOUNT_SHAPE = re.compile(r"^[0-9]{1,10}\.[0-9]{2}$")


@dataclass
class PayuAction:
    request_id: str
    action: str
    token: str
    amount: Decimal
    status: str = "QUEUED"

    def as_json(self, mihpayid: str) -> dict[str, object]:
        return {
            "mihpayid": mihpayid,
            "request_id": self.request_id,
            "amt": f"{self.amount:.2f}",
            "mode": "CC",
            "action": self.action,
            "token": self.token,
            "status": self.status,
            "bank_ref_num": None,
            "bank_arn": None,
            "refund_mode": "-",
        }


@dataclass
class PayuPayment:
    mihpayid: str
    txnid: str
    amount: Decimal
    state: str  # captured | auth | cancelled
    actions: list[PayuAction] = field(default_factory=list)

    def total(self, action: str) -> Decimal:
        return sum(
            (
                a.amount
                for a in self.actions
                if a.action == action and a.status.upper() != "FAILURE"
            ),
            Decimal("0"),
        )


class FakePayu(FakeGateway):
    def __init__(self) -> None:
        super().__init__()
        self.payments: dict[str, PayuPayment] = {}
        self.partial_refunds = True
        self._ids = itertools.count(403993715533536001)
        self._request_ids = itertools.count(137891165)

    def add_payment(self, txnid: str, amount: str = "500.00", state: str = "captured") -> str:
        mihpayid = str(next(self._ids))
        self.payments[mihpayid] = PayuPayment(mihpayid, txnid, Decimal(amount), state)
        return mihpayid

    def actions(self, mihpayid: str) -> list[PayuAction]:
        return self.payments[mihpayid].actions

    def settle_action(self, request_id: str, status: str = "SUCCESS") -> None:
        with self.lock:
            for payment in self.payments.values():
                for action in payment.actions:
                    if action.request_id == request_id:
                        action.status = status
                        if status == "SUCCESS" and action.action == "cancel":
                            payment.state = "cancelled"
                        if status == "SUCCESS" and action.action == "capture":
                            payment.state = "captured"
                            payment.amount = action.amount
                        return
        raise KeyError(request_id)

    # -- protocol -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        base, _, query = path.partition("?")
        if base not in (PATH, "/merchant/postservice"):
            return Answer(404, "<html>Not Found</html>", "text/html")
        if method != "POST":
            return Answer(405, "<html>Method Not Allowed</html>", "text/html")
        media = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if media.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            return Answer(200, {"status": 0, "msg": "Invalid request"})  # GUESS
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        if form.get("key") != MERCHANT_KEY:
            return Answer(200, {"status": 0, "msg": "Invalid key"})  # GUESS
        expected = hashlib.sha512(
            f"{form['key']}|{form.get('command', '')}|{form.get('var1', '')}|{SALT}".encode()
        ).hexdigest()
        if form.get("hash") != expected:
            return Answer(200, {"status": 0, "msg": "Invalid Hash."})  # GUESS
        command = form.get("command", "")
        with self.lock:
            if command == "cancel_refund_transaction":
                return Answer(200, self._cancel_refund(form))
            if command == "capture_transaction":
                return Answer(200, self._capture(form))
            if command == "check_action_status":
                return Answer(200, self._action_status(form))
            if command == "verify_payment":
                return Answer(200, self._verify(form))
        return Answer(200, {"status": 0, "msg": "Invalid command"})  # GUESS

    @staticmethod
    def _refusal(code: int, msg: str, mihpayid: str = "") -> dict[str, object]:
        return {"status": 0, "msg": msg, "error_code": code, "mihpayid": mihpayid}

    def _checked(
        self, form: dict[str, str]
    ) -> tuple[PayuPayment | None, Decimal | None, dict[str, object] | None]:
        mihpayid, token, amount = form.get("var1", ""), form.get("var2", ""), form.get("var3", "")
        if not mihpayid or not token or not amount:
            return None, None, self._refusal(124, "Input missing", mihpayid)
        if len(token) > 23:
            return None, None, self._refusal(124, "Token too long", mihpayid)  # GUESS
        payment = self.payments.get(mihpayid)
        if payment is None:
            return (
                None,
                None,
                self._refusal(116, "Refund FAILURE - Transaction Not Found", mihpayid),
            )
        if not AMOUNT_SHAPE.match(amount) or Decimal(amount) <= 0:
            return None, None, self._refusal(105, "Invalid amount", mihpayid)
        if any(a.token == token for p in self.payments.values() for a in p.actions):
            return None, None, self._refusal(106, "Token already exists", mihpayid)
        return payment, Decimal(amount), None

    def _new_action(
        self, payment: PayuPayment, action: str, token: str, amount: Decimal
    ) -> PayuAction:
        entry = PayuAction(str(next(self._request_ids)), action, token, amount)
        payment.actions.append(entry)
        return entry

    def _cancel_refund(self, form: dict[str, str]) -> dict[str, object]:
        payment, amount, refusal = self._checked(form)
        if refusal is not None:
            return refusal
        assert payment is not None and amount is not None
        if payment.state == "auth":
            if amount != payment.amount:
                return self._refusal(117, "Amount does not match", payment.mihpayid)
            if any(
                a.action in ("cancel", "capture") and a.status.upper() != "FAILURE"
                for a in payment.actions
            ):
                return self._refusal(111, "Invalid transaction status", payment.mihpayid)
            entry = self._new_action(payment, "cancel", form["var2"], amount)
            return {
                "status": 1,
                "msg": "Cancel Request Queued",
                "txn_update_id": entry.request_id,
                "bank_ref_num": None,
                "mihpayid": payment.mihpayid,
                "error_code": 102,
            }
        if payment.state != "captured":
            return self._refusal(111, "Invalid transaction status", payment.mihpayid)
        if amount > payment.amount - payment.total("refund"):
            return self._refusal(105, "Refund FAILURE - Invalid amount", payment.mihpayid)
        if not self.partial_refunds and amount != payment.amount:
            return self._refusal(128, "Partial refunds not allowed", payment.mihpayid)
        entry = self._new_action(payment, "refund", form["var2"], amount)
        return {
            "status": 1,
            "msg": "Refund Request Queued",
            "request_id": entry.request_id,
            "bank_ref_num": None,
            "mihpayid": int(payment.mihpayid),
            "error_code": 102,
        }

    def _capture(self, form: dict[str, str]) -> dict[str, object]:
        payment, amount, refusal = self._checked(form)
        if refusal is not None:
            return refusal
        assert payment is not None and amount is not None
        if payment.state != "auth":
            return self._refusal(111, "Invalid transaction status", payment.mihpayid)
        if any(a.action == "capture" for a in payment.actions):
            return self._refusal(109, "Capture failed / second capture attempted", payment.mihpayid)
        if amount > payment.amount:
            return self._refusal(303, "Amount greater than capturable", payment.mihpayid)
        entry = self._new_action(payment, "capture", form["var2"], amount)
        return {
            "status": 1,
            "msg": "Capture Request Queued",
            "request_id": entry.request_id,
            "bank_ref_num": "CAP" + entry.request_id,
            "error_code": 102,
        }

    def _action_status(self, form: dict[str, str]) -> dict[str, object]:
        var1, var2 = form.get("var1", ""), form.get("var2", "")
        if var2 == "payuid":
            payment = self.payments.get(var1)
            if payment is None or not payment.actions:
                return {"status": 0, "msg": "No action status found"}
            return {
                "status": 1,
                "msg": f"{len(payment.actions)} action(s) found",
                "transaction_details": {
                    payment.mihpayid: {
                        a.request_id: a.as_json(payment.mihpayid) for a in payment.actions
                    }
                },
            }
        for payment in self.payments.values():
            for action in payment.actions:
                if action.request_id == var1:
                    return {
                        "status": 1,
                        "msg": "1 out of 1 Transactions Fetched Successfully",
                        "transaction_details": {var1: {var1: action.as_json(payment.mihpayid)}},
                    }
        return {"status": 0, "msg": "No action status found"}

    def _verify(self, form: dict[str, str]) -> dict[str, object]:
        txnids = [x for x in form.get("var1", "").split("|") if x]
        details: dict[str, object] = {}
        found = 0
        for txnid in txnids:
            payment = next((p for p in self.payments.values() if p.txnid == txnid), None)
            if payment is None:
                details[txnid] = {"mihpayid": "Not Found", "status": "Not Found"}
                continue
            found += 1
            status, unmapped = {
                "captured": ("success", "captured"),
                "auth": ("success", "auth"),
                "cancelled": ("failure", "cancelled"),
                "failed": ("failure", "failed"),
                "pending": ("pending", "pending"),
            }[payment.state]
            details[txnid] = {
                "mihpayid": payment.mihpayid,
                "txnid": txnid,
                "amt": f"{payment.amount:.2f}",
                "transaction_amount": f"{payment.amount:.2f}",
                "status": status,
                "unmappedstatus": unmapped,
                "mode": "CC",
                "error_code": "E000",
                "firstname": "Asha",
                "email": "asha@example.com",
            }
        return {
            "status": 1 if found else 0,
            "msg": f"{found} out of {len(txnids)} Transactions Fetched Successfully",
            "transaction_details": details,
        }

    def decline_answer(self, fault: Fault, request: RecordedRequest) -> Answer:
        code = int(fault.message or 111)
        return Answer(200, self._refusal(code, f"Refund FAILURE - code {code}"))

    def queue_answer(self, fault: Fault, request: RecordedRequest) -> Answer:
        return self.answer(request)


@pytest.fixture
def fake_payu() -> Iterator[FakePayu]:
    yield from FakePayu().serving()
