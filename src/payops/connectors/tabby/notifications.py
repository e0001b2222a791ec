"""Tabby's incoming webhooks: authenticity check and parsing (pure functions, no endpoint).

Tabby signs nothing. When a webhook is registered (``POST /api/v1/webhooks``) the merchant may
give one static header, ``{"title": …, "value": …}``, which Tabby then sends with every
notification; that header is the only authenticity Tabby offers (besides a source-IP allowlist).
PayOps registers it with the configuration's webhook secret as the value, under
``DEFAULT_HEADER_NAME`` unless the configuration names another title. A configuration without a
secret accepts no notification (fail closed).

The payload is the payment object with a lower-case ``status`` (``authorized``, ``closed``,
``rejected``, ``expired``). A capture arrives as ``authorized`` (or ``closed`` when it completes the
payment) with a new entry in ``captures[]``, a refund as ``closed`` with a new entry in
``refunds[]``. Delivery is at least once and unordered, with no event id: deduplicate on
``TabbyNotification.dedupe_key``. A notification only says "look again": what it reports should be
confirmed with the connector's inquiry before money moves in PayOps's books.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from payops.connectors.base import Outcome
from payops.connectors.tabby.transformers import payment_outcome

# PayOps's choice for the header title it registers with Tabby (Tabby lets the merchant pick it).
DEFAULT_HEADER_NAME = "X-PayOps-Webhook-Secret"
MAX_BODY_BYTES = 1_048_576


class TabbyWebhookError(ValueError):
    """A notification that must not be accepted (the message is safe to log)."""


@dataclass(frozen=True)
class TabbyNotification:
    payment_id: str
    status: str  # the documented status, upper case (AUTHORIZED, CLOSED, …)
    outcome: Outcome  # what the status says about the customer's payment
    order_reference_id: str | None
    capture_count: int
    refund_count: int
    payload: dict[str, Any] = field(repr=False, default_factory=dict)

    @property
    def reference(self) -> str:
        """The Tabby payment id: what PayOps keeps as ``gateway_refs["payment_id"]``."""
        return self.payment_id

    @property
    def dedupe_key(self) -> tuple[str, str, int, int]:
        return (self.payment_id, self.status, self.capture_count, self.refund_count)


def _header_values(headers: Mapping[str, str] | Iterable[tuple[str, str]], name: str) -> list[str]:
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    wanted = name.lower()
    values = []
    for key, value in pairs:
        key_text = key.decode("latin-1") if isinstance(key, bytes) else str(key)
        if key_text.lower() == wanted:
            values.append(value.decode("latin-1") if isinstance(value, bytes) else str(value))
    return values


def verify_notification(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    secret: str,
    header_name: str = DEFAULT_HEADER_NAME,
) -> bool:
    """True when the registered header carries exactly the configured secret."""
    if not secret or not header_name:
        return False
    values = _header_values(headers, header_name)
    if len(values) != 1:
        return False
    return hmac.compare_digest(values[0].strip().encode(), secret.encode())


def parse_notification(body: bytes | str) -> TabbyNotification:
    """The payment object Tabby posts, as (payment id, status, …); raises TabbyWebhookError."""
    if isinstance(body, bytes):
        if len(body) > MAX_BODY_BYTES:
            raise TabbyWebhookError("notification body is too large")
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise TabbyWebhookError("notification body is not UTF-8") from None
    try:
        payload = json.loads(body)
    except ValueError:
        raise TabbyWebhookError("notification body is not JSON") from None
    if not isinstance(payload, dict):
        raise TabbyWebhookError("notification body is not a payment object")
    payment_id = payload.get("id")
    status = payload.get("status")
    if not isinstance(payment_id, str) or not payment_id.strip():
        raise TabbyWebhookError("notification has no payment id")
    if not isinstance(status, str) or not status.strip():
        raise TabbyWebhookError("notification has no status")
    captures = payload.get("captures")
    refunds = payload.get("refunds")
    captures = [] if captures is None else captures
    refunds = [] if refunds is None else refunds
    if not isinstance(captures, list) or not isinstance(refunds, list):
        raise TabbyWebhookError("notification captures/refunds are not lists")
    order = payload.get("order")
    reference = order.get("reference_id") if isinstance(order, dict) else None
    normalised = status.strip().upper()
    return TabbyNotification(
        payment_id=payment_id.strip(),
        status=normalised,
        outcome=payment_outcome(normalised, has_captures=bool(captures)),
        order_reference_id=reference if isinstance(reference, str) else None,
        capture_count=len(captures),
        refund_count=len(refunds),
        payload=payload,
    )


def verify_and_parse(
    headers: Mapping[str, str] | Iterable[tuple[str, str]],
    body: bytes | str,
    secret: str,
    header_name: str = DEFAULT_HEADER_NAME,
) -> tuple[str, str]:
    """Authenticate a notification, then return (Tabby payment id, status); raises on refusal."""
    if not verify_notification(headers, secret, header_name):
        raise TabbyWebhookError("notification is not authentic")
    notification = parse_notification(body)
    return notification.reference, notification.status
