"""Mastercard Payment Gateway Services: capture, refund, void and status inquiry.

Protocol (REST-JSON, ``/api/rest/version/{N}/merchant/{merchantId}/…``):
- capture / refund / void are new transactions on the payment's order, created with
  ``PUT …/order/{orderId}/transaction/{transactionId}`` and ``apiOperation`` CAPTURE / REFUND / VOID;
- the transaction id is PayOps's ``reference_number``: chosen by us, unique within the order, the
  gateway's idempotency key (an identical resend is not processed twice) and the handle an
  inquiry uses afterwards;
- inquiries are ``GET …/order/{orderId}/transaction/{transactionId}`` (Retrieve Transaction) and
  ``GET …/order/{orderId}`` (Retrieve Order, with every transaction of the order);
- HTTP Basic authentication, user ``merchant.{merchantId}``, password the API password.

Configuration:
- credentials: ``merchant_id``, ``api_password`` (the webhook secret is the configuration's own
  webhook secret, see ``notifications.py``);
- options: ``base_url`` (full URL, wins over everything; tests use it), ``host`` (the regional or
  bank-branded gateway host, e.g. ``eu-gateway.mastercard.com``), ``api_version`` (default 100),
  ``timeout_seconds``;
- payment references (``PaymentRef.gateway_refs``): ``order_id`` (the MPGS order id; defaults to
  the attempt's reference number) and ``transaction_id`` (the authorization's transaction id, the
  target of a void; looked up on the order when absent).

The connector never raises: transport errors, timeouts, 5xx and unparsable replies are
``Outcome.UNKNOWN``. It logs method, path and status only, never headers, bodies or credentials.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import quote

import httpx

from payops.connectors import kit
from payops.connectors.base import (
    CALL_MARGIN_SECONDS,
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
from payops.connectors.kit import Reply
from payops.connectors.mpgs import checkout as hc
from payops.connectors.mpgs import notifications
from payops.connectors.mpgs import transformers as t
from payops.connectors.mpgs.decisions import (
    decide,
    no_answer,
    raw_of,
    transaction_result,
    unknown,
)
from payops.connectors.mpgs.transformers import REDACTION
from payops.money import AmountError, UnknownCurrency, from_decimal

log = logging.getLogger(__name__)

SANDBOX_HOST = "mtf.gateway.mastercard.com"
# MPGS has no single production host: it is regional (ap-/eu-/na-gateway) or bank-branded.
# Set ``options.host`` for production; this default is only a fallback.
PRODUCTION_HOST = "ap-gateway.mastercard.com"
DEFAULT_API_VERSION = "100"
# Order transaction types that are operations on the payment (a void of the authorization only).
OPERATION_TYPES = {"CAPTURE": "capture", "REFUND": "refund", "VOID_AUTHORIZATION": "void"}
CONTENT_TYPE = "application/json;charset=UTF-8"


class MpgsConnector(Connector):
    name: ClassVar[str] = "mpgs"
    capabilities: ClassVar[frozenset[str]] = frozenset({"capture", "refund", "void", "inquiry"})
    required_credentials: ClassVar[tuple[str, ...]] = ("merchant_id", "api_password")
    # Hosted Checkout (connectors/mpgs/checkout.py): PURCHASE or AUTHORIZE sessions; a pending
    # attempt is inquired after Ottu's MPGS window.
    takes_payments: ClassVar[bool] = True
    attempt_inquiry_minutes: ClassVar[int] = 11
    # Customer contact details, addresses, the device (IP address) and the card beyond its
    # masked number (holder name, expiry).
    personal_fields: ClassVar[frozenset[str]] = kit.field_set(
        "customer billing shipping device email phone mobilePhone firstName lastName "
        "nameOnCard expiry ipAddress"
    )

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        self.client = kit.GatewayClient(
            "mpgs",
            base_url=self.base_url,
            timeout=config.timeout_seconds,
            headers={"Accept": "application/json"},
            auth=httpx.BasicAuth(
                f"merchant.{self.merchant_id}", kit.credential(config, "api_password")
            ),
        )

    # -- configuration --------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        options = self.config.options or {}
        if options.get("base_url"):
            return str(options["base_url"]).rstrip("/")
        host = str(
            options.get("host") or (SANDBOX_HOST if self.config.is_sandbox else PRODUCTION_HOST)
        )
        if "://" not in host:
            host = f"https://{host}"
        return host.rstrip("/")

    @property
    def api_version(self) -> str:
        return str((self.config.options or {}).get("api_version") or DEFAULT_API_VERSION)

    @property
    def merchant_id(self) -> str:
        return kit.credential(self.config, "merchant_id")

    def _merchant_path(self) -> str:
        return (
            f"/api/rest/version/{quote(self.api_version, safe='')}"
            f"/merchant/{quote(self.merchant_id, safe='')}"
        )

    def _order_path(self, order_id: str) -> str:
        return f"{self._merchant_path()}/order/{quote(order_id, safe='')}"

    def _transaction_path(self, order_id: str, transaction_id: str) -> str:
        return f"{self._order_path(order_id)}/transaction/{quote(transaction_id, safe='')}"

    @staticmethod
    def order_id(payment: PaymentRef) -> str:
        refs = payment.gateway_refs or {}
        return str(refs.get("order_id") or payment.reference_number)

    # -- the one send-and-parse point -----------------------------------------------------------
    async def _send(self, method: str, path: str, body: dict[str, Any] | None = None) -> Reply:
        reply = await self.client.request(method, path, json=body, content_type=CONTENT_TYPE)
        if reply.answered and not isinstance(reply.body, dict):
            # Anything that is not a JSON object (HTML error pages, truncated bodies) is unread.
            reply = replace(reply, body=None, decoded=reply.body is None and reply.decoded)
        return reply

    async def _guarded(self, work: Any) -> GatewayResult:
        """Run one connector call within its time budget; never raise."""
        return await kit.guarded(
            work,
            budget=self.config.timeout_seconds + CALL_MARGIN_SECONDS / 2,
            on_timeout=lambda: unknown({"error": "timeout"}, "MPGS did not answer in time"),
            on_error=lambda exc: unknown({"error": type(exc).__name__}, "MPGS call failed"),
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        try:
            notice = notifications.verify_and_parse(
                headers, body, self.config.webhook_secret, merchant_id=self.merchant_id
            )
            order_id, _ = notifications.notification_key(body)
        except notifications.InvalidNotification as exc:
            raise NotificationRejected(str(exc)) from None
        return Notification(reference=notice.reference, gateway_refs={"order_id": order_id})

    # -- payment acceptance (Hosted Checkout) ---------------------------------------------------
    async def start_checkout(self, request: CheckoutRequest) -> CheckoutStart:
        try:
            return await asyncio.wait_for(
                self._start_checkout(request),
                self.config.timeout_seconds * 2 + CALL_MARGIN_SECONDS / 2,
            )
        except TimeoutError:
            return CheckoutStart(
                Outcome.UNKNOWN, raw={"error": "timeout"}, message="MPGS did not answer in time"
            )
        except Exception as exc:  # noqa: BLE001 - a connector must never raise
            log.warning("mpgs checkout start failed: %s", type(exc).__name__)
            return CheckoutStart(
                Outcome.UNKNOWN, raw={"error": type(exc).__name__}, message="MPGS call failed"
            )

    async def _start_checkout(self, request: CheckoutRequest) -> CheckoutStart:
        payment = request.payment
        order_id = self.order_id(payment)
        if request.retry or (payment.gateway_refs or {}).get(hc.SESSION_REF):
            # An earlier session of this attempt may have been paid: never open another one
            # over a successful (or still undecided) payment on the order (§1.4).
            found = await self._order_payment(payment, order_id)
            if found is None:
                return CheckoutStart(
                    Outcome.UNKNOWN,
                    raw={"order": "unreadable"},
                    message="MPGS could not say whether the order was paid",
                )
            if found != Outcome.FAILED:
                # Send the customer to PayOps's return: it confirms from Retrieve Order.
                return CheckoutStart(
                    Outcome.SUCCESS,
                    "GET",
                    request.return_url,
                    gateway_refs={"order_id": order_id},
                    message="The MPGS order already has a payment",
                )
        body = hc.initiate_checkout_body(request, order_id)
        reply = await self._send("POST", f"{self._merchant_path()}/session", body)
        raw = hc.without_indicator(raw_of(reply)) if reply.answered else reply.raw()
        if not reply.answered or (reply.status or 0) >= 500 or reply.body is None:
            return CheckoutStart(
                Outcome.UNKNOWN, raw=raw, message="MPGS did not confirm the checkout session"
            )
        parsed = hc.parse_session(reply.body)
        if parsed is None:
            return CheckoutStart(
                Outcome.UNKNOWN, raw=raw, message="MPGS reply does not have the documented shape"
            )
        if not 200 <= (reply.status or 0) < 300 or parsed.error is not None:
            outcome = t.error_outcome(parsed.error.cause if parsed.error else None)
            return CheckoutStart(outcome, raw=raw, message=t.error_message(parsed.error))
        session_id = parsed.session.id if parsed.session else None
        if (
            (parsed.result or "").upper() != "SUCCESS"
            or not session_id
            or not parsed.success_indicator
        ):
            return CheckoutStart(
                Outcome.UNKNOWN, raw=raw, message="MPGS did not return a checkout session"
            )
        return CheckoutStart(
            Outcome.SUCCESS,
            "GET",
            hc.pay_page_url(self.base_url, quote(session_id, safe="")),
            gateway_refs={
                "order_id": order_id,
                hc.SESSION_REF: session_id,
                hc.INDICATOR_REF: parsed.success_indicator,
            },
            raw=raw,
            message="MPGS checkout session created",
        )

    async def _order_payment(self, payment: PaymentRef, order_id: str) -> Outcome | None:
        """SUCCESS / PENDING when the order holds a payment that succeeded or may still, FAILED
        when it has none (or does not exist), None when MPGS could not say."""
        reply = await self._send("GET", self._order_path(order_id))
        order = t.parse_order(reply.body) if reply.answered and reply.body is not None else None
        if order is None or (reply.status or 0) >= 500:
            return None
        if not 200 <= (reply.status or 0) < 300 or order.error is not None:
            cause = (order.error.cause if order.error else "") or ""
            return Outcome.FAILED if cause.upper() == "INVALID_REQUEST" else None
        _, outcome = hc.latest_payment(order)
        if not hc.payment_entries(order):
            return Outcome.FAILED
        return Outcome.FAILED if outcome == Outcome.FAILED else Outcome.SUCCESS

    async def confirm_return(self, payment: PaymentRef, params: Mapping[str, str]) -> GatewayResult:
        return await self._guarded(lambda: self._confirm_return(payment, params))

    async def _confirm_return(
        self, payment: PaymentRef, params: Mapping[str, str]
    ) -> GatewayResult:
        # The indicator only says the browser passed a success page of this session; it is
        # recorded as a hint and never decides (a forged or missing one changes nothing).
        hint = hc.indicator_hint(payment, params)
        outcome_hint = str(params.get("outcome") or "")
        order_id = self.order_id(payment)
        reply = await self._send("GET", self._order_path(order_id))
        if not reply.answered:
            return no_answer(reply)
        status = reply.status or 0
        raw = {**raw_of(reply), "return_indicator": hint}
        if status >= 500 or reply.body is None:
            return unknown(raw, f"MPGS answered HTTP {status} without a usable body")
        order = t.parse_order(reply.body)
        if order is None:
            return unknown(raw, "MPGS reply does not have the documented shape")
        if not 200 <= status < 300 or order.error is not None:
            cause = (order.error.cause if order.error else "") or ""
            if 400 <= status < 500 and cause.upper() == "INVALID_REQUEST":
                # No such order yet: the payer has not paid (§1.3 "pending").
                return hc.no_payment(
                    outcome_hint,
                    raw,
                    {"ref": order_id},
                    {"order_id": order_id},
                    t.error_message(order.error),
                )
            return unknown(raw, t.error_message(order.error))
        return hc.order_decision(payment, order_id, order, raw, outcome_hint)

    # -- operations -----------------------------------------------------------------------------
    async def capture(self, request: OperationRequest) -> GatewayResult:
        body = t.capture_body(request.amount, request.currency_code, request.reference_number)
        return await self._guarded(lambda: self._operate(request, body))

    async def refund(self, request: OperationRequest) -> GatewayResult:
        body = t.refund_body(request.amount, request.currency_code, request.reference_number)
        return await self._guarded(lambda: self._operate(request, body))

    async def void(self, request: OperationRequest) -> GatewayResult:
        return await self._guarded(lambda: self._void(request))

    async def _void(self, request: OperationRequest) -> GatewayResult:
        order_id = self.order_id(request.payment)
        target = (request.payment.gateway_refs or {}).get("transaction_id")
        if not target:
            target = await self._authorization_id(order_id)
        if not target:
            # Nothing was sent, so nothing was voided.
            return GatewayResult(
                Outcome.FAILED,
                {"error": "authorization not found", "order_id": order_id},
                {"ref": order_id},
                f"No approved authorization found on MPGS order {order_id} to void",
            )
        body = t.void_body(str(target), request.reference_number)
        return await self._operate(request, body)

    async def _authorization_id(self, order_id: str) -> str | None:
        reply = await self._send("GET", self._order_path(order_id))
        order = t.parse_order(reply.body) if reply.answered and reply.body else None
        if order is None or reply.status is None or not 200 <= reply.status < 300:
            return None
        for entry in reversed(order.transaction):
            txn = entry.transaction
            if (
                txn is not None
                and txn.id
                and (txn.type or "").upper() == "AUTHORIZATION"
                and t.transaction_outcome(entry.result, entry.gateway_code) == Outcome.SUCCESS
            ):
                return txn.id
        return None

    async def _operate(self, request: OperationRequest, body: t.OperationBody) -> GatewayResult:
        order_id = self.order_id(request.payment)
        path = self._transaction_path(order_id, request.reference_number)
        reply = await self._send("PUT", path, body.wire())
        return transaction_result(request, order_id, reply)

    # -- turning a reply into a GatewayResult ---------------------------------------------------
    # -- inquiries ------------------------------------------------------------------------------
    async def inquire_operation(self, request: OperationRequest) -> GatewayResult:
        return await self._guarded(lambda: self._inquire_operation(request))

    async def _inquire_operation(self, request: OperationRequest) -> GatewayResult:
        order_id = self.order_id(request.payment)
        reference = request.reference_number
        reply = await self._send("GET", self._transaction_path(order_id, reference))
        if not reply.answered:
            return no_answer(reply)
        status = reply.status or 0
        parsed = t.parse_transaction(reply.body) if reply.body is not None else None
        if 200 <= status < 300 and parsed is not None and parsed.transaction is not None:
            return decide(request, order_id, parsed, raw_of(reply))
        if (
            400 <= status < 500
            and parsed is not None
            and parsed.error is not None
            and (parsed.error.cause or "").upper() == "INVALID_REQUEST"
        ):
            # Most likely "no such transaction"; confirm on the order before saying "not done".
            return await self._confirm_absent(request, order_id, raw_of(reply))
        return unknown(raw_of(reply), "MPGS could not say what happened to the operation")

    async def _confirm_absent(
        self, request: OperationRequest, order_id: str, first: dict[str, Any]
    ) -> GatewayResult:
        reply = await self._send("GET", self._order_path(order_id))
        status = reply.status or 0
        order = t.parse_order(reply.body) if reply.answered and reply.body is not None else None
        if (
            order is None
            or not 200 <= status < 300
            or order.error is not None
            or (order.result or "").upper() == "ERROR"
            or order.id != order_id
        ):
            return unknown(
                {"transaction": first, "order": raw_of(reply)},
                "MPGS could not say what happened to the operation",
            )
        entry = order.find(request.reference_number)
        if entry is not None:
            return decide(request, order_id, entry, REDACTION.scrub(reply.body))
        return GatewayResult(
            Outcome.FAILED,
            {
                "transaction": first,
                "order_status": order.status,
                "transactions": [e.transaction.id for e in order.transaction if e.transaction],
            },
            {"ref": order_id, "result": "NOT_FOUND"},
            f"MPGS has no transaction {request.reference_number} on order {order_id}",
        )

    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        return await self._guarded(lambda: self._inquire_payment(payment))

    async def list_operations(self, payment: PaymentRef) -> list[GatewayOperation] | None:
        try:
            deadline = kit.Deadline(self.config.timeout_seconds, CALL_MARGIN_SECONDS / 2)
            reply = await self.client.request(
                "GET", self._order_path(self.order_id(payment)), deadline=deadline
            )
            if reply.answered and not isinstance(reply.body, dict):
                reply = replace(reply, body=None)
        except Exception as exc:  # noqa: BLE001 - a connector must never raise
            log.warning("mpgs order listing failed: %s", type(exc).__name__)
            return None
        if not reply.answered or reply.body is None or not 200 <= (reply.status or 0) < 300:
            return None
        order = t.parse_order(reply.body)
        if order is None or order.error is not None:
            return None
        listed = []
        for entry in order.transaction:
            txn = entry.transaction
            kind = OPERATION_TYPES.get((txn.type or "").upper()) if txn else None
            if txn is None or kind is None or not txn.id or txn.amount is None:
                continue
            currency = txn.currency or payment.currency_code
            if currency.upper() != payment.currency_code.upper():
                continue
            try:
                amount = from_decimal(txn.amount, currency)
            except (AmountError, UnknownCurrency):
                continue
            outcome = t.transaction_outcome(
                entry.result, entry.gateway_code, entry.error.cause if entry.error else None
            )
            listed.append(GatewayOperation(kind, amount, outcome, txn.id))
        return listed

    async def _inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        order_id = self.order_id(payment)
        reply = await self._send("GET", self._order_path(order_id))
        if not reply.answered:
            return no_answer(reply)
        status = reply.status or 0
        raw = raw_of(reply)
        if status >= 500 or reply.body is None:
            return unknown(raw, f"MPGS answered HTTP {status} without a usable body")
        order = t.parse_order(reply.body)
        if order is None:
            return unknown(raw, "MPGS reply does not have the documented shape")
        if not 200 <= status < 300 or order.error is not None:
            cause = (order.error.cause if order.error else "") or ""
            if 400 <= status < 500 and cause.upper() == "INVALID_REQUEST":
                # No such order (yet): the payer may not have submitted; not a final "no".
                return GatewayResult(
                    Outcome.PENDING, raw, {"ref": order_id}, t.error_message(order.error)
                )
            return unknown(raw, t.error_message(order.error))
        if order.currency and order.currency.upper() != payment.currency_code.upper():
            return unknown(
                raw, f"MPGS order {order_id} is in {order.currency}, not {payment.currency_code}"
            )
        outcome = t.order_outcome(order.status, payment.operation_mode)
        payment_txn = self._payment_transaction(order, payment)
        params: dict[str, Any] = (
            t.transaction_params(payment_txn, order_id) if payment_txn else {"ref": order_id}
        )
        params["result"] = order.status or params.get("result")
        refs = {"order_id": order_id}
        if payment_txn is not None and payment_txn.transaction and payment_txn.transaction.id:
            refs["transaction_id"] = payment_txn.transaction.id
        amount, currency = None, None
        if outcome == Outcome.SUCCESS:
            # What the order holds, so a payment for another amount goes to review (§1.3).
            currency = (order.currency or payment.currency_code).upper()
            total = order.total_authorized_amount
            if total is None and payment_txn is not None and payment_txn.transaction is not None:
                total = payment_txn.transaction.amount
            amount = t.minor_units(total, currency)
        return GatewayResult(
            outcome,
            raw,
            params,
            f"MPGS order status {order.status or 'unknown'}",
            refs,
            amount=amount,
            currency_code=currency,
        )

    @staticmethod
    def _payment_transaction(order: t.OrderReply, payment: PaymentRef) -> t.TransactionReply | None:
        known = (payment.gateway_refs or {}).get("transaction_id")
        if known:
            found = order.find(str(known))
            if found is not None:
                return found
        for entry in order.transaction:
            txn = entry.transaction
            if txn is not None and (txn.type or "").upper() in ("AUTHORIZATION", "PAYMENT"):
                if t.transaction_outcome(entry.result, entry.gateway_code) == Outcome.SUCCESS:
                    return entry
        return None
