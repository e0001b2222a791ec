"""Reading request bodies the way the Ottu (DRF) server does: JSON, form or multipart, bounded in
size, with DRF's error bodies. JSON numbers keep their exact literal (``parse_float=Decimal``)."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from fastapi import Request

from payops.domain import messages
from payops.errors import DetailError, FieldErrors, field_error

JSON_TYPES = ("application/json",)
FORM_TYPE = "application/x-www-form-urlencoded"
MULTIPART_TYPE = "multipart/form-data"
# Ottu's limit for redirect_url, webhook_url and disclosure_url.
URL_MAX_LENGTH = 2000


@dataclass(frozen=True)
class FormShape:
    """How an endpoint's fields read from a form or multipart body, as DRF's fields do.

    ``lists``: list fields, given as repeated keys (``pg_codes=a&pg_codes=b``) or indexed keys
    (``pg_codes[0]=a``); a single key is a one-item list. ``json``: JSON or object fields, whose
    plain key holds JSON text (DRF's JSONField) and which may also be sent as nested keys
    (``extra.key=v``, ``extra[key]=v``). Every other field is a scalar: the last value wins, and a
    blank value stays an empty string.
    """

    lists: frozenset[str] = frozenset()
    json: frozenset[str] = frozenset()


NO_SHAPE = FormShape()
# Deepest nesting a form key may express (``a[b][c]…``); decisions §13 caps JSON at 32 too.
MAX_FORM_DEPTH = 32
_KEY_ROOT = re.compile(r"^([^.\[\]]+)((?:\[[^\[\]]*\]|\.[^.\[\]]+|(?<=\])[^.\[\]]+)*)$")
_KEY_PART = re.compile(r"\[([^\[\]]*)\]|\.([^.\[\]]+)|([^.\[\]]+)")


def _split_key(key: str) -> tuple[str, list[str]]:
    """``a[b][0]`` / ``a.b.0`` / ``a[0]b`` → ("a", ["b", "0"] ...); a plain key has no path."""
    match = _KEY_ROOT.match(key)
    if match is None or not match.group(2):
        return key, []
    path = [part.group(part.lastindex or 1) or "" for part in _KEY_PART.finditer(match.group(2))]
    return match.group(1), path


def _listify(node: Any) -> Any:
    if isinstance(node, dict):
        node = {key: _listify(value) for key, value in node.items()}
        if node and all(key.isdigit() for key in node):
            return [node[key] for key in sorted(node, key=int)]
    return node


def _nest(parts: list[tuple[list[str], str]]) -> Any:
    root: dict[str, Any] = {}
    for path, value in parts:
        node = root
        for depth, segment in enumerate(path):
            if segment == "":  # "name[]": the next item
                segment = str(len(node))
            if depth == len(path) - 1:
                node[segment] = value
            else:
                if not isinstance(node.get(segment), dict):
                    node[segment] = {}
                node = node[segment]
    return _listify(root)


def _json_text(name: str, text: str) -> Any:
    if text == "":
        return ""
    try:
        return _parse_json(text)
    except (ValueError, RecursionError):
        raise FieldErrors({name: [messages.INVALID_JSON_VALUE]}) from None


def fold_form(pairs: Iterable[tuple[str, str]], shape: FormShape = NO_SHAPE) -> dict[str, Any]:
    """A form's key/value pairs as the object DRF's serializer fields would read from them."""
    plain: dict[str, list[str]] = {}
    nested: dict[str, list[tuple[list[str], str]]] = {}
    order: dict[str, None] = {}
    for key, value in pairs:
        root, path = _split_key(key)
        if len(path) > MAX_FORM_DEPTH:
            raise FieldErrors({root[:64]: [messages.FORM_TOO_DEEP.format(n=MAX_FORM_DEPTH)]})
        order.setdefault(root)
        if path:
            nested.setdefault(root, []).append((path, value))
        else:
            plain.setdefault(root, []).append(value)
    data: dict[str, Any] = {}
    for name in order:
        values = plain.get(name, [])
        if name in shape.lists:
            data[name] = values if values else _nest(nested[name])
            if isinstance(data[name], dict):  # name[]=a style keys only
                data[name] = list(data[name].values())
        elif values and name in shape.json:
            data[name] = _json_text(name, values[-1])
        elif values:
            data[name] = values[-1]
        else:
            data[name] = _nest(nested[name])
    return data


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_number(text: str) -> Decimal:
    # Decimal refuses an exponent beyond its own range (1e99999999999999999999) with
    # InvalidOperation, which json.loads lets escape (a 500). Such a number is read as an infinity:
    # every field that takes numbers already refuses non-finite ones with its own field error.
    try:
        return Decimal(text)
    except InvalidOperation:
        return Decimal("-Infinity" if text.startswith("-") else "Infinity")


def _refuse_lone_surrogates(data: Any) -> None:
    """JSON may escape half of a UTF-16 pair (``"\\ud800"``); such a string cannot be stored or
    written back as UTF-8 (it once answered 500 when an error message echoed it)."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("lone surrogate in a string") from None
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)


def _parse_json(text: str | bytes) -> Any:
    data = json.loads(text, parse_float=_json_number, parse_constant=_reject_constant)
    _refuse_lone_surrogates(data)
    return data


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


async def read_object(
    request: Request, max_bytes: int, shape: FormShape = NO_SHAPE
) -> dict[str, Any]:
    """The request body as a dict; an empty body is an empty dict. Form and multipart bodies are
    folded as DRF reads them (``fold_form``); a file part is refused, naming its field."""
    raw = await read_limited(request, max_bytes)
    media = media_type(request)
    if not raw.strip():
        return {}
    if media in JSON_TYPES or media.endswith("+json"):
        try:
            data = _parse_json(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            reason = "number too large" if "int_max_str_digits" in str(exc) else exc
            raise DetailError(messages.INVALID_JSON.format(error=reason), 400) from None
        except RecursionError:
            raise DetailError(
                messages.INVALID_JSON.format(error="nested too deeply"), 400
            ) from None
    elif media == FORM_TYPE:
        try:
            pairs = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise DetailError("Form data is not valid UTF-8.", 400) from None
        data = fold_form(pairs, shape)
    elif media == MULTIPART_TYPE:
        request._body = raw  # let Starlette's form parser read what we already bounded
        try:
            form = await request.form()
        except Exception:
            raise DetailError("Multipart form parse error.", 400) from None
        try:
            files = sorted({key for key, value in form.multi_items() if not isinstance(value, str)})
            if files:
                raise FieldErrors(
                    {
                        key: [
                            messages.ATTACHMENT_UNSUPPORTED
                            if key == "attachment"
                            else messages.FILE_UNSUPPORTED
                        ]
                        for key in files
                    }
                )
            data = fold_form([(k, v) for k, v in form.multi_items() if isinstance(v, str)], shape)
        finally:
            await form.close()
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


def identifier(
    name: str, value: Any, *, max_length: int = 128, required: bool = True
) -> str | None:
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


def url(name: str, value: Any, *, max_length: int = URL_MAX_LENGTH) -> str | None:
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
