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
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import quote

from payops.connectors import kit
from payops.connectors.base import (
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
    delay_passed,
    movement_result,
    not_ok,
    params,
    unknown,
    void_state,
    void_success,
)
from payops.connectors.tabby.transformers import (
    Movement,
    amount_minor,
    capture_request,
    parse_payment,
    payment_outcome,
    refund_request,
)

log = logging.getLogger(__name__)

HOSTS = {"ai": "https://api.tabby.ai", "sa": "https://api.tabby.sa"}
PAYMENTS_PATH = "/api/v2/payments"
TEST_KEY_PREFIX = "sk_test_"
DEFAULT_REFUND_DELAY_SECONDS = 24 * 3600
USER_AGENT = "PayOps-Tabby/1"

MSG_NO_PAYMENT_ID = "No Tabby payment id is recorded for this payment"


class TabbyConnector(Connector):
    name: ClassVar[str] = "tabby"
    capabilities: ClassVar[frozenset[str]] = frozenset({"capture", "refund", "void", "inquiry"})
    required_credentials: ClassVar[tuple[str, ...]] = ("secret_key",)
    # The buyer, their addresses and purchase history, echoed in every payment reply.
    personal_fields: ClassVar[frozenset[str]] = kit.field_set(
        (
            "buyer",
            "buyer_history",
            "order_history",
            "shipping_address",
            "address",
            "customer",
            "email",
            "phone",
            "dob",
            "attachment",
        )
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

    # -- inquiry ----------------------------------------------------------------------------
    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        reference = payment.reference_number
        problem = self._configuration_problem(payment.currency_code)
        payment_id = self._payment_id(payment)
        if problem or payment_id is None:
            message = problem or MSG_NO_PAYMENT_ID
            return kit.unknown(
                message,
                {"error": message},
                {"ref": reference, "result": "unknown", "pg_message": message},
            )
        reply = await self._send("GET", payment.currency_code, self._path(payment_id))
        if reply.status != 200:
            return not_ok(reply, reference, inquiry=True)
        found = parse_payment(reply.body)
        if found is None:
            return unknown(reply, reference, MSG_UNPARSABLE)
        outcome = payment_outcome(found.status, has_captures=bool(found.captures))
        message = f"Tabby payment {found.status}"
        return GatewayResult(
            outcome,
            reply.raw(),
            params(found, reference, found.status.lower(), message),
            message,
            {"payment_id": found.id},
        )

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
