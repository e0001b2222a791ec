"""The one HTTP transport every gateway connector uses.

``GatewayClient`` owns one ``httpx.AsyncClient`` (created on first use, closed by ``aclose``) with
the shared verifying TLS context, the configuration's timeout and no redirects. ``request`` sends
one JSON, form, XML or raw body, decodes the answer, and never raises: what went wrong is a
``Fault`` on the ``Reply``. A ``Deadline`` keeps a multi-request call (token, lookup, operation)
inside the caller's hard stop, and ``guarded`` turns anything a connector raises, or a call that
outlives its budget, into an *unknown* result.

The fault vocabulary, and what each means for an operation's outcome:

- ``Fault.NOT_SENT``: the connection was never made; the gateway certainly did nothing.
- ``Fault.TIMEOUT``: sent, no answer in time; the gateway may have acted (unknown).
- ``Fault.RESET``: the connection broke after sending; unknown.
- ``Fault.TRANSPORT``: any other transport surprise; unknown.

A reply that arrived is judged by its status: 5xx and 408 are unknown, and so is a 2xx whose body
could not be decoded (``Reply.outcome_unknown``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import Enum
from functools import lru_cache
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit
from xml.etree import ElementTree

import httpx

from payops.connectors.base import CALL_MARGIN_SECONDS, GatewayResult

log = logging.getLogger("payops.connectors")

RAW_TEXT_LIMIT = 500
Decode = Literal["json", "form", "xml", "text"]


@lru_cache(maxsize=1)
def shared_tls_context() -> ssl.SSLContext:
    """One verifying TLS context for every gateway client. Building one loads the CA bundle
    (tens of milliseconds to 0.3 s), and PayOps builds a connector per call."""
    return httpx.create_ssl_context(trust_env=False)


class Fault(str, Enum):
    """Why no HTTP answer arrived. The values are what a stored reply says (``{"error": …}``)."""

    NOT_SENT = "not_sent"
    TIMEOUT = "timeout"
    RESET = "connection_error"
    TRANSPORT = "transport_error"


# -- bodies ----------------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise ValueError(f"JSON constant {name} is not a number")


def decode_json(content: bytes | str) -> Any:
    """Parse JSON with every fractional number as ``Decimal`` (never float); NaN and Infinity are
    refused. Raises ValueError when the text is not JSON."""
    try:
        return json.loads(content, parse_float=Decimal, parse_constant=_reject_constant)
    except (UnicodeDecodeError, RecursionError, InvalidOperation) as exc:
        # InvalidOperation: an exponent beyond Decimal's range (1e99999999999999999999).
        raise ValueError(str(exc) or type(exc).__name__) from None


def encode_json(value: Any) -> bytes:
    """Compact JSON in which a ``Decimal`` is written as the exact number literal it holds
    (``25.500`` stays ``25.500``). Floats are refused: money is never a float."""
    return _json_text(value).encode()


def _json_text(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("only finite decimal amounts can be sent")
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("floats are never sent to a gateway; use Decimal")
    if isinstance(value, Mapping):
        return (
            "{" + ",".join(f"{json.dumps(str(k))}:{_json_text(v)}" for k, v in value.items()) + "}"
        )
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_json_text(item) for item in value) + "]"
    return json.dumps(value, ensure_ascii=False)


def decode_form(content: bytes | str) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body as a dict (the last of repeated keys)."""
    text = content.decode() if isinstance(content, bytes) else content
    return dict(parse_qsl(text, keep_blank_values=True, strict_parsing=False))


def decode_xml(content: bytes | str) -> dict[str, Any]:
    """An XML reply as nested dicts: ``{tag: text}`` for leaves, ``{tag: {…}}`` for elements
    with children (repeated tags become lists). Several top-level elements without a root
    (``<result>CAPTURED</result><auth>…</auth>``, as some gateways answer) are accepted.
    Document type declarations are refused (no entity expansion)."""
    text = content.decode() if isinstance(content, bytes) else content
    text = text.strip()
    if text.startswith("<?xml"):
        text = text[text.index("?>") + 2 :].strip()
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise ValueError("XML with a document type declaration is refused")
    try:
        root = ElementTree.fromstring(f"<reply>{text}</reply>")
    except ElementTree.ParseError as exc:
        raise ValueError(str(exc)) from None
    value = _element(root)
    return value if isinstance(value, dict) else {}


def _element(element: ElementTree.Element) -> Any:
    children = list(element)
    if not children:
        return (element.text or "").strip()
    out: dict[str, Any] = {}
    for child in children:
        item = _element(child)
        if child.tag in out:
            existing = out[child.tag]
            out[child.tag] = [*existing, item] if isinstance(existing, list) else [existing, item]
        else:
            out[child.tag] = item
    return out


def jsonable(value: Any) -> Any:
    """Decimals → their exact text, so a decoded reply can be stored as JSON without floats."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


# -- the reply -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """One HTTP exchange, decoded. ``status`` is None when no answer arrived (``fault`` says
    why); ``body`` is the decoded body (None when empty or undecodable), ``text`` the body as
    text when it could not be decoded."""

    status: int | None
    body: Any = None
    text: str = ""
    fault: Fault | None = None
    decoded: bool = True  # False: a body arrived but could not be decoded
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        return self.status is not None

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def delivered(self) -> bool:
        """False only when the request certainly never reached the gateway."""
        return self.fault is not Fault.NOT_SENT

    @property
    def outcome_unknown(self) -> bool:
        """Could the gateway have acted without us being able to read what it said?"""
        if self.status is None:
            return self.delivered
        return self.status >= 500 or self.status == 408 or (self.ok and not self.decoded)

    def raw(self, scrub: Callable[[Any], Any] | None = None) -> dict[str, Any]:
        """What is kept as the gateway's reply (``pg_response``): JSON-safe (Decimals as text),
        passed through ``scrub`` (the connector's redaction of card data and secrets)."""
        clean = scrub or jsonable
        if self.status is None:
            return {"error": (self.fault or Fault.TRANSPORT).value}
        if isinstance(self.body, dict):
            return clean(jsonable(self.body))
        if self.body is not None:
            return {"status_code": self.status, "body": clean(jsonable(self.body))}
        return {"status_code": self.status, "body": self.text[:RAW_TEXT_LIMIT]}


# -- deadline and guard ----------------------------------------------------------------------


class Deadline:
    """Keeps the whole of one connector call (token, lookup, operation) inside the caller's hard
    stop: each request gets at most the configured timeout and at most what is left."""

    def __init__(self, timeout: float, margin: float = CALL_MARGIN_SECONDS * 0.8) -> None:
        self.timeout = float(timeout)
        self.ends = time.monotonic() + self.timeout + margin

    def next_timeout(self) -> float:
        return max(min(self.timeout, self.ends - time.monotonic()), 0.001)


async def guarded(
    work: Callable[[], Awaitable[GatewayResult]],
    *,
    budget: float,
    on_timeout: Callable[[], GatewayResult],
    on_error: Callable[[BaseException], GatewayResult],
) -> GatewayResult:
    """Run one connector call within ``budget`` seconds; never raise."""
    try:
        async with asyncio.timeout(budget):
            return await work()
    except TimeoutError:
        return on_timeout()
    except Exception as exc:  # noqa: BLE001 - a connector must never raise
        log.warning("connector call failed: %s", type(exc).__name__)
        return on_error(exc)


# -- the client ------------------------------------------------------------------------------

_NOT_SENT_ERRORS = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.UnsupportedProtocol,
)
_RESET_ERRORS = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)


class GatewayClient:
    """One gateway's HTTP client. ``label`` names the gateway in log lines; headers, bodies and
    credentials are never logged.

    ``base_url`` is prefixed to relative targets; an absolute ``http(s)://`` target is used as
    is (the caller checks that it is the gateway's own origin). ``headers`` and ``auth`` are
    sent with every request."""

    def __init__(
        self,
        label: str,
        *,
        base_url: str = "",
        timeout: float = 30.0,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        trust_env: bool = True,
    ) -> None:
        self.label = label
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self._headers = dict(headers or {})
        self._auth = auth
        self._trust_env = trust_env
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=False,
                verify=shared_tls_context(),
                trust_env=self._trust_env,
                headers=self._headers,
                auth=self._auth,
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    def url(self, target: str) -> str:
        return target if target.startswith(("http://", "https://")) else self.base_url + target

    async def request(
        self,
        method: str,
        target: str,
        *,
        json: Any = None,
        form: Mapping[str, Any] | None = None,
        xml: str | bytes | None = None,
        content: bytes | None = None,
        content_type: str = "",
        headers: Mapping[str, str] | None = None,
        deadline: Deadline | None = None,
        decode: Decode = "json",
    ) -> Reply:
        """Send one request and decode its answer as ``decode``. Never raises.

        Body: ``json`` (written with :func:`encode_json`), ``form`` (url-encoded), ``xml`` (text)
        or ``content`` (bytes as given); ``content_type`` overrides the matching media type."""
        try:
            body, sent_headers = _body(json, form, xml, content, content_type, headers)
        except (TypeError, ValueError) as exc:
            log.warning(
                "%s %s %s: body not encoded (%s)", self.label, method, target, type(exc).__name__
            )
            return Reply(None, fault=Fault.NOT_SENT)
        url = self.url(target)
        path = urlsplit(url).path
        timeout = httpx.Timeout(deadline.next_timeout()) if deadline else None
        started = time.monotonic()
        try:
            if timeout is None:
                response = await self._http().request(
                    method, url, headers=sent_headers, content=body
                )
            else:
                response = await self._http().request(
                    method, url, headers=sent_headers, content=body, timeout=timeout
                )
        except _NOT_SENT_ERRORS as exc:
            log.info("%s %s %s: not sent (%s)", self.label, method, path, type(exc).__name__)
            return Reply(None, fault=Fault.NOT_SENT)
        except httpx.TimeoutException as exc:
            log.warning("%s %s %s: no answer (%s)", self.label, method, path, type(exc).__name__)
            return Reply(None, fault=Fault.TIMEOUT)
        except _RESET_ERRORS as exc:
            log.warning(
                "%s %s %s: connection lost (%s)", self.label, method, path, type(exc).__name__
            )
            return Reply(None, fault=Fault.RESET)
        except Exception as exc:  # noqa: BLE001 - a connector never raises for the gateway
            log.warning(
                "%s %s %s: transport error (%s)", self.label, method, path, type(exc).__name__
            )
            return Reply(None, fault=Fault.TRANSPORT)
        log.debug(
            "%s %s %s -> %s in %d ms",
            self.label,
            method,
            path,
            response.status_code,
            int((time.monotonic() - started) * 1000),
        )
        return decode_reply(response.status_code, response.content, decode, response.headers)


def _body(
    json: Any,
    form: Mapping[str, Any] | None,
    xml: str | bytes | None,
    content: bytes | None,
    content_type: str,
    headers: Mapping[str, str] | None,
) -> tuple[bytes | None, dict[str, str]]:
    sent_headers = dict(headers or {})
    body: bytes | None = content
    media = content_type
    if json is not None:
        body, media = encode_json(json), content_type or "application/json"
    elif form is not None:
        body = urlencode({k: "" if v is None else str(v) for k, v in form.items()}).encode()
        media = content_type or "application/x-www-form-urlencoded"
    elif xml is not None:
        body = xml.encode() if isinstance(xml, str) else xml
        media = content_type or "application/xml"
    if media:
        sent_headers["Content-Type"] = media
    return body, sent_headers


def decode_reply(
    status: int, content: bytes, decode: Decode = "json", headers: Mapping[str, str] | None = None
) -> Reply:
    """A received answer as a ``Reply``: an empty body is ``None`` and counts as decoded."""
    text = content.decode("utf-8", errors="replace")
    if not text.strip():
        return Reply(status, None, "", headers=headers or {})
    if decode == "text":
        return Reply(status, text, "", headers=headers or {})
    decoder = {"json": decode_json, "form": decode_form, "xml": decode_xml}[decode]
    try:
        return Reply(status, decoder(content), "", headers=headers or {})
    except ValueError:
        return Reply(status, None, text, decoded=False, headers=headers or {})
