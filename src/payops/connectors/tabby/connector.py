"""Tabby (buy now, pay later) connector: capture, refund, void (Tabby's ``close``) and inquiry.

Protocol (docs.tabby.ai, summarised in the gateway protocols spec, section 3):

- Hosts: ``https://api.tabby.ai`` (UAE, Kuwait) and ``https://api.tabby.sa`` (KSA). Sandbox and
  production share the host; the secret key decides (``sk_test_…`` test, other ``sk_…`` live).
  The region comes from ``options["region"]`` (``ai`` | ``sa``), else from the payment currency
  (SAR → ``sa``). ``options["base_url"]`` overrides the host (tests point it at a fake).
- Auth: ``Authorization: Bearer {secret_key}``.
- Capture ``POST /api/v2/payments/{id}/captures`` and refund ``POST …/refunds`` take
  ``{"amount": "<major units>", "reference_id": …}``; ``reference_id`` is Tabby's idempotency key
  and carries PayOps's operation reference number, so the operation can be found again in the
  payment's ``captures[]`` / ``refunds[]``. Both answer 200 with the whole payment.
- Void is ``POST …/close`` with no body. Close also succeeds after a partial capture (it then
  releases only the remainder), which is not a void, so the connector reads the payment first and
  closes only an ``AUTHORIZED`` payment without captures.
- Inquiry is ``GET /api/v2/payments/{id}``.
- Errors: ``{"status": "error", "errorType": …, "error": …}`` (sometimes ``errors[]``); the
  connector branches on the HTTP status only and shows ``error`` as the gateway's message.
- Refunds: merchants with Tabby's "Delayed Refunds" execute a refund 24 h after the call (it can be
  cancelled meanwhile). Set ``options["delayed_refunds"] = true`` for such an account: refunds are
  then answered PENDING (queued) and become final once the delay
  (``options["delayed_refund_seconds"]``, default 86400) has passed with the refund still listed.

A connector never raises for a gateway problem: transport errors, timeouts, 5xx, undocumented
statuses and unparsable replies come back as ``Outcome.UNKNOWN``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
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
from payops.connectors.tabby import notifications
from payops.connectors.tabby.decisions import (
    MSG_UNPARSABLE,
    attempt_result,
    authorized_as_asked,
    capture_pending,
    captured_result,
    delay_passed,
    movement_result,
    needs_capture,
    not_ok,
    not_this_attempt,
    params,
    pick_for_attempt,
    unknown,
    void_state,
    void_success,
)
from payops.connectors.tabby.transformers import (
    MERCHANT_CODE_BY_CURRENCY,
    MerchantUrls,
    Movement,
    TabbyPayment,
    amount_minor,
    capture_request,
    checkout_request,
    parse_payment,
    parse_payment_list,
    parse_session,
    refund_request,
)

log = logging.getLogger(__name__)

HOSTS = {"ai": "https://api.tabby.ai", "sa": "https://api.tabby.sa"}
PAYMENTS_PATH = "/api/v2/payments"
TEST_KEY_PREFIX = "sk_test_"
DEFAULT_REFUND_DELAY_SECONDS = 24 * 3600
USER_AGENT = "PayOps-Tabby/1"

MSG_NO_PAYMENT_ID = "No Tabby payment id is recorded for this payment"
MSG_LOOKUP_FAILED = "Tabby's payment list could not be read"
CHECKOUT_PATH = "/api/v2/checkout"
# How far back a payment is looked for by the attempt's reference (a lost creation reply).
DEFAULT_LOOKUP_HOURS = 48.0
LOOKUP_PAGE_SIZE = 20  # Tabby's maximum
LOOKUP_MAX_PAGES = 25
PAYMENT_ID_SHAPE = re.compile(r"^[0-9A-Za-z-]{8,64}$")


class TabbyConnector(Connector):
    name: ClassVar[str] = "tabby"
    capabilities: ClassVar[frozenset[str]] = frozenset({"capture", "refund", "void", "inquiry"})
    required_credentials: ClassVar[tuple[str, ...]] = ("secret_key",)
    # Customers pay on Tabby's hosted page (checkout session → web_url → merchant_urls).
    takes_payments: ClassVar[bool] = True
    attempt_inquiry_minutes: ClassVar[int] = 16
    # The buyer, their addresses and purchase history, echoed in every payment reply.
    personal_fields: ClassVar[frozenset[str]] = kit.field_set(
        "buyer buyer_history order_history shipping_address address customer email phone "
        "dob attachment"
    )

    def __init__(self, config: ConnectorConfig) -> None:
        # Never raises: configuration problems are reported as a FAILED result at call time.
        super().__init__(config)
        # The host follows the payment's currency (region), so each call names its full URL.
        self.client = kit.GatewayClient("tabby", timeout=config.timeout_seconds)

    # -- configuration ----------------------------------------------------------------------
    @property
    def _secret_key(self) -> str:
        return kit.credential(self.config, "secret_key")

    def _base_url(self, currency_code: str) -> str | None:
        region = (
            kit.text_option(self.config, "region")
            or kit.credential(self.config, "region")
            or ("sa" if (currency_code or "").upper() == "SAR" else "ai")
        )
        return kit.base_url(self.config, HOSTS.get(str(region).lower()))

    def _configuration_problem(self, currency_code: str) -> str | None:
        key = self._secret_key
        if not key:
            return "The Tabby secret key is not configured"
        if self._base_url(currency_code) is None:
            return "The Tabby region must be 'ai' or 'sa'"
        is_test_key = key.startswith(TEST_KEY_PREFIX)
        if self.config.is_sandbox and not is_test_key:
            return "This sandbox configuration holds a live Tabby secret key"
        if not self.config.is_sandbox and is_test_key:
            return "This live configuration holds a Tabby test secret key"
        return None

    def _refund_delay(self) -> float | None:
        """Seconds a refund stays queued with Delayed Refunds; None without them."""
        if not kit.flag_option(self.config, "delayed_refunds"):
            return None
        return kit.float_option(self.config, "delayed_refund_seconds", DEFAULT_REFUND_DELAY_SECONDS)

    # -- the one send-and-parse point -------------------------------------------------------
    async def _send(
        self, method: str, currency_code: str, path: str, body: dict[str, Any] | None = None
    ) -> kit.Reply:
        headers = {
            "Authorization": f"Bearer {self._secret_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        return await self.client.request(
            method, f"{self._base_url(currency_code)}{path}", json=body, headers=headers
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        header = str(self.config.options.get("webhook_header") or notifications.DEFAULT_HEADER_NAME)
        if not notifications.verify_notification(headers, self.config.webhook_secret, header):
            raise NotificationRejected("notification is not authentic")
        try:
            notice = notifications.parse_notification(body)
        except notifications.TabbyWebhookError as exc:
            raise NotificationRejected(str(exc)) from None
        return Notification(gateway_refs={"payment_id": notice.payment_id})

    # -- helpers ----------------------------------------------------------------------------
    @staticmethod
    def _payment_id(payment: PaymentRef) -> str | None:
        refs = payment.gateway_refs or {}
        value = refs.get("payment_id")
        return value.strip() if isinstance(value, str) and value.strip() else None

    @staticmethod
    def _path(payment_id: str, suffix: str = "") -> str:
        return f"{PAYMENTS_PATH}/{quote(payment_id, safe='')}{suffix}"

    @staticmethod
    def _refused(message: str, reference: str, raw: dict[str, Any] | None = None) -> GatewayResult:
        """Refused before anything was sent to Tabby."""
        return kit.not_sent(
            message,
            raw or {"error": message},
            {"ref": reference, "result": "error", "pg_message": message},
        )

    def _precheck(
        self, payment: PaymentRef, reference: str
    ) -> tuple[str | None, GatewayResult | None]:
        problem = self._configuration_problem(payment.currency_code)
        if problem:
            return None, self._refused(problem, reference)
        payment_id = self._payment_id(payment)
        if payment_id is None:
            return None, self._refused(MSG_NO_PAYMENT_ID, reference)
        return payment_id, None

    # -- operations -------------------------------------------------------------------------
    async def capture(self, request: OperationRequest) -> GatewayResult:
        return await self._move(
            request,
            "/captures",
            capture_request(request.amount, request.currency_code, request.reference_number).body(),
        )

    async def refund(self, request: OperationRequest) -> GatewayResult:
        return await self._move(
            request,
            "/refunds",
            refund_request(request.amount, request.currency_code, request.reference_number).body(),
        )

    async def _move(
        self, request: OperationRequest, suffix: str, body: dict[str, Any]
    ) -> GatewayResult:
        reference = request.reference_number
        payment_id, refused = self._precheck(request.payment, reference)
        if refused is not None:
            return refused
        assert payment_id is not None
        reply = await self._send(
            "POST", request.currency_code, self._path(payment_id, suffix), body
        )
        if reply.status != 200:
            return not_ok(reply, reference)
        payment = parse_payment(reply.body)
        if payment is None:
            return unknown(reply, reference, MSG_UNPARSABLE)
        entry = (
            payment.capture(reference)
            if request.operation == "capture"
            else payment.refund(reference)
        )
        return movement_result(
            request,
            payment,
            entry,
            reply.raw(),
            absent=Outcome.UNKNOWN,
            refund_delay=self._refund_delay(),
        )

    async def void(self, request: OperationRequest) -> GatewayResult:
        reference = request.reference_number
        payment_id, refused = self._precheck(request.payment, reference)
        if refused is not None:
            return refused
        assert payment_id is not None
        currency = request.currency_code
        # Read first: close after a capture releases only the remainder, which is not a void.
        before = await self._send("GET", currency, self._path(payment_id))
        if before.status != 200:
            return not_ok(before, reference)
        payment = parse_payment(before.body)
        if payment is None:
            return unknown(before, reference, MSG_UNPARSABLE)
        judged = void_state(payment, before.raw(), reference)
        if judged is not None:
            return judged
        reply = await self._send("POST", currency, self._path(payment_id, "/close"))
        if reply.status == 200:
            closed = parse_payment(reply.body)
            if closed is None:
                return unknown(reply, reference, MSG_UNPARSABLE)
            if closed.normalised_status == "CLOSED" and not closed.captures:
                return void_success(closed, reply.raw(), reference, "Approved")
            return unknown(
                reply, reference, f"Tabby answered the close with status {closed.status}"
            )
        refusal = not_ok(reply, reference)
        if reply.status == 400:
            # e.g. "already closed" when someone closed it meanwhile: the payment says whether
            # the authorization is gone without a capture, which is what a void wants.
            after = await self._send("GET", currency, self._path(payment_id))
            now = parse_payment(after.body) if after.status == 200 else None
            if now is not None and now.normalised_status == "CLOSED" and not now.captures:
                return void_success(now, after.raw(), reference, "Already closed at Tabby")
        return refusal

    # -- payment acceptance -----------------------------------------------------------------
    def _merchant_code(self, currency_code: str) -> str:
        return (
            kit.text_option(self.config, "merchant_code")
            or kit.credential(self.config, "merchant_code", strip=True)
            or MERCHANT_CODE_BY_CURRENCY.get(currency_code.upper(), "")
        )

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutStart:
        """Create a Tabby checkout session for the attempt and send the browser to its
        ``web_url``. A session already created for this attempt is reused; after a lost reply
        (``retry``) the attempt's payment is looked up by its reference first, and one that
        Tabby already authorized is adopted instead of creating another."""
        attempt = request.payment
        currency = attempt.currency_code.upper()
        problem = self._configuration_problem(currency)
        if problem is None and not self._merchant_code(currency):
            problem = f"No Tabby merchant code is configured for {currency}"
        if problem:
            return CheckoutStart(Outcome.FAILED, raw={"error": problem}, message=problem)
        known = self._payment_id(attempt)
        if known is not None:
            reply = await self._send("GET", currency, self._path(known))
            found = parse_payment(reply.body) if reply.status == 200 else None
            if found is None:
                return CheckoutStart(
                    Outcome.UNKNOWN,
                    raw=reply.raw(),
                    message="Tabby's payment for this attempt could not be read",
                )
            return self._reuse(request, found, reply.raw())
        if request.retry:
            found, listing = await self._find_by_reference(attempt)
            if listing is None or listing.status != 200:
                return CheckoutStart(
                    Outcome.UNKNOWN, raw=listing.raw() if listing else {}, message=MSG_LOOKUP_FAILED
                )
            if found is not None and found.normalised_status in ("AUTHORIZED", "CLOSED"):
                return self._to_return(request, found, {"lookup": "reference"})
            # Nothing, or a session whose web_url never reached anyone (it expires by itself):
            # a new session is the only one the customer can pay.
        return await self._create_session(request)

    async def _create_session(self, request: CheckoutRequest) -> CheckoutStart:
        attempt = request.payment
        currency = attempt.currency_code.upper()
        body = checkout_request(
            minor=attempt.amount,
            currency_code=currency,
            reference=attempt.reference_number,
            description=request.description,
            customer=dict(request.customer),
            merchant_code=self._merchant_code(currency),
            language=request.language,
            urls=MerchantUrls(
                success=request.return_url, cancel=request.cancel_url, failure=request.failure_url
            ),
            now=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        ).body()
        reply = await self._send("POST", currency, CHECKOUT_PATH, body)
        # Kept with the attempt: without the session token and the buyer's personal data.
        raw = kit.redact(reply.raw(kit.redaction(drop=("token",)).scrub), self.personal_fields)
        if reply.outcome_unknown or reply.status is None:
            return CheckoutStart(
                Outcome.UNKNOWN,
                raw=raw,
                message=(
                    "Tabby did not answer the checkout request"
                    if reply.status is None
                    else f"Tabby answered the checkout request with HTTP {reply.status}"
                ),
            )
        if reply.status != 200:
            refused = not_ok(reply, attempt.reference_number)
            return CheckoutStart(Outcome.FAILED, raw=raw, message=refused.message)
        session = parse_session(reply.body)
        if session is None:
            return CheckoutStart(Outcome.UNKNOWN, raw=raw, message=MSG_UNPARSABLE)
        refs = {"session_id": session.id, "payment_id": session.payment_id}
        refs = {key: value for key, value in refs.items() if value}
        web_url = session.web_url
        if session.status.lower() != "created" or not web_url:
            # Tabby does not say why (its rejection reasons are not disclosed to the buyer).
            return CheckoutStart(
                Outcome.FAILED,
                gateway_refs=refs,
                raw=raw,
                message="Tabby cannot offer this payment to the customer",
            )
        if not self._own_page(web_url):
            return CheckoutStart(
                Outcome.FAILED,
                gateway_refs=refs,
                raw=raw,
                message="Tabby's payment page address is not an https URL",
            )
        return CheckoutStart(
            Outcome.SUCCESS, "GET", web_url, gateway_refs={**refs, "web_url": web_url}, raw=raw
        )

    def _own_page(self, url: str) -> bool:
        parts = urlsplit(url)
        if not parts.netloc:
            return False
        # A configuration pointed at a local fake (``base_url``) may use plain http.
        return parts.scheme == "https" or (
            parts.scheme == "http" and bool(kit.text_option(self.config, "base_url"))
        )

    def _reuse(
        self, request: CheckoutRequest, found: TabbyPayment, raw: dict[str, Any]
    ) -> CheckoutStart:
        """A start of an attempt that already has a Tabby payment (the customer pressed Pay
        again): the same page while it can still be paid, the return when it was paid."""
        refs = dict(request.payment.gateway_refs or {})
        status = found.normalised_status
        if status in ("AUTHORIZED", "CLOSED"):
            return self._to_return(request, found, raw)
        web_url = kit.ref(refs, "web_url")
        if status == "CREATED" and web_url:
            return CheckoutStart(Outcome.SUCCESS, "GET", web_url, gateway_refs=refs, raw=raw)
        return CheckoutStart(
            Outcome.FAILED,
            gateway_refs=refs,
            raw=raw,
            message=f"This attempt's Tabby payment is {found.status}",
        )

    @staticmethod
    def _to_return(
        request: CheckoutRequest, found: TabbyPayment, raw: dict[str, Any]
    ) -> CheckoutStart:
        """Send the browser straight back to PayOps's return, as Tabby would after a payment."""
        parts = urlsplit(request.return_url)
        query = urlencode(
            [*parse_qsl(parts.query, keep_blank_values=True), ("payment_id", found.id)]
        )
        return CheckoutStart(
            Outcome.SUCCESS,
            "GET",
            urlunsplit(parts._replace(query=query)),
            gateway_refs={"payment_id": found.id},
            raw=raw,
        )

    async def confirm_return(self, payment: PaymentRef, params: Mapping[str, str]) -> GatewayResult:
        """The browser came back with ``payment_id`` (unsigned: only a hint). The attempt is
        settled from ``GET /api/v2/payments/{id}`` of the payment stored for it; a returned id
        is read only when none is stored, and trusted only if that payment's
        ``order.reference_id`` is this attempt's reference."""
        reference = payment.reference_number
        via_cancel = str(params.get("outcome") or "") == "cancel"
        problem = self._configuration_problem(payment.currency_code)
        if problem:
            return kit.unknown(
                problem,
                {"error": problem},
                {"ref": reference, "result": "unknown", "pg_message": problem},
            )
        stored = self._payment_id(payment)
        if stored is not None:
            return await self._settle(payment, stored, via_cancel=via_cancel)
        hint = str(params.get("payment_id") or "").strip()
        if hint and PAYMENT_ID_SHAPE.match(hint):
            result = await self._settle(payment, hint, via_cancel=via_cancel, trusted=False)
            if result.outcome != Outcome.PENDING or result.gateway_refs:
                return result
        found, _ = await self._find_by_reference(payment)
        if found is not None:
            return await self._settle(payment, found.id, via_cancel=via_cancel)
        message = "No Tabby payment of this attempt is known yet"
        return GatewayResult(
            Outcome.PENDING,
            {"payment_id": hint} if hint else {},
            {"ref": reference, "result": "pending", "pg_message": message},
            message,
        )

    async def _settle(
        self,
        attempt: PaymentRef,
        payment_id: str,
        *,
        via_cancel: bool = False,
        trusted: bool = True,
    ) -> GatewayResult:
        """Read the payment and judge the attempt by it (capturing a purchase first).
        ``trusted``: the id is the one stored for the attempt (or found by its reference);
        otherwise it came from the browser and a refusal or a foreign payment means nothing."""
        reference = attempt.reference_number
        currency = attempt.currency_code
        reply = await self._send("GET", currency, self._path(payment_id))
        found = parse_payment(reply.body) if reply.status == 200 else None
        if found is None:
            if not trusted:
                message = "The returned Tabby payment id could not be confirmed"
                return GatewayResult(
                    Outcome.PENDING,
                    reply.raw(),
                    {"ref": reference, "result": "pending", "pg_message": message},
                    message,
                )
            if reply.status != 200:
                return not_ok(reply, reference, inquiry=True)
            return unknown(reply, reference, MSG_UNPARSABLE)
        raw = reply.raw()
        if not trusted and not_this_attempt(found, attempt):
            message = "The returned Tabby payment belongs to another order; it was ignored"
            return GatewayResult(
                Outcome.PENDING,
                {},
                {"ref": reference, "result": "pending", "pg_message": message},
                message,
            )
        if needs_capture(found, attempt):
            if not authorized_as_asked(found, attempt):
                judged = attempt_result(found, attempt, raw)
                return replace(
                    judged,
                    review_reason=(
                        "Tabby authorized another amount or currency than asked; it was not "
                        "captured"
                    ),
                )
            return await self._capture_attempt(attempt, found, raw)
        done = (
            captured_result(found, attempt, raw) if attempt.operation_mode == "purchase" else None
        )
        return done or attempt_result(found, attempt, raw, via_cancel=via_cancel)

    async def _capture_attempt(
        self, attempt: PaymentRef, found: TabbyPayment, raw: dict[str, Any]
    ) -> GatewayResult:
        """Capture the whole authorized amount under the attempt's reference (Tabby's
        idempotency key). A lost reply is settled by reading the payment, never by a second
        capture; what cannot be confirmed stays pending."""
        reference = attempt.reference_number
        body = capture_request(attempt.amount, attempt.currency_code, reference).body()
        reply = await self._send(
            "POST", attempt.currency_code, self._path(found.id, "/captures"), body
        )
        if reply.status == 200:
            after = parse_payment(reply.body)
            if after is not None:
                done = captured_result(after, attempt, reply.raw())
                if done is not None:
                    return done
        why = (
            f"HTTP {reply.status}"
            if reply.status is not None
            else (reply.fault.value if reply.fault else "no answer")
        )
        if reply.status is not None and 400 <= reply.status < 500:
            why = not_ok(reply, reference).message or why
        # Lost or unclear: read the payment to see whether the capture happened.
        check = await self._send("GET", attempt.currency_code, self._path(found.id))
        now = parse_payment(check.body) if check.status == 200 else None
        if now is not None:
            done = captured_result(now, attempt, check.raw())
            if done is not None:
                return done
            if now.normalised_status != "AUTHORIZED":
                return attempt_result(now, attempt, check.raw())
        return capture_pending(found, attempt, raw, why)

    async def _find_by_reference(
        self, attempt: PaymentRef
    ) -> tuple[TabbyPayment | None, kit.Reply | None]:
        """This attempt's payment among Tabby's recent payments (``order.reference_id``).
        Returns the payment (or None) and the last list reply (None if nothing was asked)."""
        hours = kit.float_option(self.config, "lookup_hours", DEFAULT_LOOKUP_HOURS)
        since = (datetime.now(UTC) - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M:%SZ")
        mine: list[TabbyPayment] = []
        reply: kit.Reply | None = None
        for page in range(LOOKUP_MAX_PAGES):
            query = urlencode(
                {
                    "created_at__gte": since,
                    "limit": LOOKUP_PAGE_SIZE,
                    "offset": page * LOOKUP_PAGE_SIZE,
                }
            )
            reply = await self._send("GET", attempt.currency_code, f"{PAYMENTS_PATH}?{query}")
            listed = parse_payment_list(reply.body) if reply.status == 200 else None
            if listed is None:
                return None, reply if reply.status != 200 else kit.Reply(None)
            mine.extend(p for p in listed if not not_this_attempt(p, attempt))
            if len(listed) < LOOKUP_PAGE_SIZE:
                break
        return pick_for_attempt(mine, attempt), reply

    # -- inquiry ----------------------------------------------------------------------------
    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        """The payment's status. For an attempt whose creation reply was lost (no payment id
        stored) the payment is looked up by the attempt's reference. A purchase-mode attempt that
        Tabby authorized is captured first (the automatic attempt inquiry and notifications
        settle a customer who never came back this way)."""
        reference = payment.reference_number
        problem = self._configuration_problem(payment.currency_code)
        if problem:
            return kit.unknown(
                problem,
                {"error": problem},
                {"ref": reference, "result": "unknown", "pg_message": problem},
            )
        payment_id = self._payment_id(payment)
        if payment_id is None:
            found, reply = await self._find_by_reference(payment)
            if found is None:
                message = (
                    MSG_NO_PAYMENT_ID
                    if reply is not None and reply.status == 200
                    else MSG_LOOKUP_FAILED
                )
                return kit.unknown(
                    message,
                    reply.raw() if reply is not None else {},
                    {"ref": reference, "result": "unknown", "pg_message": message},
                )
            payment_id = found.id
        return await self._settle(payment, payment_id)

    async def inquire_operation(self, request: OperationRequest) -> GatewayResult:
        reference = request.reference_number
        problem = self._configuration_problem(request.currency_code)
        payment_id = self._payment_id(request.payment)
        if problem or payment_id is None:
            # Nothing can have been sent without these, but say so only through a human.
            message = problem or MSG_NO_PAYMENT_ID
            return kit.unknown(
                message,
                {"error": message},
                {"ref": reference, "result": "unknown", "pg_message": message},
            )
        reply = await self._send("GET", request.currency_code, self._path(payment_id))
        if reply.status != 200:
            return not_ok(reply, reference, inquiry=True)
        payment = parse_payment(reply.body)
        if payment is None:
            return unknown(reply, reference, MSG_UNPARSABLE)
        raw = reply.raw()
        if request.operation == "capture":
            return movement_result(
                request,
                payment,
                payment.capture(reference),
                raw,
                absent=Outcome.FAILED,
                refund_delay=self._refund_delay(),
            )
        if request.operation == "refund":
            return movement_result(
                request,
                payment,
                payment.refund(reference),
                raw,
                absent=Outcome.FAILED,
                refund_delay=self._refund_delay(),
            )
        # void: done when the payment is closed without any capture.
        status = payment.normalised_status
        if status == "CLOSED" and not payment.captures:
            return void_success(payment, raw, reference, "Closed at Tabby")
        if status in ("AUTHORIZED", "CLOSED", "CREATED", "REJECTED", "EXPIRED"):
            message = f"Tabby payment is {payment.status}" + (
                " with captures" if payment.captures else ""
            )
            return GatewayResult(
                Outcome.FAILED, raw, params(payment, reference, status.lower(), message), message
            )
        message = f"Tabby payment status {payment.status} is not understood"
        return GatewayResult(
            Outcome.PENDING, raw, params(payment, reference, "pending", message), message
        )

    # -- the gateway's own books -------------------------------------------------------------
    async def list_operations(self, payment: PaymentRef) -> list[GatewayOperation] | None:
        """The captures and refunds Tabby lists on the payment, dashboard ones included. Each is
        identified by its entry id, the ``capture_id`` / ``refund_id`` kept in gateway_refs. A
        close (void) has no entry of its own and is not listed. For a payment taken as a purchase
        (imported "paid") the captures are what made it paid, so only refunds are listed."""
        try:
            if self._configuration_problem(payment.currency_code):
                return None
            payment_id = self._payment_id(payment)
            if payment_id is None:
                return None
            reply = await self._send("GET", payment.currency_code, self._path(payment_id))
            if reply.status != 200:
                return None
            found = parse_payment(reply.body)
            if found is None:
                return None
            if found.currency and found.currency.upper() != payment.currency_code.upper():
                return None
            listed: list[GatewayOperation] = []
            movements: list[tuple[str, list[Movement]]] = [("refund", found.refunds)]
            if payment.operation_mode == "authorize":
                movements.insert(0, ("capture", found.captures))
            for kind, entries in movements:
                for entry in entries:
                    amount = amount_minor(entry.amount, payment.currency_code)
                    if not entry.id or amount is None or amount <= 0:
                        continue
                    outcome = Outcome.SUCCESS
                    delay = self._refund_delay()
                    if kind == "refund" and delay is not None and not delay_passed(entry, delay):
                        outcome = Outcome.PENDING
                    listed.append(GatewayOperation(kind, amount, outcome, entry.id))
            return listed
        except Exception as exc:  # noqa: BLE001 - a connector must never raise
            log.warning("tabby operation listing failed: %s", type(exc).__name__)
            return None
