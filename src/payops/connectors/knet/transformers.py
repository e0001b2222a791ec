"""KNET tranportal ("tranPipe") refund and inquiry: pure protocol code, no I/O.

Wire format (spec/gateway-protocol-check.md §6, from KNET's integration manual K-064):
- one POST to ``…/kpg/tranPipe.htm?param=tranInit``, ``Content-Type: application/xml``, whose
  body is bare XML elements (no root): ``id`` (Tranportal id), ``password``, ``action``
  (``2`` refund, ``8`` inquiry), ``amt`` (KWD major units, always 3 decimals), ``transid`` and
  ``trackid`` (the original payment's), ``udf5`` naming what ``transid`` holds (``TrackID`` or
  ``PaymentID``);
- the reply is an XML fragment without a root element: ``result``, ``auth``, ``ref``,
  ``postdate``, ``tranid``, ``trackid``, ``payid``, ``udf1..5``, ``amt`` …; an error is
  ``<result>!ERROR!-IPAYnnnnnnn-text</result>`` (sometimes with ``error_code_tag``).
- a refund succeeds only when ``result`` is ``CAPTURED``; an inquiry's ``SUCCESS`` or
  ``CAPTURED`` means the payment is there and captured.

KNET has no merchant refund reference, no idempotency and no refund-status inquiry: the
connector never resends a refund, and a refund whose reply is lost goes to an operator.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any
from xml.sax.saxutils import escape

import defusedxml.ElementTree as SafeXml
from defusedxml import DefusedXmlException

from payops.connectors.base import Outcome
from payops.money import format_minor

ACTION_REFUND = "2"
ACTION_INQUIRY = "8"
CURRENCY = "KWD"
# K-064 §3.5.4 lists ``transid`` as a 19-character string while a track id may hold 40; a track
# id longer than 19 cannot be sent as ``transid``, so such payments are addressed by payment id.
TRANSID_MAX = 19
# ``amt`` is a string field of length 10 (K-064 §3.5.4): "9999999.999" would not fit.
AMOUNT_MAX_CHARS = 10
BY_TRACK_ID = "TrackID"
BY_PAYMENT_ID = "PaymentID"
_TRACK_ID_SHAPE = re.compile(r"^[A-Za-z0-9]+$")
_PAYMENT_ID_SHAPE = re.compile(r"^[0-9]+$")
_ERROR_SHAPE = re.compile(r"^!ERROR!-(IPAY\d+)-?(.*)$", re.DOTALL)
_FAILURE_SHAPE = re.compile(r"^FAILURE\s*\((.*)\)$", re.DOTALL)
# Reply fields worth keeping as evidence (a reply holds nothing personal or secret).
REPLY_FIELDS = (
    "result",
    "auth",
    "ref",
    "avr",
    "postdate",
    "tranid",
    "trackid",
    "payid",
    "udf1",
    "udf2",
    "udf3",
    "udf4",
    "udf5",
    "amt",
    "authrespcode",
    "error_code_tag",
    "error_service_tag",
    "error_text",
)


class KnetFormatError(ValueError):
    """A value KNET would refuse; nothing is sent."""


# -- IPAY error codes (K-064 §10 and the FSS catalogue) ---------------------------------------
@dataclass(frozen=True)
class IpayError:
    meaning: str
    text: str
    outcome: Outcome


# What each code means for an operation PayOps sent. A code telling that the terminal timed out
# leaves the outcome open; a duplicate may mean an earlier identical credit went through, so a
# human looks; the rest are refusals before anything moved.
IPAY_ERRORS: dict[str, IpayError] = {
    "IPAY0100263": IpayError("not_found", "Transaction details not available", Outcome.FAILED),
    "IPAY0100114": IpayError("duplicate", "Duplicate Record", Outcome.UNKNOWN),
    "IPAY0100137": IpayError(
        "over_credit", "Credit amount greater than authorised amount", Outcome.FAILED
    ),
    "IPAY0100199": IpayError("over_credit", "Previous credit check failure", Outcome.FAILED),
    "IPAY0100033": IpayError("action_not_enabled", "Terminal action not enabled", Outcome.FAILED),
    "IPAY0100020": IpayError("action_not_enabled", "Invalid action type", Outcome.FAILED),
    "IPAY0100158": IpayError("host_timeout", "Host timeout", Outcome.UNKNOWN),
    "IPAY0100176": IpayError("bad_request", "Decrypting transaction data failed", Outcome.FAILED),
    "IPAY0100013": IpayError("bad_request", "Invalid transaction data", Outcome.FAILED),
    "IPAY0100045": IpayError("denied", "Denied by risk", Outcome.FAILED),
    "IPAY0100005": IpayError("credentials", "Missing tranportal id", Outcome.FAILED),
    "IPAY0100015": IpayError("credentials", "Invalid tranportal password", Outcome.FAILED),
    "IPAY0100008": IpayError("credentials", "Terminal not enabled", Outcome.FAILED),
    "IPAY0100027": IpayError("bad_request", "Invalid track id", Outcome.FAILED),
}
# An error code nobody listed: the refusal is real (KNET prints ``!ERROR!`` only when it did not
# act), but an operator should see the code, so the message keeps it.
UNLISTED_ERROR = IpayError("unlisted", "KNET error", Outcome.FAILED)


# -- requests -------------------------------------------------------------------------------------
def knet_amount(minor: int, currency_code: str) -> str:
    """Minor units → KNET's ``amt``: KWD major units with exactly three decimals."""
    if currency_code.upper() != CURRENCY:
        raise KnetFormatError(f"KNET takes KWD only, not {currency_code}")
    if minor <= 0:
        raise KnetFormatError("KNET amounts must be greater than zero")
    text = format_minor(minor, CURRENCY)
    if len(text) > AMOUNT_MAX_CHARS:
        raise KnetFormatError(f"amount {text} is longer than KNET's {AMOUNT_MAX_CHARS} characters")
    return text


@dataclass(frozen=True)
class Target:
    """How a request names the original payment: ``transid`` and what ``udf5`` says it is."""

    transid: str
    trackid: str
    udf5: str


def payment_target(track_id: str | None, payment_id: str | None) -> Target:
    """By track id when it fits ``transid`` (KNET's default for refunds); else by payment id."""
    track = (track_id or "").strip()
    payid = (payment_id or "").strip()
    if track and len(track) <= TRANSID_MAX and _TRACK_ID_SHAPE.match(track):
        return Target(track, track, BY_TRACK_ID)
    if payid and len(payid) <= TRANSID_MAX and _PAYMENT_ID_SHAPE.match(payid):
        return Target(payid, track, BY_PAYMENT_ID)
    raise KnetFormatError(
        "KNET needs the payment's track id (at most 19 letters and digits) or its payment id"
    )


def request_body(
    *, tranportal_id: str, password: str, action: str, amount: str, target: Target
) -> bytes:
    """The bare-element XML body K-064 §7 shows (values XML-escaped, no wrapper element)."""
    fields = (
        ("id", tranportal_id),
        ("password", password),
        ("action", action),
        ("amt", amount),
        ("transid", target.transid),
        ("trackid", target.trackid),
        ("udf5", target.udf5),
    )
    return "".join(f"<{name}>{escape(value)}</{name}>" for name, value in fields).encode()


# -- replies --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KnetReply:
    fields: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    @property
    def result(self) -> str:
        return self.get("result").strip()

    @property
    def error_code(self) -> str | None:
        match = _ERROR_SHAPE.match(self.result)
        if match:
            return match.group(1)
        tag = self.get("error_code_tag").strip()
        return tag if tag.startswith("IPAY") else None

    @property
    def error_text(self) -> str:
        match = _ERROR_SHAPE.match(self.result)
        return match.group(2).strip() if match else ""

    @property
    def status(self) -> str:
        """The result word, upper-cased, with ``FAILURE(…)`` reduced to ``FAILURE``."""
        word = self.result.upper()
        return "FAILURE" if _FAILURE_SHAPE.match(word) else word

    @property
    def amount(self) -> Decimal | None:
        text = self.get("amt").strip()
        if not text:
            return None
        try:
            value = Decimal(text)
        except InvalidOperation:
            return None
        return value if value.is_finite() else None

    def evidence(self) -> dict[str, str]:
        return {name: self.fields[name] for name in REPLY_FIELDS if name in self.fields}


def parse_reply(body: bytes) -> KnetReply | None:
    """The root-less fragment → its fields (tag names lower-cased); None when not KNET XML.

    Parsed with defusedxml inside a wrapper element of our own, so entity tricks are refused.
    """
    text = body.decode("utf-8", errors="replace").strip()
    if not text.startswith("<") or "<!" in text:
        return None
    try:
        root = SafeXml.fromstring(f"<reply>{text}</reply>")
    except (SyntaxError, DefusedXmlException, ValueError):
        return None
    # A client may wrap its elements (``<request>``); the reply may as well: flatten one level.
    elements = list(root)
    if len(elements) == 1 and len(elements[0]):
        elements = list(elements[0])
    fields = {element.tag.lower(): (element.text or "").strip() for element in elements}
    if "result" not in fields:
        return None
    return KnetReply(fields)


def ipay_error(code: str) -> IpayError:
    return IPAY_ERRORS.get(code, UNLISTED_ERROR)


def refund_outcome(reply: KnetReply) -> Outcome:
    """K-064 §7: a refund succeeded only when ``result`` is ``CAPTURED``.

    A known refusal word or ``!ERROR!`` code is a failure; a host timeout, a duplicate, or a word
    nobody documented leaves the outcome open (never success)."""
    code = reply.error_code
    if code:
        return ipay_error(code).outcome
    status = reply.status
    if status == "CAPTURED":
        return Outcome.SUCCESS
    if status in REFUND_REFUSALS:
        return Outcome.FAILED
    return Outcome.UNKNOWN


REFUND_REFUSALS = frozenset(
    {"NOT CAPTURED", "CANCELED", "CANCELLED", "DENIED BY RISK", "FAILURE", "NOT APPROVED", "VOIDED"}
)
# Inquiry results (K-064 §3.5.5): SUCCESS/CAPTURED → captured; FAILURE or the purchase refusal
# words → failed. SUSPECTED is a failure by the manual's letter, but a payment KNET suspects may
# still have been taken: it stays open (never success) and comes back to a human in time.
INQUIRY_STATUS: dict[str, Outcome] = {
    "SUCCESS": Outcome.SUCCESS,
    "CAPTURED": Outcome.SUCCESS,
    "FAILURE": Outcome.FAILED,
    "NOT CAPTURED": Outcome.FAILED,
    "CANCELED": Outcome.FAILED,
    "CANCELLED": Outcome.FAILED,
    "DENIED BY RISK": Outcome.FAILED,
    "SUSPECTED": Outcome.UNKNOWN,
    "HOST TIMEOUT": Outcome.UNKNOWN,
    "INITIALIZED": Outcome.PENDING,
}


def inquiry_outcome(reply: KnetReply) -> Outcome:
    """What an action-8 reply says of a payment; unknown words are pending, never success."""
    code = reply.error_code
    if code:
        meaning = ipay_error(code).meaning
        if meaning == "not_found":
            # Nothing at KNET under that id (yet): the payer may never have completed.
            return Outcome.PENDING
        if meaning == "host_timeout":
            return Outcome.UNKNOWN
        return Outcome.UNKNOWN  # KNET refused to answer: the payment's state is not known
    return INQUIRY_STATUS.get(reply.status, Outcome.PENDING)


def reply_message(reply: KnetReply) -> str:
    code = reply.error_code
    if code:
        known = ipay_error(code)
        text = reply.error_text or known.text
        return f"KNET {code}: {text}"
    return f"KNET result {reply.result or '(empty)'}"


def pg_params(reply: KnetReply, target: Target) -> dict[str, Any]:
    """Ottu-style normalised fields for the operation's ``pg_params``."""
    params: dict[str, Any] = {"result": reply.result, "trackid": target.trackid or None}
    for name in ("payid", "tranid", "ref", "auth", "postdate"):
        if reply.get(name):
            params[name] = reply.get(name)
    if reply.error_code:
        params["error_code"] = reply.error_code
    return params
