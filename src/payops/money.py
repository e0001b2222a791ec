"""Currency exponents and the one place where amounts cross between wire strings and minor units.

Storage and rules use integer minor units; the API speaks decimal strings with exactly the
currency's ISO 4217 exponent. No float is ever involved.
"""

from __future__ import annotations

import re
from decimal import Decimal
from functools import cache

from iso4217 import Currency

MAX_AMOUNT_CHARS = 24
MAX_INTEGER_DIGITS = 13
# ASCII digits only; fullmatch so a trailing newline is not silently accepted.
_PLAIN_DECIMAL = re.compile(r"(?P<int>[0-9]+)(?:\.(?P<frac>[0-9]*))?|\.(?P<onlyfrac>[0-9]+)")


class AmountError(ValueError):
    """A wire amount that may not be accepted; the message is shown to the client."""


class UnknownCurrency(ValueError):
    pass


@cache
def exponent(currency_code: str) -> int:
    """Minor-unit exponent of an ISO 4217 currency (KWD 3, USD 2, JPY 0)."""
    code = (currency_code or "").upper()
    if not re.fullmatch(r"[A-Z]{3}", code, flags=re.ASCII):
        raise UnknownCurrency(currency_code)
    try:
        value = Currency(code).exponent
    except (KeyError, ValueError) as exc:
        raise UnknownCurrency(currency_code) from exc
    if value is None:  # funds codes such as XAU have no minor unit
        raise UnknownCurrency(currency_code)
    return int(value)


def is_known_currency(currency_code: str) -> bool:
    try:
        exponent(currency_code)
    except UnknownCurrency:
        return False
    return True


def parse_amount(raw: object, currency_code: str) -> int:
    """Turn a client's amount string into positive minor units, or raise AmountError."""
    if isinstance(raw, bool) or raw is None:
        raise AmountError("A valid number is required.")
    if isinstance(raw, (int, Decimal)):
        # JSON numbers arrive as int or (parsed with parse_float=Decimal) as the exact literal.
        raw = str(raw)
    if not isinstance(raw, str):
        raise AmountError("A valid number is required.")
    if len(raw) > MAX_AMOUNT_CHARS:
        raise AmountError(f"Ensure this field has no more than {MAX_AMOUNT_CHARS} characters.")
    match = _PLAIN_DECIMAL.fullmatch(raw)
    if not match:
        raise AmountError("A valid number is required.")
    integer = match.group("int") or "0"
    fraction = match.group("frac") or match.group("onlyfrac") or ""
    if len(integer.lstrip("0")) > MAX_INTEGER_DIGITS:
        raise AmountError(
            f"Ensure that there are no more than {MAX_INTEGER_DIGITS} digits before the decimal point."
        )
    places = exponent(currency_code)
    if len(fraction) > places:
        raise AmountError(
            f"Ensure that there are no more than {places} decimal places for {currency_code.upper()}."
        )
    fraction = fraction[:places].ljust(places, "0")
    minor = int(integer) * 10**places + (int(fraction) if fraction else 0)
    if minor <= 0:
        raise AmountError("Ensure this value is greater than 0.")
    return minor


def format_minor(minor: int, currency_code: str) -> str:
    """Minor units → wire string with exactly the currency's decimals ("9.000", "19.00", "20")."""
    places = exponent(currency_code)
    sign = "-" if minor < 0 else ""
    digits = str(abs(int(minor))).rjust(places + 1, "0")
    if places == 0:
        return f"{sign}{digits}"
    return f"{sign}{digits[:-places]}.{digits[-places:]}"


def to_decimal(minor: int, currency_code: str) -> Decimal:
    return Decimal(format_minor(minor, currency_code))


def from_decimal(value: Decimal, currency_code: str) -> int:
    """Exact Decimal → minor units; refuses values finer than the currency allows."""
    places = exponent(currency_code)
    scaled = value.scaleb(places)
    if scaled != scaled.to_integral_value():
        raise AmountError(f"Too many decimal places for {currency_code.upper()}.")
    return int(scaled)
