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

Payment side (spec/gateways-payment-acceptance.md §6.5):

- ``POST /_payment`` (the customer's browser, form-encoded): the request hash
  sha512(``key|txnid|amount|productinfo|firstname|email|udf1…udf5||||||salt``) is recomputed and
  the mandatory fields (key, txnid ≤ 25, amount, productinfo, firstname, email, phone, surl,
  furl, hash) checked; a bad request or a txnid that already succeeded ("duplicate Order ID")
  gets an error page and nothing is recorded. Otherwise the payment is recorded (``initiated``)
  and a page with a card form and a cancel button is shown.
- Test cards: ``SUCCESS_CARD`` (captured, or ``auth`` for the pre-auth account ``PREAUTH_KEY``
  or when ``preauth`` is on), ``DECLINE_CARD``
  (failure/failed), ``PENDING_CARD`` (3-D Secure-style: the page says "processing", nothing is
  posted back, verify_payment says pending/in progress until ``settle``). Cancel:
  failure/userCancelled. A page older than ``page_seconds`` (or ``expire(txnid)``): the payer is
  gone, failure/bounced (for the page's next submit and for verify_payment alike).
- The answer to a decided payment is an auto-submitting form that POSTs every response field and
  the reverse hash sha512(``salt|status||||||udf5…udf1|email|firstname|productinfo|amount|txnid|
  key``) to ``surl`` (success) or ``furl``; ``amount`` is echoed with two decimals.
  ``additional_charges`` adds ``additionalCharges`` (and its hash sequence).
- Switches: ``never_return`` (paid, the browser is shown a thank-you page and never posts back),
  ``forge_returns`` (nothing is paid, the browser posts a "success" with a wrong hash),
  ``record_amount`` (PayU records and reports a different amount). ``send_webhook(url)`` posts the
  last decided payment's fields (with their hash) as PayU's payment webhook.

Faults: the base vocabulary; ``decline`` answers ``status 0`` with the ``message`` given as the
error code (default 111); ``queue`` is the normal queued answer (every command is queued).
GUESS: the texts of the refusals other than those the document quotes, and the invalid-hash reply.
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
from decimal import Decimal
from urllib.parse import parse_qsl

import httpx
import pytest

from tests.fakes import pages
from tests.fakes.base import Answer, FakeGateway, Fault, RecordedRequest

MERCHANT_KEY = "gtKFFx"  # made up here
SALT = "eCwWELxi-made-up-salt"  # made up here
# A second merchant account, set up by PayU for pre-authorisation (its payments are ``auth``).
PREAUTH_KEY = "pRe4uT"  # made up here
PREAUTH_SALT = "pre-auth-made-up-salt"  # made up here
ACCOUNTS = {MERCHANT_KEY: SALT, PREAUTH_KEY: PREAUTH_SALT}
PATH = "/merchant/postservice.php"
AMOUNT_SHAPE = re.compile(r"^[0-9]{1,10}\.[0-9]{2}$")
CHECKOUT_PATH = "/_payment"
CHECKOUT_AMOUNT_SHAPE = re.compile(r"^[0-9]{1,10}(\.[0-9]{1,2})?$")
SUCCESS_CARD = "5123456789012346"  # PayU's published test card
DECLINE_CARD = "4000000000000002"
PENDING_CARD = "4000000000003220"
# The card a customer uses at the page for each outcome (the journey drivers).
CARDS = {"success": SUCCESS_CARD, "decline": DECLINE_CARD, "pending": PENDING_CARD}
UDFS = ("udf1", "udf2", "udf3", "udf4", "udf5")
# verify_payment's words for each state of the fake's records.
STATE_WORDS = {
    "captured": ("success", "captured"),
    "auth": ("success", "auth"),
    "cancelled": ("failure", "cancelled"),
    "failed": ("failure", "failed"),
    "pending": ("pending", "in progress"),
    "initiated": ("pending", "initiated"),
    "usercancelled": ("failure", "userCancelled"),
    "bounced": ("failure", "bounced"),
}


def checkout_hash(form: dict[str, str]) -> str:
    """The ``_payment`` request hash as PayU recomputes it (spec §6.1)."""
    values = [
        form.get(n, "")
        for n in ("key", "txnid", "amount", "productinfo", "firstname", "email", *UDFS)
    ]
    salt = ACCOUNTS.get(form.get("key", ""), "")
    return hashlib.sha512("|".join([*values, "", "", "", "", "", salt]).encode()).hexdigest()


def response_hash(fields: dict[str, str]) -> str:
    """The reverse hash PayU puts on a post-back (spec §6.1 step 5, ``status`` included)."""
    values = [
        ACCOUNTS[fields["key"]],
        fields["status"],
        "",
        "",
        "",
        "",
        "",
        *(fields.get(n, "") for n in reversed(UDFS)),
        *(fields[n] for n in ("email", "firstname", "productinfo", "amount", "txnid", "key")),
    ]
    if fields.get("additionalCharges"):
        values.insert(0, fields["additionalCharges"])
    return hashlib.sha512("|".join(values).encode()).hexdigest()


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
    state: str  # a key of STATE_WORDS
    actions: list[PayuAction] = field(default_factory=list)
    # The ``_payment`` form that created it (hosted checkout), the page's token and its age.
    form: dict[str, str] = field(default_factory=dict)
    page: str = ""
    opened: float = 0.0
    answer: dict[str, str] = field(default_factory=dict)  # the last post-back's fields

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
        # Payment side switches (see the module's docstring).
        self.preauth = False
        self.page_seconds = 900.0
        self.never_return = False
        self.forge_returns = False
        self.additional_charges: str = ""
        self.record_amount: Decimal | None = None
        self.last_decided: PayuPayment | None = None

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
        if base.startswith(CHECKOUT_PATH) and method == "POST":
            with self.lock:
                return self._checkout(base, body)
        if base not in (PATH, "/merchant/postservice"):
            return Answer(404, "<html>Not Found</html>", "text/html")
        if method != "POST":
            return Answer(405, "<html>Method Not Allowed</html>", "text/html")
        media = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
        if media.split(";")[0].strip().lower() != "application/x-www-form-urlencoded":
            return Answer(200, {"status": 0, "msg": "Invalid request"})  # GUESS
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        if form.get("key") not in ACCOUNTS:
            return Answer(200, {"status": 0, "msg": "Invalid key"})  # GUESS
        expected = hashlib.sha512(
            f"{form['key']}|{form.get('command', '')}|{form.get('var1', '')}|"
            f"{ACCOUNTS[form['key']]}".encode()
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
            payment = self.by_txnid(txnid)
            if payment is None:
                details[txnid] = {"mihpayid": "Not Found", "status": "Not Found"}
                continue
            self._age(payment)
            found += 1
            status, unmapped = STATE_WORDS[payment.state]
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

    # -- payment side: the hosted page -----------------------------------------------------------
    def by_txnid(self, txnid: str) -> PayuPayment | None:
        return next((p for p in self.payments.values() if p.txnid == txnid), None)

    def _checkout(self, base: str, body: bytes) -> Answer:
        form = dict(parse_qsl(body.decode(), keep_blank_values=True))
        if base == CHECKOUT_PATH:
            return self._open(form)
        payment = next(
            (p for p in self.payments.values() if p.page and p.page == form.get("session")), None
        )
        if payment is None or payment.state not in ("initiated",):
            return pages.page_answer("Error", "<p>This payment session is not open.</p>", 400)
        if self._age(payment):
            return self._post_back(payment, "furl")
        if base == CHECKOUT_PATH + "/cancel":
            payment.state = "usercancelled"
            return self._post_back(payment, "furl")
        if base != CHECKOUT_PATH + "/submit":
            return Answer(404, "<html>Not Found</html>", "text/html")
        card = form.get("card_number", "").replace(" ", "")
        if card == PENDING_CARD:
            payment.state = "pending"
            return pages.page_answer(
                "Processing",
                "<p>Your payment is being processed by your bank. You may close this window.</p>",
            )
        if card not in (SUCCESS_CARD, DECLINE_CARD) or not form.get("cvv"):
            return self._card_page(payment, "Invalid card details")
        if self.forge_returns:
            # Nothing is paid; the browser posts a "success" whose hash is wrong.
            fields = self._response(payment, "success", "captured")
            fields["hash"] = secrets.token_hex(64)
            return pages.auto_post(payment.form["surl"], fields, form_id="payu_return")
        if card == DECLINE_CARD:
            payment.state = "failed"
            return self._post_back(payment, "furl")
        preauth = self.preauth or payment.form.get("key") == PREAUTH_KEY
        payment.state = "auth" if preauth else "captured"
        if self.record_amount is not None:
            payment.amount = self.record_amount
        if self.never_return:
            self._decided(payment)
            return pages.page_answer(
                "Thank you", "<p>Payment successful. You may close this window.</p>"
            )
        return self._post_back(payment, "surl")

    def _age(self, payment: PayuPayment) -> bool:
        """A page left open longer than ``page_seconds``: the payer is gone (bounced)."""
        if payment.state == "initiated" and time.monotonic() - payment.opened > self.page_seconds:
            payment.state = "bounced"
            self._decided(payment)
            return True
        return False

    def _open(self, form: dict[str, str]) -> Answer:
        problem = self._request_problem(form)
        if problem:
            return pages.page_answer("Error", f"<p>{html.escape(problem)}</p>", 400)
        existing = self.by_txnid(form["txnid"])
        if existing is not None:
            self._age(existing)
        if existing is not None and existing.state in ("captured", "auth", "cancelled"):
            return pages.page_answer(
                "Error",
                "<p>Error Reason: duplicate Order ID. The transaction"
                " id has already been used for a successful payment.</p>",
                400,
            )
        if existing is not None and existing.state in ("initiated", "pending"):
            payment = existing  # a double click: the same payment, the same page
        else:
            if existing is not None:  # GUESS: a failed txnid is taken again
                self.payments.pop(existing.mihpayid)
            mihpayid = str(next(self._ids))
            payment = PayuPayment(mihpayid, form["txnid"], Decimal(form["amount"]), "initiated")
            self.payments[mihpayid] = payment
        payment.form = dict(form)
        if payment.state == "initiated":
            payment.page = secrets.token_urlsafe(16)
            payment.opened = time.monotonic()
        return self._card_page(payment, "")

    def _request_problem(self, form: dict[str, str]) -> str:
        for name in (
            "key",
            "txnid",
            "amount",
            "productinfo",
            "firstname",
            "email",
            "phone",
            "surl",
            "furl",
            "hash",
        ):
            if not form.get(name, "").strip():
                return f"Error Reason: Mandatory parameter {name} is missing"
        if form["key"] not in ACCOUNTS:
            return "Error Reason: Invalid key"
        if len(form["txnid"]) > 25:
            return "Error Reason: txnid is longer than 25 characters"
        if not CHECKOUT_AMOUNT_SHAPE.match(form["amount"]) or Decimal(form["amount"]) <= 0:
            return "Error Reason: Invalid amount"
        expected = checkout_hash(form)
        if form["hash"] != expected:
            return "Error Reason: Transaction failed due to incorrectly calculated hash parameter"
        return ""

    def _card_page(self, payment: PayuPayment, error: str) -> Answer:
        if payment.state == "pending":
            return pages.page_answer("Processing", "<p>Your payment is being processed.</p>")
        amount = html.escape(f"{payment.amount:.2f}")
        inputs = (
            '<label>Card number <input name="card_number"></label>'
            '<label>Expiry <input name="expiry" placeholder="MM/YY"></label>'
            '<label>CVV <input name="cvv"></label>'
            '<label>Name on card <input name="name_on_card"></label>'
        )
        body = f"<p>Pay INR {amount}</p>{pages.error_notice(error)}" + pages.card_forms(
            CHECKOUT_PATH, payment.page, inputs, cancel="Cancel payment"
        )
        return pages.page_answer("PayU", body)

    def _response(self, payment: PayuPayment, status: str, unmapped: str) -> dict[str, str]:
        form = payment.form
        failed = status != "success"
        fields = {
            "mihpayid": payment.mihpayid,
            "mode": "CC",
            "status": status,
            "unmappedstatus": unmapped,
            "key": form.get("key", ""),
            "txnid": payment.txnid,
            "amount": f"{payment.amount:.2f}",
            "cardCategory": "domestic",
            "discount": "0.00",
            "net_amount_debit": "0" if failed else f"{payment.amount:.2f}",
            "addedon": "2026-11-30 15:15:00",
            "productinfo": form.get("productinfo", ""),
            "firstname": form.get("firstname", ""),
            "lastname": form.get("lastname", ""),
            "address1": "",
            "address2": "",
            "city": "",
            "state": "",
            "country": "",
            "zipcode": "",
            "email": form.get("email", ""),
            "phone": form.get("phone", ""),
            **{f"udf{i}": form.get(f"udf{i}", "") for i in range(1, 11)},
            **{f"field{i}": "" for i in range(1, 10)},
            "payment_source": "payu",
            "PG_TYPE": "CC-PG",
            "bank_ref_num": "" if failed else f"BRN{payment.mihpayid[-8:]}",
            "bankcode": "CC",
            "error": "E000" if not failed else "E308",
            "error_Message": "No Error" if not failed else "Transaction failed",
            "cardnum": "512345XXXXXX2346",
            "name_on_card": "Test",
        }
        if self.additional_charges:
            fields["additionalCharges"] = self.additional_charges
        fields["hash"] = response_hash(fields)
        return fields

    def _decided(self, payment: PayuPayment) -> dict[str, str]:
        status, unmapped = STATE_WORDS[payment.state]
        payment.answer = self._response(payment, status, unmapped)
        self.last_decided = payment
        return payment.answer

    def _post_back(self, payment: PayuPayment, target: str) -> Answer:
        return pages.auto_post(payment.form[target], self._decided(payment), form_id="payu_return")

    # -- payment side: controls for tests --------------------------------------------------------
    def expire(self, txnid: str) -> None:
        """The payer left PayU's page without paying: the payment bounced."""
        with self.lock:
            payment = self.by_txnid(txnid)
            assert payment is not None and payment.state == "initiated", txnid
            payment.state = "bounced"

    def settle(self, txnid: str, state: str) -> None:
        """A pending payment gets its bank's answer (``captured``, ``auth``, ``failed``)."""
        with self.lock:
            payment = self.by_txnid(txnid)
            assert payment is not None and state in STATE_WORDS, (txnid, state)
            payment.state = state
            self._decided(payment)

    def send_webhook(self, url: str) -> int:
        """PayU's payment webhook about the last decided payment: its fields and hash, as a form."""
        with self.lock:
            assert self.last_decided is not None, "no payment was decided"
            fields = dict(self.last_decided.answer)
        reply = httpx.post(url, data=fields, timeout=15)
        return reply.status_code

    def decline_answer(self, fault: Fault, request: RecordedRequest) -> Answer:
        code = int(fault.message or 111)
        return Answer(200, self._refusal(code, f"Refund FAILURE - code {code}"))

    def queue_answer(self, fault: Fault, request: RecordedRequest) -> Answer:
        return self.answer(request)


@pytest.fixture
def fake_payu() -> Iterator[FakePayu]:
    yield from FakePayu().serving()
