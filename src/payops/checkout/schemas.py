"""Validation of Checkout API bodies, reporting every field error at once in DRF's shape."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, Field

from payops import exact_json
from payops.domain import messages
from payops.errors import FieldErrors
from payops.exact_json import JsonNumber
from payops.gateways.service import takes_payments
from payops.money import AmountError, is_known_currency, parse_amount
from payops.web.requests import FormShape, has_control_characters, url

TYPES = ("e_commerce", "payment_request")
LANGUAGES = ("en", "ar")
PAYMENT_TYPES = ("one_off",)
CUSTOMER_LIMITS = {
    "customer_id": 64,
    "customer_first_name": 64,
    "customer_last_name": 64,
    "customer_phone": 32,
    "customer_email": 128,
}
ADDRESS_LIMITS = {
    "line1": 255,
    "line2": 255,
    "city": 40,
    "state": 40,
    "country": 2,
    "postal_code": 12,
}
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
DURATION = re.compile(r"^(?:(?P<days>[0-9]+) )?(?P<h>[0-9]{1,2}):(?P<m>[0-9]{2}):(?P<s>[0-9]{2})$")
INVALID_DURATION = (
    "Duration has wrong format. Use one of these formats instead: [DD] [HH:[MM:]]ss[.uuuuuu]."
)
MAX_LIFETIME = timedelta(days=365)
TOO_LONG = messages.DURATION_TOO_LONG.format(days=MAX_LIFETIME.days)
EXTRA_MAX_DEPTH = 32
EXTRA_MAX_BYTES = 65_536
EXTRA_MAX_DIGITS = 100
EXTRA_MAX_EXPONENT = 308
BAD_NUMBER = messages.EXTRA_BAD_NUMBER.format(digits=EXTRA_MAX_DIGITS, exponent=EXTRA_MAX_EXPONENT)

# Fields that ask PayOps to do something it does not do: refused when their value asks for it.
UNSUPPORTED_FEATURES = (
    "notifications",
    "email_recipients",
    "generate_qr_code",
    "shortify_checkout_url",
    "shortify_attachment_url",
    "attachment",
    "attachment_upload_url",
    "payment_instrument",
    "loyalty",
    "include_sdk_setup_preload",
    "preload_checkout_page",
    "branding_options",
    "agreement",
)
# Descriptive fields: stored as given and echoed in the checkout body.
DESCRIPTIVE_LIMITS = {
    "vendor_name": 64,
    "product_type": 128,
    "unit_code": 64,
    "customer_phone_2": 16,
}
SHIPPING_LIMITS = {
    "line1": 128,
    "line2": 128,
    "city": 40,
    "state": 40,
    "country": 2,
    "postal_code": 12,
    "first_name": 64,
    "last_name": 64,
    "email": 128,
    "phone": 16,
}
SHIPPING_REQUIRED = ("line1", "city", "country", "first_name", "last_name", "email", "phone")
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
INVALID_DATE = "Date has wrong format. Use one of these formats instead: YYYY-MM-DD."
INVALID_DATETIME = (
    "Datetime has wrong format. Use one of these formats instead: "
    "YYYY-MM-DDThh:mm[:ss[.uuuuuu]][+HH:MM|-HH:MM|Z]."
)
FALSE_WORDS = frozenset({"false", "False", "FALSE", "0", "no", "off", "n", "f", "null"})
# How the checkout fields read from a form or multipart body (DRF: ListField, JSONField and
# nested serializers).
CHECKOUT_FORM = FormShape(
    lists=frozenset({"pg_codes", "email_recipients"}),
    json=frozenset(
        {
            "extra",
            "billing_address",
            "shipping_address",
            "notifications",
            "agreement",
            "card_acceptance_criteria",
            "payment_instrument",
            "loyalty",
            "branding_options",
        }
    ),
)


class CheckoutRequest(BaseModel):
    """Documented request fields (for OpenAPI); validation is done by ``validate_checkout``."""

    type: str = Field(description="e_commerce or payment_request")
    amount: str = Field(description="Decimal string with at most the currency's decimals")
    currency_code: str
    pg_codes: list[str]
    order_no: str | None = Field(default=None, max_length=128)
    customer_id: str | None = None
    customer_email: str | None = None
    customer_first_name: str | None = None
    customer_last_name: str | None = None
    customer_phone: str | None = None
    billing_address: dict[str, str] | None = None
    extra: dict[str, Any] | None = None
    expiration_time: str | None = Field(default=None, description='"HH:MM:SS" or "D HH:MM:SS"')
    webhook_url: str | None = None
    redirect_url: str | None = None
    language: str | None = None
    payment_type: str | None = None
    due_datetime: str | None = Field(default=None, description="ISO 8601 date-time; stored, echoed")
    vendor_name: str | None = Field(default=None, max_length=64)
    product_type: str | None = Field(default=None, max_length=128)
    unit_code: str | None = Field(default=None, max_length=64)
    customer_phone_2: str | None = Field(default=None, max_length=16)
    customer_birthdate: str | None = Field(default=None, description="YYYY-MM-DD")
    shipping_address: dict[str, str] | None = None


@dataclass
class CheckoutFields:
    """What a valid body sets; absent keys were not given."""

    values: dict[str, Any]


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days} {clock}" if days else clock


def _exact_number(value: Decimal) -> JsonNumber:
    digits = value.as_tuple().digits
    if (
        not value.is_finite()
        or len(digits) > EXTRA_MAX_DIGITS
        or not -EXTRA_MAX_EXPONENT <= value.adjusted() <= EXTRA_MAX_EXPONENT
    ):
        raise ValueError(BAD_NUMBER)
    number = JsonNumber.from_decimal(value)
    if not math.isfinite(number):  # 9.9e308: within the exponent, beyond what a double holds
        raise ValueError(BAD_NUMBER)
    return number


def _clean_value(value: Any, depth: int) -> Any:
    if isinstance(value, (dict, list)):
        if depth > EXTRA_MAX_DEPTH:
            raise ValueError(messages.EXTRA_TOO_DEEP.format(n=EXTRA_MAX_DEPTH))
        if isinstance(value, dict):
            return {key: _clean_value(item, depth + 1) for key, item in value.items()}
        return [_clean_value(item, depth + 1) for item in value]
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if abs(value) >= 10**EXTRA_MAX_DIGITS:
            raise ValueError(BAD_NUMBER)
        return value
    if isinstance(value, Decimal):
        return _exact_number(value)
    if isinstance(value, float):
        return _exact_number(Decimal(repr(value)))
    raise ValueError(messages.NOT_AN_OBJECT.format(kind=type(value).__name__))


def clean_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """The merchant's ``extra`` as it will be stored and echoed, or ValueError with the reason
    (decisions §13): any JSON value, numbers exact (integers of any size up to the digit limit,
    decimals as sent), nested at most 32 levels, at most 64 KiB as JSON."""
    clean = _clean_value(extra, 1)
    if len(exact_json.dumps(clean).encode("utf-8")) > EXTRA_MAX_BYTES:
        raise ValueError(messages.EXTRA_TOO_LARGE.format(n=EXTRA_MAX_BYTES))
    return clean


def _text(errors: dict[str, Any], name: str, value: Any, limit: int) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        errors[name] = [messages.NOT_A_STRING]
        return None
    if len(value) > limit:
        errors[name] = [messages.MAX_LENGTH.format(n=limit)]
        return None
    if has_control_characters(value):
        errors[name] = [messages.INVALID_CHARACTERS]
        return None
    return value


def _url(errors: dict[str, Any], name: str, value: Any) -> str | None:
    try:
        return url(name, value)
    except FieldErrors as exc:
        errors.update(exc.body)
        return None


def asks_for_feature(value: Any) -> bool:
    """True, a non-empty object or list, or any other non-empty value ask for a feature;
    false, null and empty values do not (forms send "false" / "0")."""
    if value is None or value is False or value == "" or value == 0:
        return False
    if isinstance(value, str):
        return value.strip() not in FALSE_WORDS
    if isinstance(value, list):  # a blank form field reads as [""]
        return any(asks_for_feature(item) for item in value)
    if isinstance(value, dict):
        return bool(value)
    return True


def _unsupported_features(errors: dict[str, Any], body: dict[str, Any]) -> None:
    for name in UNSUPPORTED_FEATURES:
        if name in body and asks_for_feature(body[name]):
            errors[name] = [messages.FEATURE_UNSUPPORTED.format(field=name)]


def _descriptive(errors: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, limit in DESCRIPTIVE_LIMITS.items():
        if name in body:
            value = _text(errors, name, body[name], limit)
            if name not in errors:
                out[name] = value or ""
    for name, limit, valid, invalid in (
        ("customer_birthdate", 10, _valid_date, INVALID_DATE),
        ("due_datetime", 64, _valid_datetime, INVALID_DATETIME),
    ):
        if name in body:
            value = _text(errors, name, body[name], limit)
            if value and not valid(value):
                errors[name] = [invalid]
            elif name not in errors:
                out[name] = value or ""
    if "shipping_address" in body:
        address = body["shipping_address"]
        if address in (None, "", {}):
            out["shipping_address"] = {}
        elif not isinstance(address, dict):
            errors["shipping_address"] = {
                "non_field_errors": [messages.NOT_AN_OBJECT.format(kind=type(address).__name__)]
            }
        else:
            nested: dict[str, Any] = {}
            clean = {
                key: _text(nested, key, address.get(key), limit) or ""
                for key, limit in SHIPPING_LIMITS.items()
            }
            for key in SHIPPING_REQUIRED:
                if not clean[key] and key not in nested:
                    nested[key] = [messages.FIELD_REQUIRED]
            if clean["country"] and not re.fullmatch(r"[A-Z]{2}", clean["country"]):
                nested["country"] = [messages.INVALID_CHOICE.format(value=clean["country"])]
            if clean["email"] and not EMAIL.match(clean["email"]):
                nested["email"] = ["Enter a valid email address."]
            if nested:
                errors["shipping_address"] = nested
            else:
                out["shipping_address"] = clean
    return out


def _valid_date(value: str) -> bool:
    try:
        return bool(DATE.match(value)) and date.fromisoformat(value) is not None
    except ValueError:
        return False


def _valid_datetime(value: str) -> bool:
    try:
        datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return False
    return "T" in value or " " in value


def validate_checkout(
    body: dict[str, Any],
    *,
    partial: bool,
    enabled_gateways: dict[str, Any],
    current_currency: str | None = None,
) -> dict[str, Any]:
    """Validated values for create (partial=False, PUT) or PATCH (partial=True)."""
    errors: dict[str, Any] = {}
    out: dict[str, Any] = {}

    def required(name: str) -> bool:
        value = body.get(name)
        present = value not in (None, "", [])
        if not present and not partial:
            errors[name] = [messages.FIELD_REQUIRED]
        elif not present and name in body:
            # PATCH: only an absent key keeps the stored value. A blank or null one is a
            # mistake the merchant must hear of, not a silent no-op (the customer would pay
            # the old amount).
            errors[name] = [
                messages.FIELD_NULL
                if value is None
                else messages.AMOUNT_BLANK
                if name == "amount"
                else messages.LIST_EMPTY
                if value == []
                else messages.FIELD_BLANK
            ]
        return present

    if required("type"):
        if body["type"] not in TYPES:
            errors["type"] = [messages.INVALID_CHOICE.format(value=str(body["type"])[:64])]
        else:
            out["type"] = body["type"]

    currency = None
    if required("currency_code"):
        raw = body["currency_code"]
        if not isinstance(raw, str) or not is_known_currency(raw):
            errors["currency_code"] = [f'"{str(raw)[:16]}" is not a valid currency code.']
        else:
            currency = out["currency_code"] = raw.upper()

    gateways: list[Any] = []
    if required("pg_codes"):
        codes = body["pg_codes"]
        if not isinstance(codes, list) or not all(isinstance(c, str) for c in codes):
            errors["pg_codes"] = [
                f'Expected a list of items but got type "{type(codes).__name__}".'
            ]
        else:
            unknown = [c for c in codes if c not in enabled_gateways]
            no_payments = [
                c
                for c in codes
                if c in enabled_gateways and not takes_payments(enabled_gateways[c])
            ]
            if unknown:
                errors["pg_codes"] = [
                    f'Payment gateway code "{c[:64]}" does not exist or is disabled.'
                    for c in unknown
                ]
            elif no_payments:
                errors["pg_codes"] = [
                    messages.TAKES_NO_PAYMENTS.format(pg_code=c) for c in dict.fromkeys(no_payments)
                ]
            else:
                out["pg_codes"] = list(dict.fromkeys(codes))
                gateways = [enabled_gateways[c] for c in out["pg_codes"]]

    effective_currency = currency or current_currency
    if (
        effective_currency
        and gateways
        and not any(effective_currency in g.accepted_currencies for g in gateways)
    ):
        errors.setdefault("currency_code", []).append(
            f"None of the payment gateways in pg_codes accepts {effective_currency}."
        )

    if required("amount"):
        if not isinstance(body["amount"], str):
            errors["amount"] = [messages.AMOUNT_NOT_STRING]
        elif effective_currency is None:
            if "currency_code" not in errors:
                errors["amount"] = ["The amount needs a valid currency_code."]
        else:
            try:
                out["amount"] = parse_amount(body["amount"], effective_currency)
            except AmountError as exc:
                errors["amount"] = [str(exc)]

    if "order_no" in body:
        out["order_no"] = _text(errors, "order_no", body["order_no"], 128)

    for name, limit in CUSTOMER_LIMITS.items():
        if name in body:
            value = _text(errors, name, body[name], limit)
            if name == "customer_email" and value and not EMAIL.match(value):
                errors[name] = ["Enter a valid email address."]
            elif name not in errors:
                out[name] = value or ""

    if body.get("billing_address") not in (None, {}):
        address = body["billing_address"]
        if not isinstance(address, dict):
            errors["billing_address"] = {
                "non_field_errors": [messages.NOT_AN_OBJECT.format(kind=type(address).__name__)]
            }
        else:
            nested: dict[str, Any] = {}
            clean = {
                key: _text(nested, key, address.get(key), limit) or ""
                for key, limit in ADDRESS_LIMITS.items()
            }
            if clean["country"] and not re.fullmatch(r"[A-Za-z]{2}", clean["country"]):
                nested["country"] = ["Enter a two-letter country code."]
            if nested:
                errors["billing_address"] = nested
            else:
                out["billing_address"] = clean

    if "extra" in body and body["extra"] is not None:
        if not isinstance(body["extra"], dict):
            errors["extra"] = [messages.NOT_AN_OBJECT.format(kind=type(body["extra"]).__name__)]
        else:
            try:
                out["extra"] = clean_extra(body["extra"])
            except ValueError as exc:
                errors["extra"] = [str(exc)]

    if body.get("expiration_time") not in (None, ""):
        raw = body["expiration_time"]
        match = DURATION.match(raw) if isinstance(raw, str) else None
        if match is None:
            errors["expiration_time"] = [INVALID_DURATION]
        # A day count of thousands of digits would overflow timedelta (or int()) before any
        # range check: anything longer than MAX_LIFETIME's own digits is too long already.
        elif len(match["days"] or "") > len(str(MAX_LIFETIME.days)):
            errors["expiration_time"] = [TOO_LONG]
        else:
            lifetime = timedelta(
                days=int(match["days"] or 0),
                hours=int(match["h"]),
                minutes=int(match["m"]),
                seconds=int(match["s"]),
            )
            if lifetime <= timedelta(0):
                errors["expiration_time"] = [INVALID_DURATION]
            elif lifetime > MAX_LIFETIME:
                errors["expiration_time"] = [TOO_LONG]
            else:
                out["expiration_time"] = lifetime

    for name in ("webhook_url", "redirect_url"):
        if name in body:
            value = _url(errors, name, body[name])
            if name not in errors:
                out[name] = value or ""

    if body.get("language") not in (None, ""):
        if body["language"] not in LANGUAGES:
            errors["language"] = [messages.INVALID_CHOICE.format(value=str(body["language"])[:16])]
        else:
            out["language"] = body["language"]

    if body.get("payment_type") not in (None, ""):
        if body["payment_type"] not in PAYMENT_TYPES:
            errors["payment_type"] = [
                messages.INVALID_CHOICE.format(value=str(body["payment_type"])[:32])
            ]

    _unsupported_features(errors, body)
    out.update(_descriptive(errors, body))

    if errors:
        raise FieldErrors(errors)
    return out
