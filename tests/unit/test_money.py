"""Pure unit tests for payops.money (decisions §3, ottu-api §3.2 and §9).

Expectations are written out from the spec, not derived from the module's constants.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payops.money import (
    AmountError,
    UnknownCurrency,
    exponent,
    format_minor,
    from_decimal,
    is_known_currency,
    parse_amount,
    to_decimal,
)

FAST = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ottu-api §9 (DNOW table) plus the ISO 4217 values for the codes named there.
EXPONENTS = {
    "JPY": 0,
    "KRW": 0,
    "USD": 2,
    "EUR": 2,
    "AED": 2,
    "SAR": 2,
    "QAR": 2,
    "EGP": 2,
    "KWD": 3,
    "BHD": 3,
    "OMR": 3,
    "IQD": 3,
    "JOD": 3,
    "LYD": 3,
}
ZERO_DEC = ("JPY", "KRW")
TWO_DEC = ("USD", "EUR", "AED", "SAR", "QAR", "EGP")
THREE_DEC = ("KWD", "BHD", "OMR", "IQD", "JOD", "LYD")
MAIN_CURRENCIES = ("JPY", "USD", "KWD", "BHD", "OMR")


# --------------------------------------------------------------------------- exponent


@pytest.mark.parametrize(("code", "places"), sorted(EXPONENTS.items()))
def test_exponent_matches_iso4217(code: str, places: int) -> None:
    assert exponent(code) == places


@pytest.mark.parametrize("code", ["kwd", "Usd", "jpY"])
def test_exponent_is_case_insensitive(code: str) -> None:
    assert exponent(code) == EXPONENTS[code.upper()]


@pytest.mark.parametrize(
    "code",
    ["", "US", "USDD", "ZZZ", "QQQ", "12A", "U$D", " USD", "USD ", "XAU", "XXX", "XTS", "XDR"],
)
def test_exponent_refuses_unknown_and_unitless_codes(code: str) -> None:
    with pytest.raises(UnknownCurrency):
        exponent(code)


def test_exponent_refuses_none() -> None:
    with pytest.raises(UnknownCurrency):
        exponent(None)  # type: ignore[arg-type]


def test_unknown_currency_is_a_value_error() -> None:
    assert issubclass(UnknownCurrency, ValueError)
    assert issubclass(AmountError, ValueError)


# --------------------------------------------------------------------------- is_known_currency


@pytest.mark.parametrize("code", sorted(EXPONENTS) + ["kwd", "usd"])
def test_is_known_currency_true(code: str) -> None:
    assert is_known_currency(code) is True


@pytest.mark.parametrize("code", ["", "US", "USDD", "ZZZ", "XAU", "XXX", "123", None])
def test_is_known_currency_false(code) -> None:
    assert is_known_currency(code) is False


# --------------------------------------------------------------------------- parse_amount: accepted


ACCEPTED = [
    # (raw, currency, minor)
    ("20", "JPY", 20),
    ("1", "JPY", 1),
    ("9999999999999", "JPY", 9_999_999_999_999),  # 13 integer digits
    ("20", "KRW", 20),
    ("20", "USD", 2000),
    ("20.0", "USD", 2000),
    ("20.00", "USD", 2000),
    ("19.99", "USD", 1999),
    ("0.01", "USD", 1),  # min value 0.01 (ottu-api §3.2)
    ("0.1", "USD", 10),
    ("100.00", "USD", 10000),
    ("9999999999999.99", "USD", 999_999_999_999_999),
    ("19.00", "SAR", 1900),
    ("20", "KWD", 20000),
    ("20.000", "KWD", 20000),
    ("9.000", "KWD", 9000),
    ("0.001", "KWD", 1),
    ("0.01", "KWD", 10),
    ("1.5", "KWD", 1500),
    ("1.23", "KWD", 1230),
    ("1.234", "KWD", 1234),
    ("9999999999999.999", "KWD", 9_999_999_999_999_999),
    ("20.000", "BHD", 20000),
    ("0.001", "BHD", 1),
    ("12.345", "BHD", 12345),
    ("20.000", "OMR", 20000),
    ("0.005", "OMR", 5),
    ("7.1", "OMR", 7100),
    ("1.000", "IQD", 1000),
    ("1.000", "JOD", 1000),
    ("1.000", "LYD", 1000),
    # Leading zeros do not count as integer digits; total length still ≤ 24.
    ("007.50", "USD", 750),
    ("000000000000000000001.00", "USD", 100),  # exactly 24 characters
    ("0000000000000000000001.0", "USD", 100),  # exactly 24 characters
    ("00000000001234567890123", "JPY", 1_234_567_890_123),  # 23 chars, 13 significant digits
    # The Ottu Operation schema pattern ^-?\d{0,13}(?:\.\d{0,3})?$ allows these shapes.
    (".5", "USD", 50),
    (".001", "KWD", 1),
]


@pytest.mark.parametrize(("raw", "currency", "minor"), ACCEPTED)
def test_parse_amount_accepts(raw: str, currency: str, minor: int) -> None:
    assert len(raw) <= 24
    result = parse_amount(raw, currency)
    assert result == minor
    assert type(result) is int


@pytest.mark.parametrize("currency", ["usd", "Kwd", "jpy"])
def test_parse_amount_currency_case_insensitive(currency: str) -> None:
    assert parse_amount("20", currency) == 20 * 10 ** EXPONENTS[currency.upper()]


# --------------------------------------------------------------------------- parse_amount: refused


def _refused(raw: object, currency: str) -> AmountError:
    with pytest.raises(AmountError) as info:
        parse_amount(raw, currency)
    assert str(info.value)  # every refusal carries a client-facing message
    return info.value


EXPONENT_NOTATION = ["1e3", "1E3", "1e+3", "1E-2", "1.0e2", "2E0", "1e", "e5"]
SIGNED = ["-1", "-1.00", "+1", "+1.00", "-0", "-0.00", "--1", "+-1", "1-", "1+"]
WHITESPACE = [
    " 1.00",
    "1.00 ",
    " 1.00 ",
    "1 .00",
    "1. 00",
    "1 000",
    "\t1.00",
    "1.00\t",
    "\n1.00",
    "1.00\r",
    "1.00\r\n",
    "\u00a01.00",
    "1.00\u00a0",
    "\u20031",
    "",
]
NON_FINITE = [
    "NaN",
    "nan",
    "NAN",
    "sNaN",
    "-NaN",
    "Infinity",
    "infinity",
    "-Infinity",
    "+Infinity",
    "Inf",
    "inf",
    "-inf",
    "∞",
]
NOT_A_NUMBER = [
    ".",
    "..",
    "1..0",
    "1.0.0",
    "1,00",
    "1,000.00",
    "1_000",
    "0x10",
    "0b1",
    "0o7",
    "1/2",
    "abc",
    "1a",
    "a1",
    "$1",
    "1$",
    "1%",
    "KWD 1",
    "1.00KWD",
    "٫5",
    "½",
    "¹",
    "1.-5",
    "(1)",
    "'1'",
    '"1"',
    "1.00;",
    "1\x00",
    "\x001",
]
ZERO_OR_LESS = ["0", "0.0", "0.00", "0.000", "00", "000000", ".0", ".000", "0."]


@pytest.mark.parametrize("raw", EXPONENT_NOTATION)
@pytest.mark.parametrize("currency", MAIN_CURRENCIES)
def test_parse_amount_refuses_exponent(raw: str, currency: str) -> None:
    _refused(raw, currency)


@pytest.mark.parametrize("raw", SIGNED)
@pytest.mark.parametrize("currency", MAIN_CURRENCIES)
def test_parse_amount_refuses_sign(raw: str, currency: str) -> None:
    _refused(raw, currency)


@pytest.mark.parametrize("raw", WHITESPACE)
@pytest.mark.parametrize("currency", MAIN_CURRENCIES)
def test_parse_amount_refuses_whitespace(raw: str, currency: str) -> None:
    _refused(raw, currency)


@pytest.mark.parametrize(
    ("raw", "currency"), [("20\n", "JPY"), ("20.00\n", "USD"), ("9.000\n", "KWD")]
)
def test_parse_amount_refuses_trailing_newline(raw: str, currency: str) -> None:
    _refused(raw, currency)


@pytest.mark.parametrize(
    "raw",
    ["١٢", "٢٠.٠٠", "۱۲", "２０", "２０.００", "१२", "1\u0662"],
)
def test_parse_amount_refuses_non_ascii_digits(raw: str) -> None:
    _refused(raw, "USD")


@pytest.mark.parametrize("raw", NON_FINITE)
@pytest.mark.parametrize("currency", MAIN_CURRENCIES)
def test_parse_amount_refuses_nan_and_infinity(raw: str, currency: str) -> None:
    _refused(raw, currency)


@pytest.mark.parametrize("raw", NOT_A_NUMBER)
def test_parse_amount_refuses_non_numbers(raw: str) -> None:
    _refused(raw, "KWD")


@pytest.mark.parametrize("raw", ZERO_OR_LESS)
@pytest.mark.parametrize("currency", MAIN_CURRENCIES)
def test_parse_amount_refuses_zero(raw: str, currency: str) -> None:
    _refused(raw, currency)


@pytest.mark.parametrize(
    ("raw", "currency"),
    [
        ("10000000000000", "JPY"),  # 14 integer digits
        ("99999999999999", "JPY"),
        ("10000000000000.00", "USD"),
        ("12345678901234.5", "USD"),
        ("10000000000000.000", "KWD"),
        ("10000000000000", "KWD"),
        ("10000000000000", "BHD"),
        ("100000000000000000000", "OMR"),  # 21 integer digits, still ≤ 24 chars
        ("000000123456789012345", "USD"),  # 15 significant integer digits
    ],
)
def test_parse_amount_refuses_more_than_13_integer_digits(raw: str, currency: str) -> None:
    _refused(raw, currency)


@pytest.mark.parametrize(
    ("raw", "currency"),
    [
        ("0000000000000000000001.00", "USD"),  # 25 chars, value 1.00
        ("0000000000000000000000001", "JPY"),  # 25 chars
        ("00000000000000000000001.000", "KWD"),  # 27 chars
        ("0" * 100 + "1", "JPY"),
        ("1" * 25, "JPY"),
        ("1." + "0" * 23, "KWD"),
        ("1" * 1000, "USD"),
    ],
)
def test_parse_amount_refuses_more_than_24_characters(raw: str, currency: str) -> None:
    assert len(raw) > 24
    _refused(raw, currency)


TOO_MANY_DECIMALS = [
    # As written: trailing zeros still count (decisions §3 "more decimals than the currency allows").
    ("20.0", "JPY"),
    ("20.00", "JPY"),
    ("1.5", "JPY"),
    ("0.1", "KRW"),
    ("1.230", "USD"),
    ("1.000", "USD"),
    ("20.000", "USD"),
    ("0.001", "USD"),
    ("1.234", "USD"),
    ("19.001", "SAR"),
    ("1.2300", "KWD"),
    ("20.0000", "KWD"),
    ("0.0001", "KWD"),
    ("1.0000", "BHD"),
    ("1.2345", "BHD"),
    ("20.0000", "OMR"),
    ("0.00001", "OMR"),
    (".0001", "KWD"),
    (".001", "USD"),
    (".1", "JPY"),
]


@pytest.mark.parametrize(("raw", "currency"), TOO_MANY_DECIMALS)
def test_parse_amount_refuses_too_many_decimals_as_written(raw: str, currency: str) -> None:
    _refused(raw, currency)


def test_parse_amount_decimal_message_names_currency() -> None:
    err = _refused("1.230", "usd")
    assert "USD" in str(err)
    assert "2" in str(err)


# --------------------------------------------------------------------------- JSON numbers


@pytest.mark.parametrize(
    ("raw", "currency", "minor"),
    [
        (20, "JPY", 20),
        (20, "USD", 2000),
        (20, "KWD", 20000),
        (1, "KWD", 1000),
        (9_999_999_999_999, "JPY", 9_999_999_999_999),
        (9_999_999_999_999, "KWD", 9_999_999_999_999_000),
        (Decimal("20"), "JPY", 20),
        (Decimal("19.99"), "USD", 1999),
        (Decimal("0.01"), "USD", 1),
        (Decimal("9.000"), "KWD", 9000),
        (Decimal("0.001"), "BHD", 1),
        (Decimal("1.5"), "OMR", 1500),
    ],
)
def test_parse_amount_accepts_json_numbers(raw: object, currency: str, minor: int) -> None:
    assert parse_amount(raw, currency) == minor


@pytest.mark.parametrize(
    ("raw", "currency"),
    [
        (0, "USD"),
        (-1, "USD"),
        (-20, "JPY"),
        (10**13, "JPY"),  # 14 integer digits
        (10**30, "KWD"),
        (Decimal("0"), "USD"),
        (Decimal("0.00"), "USD"),
        (Decimal("-1.00"), "USD"),
        (Decimal("-0"), "KWD"),
        (Decimal("1.230"), "USD"),  # literal as written keeps its trailing zero
        (Decimal("20.0"), "JPY"),
        (Decimal("1.0000"), "KWD"),
        (Decimal("1E+2"), "USD"),  # exponent notation survives str(Decimal)
        # Decimal("1E-2") is not listed: it is the same value and scale as Decimal("0.01"),
        # so once json has parsed it, an exponent literal cannot be told apart.
        (Decimal("1e3"), "JPY"),
        (Decimal("NaN"), "USD"),
        (Decimal("sNaN"), "USD"),
        (Decimal("Infinity"), "USD"),
        (Decimal("-Infinity"), "KWD"),
        (Decimal("1" * 14), "JPY"),
    ],
)
def test_parse_amount_refuses_bad_json_numbers(raw: object, currency: str) -> None:
    _refused(raw, currency)


@pytest.mark.parametrize(
    "raw",
    [
        1.5,
        20.0,
        0.1,
        float("nan"),
        float("inf"),
        True,
        False,
        None,
        [],
        ["1.00"],
        {},
        {"amount": "1.00"},
        ("1.00",),
        b"1.00",
        bytearray(b"1"),
        object(),
        1 + 2j,
    ],
)
@pytest.mark.parametrize("currency", MAIN_CURRENCIES)
def test_parse_amount_refuses_non_string_non_number_types(raw: object, currency: str) -> None:
    _refused(raw, currency)


def test_parse_amount_unknown_currency_is_refused() -> None:
    with pytest.raises(ValueError):
        parse_amount("1.00", "ZZZ")
    with pytest.raises(ValueError):
        parse_amount("1", "XAU")


# --------------------------------------------------------------------------- format_minor


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (9000, "KWD", "9.000"),  # decisions §3 examples
        (1900, "SAR", "19.00"),
        (20, "JPY", "20"),
        (20000, "KWD", "20.000"),
        (2000, "USD", "20.00"),
        (1, "KWD", "0.001"),
        (10, "KWD", "0.010"),
        (100, "KWD", "0.100"),
        (1000, "KWD", "1.000"),
        (1234, "BHD", "1.234"),
        (5, "OMR", "0.005"),
        (1, "USD", "0.01"),
        (10, "USD", "0.10"),
        (1999, "USD", "19.99"),
        (1, "JPY", "1"),
        (0, "KWD", "0.000"),
        (0, "USD", "0.00"),
        (0, "JPY", "0"),
        (9_999_999_999_999_999, "KWD", "9999999999999.999"),
        (999_999_999_999_999, "USD", "9999999999999.99"),
        (9_999_999_999_999, "JPY", "9999999999999"),
        (1500, "kwd", "1.500"),
    ],
)
def test_format_minor(minor: int, currency: str, text: str) -> None:
    assert format_minor(minor, currency) == text


def test_format_minor_unknown_currency() -> None:
    with pytest.raises(UnknownCurrency):
        format_minor(100, "ZZZ")


# --------------------------------------------------------------------------- to_decimal / from_decimal


@pytest.mark.parametrize(
    ("minor", "currency", "value"),
    [
        (9000, "KWD", "9.000"),
        (1900, "SAR", "19.00"),
        (20, "JPY", "20"),
        (1, "BHD", "0.001"),
        (0, "OMR", "0.000"),
    ],
)
def test_to_decimal_is_exact_with_currency_scale(minor: int, currency: str, value: str) -> None:
    result = to_decimal(minor, currency)
    assert isinstance(result, Decimal)
    assert result == Decimal(value)
    assert str(result) == value  # the scale (exponent) is kept
    assert result.as_tuple().exponent == -EXPONENTS[currency]


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        (Decimal("9.000"), "KWD", 9000),
        (Decimal("9"), "KWD", 9000),
        (Decimal("9.5"), "KWD", 9500),
        (Decimal("0.001"), "BHD", 1),
        (Decimal("19.99"), "USD", 1999),
        (Decimal("19.9"), "USD", 1990),
        (Decimal("20"), "JPY", 20),
        (Decimal("20.0"), "JPY", 20),  # exact value, not wire text: trailing zeros are harmless
        (Decimal("1E+2"), "USD", 10000),
        (Decimal("0"), "USD", 0),
        (Decimal("-1.50"), "USD", -150),
    ],
)
def test_from_decimal(value: Decimal, currency: str, minor: int) -> None:
    result = from_decimal(value, currency)
    assert result == minor
    assert type(result) is int


@pytest.mark.parametrize(
    ("value", "currency"),
    [
        (Decimal("0.5"), "JPY"),
        (Decimal("20.01"), "JPY"),
        (Decimal("1.231"), "USD"),
        (Decimal("0.001"), "USD"),
        (Decimal("0.0001"), "KWD"),
        (Decimal("1.2345"), "BHD"),
        (Decimal("1.00001"), "OMR"),
    ],
)
def test_from_decimal_refuses_finer_values(value: Decimal, currency: str) -> None:
    with pytest.raises(AmountError):
        from_decimal(value, currency)


# --------------------------------------------------------------------------- properties


currencies = st.sampled_from(sorted(EXPONENTS))


@st.composite
def minor_in_range(draw) -> tuple[str, int]:
    """A currency and a positive minor amount with at most 13 integer digits."""
    currency = draw(currencies)
    places = EXPONENTS[currency]
    upper = 10**13 * 10**places - 1
    minor = draw(
        st.one_of(
            st.integers(min_value=1, max_value=upper),
            st.integers(min_value=1, max_value=10**places * 1000),
            st.sampled_from([1, upper, upper - 1, 10**places, 10**places - 1 if places else 1]),
        )
    )
    return currency, minor


@FAST
@given(minor_in_range())
def test_property_format_then_parse_round_trips(pair: tuple[str, int]) -> None:
    currency, minor = pair
    text = format_minor(minor, currency)
    assert parse_amount(text, currency) == minor


@FAST
@given(minor_in_range())
def test_property_format_has_exactly_the_exponent_decimals(pair: tuple[str, int]) -> None:
    currency, minor = pair
    places = EXPONENTS[currency]
    text = format_minor(minor, currency)
    assert text.isascii()
    if places == 0:
        assert "." not in text
        assert text.isdigit()
    else:
        integer, _, fraction = text.partition(".")
        assert text.count(".") == 1
        assert len(fraction) == places
        assert integer.isdigit() and fraction.isdigit()
        assert integer == "0" or not integer.startswith("0")
    assert len(text.partition(".")[0]) <= 13
    assert len(text) <= 24
    assert Decimal(text) == Decimal(minor).scaleb(-places)


@FAST
@given(minor_in_range())
def test_property_decimal_round_trip(pair: tuple[str, int]) -> None:
    currency, minor = pair
    assert from_decimal(to_decimal(minor, currency), currency) == minor
    # A JSON number parsed with parse_float=Decimal arrives as the exact literal.
    assert parse_amount(to_decimal(minor, currency), currency) == minor


@FAST
@given(currencies, st.integers(min_value=1, max_value=10**13 - 1))
def test_property_json_integers_are_whole_units(currency: str, units: int) -> None:
    assert parse_amount(units, currency) == units * 10 ** EXPONENTS[currency]


@FAST
@given(minor_in_range(), st.integers(min_value=1, max_value=4))
def test_property_extra_decimal_places_refused_even_if_zero(
    pair: tuple[str, int], extra: int
) -> None:
    currency, minor = pair
    text = format_minor(minor, currency)
    padded = text + ("0" * extra if "." in text else "." + "0" * extra)
    if len(padded) > 24:
        return
    with pytest.raises(AmountError):
        parse_amount(padded, currency)


@FAST
@given(currencies, st.integers(min_value=10**13, max_value=10**20))
def test_property_more_than_13_integer_digits_refused(currency: str, units: int) -> None:
    with pytest.raises(AmountError):
        parse_amount(str(units), currency)
    with pytest.raises(AmountError):
        parse_amount(units, currency)


@FAST
@given(minor_in_range())
def test_property_signed_forms_refused(pair: tuple[str, int]) -> None:
    currency, minor = pair
    text = format_minor(minor, currency)
    for variant in ("-" + text, "+" + text, " " + text, text + " ", text + "e0"):
        with pytest.raises(AmountError):
            parse_amount(variant, currency)


@FAST
@given(st.text(max_size=30), currencies)
def test_property_arbitrary_text_is_refused_or_positive(raw: str, currency: str) -> None:
    try:
        minor = parse_amount(raw, currency)
    except AmountError:
        return
    assert type(minor) is int and minor > 0
    assert len(raw) <= 24
    # Whatever is accepted denotes exactly the returned minor units.
    assert Decimal(format_minor(minor, currency)) == Decimal(
        raw if not raw.startswith(".") else "0" + raw
    )


@FAST
@given(
    st.from_regex(r"\A[0-9]{1,16}(\.[0-9]{0,5})?\Z", fullmatch=True),
    currencies,
)
def test_property_ascii_decimals_follow_the_rules(raw: str, currency: str) -> None:
    places = EXPONENTS[currency]
    integer, _, fraction = raw.partition(".")
    value = Decimal(raw)
    should_refuse = (
        len(raw) > 24 or len(integer.lstrip("0")) > 13 or len(fraction) > places or value <= 0
    )
    if should_refuse:
        with pytest.raises(AmountError):
            parse_amount(raw, currency)
    else:
        assert parse_amount(raw, currency) == int(value.scaleb(places))
