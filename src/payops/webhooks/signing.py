"""Ottu webhook signature (ottu-api.md §7.3): HMAC-SHA256 over sorted ``key+value`` pairs."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from typing import Any

SIGNED_FIELDS = frozenset(
    {
        "amount",
        "currency_code",
        "customer_first_name",
        "customer_last_name",
        "customer_email",
        "customer_phone",
        "customer_address_line1",
        "customer_address_line2",
        "customer_address_city",
        "customer_address_state",
        "customer_address_country",
        "customer_address_postal_code",
        "gateway_name",
        "gateway_account",
        "order_no",
        "reference_number",
        "result",
        "state",
    }
)


def signing_message(payload: Mapping[str, Any]) -> str:
    parts = [
        f"{key}{payload[key]}"
        for key in sorted(SIGNED_FIELDS & payload.keys())
        if payload[key] not in (None, "")
    ]
    return "".join(parts)


def sign(payload: Mapping[str, Any], key: str) -> str:
    if not key:
        return ""
    return hmac.new(key.encode(), signing_message(payload).encode(), hashlib.sha256).hexdigest()


def verify(payload: Mapping[str, Any], signature: str, key: str) -> bool:
    return bool(key) and hmac.compare_digest(sign(payload, key), signature or "")
