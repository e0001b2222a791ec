"""PayU India postservice commands: pure protocol code, no I/O.

Protocol (spec/gateway-protocol-check.md §7; gateways-knet-payu-qpay-tap-checkoutcom.md §2):
- ``POST …/merchant/postservice.php?form=2``, form-encoded: ``key``, ``command``, ``var1``…,
  ``hash`` = lower-case hex SHA-512 of ``key|command|var1|salt`` (only ``var1`` is covered);
  ``form=2`` makes the reply JSON.
- ``cancel_refund_transaction``: ``var1`` mihpayid, ``var2`` the merchant's token (unique per
  request, at most 23 characters), ``var3`` amount (major units). On a captured payment it is a
  refund; on an ``auth`` payment it cancels the authorisation (the full authorised amount). The
  accepted answer is ``status 1`` with ``error_code 102`` (queued) and a ``request_id`` (refund) or
  ``txn_update_id`` (cancel); the final state comes from ``check_action_status``.
- ``capture_transaction``: same variables, pre-authorised payments only, one capture per payment.
- ``check_action_status``: ``var1`` a request id, or ``var1`` mihpayid with ``var2`` ``payuid``
  (every action of the payment); the answer nests ``transaction_details[<key>][<request id>]``.
- ``verify_payment``: ``var1`` txnid; ``transaction_details[<txnid>]`` with ``status`` and the
  finer ``unmappedstatus``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from payops.connectors.base import Outcome
from payops.money import AmountError, format_minor, from_decimal

REFUND = "cancel_refund_transaction"
CAPTURE = "capture_transaction"
ACTION_STATUS = "check_action_status"
VERIFY_PAYMENT = "verify_payment"
TOKEN_MAX = 23  # documented length limit of ``var2`` on cancel_refund_transaction
ALL_ACTIONS = "payuid"


class PayuFormatError(ValueError):
    """A value PayU would refuse; nothing is sent."""


def command_hash(key: str, command: str, var1: str, salt: str) -> str:
    """SHA-512 of ``key|command|var1|salt``, lower-case hex."""
    return hashlib.sha512(f"{key}|{command}|{var1}|{salt}".encode()).hexdigest()


def hash_matches(form: Mapping[str, str], salt: str) -> bool:
    expected = command_hash(
        form.get("key", ""), form.get("command", ""), form.get("var1", ""), salt
    )
    return hmac.compare_digest(expected, form.get("hash", "").lower())


def command_form(key: str, salt: str, command: str, *variables: str) -> dict[str, str]:
    """The form of one command: ``key``, ``command``, ``var1``… and its ``hash``."""
    if not variables or not variables[0]:
        raise PayuFormatError(f"{command} needs var1")
    form = {"key": key, "command": command}
    for index, value in enumerate(variables, start=1):
        form[f"var{index}"] = value
    form["hash"] = command_hash(key, command, variables[0], salt)
    return form


def token(reference_number: str) -> str:
    """The merchant token of an action: PayOps's reference number (unique per operation)."""
    if not reference_number or len(reference_number) > TOKEN_MAX:
        raise PayuFormatError(f"PayU tokens hold at most {TOKEN_MAX} characters")
    return reference_number


def payu_amount(minor: int, currency_code: str) -> str:
    if minor <= 0:
        raise PayuFormatError("PayU amounts must be greater than zero")
    return format_minor(minor, currency_code)


def to_minor(value: Any, currency_code: str) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).replace(",", "").strip())
        return from_decimal(amount, currency_code) if amount.is_finite() else None
    except (InvalidOperation, AmountError, ValueError):
        return None


# -- command replies ---------------------------------------------------------------------------
@dataclass(frozen=True)
class CommandReply:
    """The answer to cancel_refund_transaction / capture_transaction."""

    status: int | None
    msg: str
    error_code: str
    request_id: str | None
    txn_update_id: str | None
    mihpayid: str | None

    @property
    def action_id(self) -> str | None:
        return self.request_id or self.txn_update_id


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text if text and text.lower() not in ("null", "none") else None


def parse_command_reply(body: Any) -> CommandReply | None:
    if not isinstance(body, dict) or "status" not in body:
        return None
    try:
        status = int(str(body.get("status")).strip())
    except ValueError:
        status = None
    return CommandReply(
        status,
        str(body.get("msg") or ""),
        _text(body.get("error_code")) or "",
        _text(body.get("request_id")),
        _text(body.get("txn_update_id")),
        _text(body.get("mihpayid")),
    )


# Command codes (docs: error codes for refund initiation, pre-authorize payments).
ACCEPTED_CODES = frozenset({"102", "101", "112", "122", "123", "126", "127", "225", "226"})
DONE_CODES = frozenset({"100"})
# The token was used before: the earlier request stands; find it by its token.
REPLAY_CODES = frozenset({"106", "109", "227"})
# Neither accepted nor refused in so many words: a human looks if inquiry cannot tell.
UNCLEAR_CODES = frozenset({"104"})
COMMAND_MESSAGES = {
    "102": "Queued at PayU",
    "105": "Invalid amount",
    "106": "Token already exists",
    "109": "Request already logged",
    "111": "Invalid transaction status",
    "116": "Transaction not found",
    "117": "Amount does not match",
    "124": "Input missing",
    "128": "Partial refunds not allowed",
    "214": "Same amount on the same transaction within 5 minutes",
    "226": "Capture initiated today; check tomorrow",
    "227": "Same amount and token not allowed",
    "230": "Purged transaction",
    "301": "Capture already successful",
    "303": "Amount greater than capturable",
}


def command_outcome(reply: CommandReply) -> Outcome:
    """``status`` says whether the command was accepted; ``error_code`` says how."""
    code = reply.error_code
    if code in DONE_CODES and reply.status == 1:
        return Outcome.SUCCESS
    if code in ACCEPTED_CODES and reply.status != 0:
        return Outcome.PENDING
    if code in REPLAY_CODES or code in UNCLEAR_CODES:
        return Outcome.UNKNOWN
    if reply.status == 0:
        return Outcome.FAILED
    if reply.status == 1:
        # Accepted with a code nobody documented: not final, never success.
        return Outcome.PENDING
    return Outcome.UNKNOWN


def command_message(reply: CommandReply) -> str:
    code = reply.error_code
    text = reply.msg or COMMAND_MESSAGES.get(code, "")
    return f"PayU {code}: {text}" if code else f"PayU: {text or 'no message'}"


# -- action status -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    request_id: str
    action: str
    token: str
    amount: str | None
    status: str
    raw: dict[str, Any]


ACTION_STATUS_OUTCOME: dict[str, Outcome] = {
    "success": Outcome.SUCCESS,
    "failure": Outcome.FAILED,
    "failed": Outcome.FAILED,
    "cancelled": Outcome.FAILED,
    "queued": Outcome.PENDING,
    "in progress": Outcome.PENDING,
    "requested": Outcome.PENDING,
    "pending": Outcome.PENDING,
    "od_hit": Outcome.PENDING,
}


def action_outcome(status: str) -> Outcome:
    """Compared without case; a status nobody documented is pending, never success."""
    return ACTION_STATUS_OUTCOME.get(status.strip().lower(), Outcome.PENDING)


def parse_actions(body: Any) -> list[Action] | None:
    """Every action in a check_action_status answer; [] for "No action status found"; None when
    the answer is not of that shape."""
    if not isinstance(body, dict) or "status" not in body:
        return None
    details = body.get("transaction_details")
    if str(body.get("status")) == "0" and not details:
        # Only PayU's "No action status found" means "none"; any other refusal (a bad hash, a
        # wrong key) says nothing about the actions.
        return [] if "no action" in str(body.get("msg") or "").lower() else None
    if not isinstance(details, dict):
        return None
    found = []
    for outer in details.values():
        if not isinstance(outer, dict):
            continue
        entries = outer.values() if all(isinstance(v, dict) for v in outer.values()) else [outer]
        for entry in entries:
            if not isinstance(entry, dict) or not _text(entry.get("request_id")):
                continue
            found.append(
                Action(
                    str(_text(entry.get("request_id"))),
                    str(entry.get("action") or "").lower(),
                    str(entry.get("token") or ""),
                    _text(entry.get("amt")),
                    str(entry.get("status") or ""),
                    entry,
                )
            )
    return found


# -- payment status ----------------------------------------------------------------------------
@dataclass(frozen=True)
class PaymentStatus:
    txnid: str
    mihpayid: str | None
    status: str
    unmapped: str
    amount: str | None
    raw: dict[str, Any]

    @property
    def found(self) -> bool:
        return (self.mihpayid or "").lower() != "not found" and self.status.lower() != "not found"


def parse_payment(body: Any, txnid: str) -> PaymentStatus | None:
    if not isinstance(body, dict):
        return None
    details = body.get("transaction_details")
    entry = details.get(txnid) if isinstance(details, dict) else None
    if not isinstance(entry, dict):
        return None
    return PaymentStatus(
        txnid,
        _text(entry.get("mihpayid")),
        str(entry.get("status") or ""),
        str(entry.get("unmappedstatus") or ""),
        _text(entry.get("transaction_amount")) or _text(entry.get("amt")),
        entry,
    )


FAILED_UNMAPPED = frozenset(
    {"failed", "bounced", "dropped", "usercancelled", "cancelled", "failure", "autorefund"}
)


def payment_outcome(found: PaymentStatus, operation_mode: str) -> Outcome:
    """verify_payment → the attempt's outcome. An authorisation (``auth``) is a success for an
    authorize-mode payment only; unknown words are pending."""
    if not found.found:
        return Outcome.PENDING
    status = found.status.strip().lower()
    unmapped = found.unmapped.strip().lower()
    if status == "success":
        if unmapped == "captured":
            return Outcome.SUCCESS
        if unmapped == "auth":
            return Outcome.SUCCESS if operation_mode == "authorize" else Outcome.PENDING
        return Outcome.PENDING
    if status == "failure" or unmapped in FAILED_UNMAPPED:
        return Outcome.FAILED
    return Outcome.PENDING


# -- hosted checkout (``_payment``) -------------------------------------------------------------
# spec/gateways-payment-acceptance.md §6: the browser posts a form to ``…/_payment`` carrying the
# request hash; PayU posts the result back to ``surl``/``furl`` with the reverse hash.
CHECKOUT_CURRENCY = "INR"
TXNID_MAX = 25
PRODUCTINFO_MAX = 100
FIRSTNAME_MAX = 60
EMAIL_MAX = 50
UDFS = ("udf1", "udf2", "udf3", "udf4", "udf5")
# Characters that would shift the ``|``-joined hash sequence or break the form: never sent.
_UNSAFE = dict.fromkeys(map(ord, "|\r\n\t\x00"), " ")


def clean(value: str, limit: int) -> str:
    """A value as PayU hashes and shows it: no ``|`` or control characters, trimmed."""
    return " ".join(str(value or "").translate(_UNSAFE).split())[:limit]


def request_hash(form: Mapping[str, str], salt: str) -> str:
    """``sha512(key|txnid|amount|productinfo|firstname|email|udf1|…|udf5||||||SALT)``."""
    parts = [
        form.get(name, "")
        for name in ("key", "txnid", "amount", "productinfo", "firstname", "email", *UDFS)
    ]
    sequence = "|".join([*parts, "", "", "", "", "", salt])
    return hashlib.sha512(sequence.encode()).hexdigest()


def reverse_hash(form: Mapping[str, str], salt: str) -> str:
    """``sha512([additionalCharges|]SALT|status||||||udf5|…|udf1|email|firstname|productinfo|
    amount|txnid|key)`` over the values PayU posted back (the docs' sequence, status included)."""
    parts = [
        salt,
        form.get("status", ""),
        "",
        "",
        "",
        "",
        "",
        *(form.get(name, "") for name in reversed(UDFS)),
        *(
            form.get(name, "")
            for name in ("email", "firstname", "productinfo", "amount", "txnid", "key")
        ),
    ]
    charges = form.get("additionalCharges", "")
    if charges:
        parts.insert(0, charges)
    return hashlib.sha512("|".join(parts).encode()).hexdigest()


def reverse_hash_matches(form: Mapping[str, str], salt: str) -> bool:
    """Constant-time check of the posted ``hash``; a missing one never matches."""
    received = str(form.get("hash") or "").strip().lower()
    if not received or not salt:
        return False
    return hmac.compare_digest(reverse_hash(form, salt), received)


def checkout_form(
    *,
    key: str,
    salt: str,
    txnid: str,
    amount_minor: int,
    currency_code: str,
    productinfo: str,
    firstname: str,
    email: str,
    phone: str,
    lastname: str,
    surl: str,
    furl: str,
) -> dict[str, str]:
    """The ``_payment`` form the browser posts, with its request hash."""
    if currency_code.upper() != CHECKOUT_CURRENCY:
        raise PayuFormatError(f"PayU takes payments in INR only, not {currency_code}")
    if not txnid or len(txnid) > TXNID_MAX:
        raise PayuFormatError(f"PayU txnids hold 1 to {TXNID_MAX} characters")
    form = {
        "key": key,
        "txnid": txnid,
        "amount": payu_amount(amount_minor, CHECKOUT_CURRENCY),
        "productinfo": clean(productinfo, PRODUCTINFO_MAX) or "Payment",
        "firstname": clean(firstname, FIRSTNAME_MAX),
        "email": clean(email, EMAIL_MAX),
        "phone": clean(phone, 20),
        "surl": surl,
        "furl": furl,
    }
    missing = [name for name in ("key", "firstname", "email", "phone") if not form[name]]
    if missing:
        raise PayuFormatError("PayU needs " + ", ".join(missing) + " on every payment")
    if lastname.strip():
        form["lastname"] = clean(lastname, FIRSTNAME_MAX)
    form["hash"] = request_hash(form, salt)
    return form


def payment_state(found: PaymentStatus) -> str | None:
    """What a failed payment means when it is not a decline (spec §6.3): the payer cancelled, or
    left PayU's page without paying (``bounced``, read as cancelled)."""
    unmapped = found.unmapped.strip().lower()
    if unmapped in ("usercancelled", "cancelled", "bounced"):
        return "canceled"
    return None
