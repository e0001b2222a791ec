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

import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

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
from payops.connectors.http import shared_tls_context
from payops.connectors.redaction import field_set
from payops.connectors.tabby import webhooks
from payops.connectors.tabby.transformers import (
    FALLBACK_MESSAGES,
    Movement,
    TabbyPayment,
    amount_minor,
    capture_request,
    error_outcome,
    parse_error,
    parse_payment,
    payment_outcome,
    refund_request,
)

log = logging.getLogger(__name__)

HOSTS = {"ai": "https://api.tabby.ai", "sa": "https://api.tabby.sa"}
PAYMENTS_PATH = "/api/v2/payments"
TEST_KEY_PREFIX = "sk_test_"
DEFAULT_REFUND_DELAY_SECONDS = 24 * 3600
RAW_TEXT_LIMIT = 500
USER_AGENT = "PayOps-Tabby/1"

MSG_NO_ANSWER = "Tabby did not answer"
MSG_UNPARSABLE = "Tabby's reply could not be read"
MSG_NO_PAYMENT_ID = "No Tabby payment id is recorded for this payment"


@dataclass(frozen=True)
class _Reply:
    """One HTTP exchange, already parsed. ``status_code`` is None when no reply arrived."""

    status_code: int | None
    body: Any = None          # parsed JSON, or None
    text: str = ""            # the body as text when it was not JSON
    fault: str = ""           # timeout | connection_error | transport_error

    @property
    def parsed(self) -> bool:
        return self.body is not None

    def raw(self) -> dict[str, Any]:
        """What is kept as the gateway's reply (pg_response)."""
        if self.status_code is None:
            return {"error": self.fault}
        if isinstance(self.body, dict):
            return self.body
        if self.body is not None:
            return {"status_code": self.status_code, "body": self.body}
        return {"status_code": self.status_code, "body": self.text[:RAW_TEXT_LIMIT]}


class TabbyConnector(Connector):
    name: ClassVar[str] = "tabby"
    capabilities: ClassVar[frozenset[str]] = frozenset({"capture", "refund", "void", "inquiry"})
    required_credentials: ClassVar[tuple[str, ...]] = ("secret_key",)
    # The buyer, their addresses and purchase history, echoed in every payment reply.
    personal_fields: ClassVar[frozenset[str]] = field_set((
        "buyer", "buyer_history", "order_history", "shipping_address", "address", "customer",
        "email", "phone", "dob", "attachment",
    ))

    def __init__(self, config: ConnectorConfig) -> None:
        # Never raises: configuration problems are reported as a FAILED result at call time.
        super().__init__(config)
        self._client: httpx.AsyncClient | None = None

    # -- configuration ----------------------------------------------------------------------
    @property
    def _secret_key(self) -> str:
        value = (self.config.credentials or {}).get("secret_key")
        return value if isinstance(value, str) else ""

    def _options(self) -> dict[str, Any]:
        return self.config.options or {}

    def _base_url(self, currency_code: str) -> str | None:
        override = self._options().get("base_url")
        if override:
            return str(override).rstrip("/")
        region = (self._options().get("region") or (self.config.credentials or {}).get("region")
                  or ("sa" if (currency_code or "").upper() == "SAR" else "ai"))
        return HOSTS.get(str(region).lower())

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

    def _delayed_refunds(self) -> bool:
        value = self._options().get("delayed_refunds", False)
        if isinstance(value, str):
            return value.strip().lower() in ("1", "true", "yes", "on")
        return bool(value)

    def _refund_delay(self) -> float:
        try:
            return float(self._options().get("delayed_refund_seconds",
                                              DEFAULT_REFUND_DELAY_SECONDS))
        except (TypeError, ValueError):
            return float(DEFAULT_REFUND_DELAY_SECONDS)

    # -- the one send-and-parse point -------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.timeout_seconds),
                follow_redirects=False,
                verify=shared_tls_context(),
            )
        return self._client

    async def _send(
        self, method: str, currency_code: str, path: str, body: dict[str, Any] | None = None
    ) -> _Reply:
        base = self._base_url(currency_code)
        headers = {
            "Authorization": f"Bearer {self._secret_key}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        content: bytes | None = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            content = json.dumps(body, separators=(",", ":")).encode()
        started = time.monotonic()
        try:
            response = await self._http().request(method, f"{base}{path}", headers=headers,
                                                  content=content)
        except httpx.TimeoutException as exc:
            log.warning("tabby %s %s: no answer (%s)", method, path, type(exc).__name__)
            return _Reply(None, fault="timeout")
        except httpx.TransportError as exc:
            log.warning("tabby %s %s: transport error (%s)", method, path, type(exc).__name__)
            return _Reply(None, fault="connection_error")
        except Exception as exc:  # noqa: BLE001 - a connector never raises for the gateway
            log.warning("tabby %s %s: failed (%s)", method, path, type(exc).__name__)
            return _Reply(None, fault="transport_error")
        elapsed_ms = int((time.monotonic() - started) * 1000)
        log.debug("tabby %s %s -> %s in %d ms", method, path, response.status_code, elapsed_ms)
        text = response.text
        try:
            parsed = json.loads(text) if text.strip() else None
        except ValueError:
            parsed = None
        return _Reply(response.status_code, parsed, "" if parsed is not None else text)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        header = str(self.config.options.get("webhook_header") or webhooks.DEFAULT_HEADER_NAME)
        if not webhooks.verify_notification(headers, self.config.webhook_secret, header):
            raise NotificationRejected("notification is not authentic")
        try:
            notice = webhooks.parse_notification(body)
        except webhooks.TabbyWebhookError as exc:
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
        return GatewayResult(Outcome.FAILED, raw or {"error": message},
                             {"ref": reference, "result": "error", "pg_message": message}, message)

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

    @staticmethod
    def _unknown(reply: _Reply, reference: str, message: str = MSG_NO_ANSWER) -> GatewayResult:
        return GatewayResult(Outcome.UNKNOWN, reply.raw(),
                             {"ref": reference, "result": "unknown", "pg_message": message},
                             message)

    def _not_ok(self, reply: _Reply, reference: str, *, inquiry: bool = False) -> GatewayResult:
        """A reply that is not a 200 payment: refusal, server error or no reply at all."""
        if reply.status_code is None:
            return self._unknown(reply, reference)
        if reply.status_code >= 500:
            return self._unknown(reply, reference,
                                 f"Tabby answered HTTP {reply.status_code}")
        outcome = error_outcome(reply.status_code)
        if inquiry and not (outcome == Outcome.FAILED and reply.status_code == 404):
            # An inquiry that is refused (credentials, throttling…) tells nothing about the payment.
            outcome = Outcome.UNKNOWN
        error = parse_error(reply.body if reply.parsed else reply.text)
        message = error.message() or FALLBACK_MESSAGES.get(
            reply.status_code, f"Tabby answered HTTP {reply.status_code}")
        params = {"ref": reference, "result": error.error_type or "error", "pg_message": message}
        return GatewayResult(outcome, reply.raw(), params, message)

    @staticmethod
    def _params(payment: TabbyPayment, reference: str, result: str, message: str,
                entry: Movement | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "payment_id": payment.id,
            "ref": reference,
            "result": result,
            "pg_message": message,
        }
        if entry is not None and entry.id:
            params["transaction_id"] = entry.id
        return params

    def _movement_result(
        self, request: OperationRequest, payment: TabbyPayment, entry: Movement | None,
        raw: dict[str, Any], *, absent: Outcome,
    ) -> GatewayResult:
        """The outcome of a capture or refund, judged by its entry in the payment object."""
        reference = request.reference_number
        kind = request.operation
        if entry is None:
            if absent == Outcome.FAILED:
                message = f"Tabby has no {kind} with reference {reference}"
            else:
                message = f"Tabby's reply does not list the {kind}"
            return GatewayResult(absent, raw,
                                 self._params(payment, reference, absent.value, message), message)
        recorded = amount_minor(entry.amount, request.currency_code)
        if recorded != request.amount:
            message = f"Tabby recorded a different amount ({entry.amount}) for this {kind}"
            return GatewayResult(Outcome.UNKNOWN, raw,
                                 self._params(payment, reference, "mismatch", message, entry),
                                 message)
        refs = {"payment_id": payment.id, f"{kind}_id": entry.id}
        if kind == "refund" and self._delayed_refunds() and not self._delay_passed(entry):
            message = "Refund scheduled by Tabby (Delayed Refunds)"
            return GatewayResult(Outcome.PENDING, raw,
                                 self._params(payment, reference, "queued", message, entry),
                                 message, refs)
        return GatewayResult(Outcome.SUCCESS, raw,
                             self._params(payment, reference, "success", "Approved", entry),
                             "Approved", refs)

    def _delay_passed(self, entry: Movement) -> bool:
        created = _parse_time(entry.created_at)
        if created is None:
            return False
        return (datetime.now(timezone.utc) - created).total_seconds() >= self._refund_delay()

    # -- operations -------------------------------------------------------------------------
    async def capture(self, request: OperationRequest) -> GatewayResult:
        return await self._move(request, "/captures",
                                capture_request(request.amount, request.currency_code,
                                                request.reference_number).body())

    async def refund(self, request: OperationRequest) -> GatewayResult:
        return await self._move(request, "/refunds",
                                refund_request(request.amount, request.currency_code,
                                               request.reference_number).body())

    async def _move(
        self, request: OperationRequest, suffix: str, body: dict[str, Any]
    ) -> GatewayResult:
        reference = request.reference_number
        payment_id, refused = self._precheck(request.payment, reference)
        if refused is not None:
            return refused
        assert payment_id is not None
        reply = await self._send("POST", request.currency_code, self._path(payment_id, suffix),
                                 body)
        if reply.status_code != 200:
            return self._not_ok(reply, reference)
        payment = parse_payment(reply.body)
        if payment is None:
            return self._unknown(reply, reference, MSG_UNPARSABLE)
        entry = (payment.capture(reference) if request.operation == "capture"
                 else payment.refund(reference))
        return self._movement_result(request, payment, entry, reply.raw(), absent=Outcome.UNKNOWN)

    async def void(self, request: OperationRequest) -> GatewayResult:
        reference = request.reference_number
        payment_id, refused = self._precheck(request.payment, reference)
        if refused is not None:
            return refused
        assert payment_id is not None
        currency = request.currency_code
        # Read first: close after a capture releases only the remainder, which is not a void.
        before = await self._send("GET", currency, self._path(payment_id))
        if before.status_code != 200:
            return self._not_ok(before, reference)
        payment = parse_payment(before.body)
        if payment is None:
            return self._unknown(before, reference, MSG_UNPARSABLE)
        judged = self._void_state(payment, before.raw(), reference)
        if judged is not None:
            return judged
        reply = await self._send("POST", currency, self._path(payment_id, "/close"))
        if reply.status_code == 200:
            closed = parse_payment(reply.body)
            if closed is None:
                return self._unknown(reply, reference, MSG_UNPARSABLE)
            if closed.normalised_status == "CLOSED" and not closed.captures:
                return self._void_success(closed, reply.raw(), reference, "Approved")
            return self._unknown(reply, reference,
                                 f"Tabby answered the close with status {closed.status}")
        refusal = self._not_ok(reply, reference)
        if reply.status_code == 400:
            # e.g. "already closed" when someone closed it meanwhile: the payment says whether
            # the authorization is gone without a capture, which is what a void wants.
            after = await self._send("GET", currency, self._path(payment_id))
            now = parse_payment(after.body) if after.status_code == 200 else None
            if now is not None and now.normalised_status == "CLOSED" and not now.captures:
                return self._void_success(now, after.raw(), reference, "Already closed at Tabby")
        return refusal

    def _void_state(self, payment: TabbyPayment, raw: dict[str, Any],
                    reference: str) -> GatewayResult | None:
        """Judge a payment before a close: None means "close it"."""
        status = payment.normalised_status
        if status == "AUTHORIZED" and not payment.captures:
            return None
        if status == "CLOSED" and not payment.captures:
            return self._void_success(payment, raw, reference, "Already closed at Tabby")
        if payment.captures:
            message = "The Tabby payment has captures; it can no longer be voided"
        else:
            message = (f"The Tabby payment is {payment.status}; "
                       "only an authorized payment can be voided")
        return GatewayResult(Outcome.FAILED, raw,
                             self._params(payment, reference, status.lower(), message), message)

    def _void_success(self, payment: TabbyPayment, raw: dict[str, Any], reference: str,
                      message: str) -> GatewayResult:
        return GatewayResult(Outcome.SUCCESS, raw,
                             self._params(payment, reference, "success", message), message,
                             {"payment_id": payment.id})

    # -- inquiry ----------------------------------------------------------------------------
    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        reference = payment.reference_number
        problem = self._configuration_problem(payment.currency_code)
        payment_id = self._payment_id(payment)
        if problem or payment_id is None:
            message = problem or MSG_NO_PAYMENT_ID
            return GatewayResult(Outcome.UNKNOWN, {"error": message},
                                 {"ref": reference, "result": "unknown", "pg_message": message},
                                 message)
        reply = await self._send("GET", payment.currency_code, self._path(payment_id))
        if reply.status_code != 200:
            return self._not_ok(reply, reference, inquiry=True)
        found = parse_payment(reply.body)
        if found is None:
            return self._unknown(reply, reference, MSG_UNPARSABLE)
        outcome = payment_outcome(found.status, has_captures=bool(found.captures))
        message = f"Tabby payment {found.status}"
        return GatewayResult(outcome, reply.raw(),
                             self._params(found, reference, found.status.lower(), message),
                             message, {"payment_id": found.id})

    async def inquire_operation(self, request: OperationRequest) -> GatewayResult:
        reference = request.reference_number
        problem = self._configuration_problem(request.currency_code)
        payment_id = self._payment_id(request.payment)
        if problem or payment_id is None:
            # Nothing can have been sent without these, but say so only through a human.
            message = problem or MSG_NO_PAYMENT_ID
            return GatewayResult(Outcome.UNKNOWN, {"error": message},
                                 {"ref": reference, "result": "unknown", "pg_message": message},
                                 message)
        reply = await self._send("GET", request.currency_code, self._path(payment_id))
        if reply.status_code != 200:
            return self._not_ok(reply, reference, inquiry=True)
        payment = parse_payment(reply.body)
        if payment is None:
            return self._unknown(reply, reference, MSG_UNPARSABLE)
        raw = reply.raw()
        if request.operation == "capture":
            return self._movement_result(request, payment, payment.capture(reference), raw,
                                         absent=Outcome.FAILED)
        if request.operation == "refund":
            return self._movement_result(request, payment, payment.refund(reference), raw,
                                         absent=Outcome.FAILED)
        # void: done when the payment is closed without any capture.
        status = payment.normalised_status
        if status == "CLOSED" and not payment.captures:
            return self._void_success(payment, raw, reference, "Closed at Tabby")
        if status in ("AUTHORIZED", "CLOSED", "CREATED", "REJECTED", "EXPIRED"):
            message = f"Tabby payment is {payment.status}" + (
                " with captures" if payment.captures else "")
            return GatewayResult(Outcome.FAILED, raw,
                                 self._params(payment, reference, status.lower(), message),
                                 message)
        message = f"Tabby payment status {payment.status} is not understood"
        return GatewayResult(Outcome.PENDING, raw,
                             self._params(payment, reference, "pending", message), message)


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
            if reply.status_code != 200:
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
                    if kind == "refund" and self._delayed_refunds() and not self._delay_passed(
                            entry):
                        outcome = Outcome.PENDING
                    listed.append(GatewayOperation(kind, amount, outcome, entry.id))
            return listed
        except Exception as exc:  # noqa: BLE001 - a connector must never raise
            log.warning("tabby operation listing failed: %s", type(exc).__name__)
            return None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment
