"""MyFatoorah's incoming webhooks: authenticity check and parsing (pure functions, no endpoint).

MyFatoorah signs each notification with the webhook secret key set in its portal (Integration
Settings → Webhook Settings; mandatory for webhook V2, optional but recommended for V1): the
``MyFatoorah-Signature`` header is ``base64(HMAC-SHA256(secret, canonical string))``, both encoded
as UTF-8. The canonical string is ``key=value`` pairs joined with ``,``, a null value written as
the empty string. Which pairs, in which order:

- **V1** (``{"EventType", "Event", "DateTime", "CountryIsoCode", "Data": {…}}``): every property of
  ``Data``, sorted by key case-insensitively; for EventType 2 (RefundStatusChanged) the nested
  ``GatewayReference`` is left out.
- **V2** (``{"Event": {"Code", "Name", …}, "Data": {…}}``, header
  ``myfatoorah-webhook-version: v2``): a fixed list of fields per event, in this order, keys written
  as the dotted path:

  - code 1, PAYMENT_STATUS_CHANGED: ``Invoice.Id, Invoice.Status, Transaction.Status,
    Transaction.PaymentId, Invoice.ExternalIdentifier``;
  - code 2, REFUND_STATUS_CHANGED: ``Refund.Id, Refund.Status, Amount.ValueInBaseCurrency,
    ReferencedInvoice.Id``.

  Other V2 events are not used by PayOps and are not accepted.

Values are taken exactly as they appear in the body: JSON numbers keep their literal text
(``40.500`` stays ``40.500``), so nothing is lost to float conversion. The version comes from the
``myfatoorah-webhook-version`` header, or from the body's shape when the header is absent. A
configuration without a secret accepts nothing (fail closed), and the signature is compared in
constant time.

A notification only says "look again": PayOps should confirm what it reports with the
connector's inquiry (GetPaymentStatus / GetRefundStatus) before money moves in its books.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from payops.connectors.base import Outcome
from payops.connectors.myfatoorah.transformers import (
    REFUND_STATUS_OUTCOME,
    TRANSACTION_STATUS_OUTCOME,
    status_outcome,
)

SIGNATURE_HEADER = "MyFatoorah-Signature"
VERSION_HEADER = "myfatoorah-webhook-version"
MAX_BODY_BYTES = 1_048_576

V1_EVENT_TRANSACTION = 1
V1_EVENT_REFUND = 2
V1_EXCLUDED = {V1_EVENT_REFUND: ("GatewayReference",)}

V2_EVENT_PAYMENT = 1
V2_EVENT_REFUND = 2
V2_SIGNED_FIELDS: dict[int, tuple[str, ...]] = {
    V2_EVENT_PAYMENT: (
        "Invoice.Id",
        "Invoice.Status",
        "Transaction.Status",
        "Transaction.PaymentId",
        "Invoice.ExternalIdentifier",
    ),
    V2_EVENT_REFUND: (
        "Refund.Id",
        "Refund.Status",
        "Amount.ValueInBaseCurrency",
        "ReferencedInvoice.Id",
    ),
}


class MyFatoorahWebhookError(ValueError):
    """A notification that must not be accepted (the message is safe to log)."""


class JsonNumber(str):
    """A JSON number kept exactly as it was written in the body."""


@dataclass(frozen=True)
class MyFatoorahNotification:
    version: str  # "v1" | "v2"
    event: str  # "payment" | "refund"
    status: str  # as sent, upper case: SUCCESS, FAILED, REFUNDED, CANCELED, …
    outcome: Outcome  # what the status says (unknown statuses: PENDING)
    reference: str | None  # PayOps's reference echoed back (ExternalIdentifier), if any
    invoice_id: str | None = None
    payment_id: str | None = None
    refund_id: str | None = None
    refund_reference: str | None = None
    amount: Decimal | None = None
    payload: dict[str, Any] = field(repr=False, default_factory=dict)


# -- body and headers -----------------------------------------------------------------------------


def load_body(body: bytes | str) -> dict[str, Any]:
    """The JSON object of a notification, numbers kept as their literal text."""
    if isinstance(body, bytes):
        if len(body) > MAX_BODY_BYTES:
            raise MyFatoorahWebhookError("notification body too large")
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise MyFatoorahWebhookError("notification body is not UTF-8") from None
    elif len(body) > MAX_BODY_BYTES:
        raise MyFatoorahWebhookError("notification body too large")
    try:
        payload = json.loads(body, parse_float=JsonNumber, parse_int=JsonNumber)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply (was a 500)
        raise MyFatoorahWebhookError("notification body is not JSON") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("Data"), dict):
        raise MyFatoorahWebhookError("notification has no Data object")
    return payload


def _header(headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> str | None:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    values = [value for key, value in pairs if key.lower() == name.lower()]
    if len(values) != 1:
        return None  # missing, or ambiguous
    return values[0]


def _event_code(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def detect_version(payload: Mapping[str, Any], header_value: str | None = None) -> str | None:
    if header_value:
        version = header_value.strip().lower()
        return version if version in ("v1", "v2") else None
    if isinstance(payload.get("Event"), Mapping):
        return "v2"
    if "EventType" in payload:
        return "v1"
    return None


# -- the canonical string -------------------------------------------------------------------------


def _render(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):  # GUESS: no signed field is a boolean in the documented models
        return "true" if value else "false"
    if isinstance(value, str):  # JsonNumber included: its literal text
        return value
    raise MyFatoorahWebhookError("a signed property is not a plain value")


def _path(data: Mapping[str, Any], dotted: str) -> Any:
    value: Any = data
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def canonical_string(payload: Mapping[str, Any], version: str) -> str:
    """The ``key=value,…`` string MyFatoorah signs for this notification."""
    data = payload.get("Data")
    if not isinstance(data, Mapping):
        raise MyFatoorahWebhookError("notification has no Data object")
    if version == "v1":
        code = _event_code(payload.get("EventType"))
        if code is None:
            raise MyFatoorahWebhookError("V1 notification without EventType")
        excluded = set(V1_EXCLUDED.get(code, ()))
        keys = sorted((k for k in data if k not in excluded), key=lambda k: str(k).lower())
        return ",".join(f"{key}={_render(data[key])}" for key in keys)
    if version == "v2":
        event = payload.get("Event")
        code = _event_code(event.get("Code")) if isinstance(event, Mapping) else None
        fields = V2_SIGNED_FIELDS.get(code) if code is not None else None
        if fields is None:
            raise MyFatoorahWebhookError("V2 notification of an event PayOps does not take")
        return ",".join(f"{name}={_render(_path(data, name))}" for name in fields)
    raise MyFatoorahWebhookError("unknown webhook version")


def compute_signature(canonical: str, secret: str) -> str:
    digest = hmac.new(secret.encode("utf-8"), canonical.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_signature(
    body: bytes | str, headers: Mapping[str, str] | Iterable[tuple[str, str]], secret: str
) -> bool:
    """True only for a notification signed with ``secret`` (constant-time comparison)."""
    if not secret:
        return False
    signature = _header(headers, SIGNATURE_HEADER)
    if not signature:
        return False
    try:
        payload = load_body(body)
        version = detect_version(payload, _header(headers, VERSION_HEADER))
        if version is None:
            return False
        expected = compute_signature(canonical_string(payload, version), secret)
    except MyFatoorahWebhookError:
        return False
    return hmac.compare_digest(
        expected.encode("ascii"), signature.strip().encode("utf-8", "replace")
    )


# -- parsing --------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, (bool, Mapping, list)):
        return None
    text = str(value).strip()
    return text or None


def _amount(value: Any) -> Decimal | None:
    text = _text(value)
    if text is None:
        return None
    try:
        amount = Decimal(text.replace(",", ""))
    except InvalidOperation:
        return None
    return amount if amount.is_finite() else None


def parse_notification(
    body: bytes | str, headers: Mapping[str, str] | Iterable[tuple[str, str]] = ()
) -> MyFatoorahNotification:
    """(reference, status) and the gateway's ids of a payment or refund notification."""
    payload = load_body(body)
    version = detect_version(payload, _header(headers, VERSION_HEADER))
    data: Mapping[str, Any] = payload["Data"]
    if version == "v2":
        event = payload.get("Event") or {}
        code = _event_code(event.get("Code")) if isinstance(event, Mapping) else None
        if code == V2_EVENT_PAYMENT:
            status = (_text(_path(data, "Transaction.Status")) or "").upper()
            return MyFatoorahNotification(
                "v2",
                "payment",
                status,
                status_outcome(TRANSACTION_STATUS_OUTCOME, status),
                _text(_path(data, "Invoice.ExternalIdentifier")),
                invoice_id=_text(_path(data, "Invoice.Id")),
                payment_id=_text(_path(data, "Transaction.PaymentId")),
                amount=_amount(_path(data, "Amount.ValueInBaseCurrency")),
                payload=payload,
            )
        if code == V2_EVENT_REFUND:
            status = (_text(_path(data, "Refund.Status")) or "").upper()
            return MyFatoorahNotification(
                "v2",
                "refund",
                status,
                status_outcome(REFUND_STATUS_OUTCOME, status),
                # A V2 refund event carries no ExternalIdentifier of the refund (ReferencedInvoice's
                # is the payment's): the refund is matched by Refund.Id, the refund_id MakeRefund
                # returned. Refund.InvoiceId is the refund's own invoice, never the payment's.
                None,
                invoice_id=_text(_path(data, "ReferencedInvoice.Id")),
                refund_id=_text(_path(data, "Refund.Id")),
                refund_reference=_text(_path(data, "Refund.Reference")),
                amount=_amount(_path(data, "Amount.ValueInBaseCurrency")),
                payload=payload,
            )
        raise MyFatoorahWebhookError("V2 notification of an event PayOps does not take")
    if version == "v1":
        code = _event_code(payload.get("EventType"))
        if code == V1_EVENT_TRANSACTION:
            status = (_text(data.get("TransactionStatus")) or "").upper()
            return MyFatoorahNotification(
                "v1",
                "payment",
                status,
                status_outcome(TRANSACTION_STATUS_OUTCOME, status),
                _text(data.get("ExternalIdentifier")) or _text(data.get("CustomerReference")),
                invoice_id=_text(data.get("InvoiceId")),
                payment_id=_text(data.get("PaymentId")),
                amount=_amount(data.get("InvoiceValueInBaseCurrency")),
                payload=payload,
            )
        if code == V1_EVENT_REFUND:
            status = (_text(data.get("RefundStatus")) or "").upper()
            return MyFatoorahNotification(
                "v1",
                "refund",
                status,
                status_outcome(REFUND_STATUS_OUTCOME, status),
                _text(data.get("ExternalIdentifier")),
                invoice_id=_text(data.get("InvoiceId")),
                refund_id=_text(data.get("RefundId")),
                refund_reference=_text(data.get("RefundReference")),
                amount=_amount(data.get("Amount")),
                payload=payload,
            )
        raise MyFatoorahWebhookError("V1 notification of an event PayOps does not take")
    raise MyFatoorahWebhookError("unknown webhook version")


def verify_and_parse(
    body: bytes | str, headers: Mapping[str, str] | Iterable[tuple[str, str]], secret: str
) -> MyFatoorahNotification:
    """The parsed notification, or MyFatoorahWebhookError when it is not authentic."""
    if not verify_signature(body, headers, secret):
        raise MyFatoorahWebhookError("invalid MyFatoorah signature")
    return parse_notification(body, headers)
