r"""MyFatoorah API v2 connector: refund and inquiry; capture and release (void) on accounts that
have MyFatoorah's Authorize-Capture feature.

Protocol (docs.myfatoorah.com, summarised in the gateway protocols spec, section 4):

- Hosts: ``https://apitest.myfatoorah.com`` for every test account (``is_sandbox``); live hosts
  depend on the account's country: ``api.myfatoorah.com`` (KWT, BHR, OMN, JOR),
  ``api-sa`` (SAU), ``api-ae`` (ARE), ``api-qa`` (QAT), ``api-eg`` (EGY). The country comes from
  ``options["country"]`` (or ``credentials["country"]``). ``options["base_url"]`` overrides the
  host (tests point it at a fake).
- Auth: ``Authorization: Bearer {api_token}``; every call is a POST with a JSON body, and every
  reply is the envelope ``{"IsSuccess", "Message", "ValidationErrors", "Data"}``. Success is
  decided by ``IsSuccess``; a bad token may answer 401 with an empty body.
- Amounts are JSON numbers in major units with the currency's decimals (``105.033`` KWD), written
  from ``Decimal`` (never a float). Refunds are in the account's base currency, which for PayOps
  is the configuration's default currency (PayOps refuses operations in any other currency).
- Capture: ``POST /v2/UpdatePaymentStatus`` ``{"Operation": "capture", "Amount", "Key",
  "KeyType"}``; void is the same call with ``"release"``. One capture **or** one release per
  invoice. The reply's ``Data`` is the GetPaymentStatus object: Paid with a ``Succss``
  transaction after a capture, a ``Canceled`` transaction after a release.
- Refund: ``POST /v2/MakeRefund`` ``{"KeyType", "Key", "Amount", "Comment",
  "ServiceChargeOnCustomer", "RefundChargeOnCustomer", "ExternalIdentifier"}``. A refund is a
  *request* that MyFatoorah's finance team reviews, so a created refund is answered
  **PENDING** (PayOps: ``refund_queued``) and becomes final through ``GetRefundStatus``
  (``Refunded`` / ``Canceled``), which the reconciler follows. Accounts with MyFatoorah's
  "Auto Refund" may set ``options["auto_refund"] = true``: the connector then reads the new
  refund's status at once and answers SUCCESS if it is already ``Refunded``.
- Idempotency: MyFatoorah has none. ``ExternalIdentifier`` carries PayOps's reference number, is
  echoed by ``GetRefundStatus``, and is how the connector finds a refund again: before
  ``MakeRefund`` it lists the invoice's refunds and, if one already carries this reference,
  answers from it instead of creating a second refund; ``inquire_operation`` uses the same list.
  Capture and release need no key: the gateway accepts only one of them per invoice.
- Inquiry: ``POST /v2/GetPaymentStatus`` ``{"Key", "KeyType"}``.
- Notifications: webhooks V1 and V2 signed with ``MyFatoorah-Signature`` (HMAC-SHA256 with the
  configuration's webhook secret, ``--webhook-secret``); see ``webhooks.py``.

Payment references (``gateway_refs`` of the imported payment): ``invoice_id`` (MyFatoorah's
InvoiceId, preferred) or ``payment_id`` (a PaymentId; the connector then looks the invoice up).

Configuration::

    payops gateway add myfatoorah --code myfatoorah-kwd --mode purchase --currency KWD \
      --credentials '{"api_token": "…"}' --option country=KWT --production \
      --operation refund --operation inquiry --webhook-secret '…'

A purchase-mode account should enable only what it can do (``--operation refund --operation
inquiry``; without ``--operation`` every capability is enabled). An account with MyFatoorah's
Authorize-Capture feature, in ``--mode authorize``, may also enable ``capture`` and ``void``.
``--option auto_refund=true`` for an account with Auto Refund. Without ``--production`` the
configuration uses the test host and ``country`` is not needed.

A connector never raises for a gateway problem: transport errors, timeouts, 5xx and unparsable
replies come back as ``Outcome.UNKNOWN``. The API token is only ever put in the Authorization
header; it is never logged nor kept in a result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

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
from payops.connectors.myfatoorah import webhooks
from payops.connectors.myfatoorah.transformers import (
    ERROR_CODES,
    GET_PAYMENT_STATUS,
    GET_REFUND_STATUS,
    INVOICE_STATUS_OUTCOME,
    KEY_INVOICE_ID,
    KEY_PAYMENT_ID,
    KEY_REFUND_ID,
    MAKE_REFUND,
    OPERATION_CAPTURE,
    OPERATION_RELEASE,
    REFUND_STATUS_OUTCOME,
    SUCCESS_STATUSES,
    UPDATE_PAYMENT_STATUS,
    GatewayRequest,
    MakeRefundRequest,
    PaymentStatus,
    PaymentStatusRequest,
    RefundCreated,
    RefundStatusEntry,
    RefundStatusList,
    RefundStatusRequest,
    UpdatePaymentStatusRequest,
    dumps,
    jsonable,
    loads,
    parse_data,
    parse_envelope,
    payment_outcome,
    refund_params,
    scrub,
    status_outcome,
    to_amount,
    to_minor,
    transaction_params,
)
from payops.connectors.redaction import field_set
from payops.money import format_minor, is_known_currency

log = logging.getLogger(__name__)

TEST_HOST = "https://apitest.myfatoorah.com"
LIVE_HOSTS = {
    "KWT": "https://api.myfatoorah.com",
    "BHR": "https://api.myfatoorah.com",
    "OMN": "https://api.myfatoorah.com",
    "JOR": "https://api.myfatoorah.com",
    "SAU": "https://api-sa.myfatoorah.com",
    "ARE": "https://api-ae.myfatoorah.com",
    "QAT": "https://api-qa.myfatoorah.com",
    "EGY": "https://api-eg.myfatoorah.com",
}
USER_AGENT = "PayOps-MyFatoorah/1"
RAW_TEXT_LIMIT = 500

MSG_NO_ANSWER = "MyFatoorah did not answer"
MSG_UNPARSABLE = "MyFatoorah's reply could not be read"
MSG_BAD_TOKEN = "MyFatoorah rejected the API token"
MSG_NO_KEY = "No MyFatoorah invoice id or payment id is recorded for this payment"
MSG_NO_TOKEN = "The MyFatoorah API token is not configured"
MSG_REFUND_QUEUED = "Refund request created; MyFatoorah will review and execute it"


@dataclass(frozen=True)
class _Reply:
    """One HTTP exchange, parsed. ``status_code`` is None when no reply arrived."""

    status_code: int | None
    body: Any = None      # parsed JSON (numbers with a fraction as Decimal), or None
    text: str = ""        # the body as text when it was not JSON
    fault: str = ""       # timeout | connection_error | transport_error

    def raw(self) -> dict[str, Any]:
        """What is kept as the gateway's reply (pg_response): JSON-safe, card numbers masked."""
        if self.status_code is None:
            return {"error": self.fault}
        if isinstance(self.body, dict):
            return scrub(jsonable(self.body))
        if self.body is not None:
            return {"status_code": self.status_code, "body": scrub(jsonable(self.body))}
        return {"status_code": self.status_code, "body": self.text[:RAW_TEXT_LIMIT]}


@dataclass(frozen=True)
class _Answer:
    """A reply classified once: ``ok`` (IsSuccess true), ``refused`` (nothing was done) or
    ``unknown`` (we cannot tell whether MyFatoorah acted)."""

    kind: Literal["ok", "refused", "unknown"]
    raw: dict[str, Any]
    message: str = ""
    data: Any = None


def _classify(reply: _Reply) -> _Answer:
    if reply.status_code is None:
        return _Answer("unknown", reply.raw(), MSG_NO_ANSWER)
    code = reply.status_code
    if code >= 500 or code == 408:
        return _Answer("unknown", reply.raw(), f"MyFatoorah answered HTTP {code}")
    envelope = parse_envelope(reply.body)
    if envelope is not None:
        if envelope.IsSuccess:
            return _Answer("ok", reply.raw(), envelope.Message or "", envelope.Data)
        return _Answer("refused", reply.raw(),
                       envelope.error_message() or f"MyFatoorah refused the request (HTTP {code})")
    if code < 400:
        # A 2xx (or 3xx) that is not the envelope: whatever happened cannot be read.
        return _Answer("unknown", reply.raw(), MSG_UNPARSABLE)
    if code == 401:
        return _Answer("refused", reply.raw(), MSG_BAD_TOKEN)
    message = ""
    if isinstance(reply.body, dict) and isinstance(reply.body.get("Message"), str):
        message = reply.body["Message"].strip()
    return _Answer("refused", reply.raw(),
                   message or f"MyFatoorah refused the request (HTTP {code})")


def _flag(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _ref(refs: dict[str, Any], name: str) -> str | None:
    value = refs.get(name)
    if isinstance(value, bool) or value is None:
        return None
    text = str(value).strip()
    return text or None


class MyFatoorahConnector(Connector):
    name: ClassVar[str] = "myfatoorah"
    capabilities: ClassVar[frozenset[str]] = frozenset({"capture", "refund", "void", "inquiry"})
    required_credentials: ClassVar[tuple[str, ...]] = ("api_token",)
    # The customer's name, contacts, civil id and address, and the payer's IP address.
    # ("ExpiryDate" is the invoice's, not the card's, and stays.)
    personal_fields: ClassVar[frozenset[str]] = field_set((
        "CustomerName", "CustomerEmail", "CustomerMobile", "CustomerCivilId", "CustomerAddress",
        "IpAddress", "CardHolderName",
    ))

    @classmethod
    def default_operations(cls, operation_mode: str) -> frozenset[str]:
        # Capture and release exist only for accounts with Authorize-Capture enabled.
        if operation_mode == "authorize":
            return cls.capabilities
        return frozenset({"refund", "inquiry"})

    def __init__(self, config: ConnectorConfig) -> None:
        # Never raises: configuration problems are reported as a result at call time.
        super().__init__(config)
        self._client: httpx.AsyncClient | None = None

    # -- configuration ----------------------------------------------------------------------
    @property
    def _token(self) -> str:
        value = (self.config.credentials or {}).get("api_token")
        return value.strip() if isinstance(value, str) else ""

    def _options(self) -> dict[str, Any]:
        return self.config.options or {}

    def _country(self) -> str:
        value = self._options().get("country") or (self.config.credentials or {}).get("country")
        return str(value or "").strip().upper()

    def _base_url(self) -> str | None:
        override = self._options().get("base_url")
        if override:
            return str(override).rstrip("/")
        if self.config.is_sandbox:
            return TEST_HOST
        return LIVE_HOSTS.get(self._country())

    def _configuration_problem(self) -> str | None:
        if not self._token:
            return MSG_NO_TOKEN
        if self._base_url() is None:
            return ("A live MyFatoorah configuration needs option country, one of "
                    + ", ".join(sorted(LIVE_HOSTS)))
        return None

    def _auto_refund(self) -> bool:
        return _flag(self._options().get("auto_refund", False))

    # -- the one send-and-parse point -------------------------------------------------------
    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.config.timeout_seconds),
                follow_redirects=False,
                verify=shared_tls_context(),
            )
        return self._client

    async def _send(self, path: str, payload: GatewayRequest) -> _Reply:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        started = time.monotonic()
        try:
            content = dumps(payload.body()).encode()
            response = await self._http().post(f"{self._base_url()}{path}", headers=headers,
                                               content=content)
            text = response.text
        except httpx.TimeoutException as exc:
            log.warning("myfatoorah POST %s: no answer (%s)", path, type(exc).__name__)
            return _Reply(None, fault="timeout")
        except httpx.TransportError as exc:
            log.warning("myfatoorah POST %s: transport error (%s)", path, type(exc).__name__)
            return _Reply(None, fault="connection_error")
        except Exception as exc:  # noqa: BLE001 - a connector never raises for the gateway
            log.warning("myfatoorah POST %s: failed (%s)", path, type(exc).__name__)
            return _Reply(None, fault="transport_error")
        elapsed_ms = int((time.monotonic() - started) * 1000)
        log.debug("myfatoorah POST %s -> %s in %d ms", path, response.status_code, elapsed_ms)
        try:
            parsed = loads(text) if text.strip() else None
        except ValueError:
            parsed = None
        return _Reply(response.status_code, parsed, "" if parsed is not None else text)

    async def _call(self, path: str, payload: GatewayRequest) -> _Answer:
        return _classify(await self._send(path, payload))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # -- incoming notifications -------------------------------------------------------------
    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """A webhook signed with the configuration's webhook secret (``MyFatoorah-Signature``,
        see ``webhooks.py``): a refund names PayOps's reference (its ExternalIdentifier), and
        every event names the invoice."""
        if not webhooks.verify_signature(body, headers, self.config.webhook_secret):
            raise NotificationRejected("notification is not authentic")
        try:
            notice = webhooks.parse_notification(body, headers)
        except webhooks.MyFatoorahWebhookError as exc:
            raise NotificationRejected(str(exc)) from None
        refs = {"invoice_id": notice.invoice_id} if notice.invoice_id else {}
        return Notification(reference=notice.reference, gateway_refs=refs)

    # -- results ----------------------------------------------------------------------------
    @staticmethod
    def _result(outcome: Outcome, raw: dict[str, Any], params: dict[str, Any], message: str,
                refs: dict[str, Any] | None = None) -> GatewayResult:
        return GatewayResult(outcome, raw, params, message,
                             {k: v for k, v in (refs or {}).items() if v not in (None, "")})

    def _simple(self, outcome: Outcome, raw: dict[str, Any], reference: str,
                message: str) -> GatewayResult:
        result = {Outcome.FAILED: "declined", Outcome.UNKNOWN: "unknown"}.get(
            outcome, outcome.value)
        return self._result(outcome, raw,
                            {"ref": reference, "result": result, "pg_message": message}, message)

    def _not_ok(self, answer: _Answer, reference: str, *, inquiry: bool = False) -> GatewayResult:
        """A refused or unreadable reply. A refused inquiry says nothing about the payment."""
        if answer.kind == "refused" and not inquiry:
            return self._simple(Outcome.FAILED, answer.raw, reference, answer.message)
        return self._simple(Outcome.UNKNOWN, answer.raw, reference, answer.message)

    def _precheck(self, payment: PaymentRef, reference: str,
                  *, inquiry: bool) -> tuple[tuple[str, str] | None, GatewayResult | None]:
        """The key to send, or the result of a request that cannot be sent at all."""
        problem = self._configuration_problem()
        key = self._payment_key(payment)
        if problem is None and key is not None:
            return key, None
        message = problem or MSG_NO_KEY
        outcome = Outcome.UNKNOWN if inquiry else Outcome.FAILED
        return None, self._simple(outcome, {"error": message}, reference, message)

    def _unsupported_currency(self, request: OperationRequest) -> GatewayResult:
        message = f"Currency {request.currency_code!r} cannot be sent to MyFatoorah"
        return self._simple(Outcome.FAILED, {"error": message}, request.reference_number,
                            message)

    @staticmethod
    def _payment_key(payment: PaymentRef) -> tuple[str, str] | None:
        refs = payment.gateway_refs or {}
        invoice_id = _ref(refs, "invoice_id")
        if invoice_id:
            return invoice_id, KEY_INVOICE_ID
        payment_id = _ref(refs, "payment_id")
        if payment_id:
            return payment_id, KEY_PAYMENT_ID
        return None

    async def _invoice_id(self, payment: PaymentRef) -> str | None:
        """The invoice id (GetRefundStatus takes no PaymentId): recorded, or looked up."""
        refs = payment.gateway_refs or {}
        invoice_id = _ref(refs, "invoice_id")
        if invoice_id:
            return invoice_id
        payment_id = _ref(refs, "payment_id")
        if not payment_id:
            return None
        answer = await self._call(GET_PAYMENT_STATUS,
                                  PaymentStatusRequest(Key=payment_id, KeyType=KEY_PAYMENT_ID))
        found = parse_data(PaymentStatus, answer.data) if answer.kind == "ok" else None
        return found.InvoiceId if found is not None and found.InvoiceId else None

    # -- capture and release ----------------------------------------------------------------
    async def capture(self, request: OperationRequest) -> GatewayResult:
        return await self._update(request, OPERATION_CAPTURE)

    async def void(self, request: OperationRequest) -> GatewayResult:
        return await self._update(request, OPERATION_RELEASE)

    async def _update(self, request: OperationRequest, operation: str) -> GatewayResult:
        reference = request.reference_number
        key, refused = self._precheck(request.payment, reference, inquiry=False)
        if refused is not None:
            return refused
        assert key is not None
        if not is_known_currency(request.currency_code):
            return self._unsupported_currency(request)
        # Release returns the whole authorization; its Amount must then equal the invoice value,
        # which is what PayOps voids (the authorized total).
        payload = UpdatePaymentStatusRequest(
            Operation=operation, Amount=to_amount(request.amount, request.currency_code),
            Key=key[0], KeyType=key[1],
        )
        answer = await self._call(UPDATE_PAYMENT_STATUS, payload)
        if answer.kind != "ok":
            return self._not_ok(answer, reference)
        payment = parse_data(PaymentStatus, answer.data)
        if payment is None:
            # IsSuccess said yes, but the invoice cannot be read: let the reconciler confirm.
            return self._simple(Outcome.UNKNOWN, answer.raw, reference, MSG_UNPARSABLE)
        if operation == OPERATION_CAPTURE:
            return self._judge_capture(request, payment, answer.raw, inquiry=False)
        return self._judge_release(request, payment, answer.raw, inquiry=False)

    def _judge_capture(self, request: OperationRequest, payment: PaymentStatus,
                       raw: dict[str, Any], *, inquiry: bool) -> GatewayResult:
        reference = request.reference_number
        currency = request.currency_code
        refs = {"invoice_id": payment.InvoiceId}
        if payment.status not in INVOICE_STATUS_OUTCOME:
            message = f"MyFatoorah invoice status {payment.InvoiceStatus!r} is not understood"
            outcome = Outcome.PENDING if inquiry else Outcome.UNKNOWN
            return self._result(outcome, raw, transaction_params(
                payment.latest(), reference, "pending" if inquiry else "unknown", message),
                message, refs)
        if payment.captured:
            transaction = payment.latest(*SUCCESS_STATUSES)
            refs["payment_id"] = transaction.PaymentId if transaction else None
            captured = to_minor(payment.InvoiceValue, currency)
            # After a partial capture InvoiceValue becomes the captured amount; the new Succss
            # transaction carries it too, so either one confirms this capture.
            taken = to_minor(transaction.TransationValue, currency) if transaction else None
            if request.amount in (captured, taken):
                return self._result(Outcome.SUCCESS, raw, transaction_params(
                    transaction, reference, "success", "Captured"), "Captured", refs)
            shown = (format_minor(captured, currency) if captured is not None
                     else str(payment.InvoiceValue))
            message = (f"MyFatoorah shows {shown} {currency} captured, not "
                       f"{format_minor(request.amount, currency)}")
            # One capture per invoice: another amount captured means this capture was not it.
            outcome = Outcome.FAILED if inquiry else Outcome.UNKNOWN
            return self._result(outcome, raw, transaction_params(
                transaction, reference, "mismatch", message), message, refs)
        if not inquiry:
            message = "MyFatoorah accepted the capture but does not show the invoice paid"
            return self._result(Outcome.UNKNOWN, raw, transaction_params(
                payment.latest(), reference, "unknown", message), message, refs)
        if payment.released:
            message = "The authorization was released; nothing was captured"
        elif payment.authorized:
            message = "Not captured: the authorization is still held at MyFatoorah"
        else:
            message = f"Not captured: the MyFatoorah invoice is {payment.InvoiceStatus}"
        return self._result(Outcome.FAILED, raw, transaction_params(
            payment.latest(), reference, "not_captured", message), message, refs)

    def _judge_release(self, request: OperationRequest, payment: PaymentStatus,
                       raw: dict[str, Any], *, inquiry: bool) -> GatewayResult:
        reference = request.reference_number
        refs = {"invoice_id": payment.InvoiceId}
        if payment.status not in INVOICE_STATUS_OUTCOME:
            message = f"MyFatoorah invoice status {payment.InvoiceStatus!r} is not understood"
            outcome = Outcome.PENDING if inquiry else Outcome.UNKNOWN
            return self._result(outcome, raw, transaction_params(
                payment.latest(), reference, "pending" if inquiry else "unknown", message),
                message, refs)
        if payment.released:
            transaction = payment.latest("canceled")
            refs["payment_id"] = transaction.PaymentId if transaction else None
            return self._result(Outcome.SUCCESS, raw, transaction_params(
                transaction, reference, "success", "Released"), "Released", refs)
        if not inquiry:
            message = "MyFatoorah accepted the release but does not show it"
            return self._result(Outcome.UNKNOWN, raw, transaction_params(
                payment.latest(), reference, "unknown", message), message, refs)
        if payment.captured:
            message = "Not released: the invoice was captured"
        elif payment.authorized:
            message = "Not released: the authorization is still held at MyFatoorah"
        else:
            message = f"Not released: the MyFatoorah invoice is {payment.InvoiceStatus}"
        return self._result(Outcome.FAILED, raw, transaction_params(
            payment.latest(), reference, "not_released", message), message, refs)

    # -- refund -----------------------------------------------------------------------------
    async def refund(self, request: OperationRequest) -> GatewayResult:
        reference = request.reference_number
        key, refused = self._precheck(request.payment, reference, inquiry=False)
        if refused is not None:
            return refused
        assert key is not None
        if not is_known_currency(request.currency_code):
            return self._unsupported_currency(request)
        invoice_id = await self._invoice_id(request.payment)
        if invoice_id:
            # MyFatoorah has no idempotency key: look for a refund already carrying this
            # reference before creating one. Best effort: an unreadable list does not stop us.
            answer = await self._call(GET_REFUND_STATUS, RefundStatusRequest(
                KeyType=KEY_INVOICE_ID, Key=invoice_id))
            # GUESS: an invoice without refunds is listed as an empty RefundStatusResult; any
            # other answer only skips this check.
            listed = parse_data(RefundStatusList, answer.data) if answer.kind == "ok" else None
            if listed is not None and listed.by_external_identifier(reference):
                log.info("myfatoorah refund %s already exists; not sent again", reference)
                return self._judge_refunds(request, listed, answer.raw, invoice_id)
            key = (invoice_id, KEY_INVOICE_ID)
        payload = MakeRefundRequest(
            KeyType=key[1], Key=key[0], Amount=to_amount(request.amount, request.currency_code),
            Comment=f"PayOps refund {reference}", ServiceChargeOnCustomer=False,
            RefundChargeOnCustomer=False, ExternalIdentifier=reference,
        )
        answer = await self._call(MAKE_REFUND, payload)
        if answer.kind != "ok":
            return self._not_ok(answer, reference)
        created = parse_data(RefundCreated, answer.data)
        refs = {"invoice_id": invoice_id or (created.RefundInvoiceId if created else None)}
        if created is not None:
            refs.update(refund_id=created.RefundId, refund_reference=created.RefundReference)
            recorded = to_minor(created.Amount, request.currency_code)
            if created.Amount is not None and recorded != request.amount:
                message = (f"MyFatoorah recorded a different amount ({created.Amount}) "
                           "for this refund")
                return self._result(Outcome.UNKNOWN, answer.raw, refund_params(
                    reference, "mismatch", message, refund_id=created.RefundId,
                    refund_reference=created.RefundReference), message, refs)
            if self._auto_refund() and created.RefundId:
                settled = await self._auto_refund_result(request, created.RefundId, refs)
                if settled is not None:
                    return settled
        # IsSuccess: the refund request exists (even if Data could not be read); it is final
        # only once MyFatoorah executes it.
        return self._result(Outcome.PENDING, answer.raw, refund_params(
            reference, "queued", MSG_REFUND_QUEUED,
            refund_id=created.RefundId if created else None,
            refund_reference=created.RefundReference if created else None),
            MSG_REFUND_QUEUED, refs)

    async def _auto_refund_result(self, request: OperationRequest, refund_id: str,
                                  refs: dict[str, Any]) -> GatewayResult | None:
        """With Auto Refund the refund may be executed at once: read its status."""
        answer = await self._call(GET_REFUND_STATUS,
                                  RefundStatusRequest(KeyType=KEY_REFUND_ID, Key=refund_id))
        listed = parse_data(RefundStatusList, answer.data) if answer.kind == "ok" else None
        if listed is None:
            return None
        entries = [r for r in listed.refunds if r.RefundId == refund_id]
        if len(entries) != 1 or status_outcome(REFUND_STATUS_OUTCOME,
                                               entries[0].RefundStatus) != Outcome.SUCCESS:
            return None
        return self._judge_refund_entry(request, entries[0], answer.raw, refs)

    def _judge_refunds(self, request: OperationRequest, listed: RefundStatusList,
                       raw: dict[str, Any], invoice_id: str) -> GatewayResult:
        reference = request.reference_number
        refs = {"invoice_id": invoice_id}
        entries = listed.by_external_identifier(reference)
        known_id = _ref(request.gateway_refs or {}, "refund_id")
        if known_id and len(entries) != 1:
            # The refund id MyFatoorah gave when the refund was created settles it.
            entries = [r for r in listed.refunds if r.RefundId == known_id]
        if not entries:
            message = f"MyFatoorah has no refund with reference {reference}"
            return self._result(Outcome.FAILED, raw, refund_params(
                reference, "not_found", message), message, refs)
        if len(entries) > 1:
            message = f"MyFatoorah lists {len(entries)} refunds with reference {reference}"
            return self._result(Outcome.UNKNOWN, raw, refund_params(
                reference, "duplicate", message), message, refs)
        return self._judge_refund_entry(request, entries[0], raw, refs)

    def _judge_refund_entry(self, request: OperationRequest, entry: RefundStatusEntry,
                            raw: dict[str, Any], refs: dict[str, Any]) -> GatewayResult:
        reference = request.reference_number
        refs = {**refs, "refund_id": entry.RefundId, "refund_reference": entry.RefundReference}
        ids = {"refund_id": entry.RefundId, "refund_reference": entry.RefundReference,
               "rrn": entry.RRN}
        recorded = to_minor(entry.value, request.currency_code)
        if entry.value is not None and recorded != request.amount:
            message = f"MyFatoorah recorded a different amount ({entry.value}) for this refund"
            return self._result(Outcome.UNKNOWN, raw,
                                refund_params(reference, "mismatch", message, **ids),
                                message, refs)
        outcome = status_outcome(REFUND_STATUS_OUTCOME, entry.RefundStatus)
        message = {
            Outcome.SUCCESS: "Refunded",
            Outcome.FAILED: "MyFatoorah canceled the refund",
        }.get(outcome, MSG_REFUND_QUEUED if entry.status == "pending"
              else f"MyFatoorah refund status {entry.RefundStatus!r} is not final")
        result = {Outcome.SUCCESS: "success", Outcome.FAILED: "canceled"}.get(outcome, "queued")
        return self._result(outcome, raw, refund_params(reference, result, message, **ids),
                            message, refs)

    # -- the gateway's own books -------------------------------------------------------------
    async def list_operations(self, payment: PaymentRef) -> list[GatewayOperation] | None:
        """The invoice's refunds (GetRefundStatus, portal ones included), each identified by its
        ``RefundId`` — the ``refund_id`` kept in gateway_refs. For an authorized payment
        (Authorize-Capture) also its capture (the ``Succss`` transaction) or release (the
        ``Canceled`` transaction), identified by that transaction's ``PaymentId`` — the
        ``payment_id`` kept in gateway_refs. A purchase's ``Succss`` transaction is the payment
        itself and is not listed. None when the invoice or its refunds cannot be read."""
        try:
            if self._configuration_problem() is not None or self._payment_key(payment) is None:
                return None
            currency = payment.currency_code
            if not is_known_currency(currency):
                return None
            listed: list[GatewayOperation] = []
            if payment.operation_mode == "authorize":
                key = self._payment_key(payment)
                assert key is not None
                answer = await self._call(GET_PAYMENT_STATUS,
                                          PaymentStatusRequest(Key=key[0], KeyType=key[1]))
                found = parse_data(PaymentStatus, answer.data) if answer.kind == "ok" else None
                if found is None:
                    return None
                if found.captured:
                    transaction = found.latest(*SUCCESS_STATUSES)
                    amount = (to_minor(transaction.TransationValue, currency) if transaction
                              else None)
                    if amount is None:
                        amount = to_minor(found.InvoiceValue, currency)
                    if transaction is not None and transaction.PaymentId and amount:
                        listed.append(GatewayOperation("capture", amount, Outcome.SUCCESS,
                                                       transaction.PaymentId))
                elif found.released:
                    transaction = found.latest("canceled")
                    if transaction is not None and transaction.PaymentId:
                        listed.append(GatewayOperation("void", payment.amount, Outcome.SUCCESS,
                                                       transaction.PaymentId))
            invoice_id = await self._invoice_id(payment)
            if invoice_id is None:
                return None
            answer = await self._call(GET_REFUND_STATUS, RefundStatusRequest(
                KeyType=KEY_INVOICE_ID, Key=invoice_id))
            refunds = parse_data(RefundStatusList, answer.data) if answer.kind == "ok" else None
            if refunds is None:
                return None
            for entry in refunds.refunds:
                if entry.BaseCurrency and entry.BaseCurrency.upper() != currency.upper():
                    continue
                amount = to_minor(entry.value, currency)
                if not entry.RefundId or amount is None or amount <= 0:
                    continue
                outcome = status_outcome(REFUND_STATUS_OUTCOME, entry.RefundStatus)
                listed.append(GatewayOperation("refund", amount, outcome, entry.RefundId))
            return listed
        except Exception as exc:  # noqa: BLE001 - a connector must never raise
            log.warning("myfatoorah operation listing failed: %s", type(exc).__name__)
            return None

    # -- inquiry ----------------------------------------------------------------------------
    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        reference = payment.reference_number
        key, refused = self._precheck(payment, reference, inquiry=True)
        if refused is not None:
            return refused
        assert key is not None
        answer = await self._call(GET_PAYMENT_STATUS,
                                  PaymentStatusRequest(Key=key[0], KeyType=key[1]))
        if answer.kind != "ok":
            return self._not_ok(answer, reference, inquiry=True)
        found = parse_data(PaymentStatus, answer.data)
        if found is None:
            return self._simple(Outcome.UNKNOWN, answer.raw, reference, MSG_UNPARSABLE)
        outcome, message = payment_outcome(found, payment.operation_mode)
        transaction = (found.latest(*SUCCESS_STATUSES) or found.latest("authorize")
                       or found.latest())
        if outcome == Outcome.FAILED and transaction is not None and transaction.ErrorCode:
            message = (transaction.Error or "").strip() or ERROR_CODES.get(
                transaction.ErrorCode.upper(), message)
        refs = {"invoice_id": found.InvoiceId,
                "payment_id": transaction.PaymentId if transaction else None}
        return self._result(outcome, answer.raw, transaction_params(
            transaction, reference, found.status or "unknown", message), message, refs)

    async def inquire_operation(self, request: OperationRequest) -> GatewayResult:
        reference = request.reference_number
        key, refused = self._precheck(request.payment, reference, inquiry=True)
        if refused is not None:
            return refused
        assert key is not None
        if request.operation == "refund":
            invoice_id = await self._invoice_id(request.payment)
            if invoice_id is None:
                message = "The MyFatoorah invoice of this payment could not be found"
                return self._simple(Outcome.UNKNOWN, {"error": message}, reference, message)
            answer = await self._call(GET_REFUND_STATUS, RefundStatusRequest(
                KeyType=KEY_INVOICE_ID, Key=invoice_id))
            if answer.kind != "ok":
                return self._not_ok(answer, reference, inquiry=True)
            listed = parse_data(RefundStatusList, answer.data)
            if listed is None:
                return self._simple(Outcome.UNKNOWN, answer.raw, reference, MSG_UNPARSABLE)
            return self._judge_refunds(request, listed, answer.raw, invoice_id)
        answer = await self._call(GET_PAYMENT_STATUS,
                                  PaymentStatusRequest(Key=key[0], KeyType=key[1]))
        if answer.kind != "ok":
            return self._not_ok(answer, reference, inquiry=True)
        payment = parse_data(PaymentStatus, answer.data)
        if payment is None:
            return self._simple(Outcome.UNKNOWN, answer.raw, reference, MSG_UNPARSABLE)
        if request.operation == "capture":
            return self._judge_capture(request, payment, answer.raw, inquiry=True)
        return self._judge_release(request, payment, answer.raw, inquiry=True)
