"""Incoming N-Genius webhooks: authenticity check and parsing (pure functions, no endpoint).

N-Genius signs nothing. The merchant configures the webhook in the portal with an optional
**custom header** (Header Key / Header Value); that static value is the only proof that a
notification comes from N-Genius, so it must be a long random secret and is compared in constant
time. The body is ``{"eventId", "eventName", "outletId", "order": {…the full order…}}``. N-Genius
sends each event once, without retries, so the reconciler's polling stays the source of truth.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from payops.connectors.base import Outcome
from payops.connectors.ngenius.transformers import event_outcome

# The header name is the merchant's choice in the portal; this is PayOps's suggested default.
DEFAULT_HEADER_NAME = "X-PayOps-Webhook-Secret"


class WebhookError(ValueError):
    """A notification that is not authentic or cannot be read."""


@dataclass(frozen=True)
class WebhookEvent:
    reference: str  # the N-Genius order reference
    status: str  # eventName, e.g. CAPTURED, REFUND_REQUESTED
    event_id: str = ""
    outlet_id: str = ""
    payment_reference: str = ""
    payment_state: str = ""

    @property
    def outcome(self) -> Outcome:
        return event_outcome(self.status)


def verify_webhook(
    headers: Mapping[str, str], *, secret: str, header_name: str = DEFAULT_HEADER_NAME
) -> bool:
    """True when the notification carries the configured header value (constant-time compare).

    An empty configured secret verifies nothing: unauthenticated webhooks are refused.
    """
    if not secret or not header_name:
        return False
    wanted = header_name.lower()
    received = next((value for key, value in headers.items() if key.lower() == wanted), None)
    if received is None:
        return False
    return hmac.compare_digest(received.encode("utf-8"), secret.encode("utf-8"))


def parse_webhook(body: bytes | str | Mapping[str, Any]) -> tuple[str, str]:
    """(order reference, eventName) of a notification body; WebhookError when unreadable."""
    event = parse_event(body)
    return event.reference, event.status


def parse_event(body: bytes | str | Mapping[str, Any]) -> WebhookEvent:
    if isinstance(body, (bytes, str)):
        try:
            data = json.loads(body)
        except ValueError:
            raise WebhookError("the notification body is not JSON") from None
    else:
        data = dict(body)
    if not isinstance(data, dict):
        raise WebhookError("the notification body is not an object")
    status = data.get("eventName")
    order = data.get("order")
    if not isinstance(status, str) or not status:
        raise WebhookError("the notification has no eventName")
    if not isinstance(order, dict):
        raise WebhookError("the notification has no order")
    reference = order.get("reference")
    if not reference and isinstance(order.get("_id"), str):
        reference = order["_id"].rsplit(":", 1)[-1]
    if not isinstance(reference, str) or not reference:
        raise WebhookError("the notification's order has no reference")
    payments = (order.get("_embedded") or {}).get("payment") or []
    payment = payments[-1] if payments and isinstance(payments[-1], dict) else {}
    payment_reference = payment.get("reference") or str(payment.get("_id", "")).rsplit(":", 1)[-1]
    return WebhookEvent(
        reference=reference,
        status=status.upper(),
        event_id=str(data.get("eventId") or ""),
        outlet_id=str(data.get("outletId") or ""),
        payment_reference=str(payment_reference or ""),
        payment_state=str(payment.get("state") or ""),
    )


def verify_and_parse(
    headers: Mapping[str, str],
    body: bytes | str,
    *,
    secret: str,
    header_name: str = DEFAULT_HEADER_NAME,
) -> WebhookEvent:
    """Authenticate, then parse; WebhookError for either failure."""
    if not verify_webhook(headers, secret=secret, header_name=header_name):
        raise WebhookError("the notification is not authentic")
    return parse_event(body)
