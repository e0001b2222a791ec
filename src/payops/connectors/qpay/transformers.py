"""QPay (QCB EZ-Connect) refund (Action 6) and inquiry (Action 14): pure protocol code, no I/O.

Protocol (spec/gateway-protocol-check.md §8; gateways-knet-payu-qpay-tap-checkoutcom.md §3):
- one URL for everything, form POST; amounts in minor units, currency ``634`` (QAR) only;
- request ``SecureHash`` = SHA-256 hex of the secret followed by the values of every other field,
  ordered by field name (byte order, so ``PUN`` sorts before ``PaymentDescription``); an empty
  value adds nothing;
- replies are form-encoded with a ``Response.`` prefix on every name. Their hash is recomputed
  over the names without the prefix, ``SecureHash`` left out, sorted the same way, with one quirk
  checked against every worked example of the guide: a field whose name contains
  ``StatusMessage`` is hashed **as received** (``+`` for spaces, still encoded), every other
  field URL-decoded. So replies are parsed from the raw body here, never by a form parser.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from urllib.parse import quote_plus, unquote_plus

from payops.connectors.base import Outcome

ACTION_REFUND = "6"
ACTION_INQUIRY = "14"
CURRENCY = "QAR"
CURRENCY_NUMBER = "634"
RESPONSE_PREFIX = "Response."
# Qatar keeps UTC+3 all year (no daylight saving), whatever the server's own time zone.
QATAR = timezone(timedelta(hours=3), "Asia/Qatar")
RAW_HASHED_MARK = "StatusMessage"


class QpayFormatError(ValueError):
    """A value QPay would refuse; nothing is sent."""


def secure_hash(secret: str, fields: Mapping[str, str]) -> str:
    """SHA-256 hex of ``secret`` + the values of all fields but ``SecureHash``, sorted by name."""
    joined = "".join(
        str(fields[name])
        for name in sorted(fields, key=lambda n: n.encode())
        if name != "SecureHash" and fields[name] not in (None, "")
    )
    return hashlib.sha256((secret + joined).encode()).hexdigest()


def signed(secret: str, fields: Mapping[str, str]) -> dict[str, str]:
    out = {name: value for name, value in fields.items()}
    out["SecureHash"] = secure_hash(secret, out)
    return out


def request_date(moment: datetime) -> str:
    """``TransactionRequestDate``: ddMMyyyyHHmmss in Qatar time."""
    return moment.astimezone(QATAR).strftime("%d%m%Y%H%M%S")


def qpay_amount(minor: int, currency_code: str) -> str:
    if currency_code.upper() != CURRENCY:
        raise QpayFormatError(f"QPay takes QAR only, not {currency_code}")
    if minor <= 0:
        raise QpayFormatError("QPay amounts must be greater than zero")
    return str(minor)


def refund_fields(
    *,
    merchant_id: str,
    bank_id: str,
    lang: str,
    amount_minor: int,
    currency_code: str,
    original_pun: str,
    refund_pun: str,
    moment: datetime,
) -> dict[str, str]:
    return {
        "Action": ACTION_REFUND,
        "Amount_1": qpay_amount(amount_minor, currency_code),
        "BankID": bank_id,
        "CurrencyCode": CURRENCY_NUMBER,
        "Lang": lang,
        "MerchantID": merchant_id,
        "OriginalTransactionPaymentUniqueNumber_1": original_pun,
        "PUN_1": refund_pun,
        "RequestDate": "",
        "TransactionRequestDate": request_date(moment),
    }


def inquiry_fields(
    *, merchant_id: str, bank_id: str, lang: str, original_pun: str
) -> dict[str, str]:
    return {
        "Action": ACTION_INQUIRY,
        "BankID": bank_id,
        "Lang": lang,
        "MerchantID": merchant_id,
        "OriginalPUN": original_pun,
    }


# -- replies --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class QpayReply:
    fields: dict[str, str]  # names without ``Response.``, values URL-decoded
    hashed: dict[str, str]  # the same names, values as they enter the hash
    secure_hash: str

    def get(self, name: str) -> str:
        return self.fields.get(name, "")

    def verified(self, secret: str) -> bool:
        if not self.secure_hash:
            return False
        return hmac.compare_digest(secure_hash(secret, self.hashed), self.secure_hash.lower())


def parse_reply(body: bytes | str) -> QpayReply | None:
    """A form-encoded reply, parsed from the raw text so the hash can be recomputed exactly."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    text = text.strip()
    if not text or "=" not in text or text.startswith(("<", "{")):
        return None
    fields: dict[str, str] = {}
    hashed: dict[str, str] = {}
    received_hash = ""
    for pair in text.split("&"):
        if not pair:
            continue
        raw_name, _, raw_value = pair.partition("=")
        name = unquote_plus(raw_name)
        if name.startswith(RESPONSE_PREFIX):
            name = name[len(RESPONSE_PREFIX) :]
        value = unquote_plus(raw_value)
        if name == "SecureHash":
            received_hash = value.strip()
            continue
        fields[name] = value
        hashed[name] = raw_value if RAW_HASHED_MARK in name else value
    if not fields:
        return None
    return QpayReply(fields, hashed, received_hash)


# Refund ``Status_1`` codes (the guide's table as reproduced by the integrations we read).
REFUND_STATUS: dict[str, tuple[Outcome, str]] = {
    "5002": (Outcome.PENDING, "Refund Transaction is pending"),
    "5003": (Outcome.UNKNOWN, "A request was already made (duplicate)"),
    "5004": (Outcome.FAILED, "Original transaction not found"),
    "5006": (Outcome.FAILED, "Currency mismatch"),
    "5007": (Outcome.UNKNOWN, "Abnormal error"),
    "5008": (Outcome.FAILED, "Refund amount cannot be higher than booking amount"),
    "5011": (Outcome.FAILED, "Pending chargeback"),
    "5012": (Outcome.FAILED, "Already charged back"),
    "5013": (Outcome.FAILED, "Original transaction requires reversal"),
    "5015": (Outcome.FAILED, "Already refunded"),
    "5018": (Outcome.FAILED, "Original is not a Pay transaction"),
    "5019": (Outcome.FAILED, "Payment validation failed"),
    "8107": (Outcome.FAILED, "Amount must be greater than zero"),
    "8108": (Outcome.FAILED, "Currency not supported"),
    "8200": (Outcome.FAILED, "Action not supported for this merchant"),
    "8201": (Outcome.FAILED, "Current IP is not valid for this merchant"),
    "8300": (Outcome.FAILED, "Backend inactive"),
    "9001": (Outcome.UNKNOWN, "Unknown backend error"),
}


def refund_outcome(reply: QpayReply) -> tuple[Outcome, str]:
    """A refund answer: 5002 is accepted (pending, QPay finishes it later); an envelope refusal
    (``EZConnectRequestStatus`` other than success) or a listed code is a refusal; a code nobody
    listed leaves the outcome open, never success."""
    code = reply.get("Status_1").strip()
    envelope = reply.get("EZConnectRequestStatus").strip()
    if not code and envelope and envelope.upper().startswith("EZCONNECT-"):
        text = reply.get("EZConnectStatusMessage") or "request refused"
        return Outcome.FAILED, f"QPay {envelope}: {text}"
    if code in REFUND_STATUS:
        outcome, text = REFUND_STATUS[code]
        return outcome, f"QPay {code}: {reply.get('StatusMessage_1') or text}"
    return Outcome.UNKNOWN, f"QPay refund status {code or '(none)'} is not documented"


INQUIRY_STATUS = {"0000": "done", "8106": "not_found", "1220": "in_progress"}
ORIGINAL_STATUS = {"0000": Outcome.SUCCESS, "3000": Outcome.FAILED}


def inquiry_outcome(reply: QpayReply) -> Outcome:
    """Action 14 about a payment. ``Status`` is the inquiry's own; ``OriginalStatus`` the
    payment's. Not found (8106) and in progress (1220) are pending; anything unlisted is
    pending, never success."""
    status = reply.get("Status").strip()
    if status == "0000":
        return ORIGINAL_STATUS.get(reply.get("OriginalStatus").strip(), Outcome.PENDING)
    if status in ("8106", "1220"):
        return Outcome.PENDING
    if not status:
        return Outcome.UNKNOWN
    return Outcome.UNKNOWN if status.upper().startswith("EZCONNECT") else Outcome.PENDING


def inquiry_message(reply: QpayReply) -> str:
    status = reply.get("Status").strip()
    if status == "0000":
        original = reply.get("OriginalStatus").strip()
        return f"QPay payment status {original}: {reply.get('OriginalStatusMessage')}".strip()
    return f"QPay inquiry status {status}: {reply.get('StatusMessage')}".strip()


# -- hosted checkout (Action 0) -------------------------------------------------------------------
# spec/gateways-payment-acceptance.md §7: the browser posts the signed Action 0 form; QPay posts
# the signed ``Response.*`` result back to ``ExtraFields_f14``.
ACTION_PAY = "0"
PUN_MAX = 20
# Values are kept to characters the browser's form encoding cannot change (spec §7.1).
_DESCRIPTION_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
RETURN_PREFIXES = ("Response.", "Response_")  # PHP-style servers rewrite the dot


def description(text: str) -> str:
    kept = re.sub(r"-{2,}", "-", _DESCRIPTION_UNSAFE.sub("", text.replace(" ", "-")))
    return kept[:100].strip("-") or "Payment"


def payment_fields(
    *,
    merchant_id: str,
    bank_id: str,
    lang: str,
    amount_minor: int,
    currency_code: str,
    pun: str,
    return_url: str,
    payment_description: str,
    moment: datetime,
) -> dict[str, str]:
    """The Action 0 fields (without SecureHash; ``signed`` adds it). The attempt's reference is
    both the PUN and the MerchantModuleSessionID, as in the guide's example."""
    if not pun or len(pun) > PUN_MAX or not pun.isascii() or not pun.replace("-", "").isalnum():
        raise QpayFormatError(f"QPay PUNs are 1 to {PUN_MAX} letters and digits")
    if not merchant_id or not bank_id:
        raise QpayFormatError("the configuration has no merchant_id or bank_id")
    return {
        "Action": ACTION_PAY,
        "Amount": qpay_amount(amount_minor, currency_code),
        "BankID": bank_id,
        "CurrencyCode": CURRENCY_NUMBER,
        "ExtraFields_f14": return_url,
        "Lang": lang,
        "MerchantID": merchant_id,
        "MerchantModuleSessionID": pun,
        "PUN": pun,
        "PaymentDescription": description(payment_description),
        "Quantity": "1",
        "TransactionRequestDate": request_date(moment),
    }


def form_encoded(value: str) -> str:
    """A value as a form encoder writes it (space as ``+``, ``*`` kept, ``~`` escaped, as
    Java's URLEncoder does): how a ``StatusMessage`` enters the hash."""
    return quote_plus(value, safe="*").replace("~", "%7E")


def parse_return(params: Mapping[str, str]) -> list[QpayReply]:
    """The browser's post-back (already form-decoded by the web framework) as replies to verify,
    one per way the raw ``StatusMessage`` may have been written; [] when it holds no
    ``Response.*`` field. Only a reply whose SecureHash verifies with the secret is believed, so
    trying each encoding gives nothing to someone without the secret."""
    fields: dict[str, str] = {}
    received = ""
    for raw_name, value in params.items():
        name = str(raw_name)
        prefix = next((p for p in RETURN_PREFIXES if name.startswith(p)), None)
        if prefix is None:
            continue
        bare = name[len(prefix) :]
        if bare == "SecureHash":
            received = str(value).strip()
            continue
        fields[bare] = str(value)
    if not fields:
        return []
    variants = []
    for encode in (form_encoded, lambda v: quote_plus(v), lambda v: v):
        hashed = {
            name: (encode(value) if RAW_HASHED_MARK in name else value)
            for name, value in fields.items()
        }
        variants.append(QpayReply(dict(fields), hashed, received))
    return variants


def verified_return(params: Mapping[str, str], secret: str) -> QpayReply | None:
    """The post-back when its SecureHash verifies (constant time), else None (no information)."""
    return next((reply for reply in parse_return(params) if reply.verified(secret)), None)


def currency_of(number: str) -> str:
    """An ISO 4217 numeric code as QPay writes it → the alphabetic code (only QAR is QPay's)."""
    return CURRENCY if number.strip() == CURRENCY_NUMBER else (number.strip() or CURRENCY)
