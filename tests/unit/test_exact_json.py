"""payops.exact_json: JSON numbers survive a round trip exactly, and stay usable as floats."""

from __future__ import annotations

import json
import pickle
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from payops.exact_json import JsonNumber, dumps, loads


@pytest.mark.parametrize(
    "text",
    [
        "1.50",
        "0.1000000000000000000001",
        "-0.0",
        "3.0",
        "1E+308",
        "2.5e-7",
        "123456789012345678901234567890.5",
    ],
)
def test_decimal_text_round_trips(text: str) -> None:
    document = f'{{"n":{text},"l":[{text}]}}'
    assert dumps(loads(document)) == document
    assert loads(document)["n"] == float(text)  # still a float to every other piece of code


def test_plain_values_use_the_standard_encoding() -> None:
    value = {"s": "é\n", "i": 10**60, "f": 2.5, "b": True, "n": None, "l": [1, {"x": []}]}
    assert dumps(value) == json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def test_decimals_and_pickling() -> None:
    assert dumps({"d": Decimal("1.50")}) == '{"d":1.50}'
    number = loads("1.50")
    assert isinstance(number, JsonNumber) and pickle.loads(pickle.dumps(number)).text == "1.50"
    with pytest.raises(ValueError):
        dumps({"d": Decimal("NaN")})
    with pytest.raises(ValueError):
        dumps({"f": float("inf")})


@given(st.decimals(allow_nan=False, allow_infinity=False, places=None))
def test_any_finite_decimal_round_trips(value: Decimal) -> None:
    text = str(value)
    if "." not in text and "E" not in text.upper():
        text += ".0"  # an integer literal is read as an int, exact anyway
    assert Decimal(dumps(loads(text))) == Decimal(text)
