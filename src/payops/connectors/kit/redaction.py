"""One redaction for gateway replies, in two steps.

1. **Card data and secrets** (``Redaction.scrub``), applied by the connector to every reply it
   keeps: keys naming secrets (security codes, tokens, passwords) are dropped; values under
   card-number keys are masked; with ``mask_pan_strings`` any string that is a full card number
   (13-19 digits passing the Luhn check) is masked wherever it is. Decimals become their exact
   text, so the result is JSON-safe.
2. **Buyer personal data** (``redact``/``redact_result``), applied by PayOps to every result
   before it is stored (``pg_response``), from the keys each connector declares in
   ``Connector.personal_fields`` (built with ``field_set``). A key matches wherever it appears,
   at any depth, compared without case, ``_`` or ``-`` ("shipping_address" matches
   "shippingAddress"). Its value becomes ``REDACTED``; the key stays, so the reply's shape is
   unchanged.

A gateway reply is evidence: operators need its ids, statuses, amounts, codes and messages, and
never the buyer's contact details or a card number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from payops.connectors.base import GatewayResult

REDACTED = "[redacted]"

_DIGIT_RUN = re.compile(r"[0-9]{12,19}")
_PAN = re.compile(r"[0-9]{13,19}")


# -- card numbers ----------------------------------------------------------------------------


def luhn(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def looks_like_pan(value: str) -> bool:
    """A full card number: 13-19 digits passing the Luhn check (RRNs have 12 digits)."""
    return bool(_PAN.fullmatch(value)) and luhn(value)


def mask_first6_last4(value: Any) -> Any:
    """Keep at most the first six and last four digits of a card number (spaces and dashes
    ignored); anything that is not 12-19 digits is returned unchanged."""
    if not isinstance(value, str):
        return value
    digits = re.sub(r"[\s-]", "", value)
    if _DIGIT_RUN.fullmatch(digits):
        return f"{digits[:6]}{'x' * (len(digits) - 10)}{digits[-4:]}"
    return value


def mask_last4(value: Any) -> Any:
    """Keep only the last four digits of a card number (any string)."""
    if not isinstance(value, str):
        return value
    last4 = "".join(c for c in value if c.isdigit())[-4:]
    return f"************{last4}" if last4 else "************"


# -- step 1: card data and secrets ------------------------------------------------------------


@dataclass(frozen=True)
class Redaction:
    """What a connector removes from every reply it keeps. Keys compare in lower case."""

    drop: frozenset[str] = frozenset()  # secret keys, removed with their value
    card_keys: frozenset[str] = frozenset()  # keys whose value is a card number
    mask: Callable[[Any], Any] = mask_first6_last4
    mask_pan_strings: bool = False  # mask full card numbers under any key

    def scrub(self, value: Any) -> Any:
        if isinstance(value, Mapping):
            clean: dict[Any, Any] = {}
            for key, item in value.items():
                lowered = str(key).lower()
                if lowered in self.drop:
                    continue
                clean[key] = self.mask(item) if lowered in self.card_keys else self.scrub(item)
            return clean
        if isinstance(value, (list, tuple)):
            return [self.scrub(item) for item in value]
        if isinstance(value, Decimal):
            return format(value, "f")
        if self.mask_pan_strings and isinstance(value, str) and looks_like_pan(value):
            return mask_first6_last4(value)
        return value

    __call__ = scrub


def redaction(
    *,
    drop: Iterable[str] = (),
    card_keys: Iterable[str] = (),
    mask: Callable[[Any], Any] = mask_first6_last4,
    mask_pan_strings: bool = False,
) -> Redaction:
    return Redaction(
        frozenset(k.lower() for k in drop),
        frozenset(k.lower() for k in card_keys),
        mask,
        mask_pan_strings,
    )


# -- step 2: buyer personal data --------------------------------------------------------------


def normalise(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


def field_set(names: str | Iterable[str]) -> frozenset[str]:
    """The keys named, matched whatever their case or separators; a string names them
    separated by spaces (``field_set("email phone billing_address")``)."""
    if isinstance(names, str):
        names = names.split()
    return frozenset(normalise(name) for name in names)


def redact(value: Any, fields: frozenset[str]) -> Any:
    if not fields:
        return value
    if isinstance(value, dict):
        return {
            key: (
                REDACTED
                if isinstance(key, str)
                and normalise(key) in fields
                and item not in (None, "", [], {})
                else redact(item, fields)
            )
            for key, item in value.items()
        }
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
