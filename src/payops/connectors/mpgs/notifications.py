"""MPGS webhook notifications: authenticity and parsing (pure functions; no endpoint here).

MPGS does not sign notifications. Each one carries the merchant's configured notification secret
in the ``X-Notification-Secret`` header, which the receiver compares (in constant time) with its
own copy. The body has the shape of a Retrieve Transaction reply (``merchant``, ``order``,
``transaction``, ``response``, ``result``). Delivery is neither guaranteed nor timely and may be
repeated (``X-Notification-Id``, ``X-Notification-Attempt``), so a receiver keys on
``(order.id, transaction.id)`` and re-fetches the transaction before acting; a notification is a
hint, never the settlement itself.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any, NamedTuple

from payops.connectors.base import Outcome
from payops.connectors.mpgs.transformers import (
    decode_json,
    parse_transaction,
    transaction_outcome,
)

SECRET_HEADER = "X-Notification-Secret"
ID_HEADER = "X-Notification-Id"
ATTEMPT_HEADER = "X-Notification-Attempt"


class InvalidNotification(ValueError):
    """A notification that is not authentic or cannot be read."""


class Notification(NamedTuple):
    reference: str  # transaction.id: PayOps's reference number for operations PayOps sent
    status: Outcome


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def verify_notification(headers: Mapping[str, str], secret: str) -> bool:
    """True only when the notification carries exactly the configured secret.

    A configuration without a secret accepts nothing.
    """
    if not secret:
        return False
    presented = _header(headers, SECRET_HEADER)
    if presented is None:
        return False
    return hmac.compare_digest(presented.encode("utf-8"), secret.encode("utf-8"))


def _body_dict(body: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(body, Mapping):
        return dict(body)
    data = decode_json(body.encode("utf-8") if isinstance(body, str) else body)
    if data is None:
        raise InvalidNotification("notification body is not a JSON object")
    return data


def parse_notification(
    body: bytes | str | Mapping[str, Any], *, merchant_id: str | None = None
) -> Notification:
    """(reference, status) of a notification; ``merchant_id``, when given, must match."""
    reply = parse_transaction(_body_dict(body))
    if reply is None or reply.transaction is None or not reply.transaction.id:
        raise InvalidNotification("notification has no transaction.id")
    if reply.order is None or not reply.order.id:
        raise InvalidNotification("notification has no order.id")
    if merchant_id is not None and reply.merchant != merchant_id:
        raise InvalidNotification("notification is for another merchant")
    status = transaction_outcome(
        reply.result, reply.gateway_code, reply.error.cause if reply.error else None
    )
    return Notification(reply.transaction.id, status)


def notification_key(body: bytes | str | Mapping[str, Any]) -> tuple[str, str]:
    """``(order.id, transaction.id)``: the key to deduplicate repeated deliveries."""
    reply = parse_transaction(_body_dict(body))
    if reply is None or reply.order is None or reply.transaction is None:
        raise InvalidNotification("notification has no order or transaction")
    return str(reply.order.id or ""), str(reply.transaction.id or "")


def verify_and_parse(
    headers: Mapping[str, str],
    body: bytes | str | Mapping[str, Any],
    secret: str,
    *,
    merchant_id: str | None = None,
) -> Notification:
    """Authenticate, then parse; raises InvalidNotification for anything not acceptable."""
    if not verify_notification(headers, secret):
        raise InvalidNotification("notification secret does not match")
    return parse_notification(body, merchant_id=merchant_id)
