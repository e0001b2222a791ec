"""Network International N-Genius Online: capture, refund, void and inquiry.

Protocol (gateway notes, gateways-mpgs-ngenius-tabby-myfatoorah.md §2):

- Auth in two steps. ``POST /identity/auth/access-token`` with ``Authorization: Basic <api key>``
  (the key as issued) and ``Content-Type: application/vnd.ni-identity.v1+json``, empty body, gives a
  bearer token that lives about five minutes. Every payment call then sends ``Authorization:
  Bearer …`` with the ``application/vnd.ni-payment.v2+json`` media type. PayOps builds a connector
  per call, so tokens are cached at module level, keyed by (host, SHA-256 of the API key) — never
  the key itself — refreshed before they expire, and re-issued once when a call answers 401.
- Capture: ``POST …/orders/{order}/payments/{payment}/captures``; refund:
  ``POST …/payments/{payment}/captures/{capture}/refund`` (or the payment's own ``cnp:refund``
  link for a single-stage PURCHASE); void: ``PUT …/payments/{payment}/cancel`` with no body;
  inquiry: ``GET …/orders/{order}``. Amounts are ``{"currencyCode", "value"}`` with an integer value
  in minor units.
- There is **no idempotency key**: nothing ties a capture or refund to PayOps's reference number.
  POSTs are therefore never retried after they may have reached the gateway (only after a 401,
  which means nothing was done, or a 4xx refusal of one capture when refunding from another), and
  ``inquire_operation`` recognises an operation by its kind and amount among the payment's
  children (see its docstring for the limits of that).

Outcomes: a reply that may follow a performed operation but cannot be read (timeout, reset, 5xx,
unparsable body) is UNKNOWN. A failure *before* the operation's own request left PayOps (token
exchange, order lookup, connection refused) is FAILED: the gateway certainly did nothing.
Nothing secret is logged; GatewayResult.raw holds the sanitised gateway body only.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import httpx

from payops.connectors.base import (
    CALL_MARGIN_SECONDS,
    Connector,
    ConnectorConfig,
    GatewayOperation,
    GatewayResult,
    Notification,
    NotificationRejected,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.connectors.http import shared_tls_context
from payops.connectors.ngenius import transformers as t
from payops.connectors.ngenius import webhooks
from payops.connectors.redaction import field_set
from payops.money import AmountError, UnknownCurrency, format_minor

log = logging.getLogger(__name__)

SANDBOX_HOSTS = {
    "uae": "https://api-gateway.sandbox.ngenius-payments.com",
    "ksa": "https://api-gateway.sandbox.ksa.ngenius-payments.com",
}
LIVE_HOSTS = {
    "uae": "https://api-gateway.ngenius-payments.com",
    "ksa": "https://api-gateway.ksa.ngenius-payments.com",  # VERIFY: inferred from the sandbox name
}
TOKEN_PATH = "/identity/auth/access-token"

# A token is refreshed this long before the gateway says it expires (at most a fifth of its life).
TOKEN_REFRESH_MARGIN_SECONDS = 60.0


# -- the access-token cache ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Token:
    value: str
    refresh_at: float  # time.monotonic()
    expires_at: float


_TOKENS: dict[tuple[str, str], _Token] = {}
# asyncio.Lock belongs to one event loop: one set of locks per running loop.
_LOCKS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, str], asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def token_cache_key(host: str, api_key: str) -> tuple[str, str]:
    """Cache key of an API key's tokens: the host and a SHA-256 of the key, never the key."""
    return host.rstrip("/").lower(), hashlib.sha256(api_key.encode("utf-8")).hexdigest()


def clear_token_cache() -> None:
    _TOKENS.clear()


def _lock_for(key: tuple[str, str]) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    locks = _LOCKS.get(loop)
    if locks is None:
        locks = {}
        _LOCKS[loop] = locks
    lock = locks.get(key)
    if lock is None:
        lock = locks[key] = asyncio.Lock()
    return lock


# -- plumbing --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Reply:
    """One HTTP exchange as the connector sees it."""

    status: int | None  # None: no HTTP answer at all
    body: Any = None  # decoded JSON, or None
    problem: str = ""  # timeout | reset | connect | transport | unparsable
    delivered: bool = True  # False only when the request certainly never reached the gateway

    @property
    def unknown(self) -> bool:
        """Could the gateway have acted without us being able to read what it said?"""
        if self.status is None:
            return self.delivered
        return self.status >= 500 or self.status == 408 or (
            200 <= self.status < 300 and self.problem == "unparsable"
        )


class _NotSent(Exception):
    """The operation's own request was never sent: the gateway did nothing."""

    def __init__(self, message: str, raw: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.raw = raw


class _Deadline:
    """Keeps the whole call (token, lookup, operation) inside the caller's hard stop."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.ends = time.monotonic() + timeout + CALL_MARGIN_SECONDS * 0.8

    def next_timeout(self) -> float:
        return max(min(self.timeout, self.ends - time.monotonic()), 0.001)


def _json_or_none(response: httpx.Response) -> tuple[Any, bool]:
    if not response.content:
        return None, True
    try:
        return json.loads(response.content), True
    except ValueError:
        return None, False


class NgeniusConnector(Connector):
    name: ClassVar[str] = "ngenius"
    capabilities: ClassVar[frozenset[str]] = frozenset({"capture", "refund", "void", "inquiry"})
    required_credentials: ClassVar[tuple[str, ...]] = ("api_key", "outlet_reference")
    # The payer's contact details and addresses, and the card beyond its masked number.
    personal_fields: ClassVar[frozenset[str]] = field_set((
        "emailAddress", "billingAddress", "shippingAddress", "phoneNumber", "cardholderName",
        "expiry", "customerIp", "ipAddress", "payer",
    ))

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        options = config.options or {}
        if options.get("base_url"):
            self.base_url = str(options["base_url"]).rstrip("/")
        else:
            hosts = SANDBOX_HOSTS if config.is_sandbox else LIVE_HOSTS
            self.base_url = hosts.get(str(options.get("region", "uae")).lower(), hosts["uae"])
        self.timeout = float(config.timeout_seconds)
        self.exponents: dict[str, Any] = dict(options.get("amount_exponents") or {})
        self._client: httpx.AsyncClient | None = None

    # -- the one send-and-parse point --------------------------------------------------------------

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout), follow_redirects=False, trust_env=False,
                verify=shared_tls_context(),
            )
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def _send(
        self, method: str, target: str, deadline: _Deadline, *, bearer: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> _Reply:
        """Send one request and decode its answer. Never raises; never logs headers or bodies."""
        url = target if target.startswith(("http://", "https://")) else self.base_url + target
        if bearer is None:  # the token exchange
            headers = {
                "Authorization": f"Basic {self.config.credentials.get('api_key', '')}",
                "Content-Type": t.IDENTITY_MEDIA_TYPE,
            }
            content = b""
        else:
            headers = {
                "Authorization": f"Bearer {bearer}",
                "Content-Type": t.PAYMENT_MEDIA_TYPE,
                "Accept": t.PAYMENT_MEDIA_TYPE,
            }
            content = json.dumps(body, separators=(",", ":")).encode() if body is not None else b""
        path = urlsplit(url).path
        started = time.monotonic()
        try:
            response = await self._http().request(
                method, url, headers=headers, content=content,
                timeout=httpx.Timeout(deadline.next_timeout()),
            )
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout,
                httpx.UnsupportedProtocol) as exc:
            log.info("ngenius %s %s: not sent (%s)", method, path, type(exc).__name__)
            return _Reply(None, problem="connect", delivered=False)
        except httpx.TimeoutException as exc:
            log.info("ngenius %s %s: no answer (%s)", method, path, type(exc).__name__)
            return _Reply(None, problem="timeout")
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            log.info("ngenius %s %s: connection lost (%s)", method, path, type(exc).__name__)
            return _Reply(None, problem="reset")
        except Exception as exc:  # noqa: BLE001 - a transport surprise is an unknown outcome
            log.warning("ngenius %s %s: transport error (%s)", method, path, type(exc).__name__)
            return _Reply(None, problem="transport")
        decoded, ok = _json_or_none(response)
        log.debug("ngenius %s %s -> %s in %.0f ms", method, path, response.status_code,
                  (time.monotonic() - started) * 1000)
        return _Reply(response.status_code, decoded, "" if ok else "unparsable")

    # -- auth ---------------------------------------------------------------------------------------

    async def _token(self, deadline: _Deadline, *, stale: str | None = None) -> str:
        api_key = str(self.config.credentials.get("api_key") or "")
        if not api_key:
            raise _NotSent("The N-Genius configuration has no api_key", {"error": "configuration"})
        key = token_cache_key(self.base_url, api_key)
        cached = _TOKENS.get(key)
        if cached and cached.value != stale and time.monotonic() < cached.refresh_at:
            return cached.value
        async with _lock_for(key):
            cached = _TOKENS.get(key)
            now = time.monotonic()
            if cached and cached.value != stale and now < cached.refresh_at:
                return cached.value  # another caller refreshed it meanwhile
            _TOKENS.pop(key, None)
            reply = await self._send("POST", TOKEN_PATH, deadline)
            ok = reply.status is not None and 200 <= reply.status < 300
            token = t.parse(t.TokenResponse, reply.body) if ok else None
            if token is None:
                raise _NotSent(self._token_failure(reply), self._token_raw(reply))
            lifetime = max(float(token.expires_in), 0.0)
            margin = min(TOKEN_REFRESH_MARGIN_SECONDS, lifetime / 5)
            _TOKENS[key] = _Token(token.access_token, now + lifetime - margin, now + lifetime)
            return token.access_token

    @staticmethod
    def _token_failure(reply: _Reply) -> str:
        if reply.status is None:
            return f"N-Genius access-token request failed ({reply.problem}); nothing was sent"
        detail = t.error_message(reply.body)
        if reply.status in (401, 403):
            return f"N-Genius refused the API key: {detail}" if detail else (
                "N-Genius refused the API key")
        return f"N-Genius did not issue an access token (HTTP {reply.status})"

    @staticmethod
    def _token_raw(reply: _Reply) -> dict[str, Any]:
        raw: dict[str, Any] = {"stage": "access-token", "status": reply.status}
        if reply.status is None:
            raw["error"] = reply.problem
        elif isinstance(reply.body, dict):
            raw["body"] = t.sanitise(reply.body)
        return raw

    async def _call(self, method: str, target: str, deadline: _Deadline,
                    body: dict[str, Any] | None = None) -> _Reply:
        """A payment-API call with a bearer token, re-issued once if the gateway answers 401."""
        token = await self._token(deadline)
        reply = await self._send(method, target, deadline, bearer=token, body=body)
        if reply.status == 401:
            token = await self._token(deadline, stale=token)
            reply = await self._send(method, target, deadline, bearer=token, body=body)
        return reply

    # -- addressing ---------------------------------------------------------------------------------

    @staticmethod
    def _ref(payment: PaymentRef, kind: str) -> str | None:
        """A gateway reference of the imported payment: ``order_reference`` (required) or
        ``payment_reference`` (optional: without it the order's paid payment is used)."""
        value = payment.gateway_refs.get(f"{kind}_reference")
        return str(value) if value else None

    def _outlet(self, payment: PaymentRef) -> str:
        outlet = payment.gateway_refs.get("outlet_reference") or self.config.credentials.get(
            "outlet_reference")
        if not outlet:
            raise _NotSent("The N-Genius configuration has no outlet_reference",
                           {"error": "configuration"})
        return str(outlet)

    def _order_path(self, payment: PaymentRef) -> str:
        order = self._ref(payment, "order")
        if not order:
            raise _NotSent("The payment has no N-Genius order_reference",
                           {"error": "missing gateway reference"})
        return (f"/transactions/outlets/{quote(self._outlet(payment), safe='')}"
                f"/orders/{quote(str(order), safe='')}")

    def _payment_path(self, payment: PaymentRef, payment_reference: str) -> str:
        return f"{self._order_path(payment)}/payments/{quote(payment_reference, safe='')}"

    def _same_origin(self, href: str) -> str | None:
        """A HAL link, if it points at the configured host (the bearer token goes nowhere else)."""
        if not href:
            return None
        link, base = urlsplit(href), urlsplit(self.base_url)
        if (link.scheme, link.netloc.lower()) != (base.scheme, base.netloc.lower()):
            return None
        return href

    async def _order(self, payment: PaymentRef, deadline: _Deadline) -> tuple[t.Order | None, _Reply]:
        reply = await self._call("GET", self._order_path(payment), deadline)
        ok = reply.status is not None and 200 <= reply.status < 300
        order = t.parse(t.Order, reply.body) if ok else None
        return order, reply

    @staticmethod
    def _pick_payment(order: t.Order, payment_reference: str | None) -> t.Payment | None:
        payments = order.payments
        if payment_reference:
            return next((p for p in payments if p.ref == payment_reference), None)
        taken = [p for p in payments if t.payment_outcome(p.state) == Outcome.SUCCESS
                 or p.state.upper() == "REVERSED"]
        return (taken or payments or [None])[-1]

    async def _payment_for_operation(
        self, request: OperationRequest, deadline: _Deadline
    ) -> tuple[t.Order, t.Payment]:
        """The order and payment, looked up before an operation is sent (failures: not sent)."""
        order, reply = await self._order(request.payment, deadline)
        if order is None:
            detail = t.error_message(reply.body)
            what = reply.problem or (f"HTTP {reply.status}" if reply.status else "no answer")
            raise _NotSent(
                detail or f"N-Genius order lookup failed ({what}); nothing was sent",
                {"stage": "order-lookup", "status": reply.status,
                 **({"body": t.sanitise(reply.body)} if isinstance(reply.body, dict) else {}),
                 **({"error": reply.problem} if reply.problem else {})},
            )
        payment = self._pick_payment(order, self._ref(request.payment, "payment"))
        if payment is None:
            raise _NotSent("N-Genius has no such payment on this order",
                           {"stage": "order-lookup", "order": t.sanitise(order.model_dump(
                               by_alias=True))})
        return order, payment

    def _value(self, request: OperationRequest) -> int:
        try:
            return t.to_gateway_value(request.amount, request.currency_code, self.exponents)
        except (t.AmountNotRepresentable, UnknownCurrency) as exc:
            raise _NotSent(str(exc) or "Unsupported currency", {"error": "amount"}) from None

    # -- operations ---------------------------------------------------------------------------------

    async def capture(self, request: OperationRequest) -> GatewayResult:
        return await self._operate(request, self._capture)

    async def refund(self, request: OperationRequest) -> GatewayResult:
        return await self._operate(request, self._refund)

    async def void(self, request: OperationRequest) -> GatewayResult:
        return await self._operate(request, self._void)

    async def _operate(self, request: OperationRequest, perform: Any) -> GatewayResult:
        deadline = _Deadline(self.timeout)
        try:
            return await perform(request, deadline)
        except _NotSent as refusal:
            return GatewayResult(Outcome.FAILED, refusal.raw, {"pg_message": refusal.message},
                                 refusal.message)
        except Exception as exc:  # noqa: BLE001 - a connector bug must never look like an answer
            log.warning("ngenius %s %s: unexpected %s", request.operation,
                        request.reference_number, type(exc).__name__)
            return GatewayResult(Outcome.UNKNOWN, {"error": type(exc).__name__}, {},
                                 "The N-Genius call ended without a readable answer")

    async def _capture(self, request: OperationRequest, deadline: _Deadline) -> GatewayResult:
        value = self._value(request)
        body = t.amount_request(request.amount, request.currency_code, self.exponents).wire()
        payment_reference = self._ref(request.payment, "payment")
        if payment_reference:
            target = f"{self._payment_path(request.payment, payment_reference)}/captures"
        else:
            _, payment = await self._payment_for_operation(request, deadline)
            target = self._same_origin(payment.href(t.CAPTURES)) or (
                f"{self._payment_path(request.payment, payment.ref)}/captures")
        reply = await self._call("POST", target, deadline, body)
        return self._result(request, reply, value)

    async def _refund(self, request: OperationRequest, deadline: _Deadline) -> GatewayResult:
        value = self._value(request)
        body = t.amount_request(request.amount, request.currency_code, self.exponents).wire()
        _, payment = await self._payment_for_operation(request, deadline)
        payment_path = self._payment_path(request.payment, payment.ref)
        captures = [c for c in payment.captures if t.child_outcome(c.state) == Outcome.SUCCESS]
        own_link = self._same_origin(payment.href(t.REFUNDS))
        if not captures or (own_link and payment.state.upper() in ("PURCHASED",
                                                                   "PARTIALLY_REFUNDED")):
            # single-stage PURCHASE: refund through the payment's own link
            target = own_link or f"{payment_path}/refund"
            return self._result(request, await self._call("POST", target, deadline, body), value)
        # Refunds are made against one capture. Newest first, among those large enough; a 4xx
        # refusal means nothing was done, so the next capture may be tried.
        candidates = [c for c in reversed(captures) if c.amount and c.amount.value >= value]
        if not candidates:
            raise _NotSent(
                f"No single N-Genius capture covers {format_minor(request.amount, request.currency_code)}"
                f" {request.currency_code}",
                {"stage": "refund", "captures": [c.model_dump(by_alias=True) for c in captures]},
            )
        reply = _Reply(None)
        for index, capture in enumerate(candidates):
            target = self._capture_refund_target(capture, payment_path)
            reply = await self._call("POST", target, deadline, body)
            refused = reply.status is not None and 400 <= reply.status < 500 and reply.status not in (
                401, 408, 429)
            if not (refused and index + 1 < len(candidates)):
                break
        return self._result(request, reply, value)

    def _capture_refund_target(self, capture: t.Child, payment_path: str) -> str:
        """The capture's ``cnp:refund`` link, else its self link + ``/refund``, else built."""
        link = self._same_origin(capture.href(t.REFUNDS))
        if link:
            return link
        own = self._same_origin(capture.href("self"))
        if own:
            return own.rstrip("/") + "/refund"
        return f"{payment_path}/captures/{quote(capture.ref, safe='')}/refund"

    async def _void(self, request: OperationRequest, deadline: _Deadline) -> GatewayResult:
        payment_reference = self._ref(request.payment, "payment")
        if payment_reference:
            target = f"{self._payment_path(request.payment, payment_reference)}/cancel"
        else:
            _, payment = await self._payment_for_operation(request, deadline)
            target = self._same_origin(payment.href(t.CANCEL)) or (
                f"{self._payment_path(request.payment, payment.ref)}/cancel")
        reply = await self._call("PUT", target, deadline)
        return self._result(request, reply, None)

    def _result(self, request: OperationRequest, reply: _Reply, value: int | None) -> GatewayResult:
        """Read the answer to a capture, refund or void."""
        order_reference = self._ref(request.payment, "order") or ""
        kind = request.operation
        if reply.status is None and not reply.delivered:
            message = f"N-Genius could not be reached ({reply.problem}); nothing was sent"
            return GatewayResult(Outcome.FAILED, {"error": reply.problem}, {"pg_message": message},
                                 message)
        if reply.unknown:
            raw: dict[str, Any] = {"status": reply.status} if reply.status else {}
            if reply.problem:
                raw["error"] = reply.problem
            if isinstance(reply.body, dict):
                raw["body"] = t.sanitise(reply.body)
            return GatewayResult(Outcome.UNKNOWN, raw, {},
                                 f"N-Genius did not confirm the {kind} "
                                 f"({reply.problem or f'HTTP {reply.status}'})")
        assert reply.status is not None
        if reply.status >= 300:
            message = t.error_message(reply.body) or f"N-Genius refused the {kind} (HTTP {reply.status})"
            raw = t.sanitise(reply.body) if isinstance(reply.body, dict) else {
                "status": reply.status}
            return GatewayResult(Outcome.FAILED, raw,
                                 {"ref": order_reference, "pg_message": message,
                                  "result": "error"}, message)
        payment = t.parse(t.Payment, reply.body)
        raw = t.sanitise(reply.body) if isinstance(reply.body, dict) else {}
        if payment is None:
            return GatewayResult(Outcome.UNKNOWN, raw, {},
                                 f"N-Genius answered the {kind} without a payment object")
        refs = {"order_reference": order_reference, "payment_reference": payment.ref}
        if kind == "void":
            outcome = Outcome.SUCCESS if payment.state.upper() == "REVERSED" else Outcome.UNKNOWN
            message = "Authorisation reversed" if outcome == Outcome.SUCCESS else (
                f"N-Genius answered the void with payment state {payment.state or 'none'}")
            return GatewayResult(outcome, raw, t.payment_params(
                payment, order_reference=order_reference, message=message), message, refs)
        children = payment.captures if kind == "capture" else payment.refunds
        child = next((c for c in reversed(children) if self._same_amount(c, value, request)), None)
        if child is None:
            return GatewayResult(Outcome.UNKNOWN, raw, {},
                                 f"N-Genius's answer does not show the {kind}")
        outcome = t.child_outcome(child.state)
        message = {
            Outcome.SUCCESS: f"{kind.capitalize()} successful",
            Outcome.PENDING: f"{kind.capitalize()} requested; N-Genius settles it later",
            Outcome.FAILED: f"N-Genius reports the {kind} as {child.state}",
        }[outcome]
        refs[f"{kind}_reference"] = child.ref
        return GatewayResult(outcome, raw, t.payment_params(
            payment, order_reference=order_reference, child=child, message=message), message, refs)

    @staticmethod
    def _same_amount(child: t.Child, value: int | None, request: OperationRequest) -> bool:
        return (child.amount is not None and child.amount.value == value
                and child.amount.currency_code.upper() == request.currency_code.upper())

    # -- incoming notifications ---------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """N-Genius tags its webhooks with the static custom header configured in its portal
        (name: option ``webhook_header``; value: the configuration's webhook secret). The order
        reference it names is matched against the stored ``order_reference``."""
        header = str(self.config.options.get("webhook_header") or webhooks.DEFAULT_HEADER_NAME)
        try:
            event = webhooks.verify_and_parse(headers, body, secret=self.config.webhook_secret,
                                              header_name=header)
        except webhooks.WebhookError as exc:
            raise NotificationRejected(str(exc)) from None
        return Notification(gateway_refs={"order_reference": event.reference})

    # -- inquiries ----------------------------------------------------------------------------------

    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        deadline = _Deadline(self.timeout)
        try:
            order, reply = await self._order(payment, deadline)
        except _NotSent as problem:
            return GatewayResult(Outcome.UNKNOWN, problem.raw, {}, problem.message)
        except Exception as exc:  # noqa: BLE001
            return GatewayResult(Outcome.UNKNOWN, {"error": type(exc).__name__}, {},
                                 "The N-Genius inquiry ended without a readable answer")
        order_reference = self._ref(payment, "order") or ""
        if order is None:
            if reply.status == 404:
                message = t.error_message(reply.body) or "N-Genius has no such order"
                return GatewayResult(Outcome.FAILED, t.sanitise(reply.body) if isinstance(
                    reply.body, dict) else {"status": 404}, {"ref": order_reference}, message)
            return self._unreadable(reply, "inquiry")
        chosen = self._pick_payment(order, self._ref(payment, "payment"))
        raw = t.sanitise(order.model_dump(by_alias=True))
        if chosen is None:
            return GatewayResult(Outcome.PENDING, raw, {"ref": order_reference},
                                 "No payment on this N-Genius order yet")
        outcome = t.payment_outcome(chosen.state)
        message = f"N-Genius payment state {chosen.state or 'unknown'}"
        return GatewayResult(
            outcome, raw, t.payment_params(chosen, order_reference=order_reference, message=message),
            message, {"order_reference": order_reference, "payment_reference": chosen.ref},
        )

    async def inquire_operation(self, request: OperationRequest) -> GatewayResult:
        """What happened to the capture / refund / void sent under ``request.reference_number``?

        N-Genius keeps no merchant reference for captures and refunds, so the operation is
        recognised among the payment's children by kind, amount and currency:
        none → FAILED (not performed); exactly one → its state (SUCCESS, REQUESTED → PENDING,
        failure → FAILED); several → UNKNOWN (a person must decide; the reconciler ends with
        ``needs_review``). When an earlier answer already named the child
        (``request.gateway_refs["capture_reference"/"refund_reference"]``, e.g. a queued refund),
        that child is looked up by id instead. If the request carries ``known_gateway_ids`` (ids
        of children that belong to other PayOps operations; not yet provided by PayOps), those are
        left out first, which removes the ambiguity of an earlier operation with the same amount.
        A void is judged from the payment state (REVERSED or not).
        """
        deadline = _Deadline(self.timeout)
        try:
            order, reply = await self._order(request.payment, deadline)
        except _NotSent as problem:
            return GatewayResult(Outcome.UNKNOWN, problem.raw, {}, problem.message)
        except Exception as exc:  # noqa: BLE001
            return GatewayResult(Outcome.UNKNOWN, {"error": type(exc).__name__}, {},
                                 "The N-Genius inquiry ended without a readable answer")
        if order is None:
            return self._unreadable(reply, "inquiry")
        order_reference = self._ref(request.payment, "order") or ""
        raw = t.sanitise(order.model_dump(by_alias=True))
        payment = self._pick_payment(order, self._ref(request.payment, "payment"))
        if payment is None:
            return GatewayResult(Outcome.FAILED, raw, {"ref": order_reference},
                                 "N-Genius has no such payment: the operation was not performed")
        refs = {"order_reference": order_reference, "payment_reference": payment.ref}
        if request.operation == "void":
            outcome = t.void_outcome(payment.state)
            message = f"N-Genius payment state {payment.state or 'unknown'}"
            return GatewayResult(outcome, raw, t.payment_params(
                payment, order_reference=order_reference, message=message), message, refs)
        try:
            value = t.to_gateway_value(request.amount, request.currency_code, self.exponents)
        except (t.AmountNotRepresentable, UnknownCurrency):
            return GatewayResult(Outcome.FAILED, raw, {},
                                 "The amount cannot be expressed at N-Genius; it was not sent")
        children = payment.captures if request.operation == "capture" else payment.refunds
        kind = request.operation
        # An earlier answer may have named the child already (a queued refund, a capture whose
        # settlement crashed): then it is looked up by its id, with no guessing.
        own = (getattr(request, "gateway_refs", None) or {}).get(f"{kind}_reference")
        if own:
            matches = [c for c in children if c.ref == str(own)]
            if not matches:
                return GatewayResult(Outcome.UNKNOWN, raw, {"ref": order_reference},
                                     f"N-Genius no longer shows {kind} {own}")
        else:
            matches = [c for c in children if self._same_amount(c, value, request)]
            known = getattr(request, "known_gateway_ids", None)
            if known is not None:
                matches = [c for c in matches if c.ref not in known]
        if not matches:
            return GatewayResult(Outcome.FAILED, raw, {"ref": order_reference},
                                 f"N-Genius shows no {kind} of this amount: it was not performed")
        if len(matches) > 1:
            return GatewayResult(Outcome.UNKNOWN, raw, {"ref": order_reference},
                                 f"N-Genius shows {len(matches)} {kind}s of this amount; "
                                 "which one is this operation cannot be told")
        child = matches[0]
        outcome = t.child_outcome(child.state)
        message = f"N-Genius {kind} state {child.state or 'unknown'}"
        refs[f"{kind}_reference"] = child.ref
        return GatewayResult(outcome, raw, t.payment_params(
            payment, order_reference=order_reference, child=child, message=message), message, refs)

    # -- the gateway's own books ---------------------------------------------------------------------

    async def list_operations(self, payment: PaymentRef) -> list[GatewayOperation] | None:
        """The captures and refunds embedded in the order's payment (dashboard ones included),
        each identified by its child id — the ``capture_reference`` / ``refund_reference`` kept in
        gateway_refs — and a void (a REVERSED payment) identified by the payment reference. For a
        payment taken as a purchase (imported "paid") any captures are what made it paid, so
        only refunds are listed. None when the order cannot be read."""
        deadline = _Deadline(self.timeout)
        try:
            order, _reply = await self._order(payment, deadline)
            if order is None:
                return None
            chosen = self._pick_payment(order, self._ref(payment, "payment"))
            if chosen is None:
                return None
            currency = payment.currency_code
            listed: list[GatewayOperation] = []
            kinds: list[tuple[str, list[t.Child]]] = [("refund", chosen.refunds)]
            if payment.operation_mode == "authorize":
                kinds.insert(0, ("capture", chosen.captures))
            for kind, children in kinds:
                for child in children:
                    if not child.ref or child.amount is None:
                        continue
                    if child.amount.currency_code.upper() != currency.upper():
                        continue
                    try:
                        amount = t.from_gateway_value(child.amount.value, currency, self.exponents)
                    except (AmountError, UnknownCurrency, t.AmountNotRepresentable):
                        continue
                    if amount <= 0:
                        continue
                    listed.append(GatewayOperation(kind, amount, t.child_outcome(child.state),
                                                   child.ref))
            if (payment.operation_mode == "authorize" and chosen.state.upper() == "REVERSED"
                    and not chosen.captures and chosen.ref):
                listed.append(GatewayOperation("void", payment.amount, Outcome.SUCCESS,
                                               chosen.ref))
            return listed
        except Exception as exc:  # noqa: BLE001 - a connector must never raise
            log.warning("ngenius operation listing failed: %s", type(exc).__name__)
            return None

    @staticmethod
    def _unreadable(reply: _Reply, what: str) -> GatewayResult:
        raw: dict[str, Any] = {"status": reply.status}
        if reply.problem:
            raw["error"] = reply.problem
        if isinstance(reply.body, dict):
            raw["body"] = t.sanitise(reply.body)
        detail = t.error_message(reply.body)
        return GatewayResult(Outcome.UNKNOWN, raw, {},
                             detail or f"N-Genius did not answer the {what} "
                                       f"({reply.problem or f'HTTP {reply.status}'})")
