"""Network International N-Genius Online: capture, refund, void and inquiry.

Protocol (gateway notes, gateways-mpgs-ngenius-tabby-myfatoorah.md §2):

- Auth in two steps. ``POST /identity/auth/access-token`` with ``Authorization: Basic <api key>``
  (the key as issued) and ``Content-Type: application/vnd.ni-identity.v1+json``, empty body, gives a
  bearer token that lives about five minutes. Every payment call then sends ``Authorization:
  Bearer …`` with the ``application/vnd.ni-payment.v2+json`` media type. PayOps builds a connector
  per call, so tokens are cached per process (``tokens.py``), keyed by (host, SHA-256 of the API
  key) — never the key itself — refreshed before they expire, and re-issued once when a call
  answers 401.
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

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from payops.connectors import kit
from payops.connectors.base import (
    CheckoutRequest,
    CheckoutStart,
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
from payops.connectors.ngenius import decisions as decide
from payops.connectors.ngenius import notifications, tokens
from payops.connectors.ngenius import transformers as t
from payops.money import AmountError, UnknownCurrency, format_minor

log = logging.getLogger(__name__)

SANDBOX_HOSTS = {
    "uae": "https://api-gateway.sandbox.ngenius-payments.com",
    "ksa": "https://api-gateway.sandbox.ksa.ngenius-payments.com",
}
LIVE_HOSTS = {
    "uae": "https://api-gateway.ngenius-payments.com",
    "ksa": "https://api-gateway.ksa.ngenius-payments.com",  # as in N-Genius's own SDK code
}
TOKEN_PATH = "/identity/auth/access-token"
# A STARTED order older than this is expired. N-Genius does not document its payment page's
# lifetime; its own plugin treats STARTED orders as abandoned after 60 minutes.
DEFAULT_PAGE_MINUTES = 60.0
DEFAULT_CANCEL_TEXT = "Back to the merchant"


class _NotSent(Exception):
    """The operation's own request was never sent: the gateway did nothing."""

    def __init__(self, message: str, raw: dict[str, Any]) -> None:
        super().__init__(message)
        self.message = message
        self.raw = raw


class NgeniusConnector(Connector):
    name: ClassVar[str] = "ngenius"
    capabilities: ClassVar[frozenset[str]] = frozenset({"capture", "refund", "void", "inquiry"})
    required_credentials: ClassVar[tuple[str, ...]] = ("api_key", "outlet_reference")
    # Customers pay on N-Genius's payment page (order → _links.payment.href → redirectUrl).
    takes_payments: ClassVar[bool] = True
    attempt_inquiry_minutes: ClassVar[int] = 8
    # The payer's contact details and addresses, and the card beyond its masked number.
    personal_fields: ClassVar[frozenset[str]] = kit.field_set(
        "emailAddress billingAddress shippingAddress phoneNumber cardholderName expiry "
        "customerIp ipAddress payer"
    )

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
        self.client = kit.GatewayClient(
            "ngenius", base_url=self.base_url, timeout=self.timeout, trust_env=False
        )

    # -- the one send-and-parse point --------------------------------------------------------------

    async def aclose(self) -> None:
        await self.client.aclose()

    async def _send(
        self,
        method: str,
        target: str,
        deadline: kit.Deadline,
        *,
        bearer: str | None = None,
        body: dict[str, Any] | None = None,
    ) -> kit.Reply:
        """Send one request and decode its answer. Never raises; never logs headers or bodies."""
        if bearer is None:  # the token exchange
            headers = {"Authorization": f"Basic {kit.credential(self.config, 'api_key')}"}
            return await self.client.request(
                method,
                target,
                content=b"",
                deadline=deadline,
                headers=headers,
                content_type=t.IDENTITY_MEDIA_TYPE,
            )
        headers = {"Authorization": f"Bearer {bearer}", "Accept": t.PAYMENT_MEDIA_TYPE}
        if body is None:
            return await self.client.request(
                method,
                target,
                content=b"",
                deadline=deadline,
                headers=headers,
                content_type=t.PAYMENT_MEDIA_TYPE,
            )
        return await self.client.request(
            method,
            target,
            json=body,
            deadline=deadline,
            headers=headers,
            content_type=t.PAYMENT_MEDIA_TYPE,
        )

    # -- auth ---------------------------------------------------------------------------------------

    async def _token(self, deadline: kit.Deadline, *, stale: str | None = None) -> str:
        api_key = kit.credential(self.config, "api_key")
        if not api_key:
            raise _NotSent("The N-Genius configuration has no api_key", {"error": "configuration"})

        async def exchange() -> tuple[str, float]:
            reply = await self._send("POST", TOKEN_PATH, deadline)
            token = t.parse(t.TokenResponse, reply.body) if reply.ok else None
            if token is None:
                raise _NotSent(self._token_failure(reply), self._token_raw(reply))
            return token.access_token, float(token.expires_in)

        return await tokens.token(
            tokens.token_cache_key(self.base_url, api_key), exchange, stale=stale
        )

    @staticmethod
    def _token_failure(reply: kit.Reply) -> str:
        if reply.status is None:
            return (
                f"N-Genius access-token request failed ({decide.problem(reply)}); nothing was sent"
            )
        detail = t.error_message(reply.body)
        if reply.status in (401, 403):
            return (
                f"N-Genius refused the API key: {detail}"
                if detail
                else ("N-Genius refused the API key")
            )
        return f"N-Genius did not issue an access token (HTTP {reply.status})"

    @staticmethod
    def _token_raw(reply: kit.Reply) -> dict[str, Any]:
        raw: dict[str, Any] = {"stage": "access-token", "status": reply.status}
        if reply.status is None:
            raw["error"] = decide.problem(reply)
        elif isinstance(reply.body, dict):
            raw["body"] = t.REDACTION.scrub(reply.body)
        return raw

    async def _call(
        self, method: str, target: str, deadline: kit.Deadline, body: dict[str, Any] | None = None
    ) -> kit.Reply:
        """A payment-API call with a bearer token, re-issued once if the gateway answers 401."""
        token = await self._token(deadline)
        reply = await self._send(method, target, deadline, bearer=token, body=body)
        if reply.status == 401:
            token = await self._token(deadline, stale=token)
            reply = await self._send(method, target, deadline, bearer=token, body=body)
        return reply

    # -- addressing ---------------------------------------------------------------------------------

    def _outlet(self, payment: PaymentRef) -> str:
        outlet = payment.gateway_refs.get("outlet_reference") or self.config.credentials.get(
            "outlet_reference"
        )
        if not outlet:
            raise _NotSent(
                "The N-Genius configuration has no outlet_reference", {"error": "configuration"}
            )
        return str(outlet)

    def _order_path(self, payment: PaymentRef) -> str:
        order = decide.payment_ref(payment, "order")
        if not order:
            raise _NotSent(
                "The payment has no N-Genius order_reference",
                {"error": "missing gateway reference"},
            )
        return (
            f"/transactions/outlets/{quote(self._outlet(payment), safe='')}"
            f"/orders/{quote(str(order), safe='')}"
        )

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

    async def _order(
        self, payment: PaymentRef, deadline: kit.Deadline
    ) -> tuple[t.Order | None, kit.Reply]:
        reply = await self._call("GET", self._order_path(payment), deadline)
        ok = reply.status is not None and 200 <= reply.status < 300
        order = t.parse(t.Order, reply.body) if ok else None
        return order, reply

    async def _payment_for_operation(
        self, request: OperationRequest, deadline: kit.Deadline
    ) -> tuple[t.Order, t.Payment]:
        """The order and payment, looked up before an operation is sent (failures: not sent)."""
        order, reply = await self._order(request.payment, deadline)
        if order is None:
            detail = t.error_message(reply.body)
            what = decide.problem(reply) or (
                f"HTTP {reply.status}" if reply.status else "no answer"
            )
            raise _NotSent(
                detail or f"N-Genius order lookup failed ({what}); nothing was sent",
                {
                    "stage": "order-lookup",
                    "status": reply.status,
                    **(
                        {"body": t.REDACTION.scrub(reply.body)}
                        if isinstance(reply.body, dict)
                        else {}
                    ),
                    **({"error": decide.problem(reply)} if decide.problem(reply) else {}),
                },
            )
        payment = decide.pick_payment(order, decide.payment_ref(request.payment, "payment"))
        if payment is None:
            raise _NotSent(
                "N-Genius has no such payment on this order",
                {
                    "stage": "order-lookup",
                    "order": t.REDACTION.scrub(order.model_dump(by_alias=True, exclude_unset=True)),
                },
            )
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
        deadline = kit.Deadline(self.timeout)
        try:
            return await perform(request, deadline)
        except _NotSent as refusal:
            return GatewayResult(
                Outcome.FAILED, refusal.raw, {"pg_message": refusal.message}, refusal.message
            )
        except Exception as exc:  # noqa: BLE001 - a connector bug must never look like an answer
            log.warning(
                "ngenius %s %s: unexpected %s",
                request.operation,
                request.reference_number,
                type(exc).__name__,
            )
            return GatewayResult(
                Outcome.UNKNOWN,
                {"error": type(exc).__name__},
                {},
                "The N-Genius call ended without a readable answer",
            )

    async def _capture(self, request: OperationRequest, deadline: kit.Deadline) -> GatewayResult:
        value = self._value(request)
        body = t.amount_request(request.amount, request.currency_code, self.exponents).wire()
        payment_reference = decide.payment_ref(request.payment, "payment")
        if payment_reference:
            target = f"{self._payment_path(request.payment, payment_reference)}/captures"
        else:
            _, payment = await self._payment_for_operation(request, deadline)
            target = self._same_origin(payment.href(t.CAPTURES)) or (
                f"{self._payment_path(request.payment, payment.ref)}/captures"
            )
        reply = await self._call("POST", target, deadline, body)
        return decide.result(request, reply, value)

    async def _refund(self, request: OperationRequest, deadline: kit.Deadline) -> GatewayResult:
        value = self._value(request)
        body = t.amount_request(request.amount, request.currency_code, self.exponents).wire()
        _, payment = await self._payment_for_operation(request, deadline)
        payment_path = self._payment_path(request.payment, payment.ref)
        captures = [c for c in payment.captures if t.child_outcome(c.state) == Outcome.SUCCESS]
        own_link = self._same_origin(payment.href(t.REFUNDS))
        if not captures or (
            own_link and payment.state.upper() in ("PURCHASED", "PARTIALLY_REFUNDED")
        ):
            # Single-stage PURCHASE: only through a link N-Genius offers. There is no documented
            # payment-level refund path to build when it offers none.
            if own_link:
                return decide.result(
                    request, await self._call("POST", own_link, deadline, body), value
                )
            cancel_link = self._same_origin(payment.href(t.CANCEL))
            if cancel_link and decide.reverses_whole_purchase(request, payment, value):
                # cnp:cancel reverses the whole purchase: one full refund, done when the payment
                # reads REVERSED. Never for part of it.
                reply = await self._call("PUT", cancel_link, deadline)
                return decide.result(request, reply, value, reversal=True)
            reason = "N-Genius offered no cnp:refund link for this payment; nothing was sent"
            if cancel_link:
                reason += (
                    " (its cnp:cancel reverses the whole purchase, so it is used only for a "
                    "refund of the full amount with no other refund)"
                )
            raise _NotSent(
                reason,
                {"stage": "refund", "payment_state": payment.state, "links": sorted(payment.links)},
            )
        # Refunds are made against one capture. Newest first, among those large enough; a 4xx
        # refusal means nothing was done, so the next capture may be tried.
        candidates = [c for c in reversed(captures) if c.amount and c.amount.value >= value]
        if not candidates:
            raise _NotSent(
                f"No single N-Genius capture covers {format_minor(request.amount, request.currency_code)}"
                f" {request.currency_code}",
                {"stage": "refund", "captures": [c.model_dump(by_alias=True) for c in captures]},
            )
        reply = kit.Reply(None)
        for index, capture in enumerate(candidates):
            target = self._capture_refund_target(capture, payment_path)
            reply = await self._call("POST", target, deadline, body)
            refused = (
                reply.status is not None
                and 400 <= reply.status < 500
                and reply.status not in (401, 408, 429)
            )
            if not (refused and index + 1 < len(candidates)):
                break
        return decide.result(request, reply, value)

    def _capture_refund_target(self, capture: t.Child, payment_path: str) -> str:
        """The capture's ``cnp:refund`` link, else its self link + ``/refund``, else built."""
        link = self._same_origin(capture.href(t.REFUNDS))
        if link:
            return link
        own = self._same_origin(capture.href("self"))
        if own:
            return own.rstrip("/") + "/refund"
        return f"{payment_path}/captures/{quote(capture.ref, safe='')}/refund"

    async def _void(self, request: OperationRequest, deadline: kit.Deadline) -> GatewayResult:
        payment_reference = decide.payment_ref(request.payment, "payment")
        if payment_reference:
            target = f"{self._payment_path(request.payment, payment_reference)}/cancel"
        else:
            _, payment = await self._payment_for_operation(request, deadline)
            target = self._same_origin(payment.href(t.CANCEL)) or (
                f"{self._payment_path(request.payment, payment.ref)}/cancel"
            )
        reply = await self._call("PUT", target, deadline)
        return decide.result(request, reply, None)

    # -- payment acceptance -------------------------------------------------------------------------

    def _orders_path(self, outlet: str) -> str:
        return f"/transactions/outlets/{quote(outlet, safe='')}/orders"

    def _order_action(self, operation_mode: str) -> str:
        if operation_mode == "authorize":
            return t.ORDER_ACTIONS["authorize"]
        chosen = kit.text_option(self.config, "purchase_action", "PURCHASE").upper()
        return chosen if chosen in t.PURCHASE_ACTIONS else t.ORDER_ACTIONS["purchase"]

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutStart:
        """Create an N-Genius order for the attempt and send the browser to its payment page.

        An order already created for this attempt is reused. N-Genius documents no way to find
        an order by ``merchantOrderReference``, so after a lost reply (``retry``) a new order is
        created: the lost one's payment page went to nobody, so only the new one can be paid
        (the lost order stays STARTED)."""
        deadline = kit.Deadline(self.timeout)
        attempt = request.payment
        try:
            if decide.payment_ref(attempt, "order"):
                order, reply = await self._order(attempt, deadline)
                if order is None:
                    return CheckoutStart(
                        Outcome.UNKNOWN,
                        raw=self._scrubbed(reply),
                        message="N-Genius's order for this attempt could not be read",
                    )
                return self._reuse(request, order)
            return await self._create_order(request, deadline)
        except _NotSent as refusal:
            return CheckoutStart(Outcome.FAILED, raw=refusal.raw, message=refusal.message)
        except Exception as exc:  # noqa: BLE001 - a connector never raises
            log.warning(
                "ngenius start_checkout %s: unexpected %s",
                attempt.reference_number,
                type(exc).__name__,
            )
            return CheckoutStart(
                Outcome.UNKNOWN,
                raw={"error": type(exc).__name__},
                message="The N-Genius order request ended without an answer",
            )

    def _scrubbed(self, reply: kit.Reply) -> dict[str, Any]:
        """A reply as kept with the attempt: no secrets, no payer's personal data."""
        if isinstance(reply.body, dict):
            return kit.redact(t.REDACTION.scrub(reply.body), self.personal_fields)
        return {
            "status": reply.status,
            **({"error": decide.problem(reply)} if decide.problem(reply) else {}),
        }

    async def _create_order(
        self, request: CheckoutRequest, deadline: kit.Deadline
    ) -> CheckoutStart:
        attempt = request.payment
        email = (request.customer.get("email") or "").strip() or kit.text_option(
            self.config, "default_email"
        )
        if not email:
            message = (
                "N-Genius needs the payer's email address: the session has none and the "
                "configuration sets no default_email"
            )
            return CheckoutStart(Outcome.FAILED, raw={"error": "email"}, message=message)
        try:
            body = t.order_request(
                action=self._order_action(attempt.operation_mode),
                minor=attempt.amount,
                currency_code=attempt.currency_code,
                reference=attempt.reference_number,
                email=email,
                language=request.language,
                redirect_url=request.return_url,
                cancel_url=request.cancel_url,
                cancel_text=kit.text_option(self.config, "cancel_text", DEFAULT_CANCEL_TEXT),
                customer=request.customer,
                overrides=self.exponents,
            ).wire()
        except (t.AmountNotRepresentable, UnknownCurrency, ValueError) as exc:
            message = str(exc) or "The amount cannot be sent to N-Genius"
            return CheckoutStart(Outcome.FAILED, raw={"error": "amount"}, message=message)
        outlet = self._outlet(attempt)
        reply = await self._call("POST", self._orders_path(outlet), deadline, body)
        raw = self._scrubbed(reply)
        if reply.status is None and not reply.delivered:
            return CheckoutStart(
                Outcome.FAILED,
                raw=raw,
                message=(
                    f"N-Genius could not be reached ({decide.problem(reply)}); nothing was sent"
                ),
            )
        if reply.outcome_unknown:
            return CheckoutStart(
                Outcome.UNKNOWN,
                raw=raw,
                message=(
                    f"N-Genius did not confirm the order ({decide.problem(reply) or reply.status})"
                ),
            )
        if reply.status is None or reply.status >= 300:
            message = t.error_message(reply.body) or (
                f"N-Genius refused the order (HTTP {reply.status})"
            )
            return CheckoutStart(Outcome.FAILED, raw=raw, message=message)
        order = t.parse(t.Order, reply.body)
        if order is None or not order.reference:
            return CheckoutStart(
                Outcome.UNKNOWN, raw=raw, message="N-Genius answered the order without an order id"
            )
        refs = {"order_reference": order.reference, "outlet_reference": outlet}
        page = order.payment_page
        if not self._page_url(page):
            return CheckoutStart(
                Outcome.FAILED,
                gateway_refs=refs,
                raw=raw,
                message="N-Genius's answer has no payment page link",
            )
        return CheckoutStart(
            Outcome.SUCCESS, "GET", page, gateway_refs={**refs, "payment_page": page}, raw=raw
        )

    def _page_url(self, url: str) -> bool:
        parts = urlsplit(url or "")
        if not parts.netloc:
            return False
        # A configuration pointed at a local fake (``base_url``) may use plain http.
        return parts.scheme == "https" or (
            parts.scheme == "http" and bool(kit.text_option(self.config, "base_url"))
        )

    def _reuse(self, request: CheckoutRequest, order: t.Order) -> CheckoutStart:
        """A start of an attempt that already has an order (Pay pressed again)."""
        refs = dict(request.payment.gateway_refs or {})
        judged = self._judge(order, request.payment)
        page = kit.ref(refs, "payment_page")
        if judged.outcome == Outcome.PENDING and page:
            return CheckoutStart(Outcome.SUCCESS, "GET", page, gateway_refs=refs)
        if judged.outcome == Outcome.SUCCESS:
            parts = urlsplit(request.return_url)
            query = urlencode(
                [*parse_qsl(parts.query, keep_blank_values=True), ("ref", order.reference or "")]
            )
            return CheckoutStart(
                Outcome.SUCCESS, "GET", urlunsplit(parts._replace(query=query)), gateway_refs=refs
            )
        return CheckoutStart(
            Outcome.FAILED, gateway_refs=refs, raw=judged.raw, message=judged.message
        )

    async def confirm_return(self, payment: PaymentRef, params: Mapping[str, str]) -> GatewayResult:
        """The browser came back (``ref``, unsigned: only a hint). The attempt is settled from
        the order PayOps created for it (``GET …/orders/{reference}``); a returned ``ref`` is
        read only when none is stored, and trusted only if the order's
        ``merchantOrderReference`` is this attempt's reference."""
        via_cancel = str(params.get("outcome") or "") == "cancel"
        if decide.payment_ref(payment, "order"):
            deadline = kit.Deadline(self.timeout)
            try:
                order, reply = await self._order(payment, deadline)
            except _NotSent as problem:
                return GatewayResult(Outcome.UNKNOWN, problem.raw, {}, problem.message)
            if order is None:
                return decide.unreadable(reply, "order read")
            return self._judge(order, payment, via_cancel=via_cancel)
        hint = str(params.get("ref") or "").strip()
        message = "No N-Genius order of this attempt is known yet"
        if hint and len(hint) <= 64:
            guess = replace(payment, gateway_refs={**payment.gateway_refs, "order_reference": hint})
            deadline = kit.Deadline(self.timeout)
            try:
                order, _reply = await self._order(guess, deadline)
            except _NotSent:
                order = None
            if order is not None and decide.order_of_attempt(order, payment):
                return self._judge(order, guess, via_cancel=via_cancel)
            message = "The returned N-Genius order reference could not be confirmed"
        return GatewayResult(Outcome.PENDING, {}, {"pg_message": message}, message)

    # -- incoming notifications ---------------------------------------------------------------------

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """N-Genius tags its webhooks with the static custom header configured in its portal
        (name: option ``webhook_header``; value: the configuration's webhook secret). The order
        reference it names is matched against the stored ``order_reference``."""
        header = str(self.config.options.get("webhook_header") or notifications.DEFAULT_HEADER_NAME)
        try:
            event = notifications.verify_and_parse(
                headers, body, secret=self.config.webhook_secret, header_name=header
            )
        except notifications.WebhookError as exc:
            raise NotificationRejected(str(exc)) from None
        return Notification(gateway_refs={"order_reference": event.reference})

    # -- inquiries ----------------------------------------------------------------------------------

    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        deadline = kit.Deadline(self.timeout)
        try:
            order, reply = await self._order(payment, deadline)
        except _NotSent as problem:
            return GatewayResult(Outcome.UNKNOWN, problem.raw, {}, problem.message)
        except Exception as exc:  # noqa: BLE001
            return GatewayResult(
                Outcome.UNKNOWN,
                {"error": type(exc).__name__},
                {},
                "The N-Genius inquiry ended without a readable answer",
            )
        order_reference = decide.payment_ref(payment, "order") or ""
        if order is None:
            if reply.status == 404:
                message = t.error_message(reply.body) or "N-Genius has no such order"
                return GatewayResult(
                    Outcome.FAILED,
                    t.REDACTION.scrub(reply.body)
                    if isinstance(reply.body, dict)
                    else {"status": 404},
                    {"ref": order_reference},
                    message,
                )
            return decide.unreadable(reply, "inquiry")
        return self._judge(order, payment)

    def _judge(
        self, order: t.Order, attempt: PaymentRef, *, via_cancel: bool = False
    ) -> GatewayResult:
        raw = t.REDACTION.scrub(order.model_dump(by_alias=True, exclude_unset=True))
        return decide.attempt_result(
            order,
            attempt,
            raw,
            via_cancel=via_cancel,
            overrides=self.exponents,
            page_minutes=kit.float_option(
                self.config, "payment_page_minutes", DEFAULT_PAGE_MINUTES
            ),
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
        deadline = kit.Deadline(self.timeout)
        try:
            order, reply = await self._order(request.payment, deadline)
        except _NotSent as problem:
            return GatewayResult(Outcome.UNKNOWN, problem.raw, {}, problem.message)
        except Exception as exc:  # noqa: BLE001
            return GatewayResult(
                Outcome.UNKNOWN,
                {"error": type(exc).__name__},
                {},
                "The N-Genius inquiry ended without a readable answer",
            )
        if order is None:
            return decide.unreadable(reply, "inquiry")
        order_reference = decide.payment_ref(request.payment, "order") or ""
        raw = t.REDACTION.scrub(order.model_dump(by_alias=True, exclude_unset=True))
        payment = decide.pick_payment(order, decide.payment_ref(request.payment, "payment"))
        if payment is None:
            return GatewayResult(
                Outcome.FAILED,
                raw,
                {"ref": order_reference},
                "N-Genius has no such payment: the operation was not performed",
            )
        refs = {"order_reference": order_reference, "payment_reference": payment.ref}
        if request.operation == "void":
            outcome = t.void_outcome(payment.state)
            message = f"N-Genius payment state {payment.state or 'unknown'}"
            return GatewayResult(
                outcome,
                raw,
                t.payment_params(payment, order_reference=order_reference, message=message),
                message,
                refs,
            )
        try:
            value = t.to_gateway_value(request.amount, request.currency_code, self.exponents)
        except (t.AmountNotRepresentable, UnknownCurrency):
            return GatewayResult(
                Outcome.FAILED,
                raw,
                {},
                "The amount cannot be expressed at N-Genius; it was not sent",
            )
        if (
            request.operation == "refund"
            and payment.state.upper() == "REVERSED"
            and decide.reverses_whole_purchase(request, payment, value)
        ):
            # A full refund sent as the purchase's reversal (cnp:cancel) shows as the payment's
            # state, not as a refund child.
            message = "Purchase reversed (full refund)"
            return GatewayResult(
                Outcome.SUCCESS,
                raw,
                t.payment_params(payment, order_reference=order_reference, message=message),
                message,
                {**refs, "reversal": True},
            )
        return decide.match_operation(request, payment, value, raw, order_reference, refs)

    # -- the gateway's own books ---------------------------------------------------------------------

    async def list_operations(self, payment: PaymentRef) -> list[GatewayOperation] | None:
        """The captures and refunds embedded in the order's payment (dashboard ones included),
        each identified by its child id — the ``capture_reference`` / ``refund_reference`` kept in
        gateway_refs — and a void (a REVERSED payment) identified by the payment reference. For a
        payment taken as a purchase (imported "paid") any captures are what made it paid, so
        only refunds are listed. None when the order cannot be read."""
        deadline = kit.Deadline(self.timeout)
        try:
            order, _reply = await self._order(payment, deadline)
            if order is None:
                return None
            chosen = decide.pick_payment(order, decide.payment_ref(payment, "payment"))
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
                    listed.append(
                        GatewayOperation(kind, amount, t.child_outcome(child.state), child.ref)
                    )
            if (
                payment.operation_mode == "authorize"
                and chosen.state.upper() == "REVERSED"
                and not chosen.captures
                and chosen.ref
            ):
                listed.append(GatewayOperation("void", payment.amount, Outcome.SUCCESS, chosen.ref))
            return listed
        except Exception as exc:  # noqa: BLE001 - a connector must never raise
            log.warning("ngenius operation listing failed: %s", type(exc).__name__)
            return None
