"""A local fake of KNET's tranportal pipe (refund action 2, inquiry action 8), written from the
protocol document (spec/gateway-protocol-check.md §6, K-064), not from the connector.

- ``POST /kpg/tranPipe.htm?param=tranInit`` with an XML body: bare elements or elements inside one
  wrapper (``<request>``), tag names compared without case (``transId`` too). Anything else is
  answered 404 / 405.
- Credentials: ``id`` and ``password`` must be the terminal's (``IPAY0100005`` missing id,
  ``IPAY0100015`` wrong password). ``action`` 2 or 8 (``IPAY0100020``); a terminal without API
  refunds answers ``IPAY0100033``.
- ``amt``: KWD with exactly three decimals and at most 10 characters, greater than zero; ``transid``
  at most 19 characters; ``udf5`` ``TrackID`` / ``PaymentID`` (empty: the KNET transaction id).
  Otherwise ``IPAY0100013`` (invalid transaction data; GUESS: KNET's exact code for a badly
  formatted amount is not documented).
- Ledger: payments by track id, with their refunds. Inquiry answers the payment (``CAPTURED`` /
  ``NOT CAPTURED`` / ``SUSPECTED`` …) or ``IPAY0100263`` when unknown. A refund answers
  ``CAPTURED`` with a new ``payid``/``tranid``/``ref`` (other fields empty, as the manual's
  sample) while the credits stay within the payment (``IPAY0100137`` beyond).
- The reply is an XML fragment **without a root element**.

The payment side (spec/gateways-payment-acceptance.md §5.5):

- ``GET /kpg/PaymentHTTP.htm?param=paymentInit&trandata=…&tranportalId=…&responseURL=…&errorURL=…``:
  ``trandata`` is decrypted with the terminal resource key of ``tranportalId`` (AES-128-CBC, key
  = IV, PKCS#5, hex); id/password, ``action=1``, ``currencycode=414``, a 3-decimal ``amt`` of at
  most 10 characters and the track id (≤ 40 letters and digits, never used for a finished
  payment) are checked. A problem sends the browser (302) to ``errorURL`` with ``Error`` and
  ``ErrorText`` (``IPAY…``). Otherwise the page: bank, card number, expiry month/year, PIN,
  and Cancel, posting to ``/kpg/paymentpage.htm?PaymentID=…``.
- Submitting it decides: bank ``KNET1`` (KNET's test card) with expiry 09/2021 → ``CAPTURED``;
  01/2022 → held with no answer yet (this fake's "pending": the page waits, nothing is posted,
  the inquiry answers ``IPAY0100263`` until ``complete_held``); any other expiry →
  ``NOT CAPTURED``; Cancel → ``CANCELED``; switch ``host_timeout_next`` → ``HOST TIMEOUT``.
  The result is POSTed server-to-server to ``responseURL`` (form: encrypted ``trandata`` plus
  clear ``paymentid``, ``trackid``, ``amt``, ``udf1``..``udf5``); the reply must be the single
  line ``REDIRECT=<url>`` within ``reply_deadline`` seconds (default 2). A late or wrong reply
  to a ``CAPTURED`` payment makes the fake reverse it (the inquiry then answers ``VOIDED``:
  GUESS, KNET documents no word for it). The browser then goes (302) to the ``REDIRECT=`` URL,
  or to ``errorURL`` when there was none.
- ``page_lifetime`` (seconds, default 600): a card submitted later sends the browser to
  ``errorURL`` with ``IPAY0100042`` (Transaction time limit exceeds); nothing is recorded.
- Switch ``drop_notification``: the payment is taken but nothing is posted and the browser is
  not sent anywhere ("paid but never returned").

Faults (``fail_next``): the base vocabulary; ``decline`` answers ``NOT CAPTURED`` (or the
``!ERROR!`` text given as ``message``); ``host_timeout`` answers
``!ERROR!-IPAY0100158-Host timeout``. KNET answers every call at once, so it has no ``queue``.
"""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from html import escape
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode
from xml.etree import ElementTree

import httpx
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from tests.fakes.base import Answer, FakeGateway, Fault, RecordedRequest

TRANPORTAL_ID = "990001"  # made up here
TRANPORTAL_PASSWORD = "knet-pass-1234"  # made up here
RESOURCE_KEY = "Kq7Rz2Lm9Xw4Tb6N"  # made up here: the terminal's 16-character resource key
PAGE_PATH = "/kpg/PaymentHTTP.htm"
CARD_PAGE_PATH = "/kpg/paymentpage.htm"
TEST_BANK = "KNET1"
EXPIRY_CAPTURED = ("09", "2021")
EXPIRY_HELD = ("01", "2022")
TRACK_ID_SHAPE = re.compile(r"^[A-Za-z0-9]{1,40}$")
PIPE_PATH = "/kpg/tranPipe.htm"
XML = "text/xml; charset=utf-8"
AMOUNT_SHAPE = re.compile(r"^[0-9]{1,6}\.[0-9]{3}$")


# -- KNET's AES envelope, written here from the spec (not imported from the connector) --------


def encrypt(plaintext: str, key: str) -> str:
    raw = plaintext.encode()
    pad = 16 - len(raw) % 16
    raw += bytes([pad]) * pad
    box = Cipher(algorithms.AES(key.encode()), modes.CBC(key.encode())).encryptor()
    return (box.update(raw) + box.finalize()).hex()


def decrypt(trandata: str, key: str) -> str:
    """Raises ValueError when the value is not this key's envelope."""
    data = bytes.fromhex(trandata)
    if not data or len(data) % 16:
        raise ValueError("not whole blocks")
    box = Cipher(algorithms.AES(key.encode()), modes.CBC(key.encode())).decryptor()
    raw = box.update(data) + box.finalize()
    pad = raw[-1]
    if not 1 <= pad <= 16 or raw[-pad:] != bytes([pad]) * pad:
        raise ValueError("bad padding")
    return raw[:-pad].decode()


def join_fields(fields: list[tuple[str, str]]) -> str:
    return "&".join(f"{name}={value}" for name, value in fields)


def split_fields(plaintext: str) -> dict[str, str]:
    found = {}
    for part in plaintext.split("&"):
        name, _, value = part.partition("=")
        found[name.lower()] = value
    return found


def error(code: str, text: str) -> str:
    return (
        f"<result>!ERROR!-{code}-{text}</result><error_code_tag>{code}</error_code_tag>"
        f"<error_service_tag>null</error_service_tag>"
    )


def fragment(fields: list[tuple[str, str]]) -> str:
    return "".join(f"<{name}>{value}</{name}>" for name, value in fields)


@dataclass
class KnetPayment:
    track_id: str
    payment_id: str
    tran_id: str
    amount: Decimal
    result: str = "CAPTURED"
    refunds: list[Decimal] = field(default_factory=list)
    reversed: bool = False  # auto-reversed: KNET got no timely REDIRECT= line

    @property
    def refunded(self) -> Decimal:
        return sum(self.refunds, Decimal("0"))


class FakeKnet(FakeGateway):
    EXTRA_FAULTS: ClassVar[tuple[str, ...]] = ("host_timeout",)
    malformed_body: ClassVar[str] = "<result>CAPTURED</res"
    malformed_content_type: ClassVar[str] = XML

    def __init__(self) -> None:
        super().__init__()
        self.payments: dict[str, KnetPayment] = {}
        self.refunds_enabled = True
        self._ids = itertools.count(100000000001)
        # The payment side: open payment pages by KNET's PaymentID, and what was posted.
        self.pages: dict[str, dict[str, str]] = {}
        self.posts: list[dict[str, Any]] = []
        self.reply_deadline = 2.0
        # How long a payment page takes a card (KNET's own limit is not published): past it the
        # browser goes to errorURL with IPAY0100042 and nothing is recorded.
        self.page_lifetime = 600.0
        self.opened: dict[str, float] = {}
        self.host_timeout_next = False
        self.drop_notification = False

    # -- setup ----------------------------------------------------------------------------------
    def add_payment(self, track_id: str, amount: str = "25.000", result: str = "CAPTURED") -> str:
        """A payment made on KNET's page; returns its payment id."""
        payment = KnetPayment(
            track_id, str(next(self._ids)), str(next(self._ids)), Decimal(amount), result
        )
        self.payments[track_id] = payment
        return payment.payment_id

    # -- protocol -------------------------------------------------------------------------------
    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes) -> Answer:
        base, _, query = path.partition("?")
        if base == PAGE_PATH and method == "GET":
            return self._payment_init(dict(parse_qsl(query, keep_blank_values=True)))
        if base == CARD_PAGE_PATH:
            return self._card_page(method, dict(parse_qsl(query)), body)
        if base != PIPE_PATH or "param=tranInit" not in query:
            return Answer(404, "<html>Not Found</html>", "text/html")
        if method != "POST":
            return Answer(405, "<html>Method Not Allowed</html>", "text/html")
        fields = self._fields(body)
        if fields is None:
            return Answer(200, error("IPAY0100013", "Invalid transaction data"), XML)
        if not fields.get("id"):
            return Answer(200, error("IPAY0100005", "Missing tranportal id"), XML)
        if fields.get("id") != TRANPORTAL_ID or fields.get("password") != TRANPORTAL_PASSWORD:
            return Answer(200, error("IPAY0100015", "Invalid tranportal password"), XML)
        action = fields.get("action", "")
        if action not in ("2", "8"):
            return Answer(200, error("IPAY0100020", "Invalid action type"), XML)
        amount = fields.get("amt", "")
        transid = fields.get("transid", "")
        if (
            not AMOUNT_SHAPE.match(amount)
            or Decimal(amount) <= 0
            or not transid
            or len(transid) > 19
        ):
            return Answer(200, error("IPAY0100013", "Invalid transaction data"), XML)
        with self.lock:
            payment = self._find(transid, fields.get("udf5", ""))
            if payment is None:
                return Answer(200, error("IPAY0100263", "Transaction details not available"), XML)
            if action == "8":
                return Answer(200, self._inquiry(payment, fields), XML)
            if not self.refunds_enabled:
                return Answer(200, error("IPAY0100033", "Terminal action not enabled"), XML)
            return Answer(200, self._refund(payment, Decimal(amount), fields), XML)

    @staticmethod
    def _fields(body: bytes) -> dict[str, str] | None:
        text = body.decode("utf-8", errors="replace").strip()
        if "<!" in text:
            return None
        try:
            root = ElementTree.fromstring(f"<wrap>{text}</wrap>")
        except ElementTree.ParseError:
            return None
        elements = list(root)
        if len(elements) == 1 and len(elements[0]):
            elements = list(elements[0])
        return {e.tag.lower(): (e.text or "").strip() for e in elements}

    def _find(self, transid: str, udf5: str) -> KnetPayment | None:
        kind = udf5.lower()
        for payment in self.payments.values():
            if (
                (kind == "trackid" and payment.track_id == transid)
                or (kind == "paymentid" and payment.payment_id == transid)
                or (kind in ("", "transid", "transactionid") and payment.tran_id == transid)
            ):
                return payment
        return None

    # -- the payment page ---------------------------------------------------------------------
    @staticmethod
    def _to_error_url(
        error_url: str, code: str, text: str, extra: dict[str, str] | None = None
    ) -> Answer:
        if not error_url.startswith(("http://", "https://")):
            return Answer(400, f"<html><body>{code} {escape(text)}</body></html>", "text/html")
        joiner = "&" if "?" in error_url else "?"
        query = urlencode({**(extra or {}), "Error": code, "ErrorText": text})
        location = f"{error_url}{joiner}{query}"
        return Answer(302, "", "text/html", headers={"Location": location})

    def _payment_init(self, query: dict[str, str]) -> Answer:
        clear_error_url = query.get("errorURL", "")
        if query.get("param") != "paymentInit":
            return Answer(404, "<html>Not Found</html>", "text/html")
        if query.get("tranportalId") != TRANPORTAL_ID:
            return self._to_error_url(clear_error_url, "IPAY0100005", "Missing tranportal id")
        try:
            fields = split_fields(decrypt(query.get("trandata", ""), RESOURCE_KEY))
        except ValueError:
            return self._to_error_url(
                clear_error_url, "IPAY0100176", "Decrypting transaction data failed"
            )
        error_url = fields.get("errorurl", "")
        if fields.get("id") != TRANPORTAL_ID or fields.get("password") != TRANPORTAL_PASSWORD:
            return self._to_error_url(error_url, "IPAY0100015", "Invalid tranportal password")
        if fields.get("action") != "1":
            return self._to_error_url(error_url, "IPAY0100020", "Invalid action type")
        amount = fields.get("amt", "")
        if (
            fields.get("currencycode") != "414"
            or not AMOUNT_SHAPE.match(amount)
            or len(amount) > 10
            or Decimal(amount) <= 0
        ):
            return self._to_error_url(error_url, "IPAY0100013", "Invalid transaction data")
        track_id = fields.get("trackid", "")
        if not TRACK_ID_SHAPE.match(track_id):
            return self._to_error_url(error_url, "IPAY0100027", "Invalid track id")
        for name in ("udf1", "udf2", "udf3", "udf4", "udf5"):
            if "@" in fields.get(name, "") or "/" in fields.get(name, ""):
                return self._to_error_url(error_url, "IPAY0100013", "Invalid transaction data")
        if fields.get("langid") not in ("EN", "AR"):
            return self._to_error_url(error_url, "IPAY0100013", "Invalid transaction data")
        response_url = fields.get("responseurl", "")
        if not response_url.startswith(("http://", "https://")):
            return self._to_error_url(error_url, "IPAY0100013", "Invalid transaction data")
        with self.lock:
            if track_id in self.payments:
                return self._to_error_url(error_url, "IPAY0100114", "Duplicate Record")
            payment_id = str(next(self._ids))
            self.pages[payment_id] = fields
            self.opened[payment_id] = time.monotonic()
        return Answer(200, _card_page_html(payment_id, amount, ""), "text/html")

    def _card_page(self, method: str, query: dict[str, str], body: bytes) -> Answer:
        payment_id = query.get("PaymentID", "")
        with self.lock:
            fields = self.pages.get(payment_id)
        if fields is None:
            return Answer(
                404, "<html><body>IPAY0100047 Invalid order status</body></html>", "text/html"
            )
        if method == "GET":
            return Answer(200, _card_page_html(payment_id, fields["amt"], ""), "text/html")
        if method != "POST":
            return Answer(405, "<html>Method Not Allowed</html>", "text/html")
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        if time.monotonic() - self.opened.get(payment_id, 0.0) > self.page_lifetime:
            with self.lock:
                self.pages.pop(payment_id, None)
            return self._to_error_url(
                fields.get("errorurl", ""),
                "IPAY0100042",
                "Transaction time limit exceeds",
                {"paymentid": payment_id, "trackid": fields["trackid"]},
            )
        if form.get("cancel"):
            result = "CANCELED"
        elif (
            form.get("bank") != TEST_BANK
            or not form.get("cardN", "").isdigit()
            or not form.get("pin", "").isdigit()
        ):
            return Answer(
                200,
                _card_page_html(payment_id, fields["amt"], "Please enter valid card details."),
                "text/html",
            )
        elif (form.get("expmnth"), form.get("expyr")) == EXPIRY_HELD:
            return Answer(
                200,
                "<html><body><p>Your transaction is being processed. Please "
                "wait.</p></body></html>",
                "text/html",
            )
        elif self.host_timeout_next:
            self.host_timeout_next = False
            result = "HOST TIMEOUT"
        elif (form.get("expmnth"), form.get("expyr")) == EXPIRY_CAPTURED:
            result = "CAPTURED"
        else:
            result = "NOT CAPTURED"
        return self._complete(payment_id, fields, result)

    def _complete(self, payment_id: str, fields: dict[str, str], result: str) -> Answer:
        with self.lock:
            self.pages.pop(payment_id, None)
            payment = KnetPayment(
                fields["trackid"], payment_id, str(next(self._ids)), Decimal(fields["amt"]), result
            )
            self.payments[payment.track_id] = payment
        if self.drop_notification:
            return Answer(
                200, "<html><body><p>Transaction complete.</p></body></html>", "text/html"
            )
        posted = self.result_fields(payment, fields)
        redirect = self._post_result(fields["responseurl"], posted, payment)
        if redirect is None:
            return self._to_error_url(
                fields.get("errorurl", ""),
                "IPAY0100232",  # GUESS
                "Merchant response not received",
                {"paymentid": payment_id, "trackid": payment.track_id},
            )
        return Answer(302, "", "text/html", headers={"Location": redirect})

    def result_fields(
        self, payment: KnetPayment, fields: dict[str, str], *, amount: str | None = None
    ) -> dict[str, str]:
        """The form KNET posts to responseURL: encrypted ``trandata`` and the clear copies."""
        captured = payment.result == "CAPTURED"
        plain = join_fields(
            [
                ("paymentid", payment.payment_id),
                ("result", payment.result),
                ("auth", "999554" if captured else ""),
                ("avr", "N"),
                ("ref", f"{payment.tran_id[-12:]}" if captured else ""),
                ("tranid", payment.tran_id if captured else ""),
                ("postdate", "1130" if captured else ""),
                ("trackid", payment.track_id),
                ("udf1", fields.get("udf1", "")),
                ("udf2", fields.get("udf2", "")),
                ("udf3", fields.get("udf3", "")),
                ("udf4", fields.get("udf4", "")),
                ("udf5", fields.get("udf5", "")),
                ("amt", amount or f"{payment.amount:.3f}"),
                ("authRespCode", "00" if captured else "05"),
            ]
        )
        return {
            "trandata": encrypt(plain, RESOURCE_KEY).upper(),
            "paymentid": payment.payment_id,
            "trackid": payment.track_id,
            "amt": amount or f"{payment.amount:.3f}",
            **{f"udf{n}": fields.get(f"udf{n}", "") for n in range(1, 6)},
        }

    def _post_result(self, url: str, posted: dict[str, str], payment: KnetPayment) -> str | None:
        """POST the result; the REDIRECT= URL, or None. A late or wrong answer reverses a
        captured payment (K-064 §9.2.1's auto-void)."""
        started = time.monotonic()
        status, text = None, ""
        try:
            reply = httpx.post(url, data=posted, timeout=self.reply_deadline + 10)
            status, text = reply.status_code, reply.text
        except httpx.HTTPError:
            pass
        elapsed = time.monotonic() - started
        lines = text.strip().splitlines()
        redirect = (
            lines[0][len("REDIRECT=") :].strip()
            if status == 200 and len(lines) == 1 and lines[0].startswith("REDIRECT=")
            else ""
        )
        redirect = redirect if redirect.startswith(("http://", "https://")) else ""
        reverse = (not redirect or elapsed > self.reply_deadline) and payment.result == "CAPTURED"
        with self.lock:
            if reverse:
                payment.result, payment.reversed = "VOIDED", True
            self.posts.append(
                {
                    "url": url,
                    "fields": posted,
                    "status": status,
                    "reply": text,
                    "seconds": elapsed,
                    "reversed": reverse,
                }
            )
        return redirect or None

    # -- payment side: control ------------------------------------------------------------------
    def complete_held(self, track_id: str, result: str = "CAPTURED") -> None:
        """The bank finally answers a held payment (nothing is posted: the customer left)."""
        with self.lock:
            for payment_id, fields in list(self.pages.items()):
                if fields.get("trackid") == track_id:
                    self.pages.pop(payment_id)
                    self.payments[track_id] = KnetPayment(
                        track_id, payment_id, str(next(self._ids)), Decimal(fields["amt"]), result
                    )
                    return
        raise KeyError(track_id)

    def payment(self, track_id: str) -> KnetPayment | None:
        with self.lock:
            return self.payments.get(track_id)

    @staticmethod
    def _inquiry(payment: KnetPayment, fields: dict[str, str]) -> str:
        return fragment(
            [
                ("result", payment.result),
                ("auth", "887766"),
                ("ref", "335666353638"),
                ("avr", "N"),
                ("postdate", "1130"),
                ("tranid", payment.tran_id),
                ("trackid", payment.track_id),
                ("payid", payment.payment_id),
                ("udf1", ""),
                ("udf2", ""),
                ("udf3", ""),
                ("udf4", ""),
                ("udf5", fields.get("udf5", "")),
                ("amt", f"{payment.amount:.3f}"),
            ]
        )

    def _refund(self, payment: KnetPayment, amount: Decimal, fields: dict[str, str]) -> str:
        if payment.result != "CAPTURED":
            return error("IPAY0100263", "Transaction details not available")
        if payment.refunded + amount > payment.amount:
            return error("IPAY0100137", "Credit amount greater than authorised amount")
        payment.refunds.append(amount)
        return fragment(
            [
                ("result", "CAPTURED"),
                ("payid", str(next(self._ids))),
                ("trackid", payment.track_id),
                ("udf1", ""),
                ("udf2", ""),
                ("udf3", ""),
                ("udf4", ""),
                ("udf5", ""),
                ("ref", str(next(self._ids))[-12:]),
                ("auth", ""),
                ("postdate", ""),
                ("tranid", str(next(self._ids))),
                ("amt", ""),
            ]
        )

    def decline_answer(self, fault: Fault, request: RecordedRequest) -> Answer:
        if fault.message:
            return Answer(200, f"<result>{fault.message}</result>", XML)
        return Answer(200, fragment([("result", "NOT CAPTURED"), ("payid", ""), ("amt", "")]), XML)

    def extra_fault(self, fault: Fault, request: RecordedRequest) -> Answer | None:
        return Answer(200, error("IPAY0100158", "Host timeout"), XML)

    def sent_fields(self, index: int = -1) -> dict[str, str]:
        fields = self._fields(self.requests[index].body)
        assert fields is not None
        return fields


def _card_page_html(payment_id: str, amount: str, message: str) -> str:
    action = f"{CARD_PAGE_PATH}?{urlencode({'PaymentID': payment_id})}"
    note = f'<p class="message">{escape(message)}</p>' if message else ""
    return (
        "<html><head><title>KNET Payment</title></head><body>"
        f"<h1>Amount: {escape(amount)} KD</h1>{note}"
        f'<form method="post" action="{escape(action)}">'
        '<label>Bank <select name="bank"><option value="">Select your bank</option>'
        f'<option value="{TEST_BANK}">KNET Test Card [KNET1]</option></select></label>'
        '<label>Card number <input name="cardN" maxlength="19"></label>'
        '<label>Expiry month <input name="expmnth" maxlength="2"></label>'
        '<label>Expiry year <input name="expyr" maxlength="4"></label>'
        '<label>PIN <input name="pin" type="password" maxlength="4"></label>'
        '<button type="submit" name="submit" value="1">Submit</button>'
        '<button type="submit" name="cancel" value="1">Cancel</button>'
        "</form></body></html>"
    )


@pytest.fixture
def fake_knet() -> Iterator[FakeKnet]:
    yield from FakeKnet().serving()
