"""JSON whose numbers keep their exact value (decisions §13: a merchant's ``extra``).

Python's json module reads ``1.50`` as the float 1.5 and cannot write a number from its text. A
merchant's ``extra`` must come back as sent, so a non-integer number is held as a
:class:`JsonNumber`: a float (every piece of code that handles floats keeps working, and the
standard json module still writes its value) that remembers its decimal text, which
:func:`dumps` writes as is. Integers are Python ints, exact at any size.

The database engines read and write JSON columns with :func:`loads` / :func:`dumps`, and the API
answers with :class:`payops.web.responses.ExactJSONResponse`, so such numbers survive storage and
come back exactly as they were accepted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

_COMPACT = {"ensure_ascii": False, "allow_nan": False, "separators": (",", ":")}


class JsonNumber(float):
    """A JSON number that is not an integer, with the decimal text it was accepted as."""

    text: str

    def __new__(cls, text: str) -> JsonNumber:
        number = super().__new__(cls, text)
        number.text = text
        return number

    @classmethod
    def from_decimal(cls, value: Decimal) -> JsonNumber:
        return cls(str(value))

    def __reduce__(self) -> tuple[Any, ...]:
        return (JsonNumber, (self.text,))


def loads(text: str | bytes) -> Any:
    # orjson first (several times faster); only a document that holds a non-integer number is
    # read again by the standard library, which keeps each such number's text.
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None  # let the standard library raise its own error (or read big integers)
    else:
        if not _holds_float(value):
            return value
    return json.loads(text, parse_float=JsonNumber)


def _holds(value: Any, found: Callable[[Any], bool]) -> bool:
    """Whether any value inside ``value`` (dicts, lists and tuples, at any depth) is ``found``."""
    pending = [value]
    while pending:
        item = pending.pop()
        if found(item):
            return True
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return False


def _holds_float(value: Any) -> bool:
    return _holds(value, lambda item: type(item) is float)


def _holds_exact_number(value: Any) -> bool:
    return _holds(value, lambda item: isinstance(item, (JsonNumber, Decimal)))


def _encode(value: Any, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(json.dumps(value, ensure_ascii=False))
    elif value is None or value is True or value is False:
        out.append(json.dumps(value))
    elif isinstance(value, JsonNumber):
        out.append(value.text)
    elif isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"Out of range decimal values are not JSON compliant: {value}")
        out.append(str(value))
    elif isinstance(value, (int, float)):
        out.append(json.dumps(value, allow_nan=False))
    elif isinstance(value, dict):
        out.append("{")
        for index, (key, item) in enumerate(value.items()):
            if index:
                out.append(",")
            out.append(
                json.dumps(key if isinstance(key, str) else json.dumps(key), ensure_ascii=False)
            )
            out.append(":")
            _encode(item, out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for index, item in enumerate(value):
            if index:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _fragment(value: Any) -> Any:
    if isinstance(value, JsonNumber):
        return orjson.Fragment(value.text)
    if isinstance(value, Decimal) and value.is_finite():
        return orjson.Fragment(str(value))
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def dumps(value: Any) -> str:
    """Compact JSON; a JsonNumber (or a Decimal) is written as its exact text."""
    try:
        # orjson writes NaN and infinities as null where the standard library refuses them:
        # never let it. Only a text with a null can hide one, so only then is the value
        # searched (a search per value cost more than orjson's whole encoding).
        text = orjson.dumps(value, default=_fragment)
        if b"null" not in text or not _holds_non_finite(value):
            return text.decode()
    except TypeError:
        pass  # integers beyond 64 bits, non-finite decimals: the exact encoder decides
    if not _holds_exact_number(value):
        return json.dumps(value, **_COMPACT)  # type: ignore[arg-type]
    out: list[str] = []
    _encode(value, out)
    return "".join(out)


def _holds_non_finite(value: Any) -> bool:
    # ``_holds`` with the test inlined (a call per item cost more than the encoding).
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
        elif isinstance(item, float) and not math.isfinite(item):
            return True
    return False
