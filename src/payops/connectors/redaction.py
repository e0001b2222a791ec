"""Buyer personal data out of gateway replies before PayOps stores them (``pg_response``).

A gateway reply is evidence: operators need its ids, statuses, amounts, codes and messages. They
do not need the buyer's name, email, phone, date of birth, addresses or purchase history, which
some gateways (Tabby above all) echo in every reply, and which would otherwise be kept forever,
returned to any API caller allowed to see the transaction, and sent in webhooks.

Each connector declares the keys it redacts (``Connector.personal_fields``). A key matches
wherever it appears in the reply, at any depth, compared without case, ``_`` or ``-``
("shipping_address" matches "shippingAddress"). Its value, whatever it is, becomes
``REDACTED``; the key stays, so the reply's shape is unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from payops.connectors.base import GatewayResult

REDACTED = "[redacted]"


def normalise(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def field_set(names: Iterable[str]) -> frozenset[str]:
    return frozenset(normalise(name) for name in names)


def redact(value: Any, fields: frozenset[str]) -> Any:
    if not fields:
        return value
    if isinstance(value, dict):
        return {key: (REDACTED if isinstance(key, str) and normalise(key) in fields and item
                      not in (None, "", [], {}) else redact(item, fields))
                for key, item in value.items()}
    if isinstance(value, list):
        return [redact(item, fields) for item in value]
    return value


def redact_result(result: GatewayResult, fields: frozenset[str]) -> GatewayResult:
    """The result with personal fields redacted from the reply as stored (``pg_response``).
    ``pg_params`` are left alone: they are the Ottu contract's normalised fields, built by the
    connector (card numbers already masked there)."""
    if not fields:
        return result
    return replace(result, raw=redact(result.raw, fields))
