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

Faults (``fail_next``): the base vocabulary; ``decline`` answers ``NOT CAPTURED`` (or the
``!ERROR!`` text given as ``message``); ``host_timeout`` answers
``!ERROR!-IPAY0100158-Host timeout``. KNET answers every call at once, so it has no ``queue``.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import ClassVar
from xml.etree import ElementTree

import pytest

from tests.fakes.base import Answer, FakeGateway, Fault, RecordedRequest

TRANPORTAL_ID = "990001"  # made up here
TRANPORTAL_PASSWORD = "knet-pass-1234"  # made up here
PIPE_PATH = "/kpg/tranPipe.htm"
XML = "text/xml; charset=utf-8"
AMOUNT_SHAPE = re.compile(r"^[0-9]{1,6}\.[0-9]{3}$")


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


@pytest.fixture
def fake_knet() -> Iterator[FakeKnet]:
    yield from FakeKnet().serving()
