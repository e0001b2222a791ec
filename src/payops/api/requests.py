"""Reading request bodies the way the Ottu (DRF) server does: JSON, form or multipart, bounded in
size, with DRF's error bodies. JSON numbers keep their exact literal (``parse_float=Decimal``)."""

from __future__ import annotations

import json
import unicodedata
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request

from payops.domain import messages
from payops.errors import DetailError, FieldErrors, field_error

JSON_TYPES = ("application/json",)
FORM_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_limited(request: Request, max_bytes: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise DetailError(messages.TOO_LARGE, 413)
        except ValueError:
            raise DetailError("Invalid Content-Length header.", 400) from None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise DetailError(messages.TOO_LARGE, 413)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_object(request: Request, max_bytes: int) -> dict[str, Any]:
    """The request body as a dict; an empty body is an empty dict."""
    raw = await read_limited(request, max_bytes)
    media = media_type(request)
    if not raw.strip():
        return {}
    if media in JSON_TYPES or media.endswith("+json"):
        try:
            data = json.loads(raw, parse_float=Decimal, parse_constant=_reject_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            reason = "number too large" if "int_max_str_digits" in str(exc) else exc
            raise DetailError(messages.INVALID_JSON.format(error=reason), 400) from None
        except RecursionError:
            raise DetailError(messages.INVALID_JSON.format(error="nested too deeply"), 400) from None
    elif media == FORM_TYPE:
        try:
            data = dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise DetailError("Form data is not valid UTF-8.", 400) from None
    elif media == MULTIPART_TYPE:
        request._body = raw  # let Starlette's form parser read what we already bounded
        try:
            form = await request.form()
        except Exception:
            raise DetailError("Multipart form parse error.", 400) from None
        data = {key: value for key, value in form.items() if isinstance(value, str)}
    else:
        raise DetailError(messages.UNSUPPORTED_MEDIA.format(media_type=media), 415)
    if not isinstance(data, dict):
        kind = {list: "list", str: "str", int: "int", Decimal: "float", bool: "bool"}.get(
            type(data), type(data).__name__ if data is not None else "NoneType"
        )
        raise FieldErrors({"non_field_errors": [messages.NOT_AN_OBJECT.format(kind=kind)]})
    return data


def has_control_characters(value: str) -> bool:
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Cs") for ch in value)


def identifier(name: str, value: Any, *, max_length: int = 128, required: bool = True) -> str | None:
    """A transaction identifier from a path or body: a short printable string."""
    if value is None or value == "":
        if required:
            raise field_error(name, messages.FIELD_REQUIRED)
        return None
    if not isinstance(value, str):
        raise field_error(name, messages.NOT_A_STRING)
    if len(value) > max_length:
        raise field_error(name, messages.MAX_LENGTH.format(n=max_length))
    if has_control_characters(value):
        raise field_error(name, messages.INVALID_CHARACTERS)
    return value


def choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value is None or value == "":
        raise field_error(name, messages.FIELD_REQUIRED)
    if not isinstance(value, str) or value not in choices:
        shown = value if isinstance(value, str) else json.dumps(value, default=str)
        raise field_error(name, messages.INVALID_CHOICE.format(value=shown[:64]))
    return value


def boolean(name: str, value: Any) -> bool:
    """DRF BooleanField semantics for JSON and form values."""
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    truthy = {"true", "True", "TRUE", "1", "yes", "on", "y", "t", 1}
    falsy = {"false", "False", "FALSE", "0", "no", "off", "n", "f", 0}
    if isinstance(value, (str, int)) and value in truthy:
        return True
    if isinstance(value, (str, int)) and value in falsy:
        return False
    raise field_error(name, "Must be a valid boolean.")


def url(name: str, value: Any, *, max_length: int = 200) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise field_error(name, messages.NOT_A_STRING)
    if len(value) > max_length:
        raise field_error(name, messages.MAX_LENGTH.format(n=max_length))
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:
        raise field_error(name, "Enter a valid URL.") from None
    if parts.scheme not in ("http", "https") or not host or has_control_characters(value):
        raise field_error(name, "Enter a valid URL.")
    return value
