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
- Idempotency: ``MakeRefund`` carries ``Idempotency-Key: <reference number>``, which MyFatoorah
  honours (reply cached 250 minutes) for Kuwait and Saudi accounts and ignores elsewhere. For the
  other countries, and past 250 minutes, ``ExternalIdentifier`` carries PayOps's reference
  number, is echoed by ``GetRefundStatus``, and is how the connector finds a refund again: before
  ``MakeRefund`` it lists the invoice's refunds and, if one already carries this reference,
  answers from it instead of creating a second refund; ``inquire_operation`` uses the same list.
  A refund's own invoice (``RefundInvoiceId``) is kept as ``refund_invoice_id``, never as the
  payment's ``invoice_id``.
  Capture and release need no key: the gateway accepts only one of them per invoice.
- Inquiry: ``POST /v2/GetPaymentStatus`` ``{"Key", "KeyType"}``.
- Notifications: webhooks V1 and V2 signed with ``MyFatoorah-Signature`` (HMAC-SHA256 with the
  configuration's webhook secret, ``--webhook-secret``); see ``notifications.py``.

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
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

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
from payops.connectors.myfatoorah import notifications
from payops.connectors.myfatoorah.decisions import (
    MSG_REFUND_QUEUED,
    MSG_UNPARSABLE,
    Answer,
    belongs_to,
    classify,
    judge_capture,
    judge_payment,
    judge_refund_entry,
    judge_refunds,
    judge_release,
    not_ok,
    result,
    simple,
)
from payops.connectors.myfatoorah.transformers import (
    EXECUTE_PAYMENT,
    GET_PAYMENT_STATUS,
    GET_REFUND_STATUS,
    KEY_CUSTOMER_REFERENCE,
    KEY_INVOICE_ID,
    KEY_PAYMENT_ID,
    KEY_REFUND_ID,
    MAKE_REFUND,
    OPERATION_CAPTURE,
    OPERATION_RELEASE,
    REFUND_STATUS_OUTCOME,
    SEND_PAYMENT,
    SUCCESS_STATUSES,
    UPDATE_PAYMENT_STATUS,
    ExecutePaymentRequest,
    GatewayRequest,
    InvoiceCreated,
    MakeRefundRequest,
    PaymentKeyType,
    PaymentStatus,
    PaymentStatusRequest,
    RefundCreated,
    RefundStatusList,
    RefundStatusRequest,
    SendPaymentRequest,
    UpdatePaymentStatusRequest,
    expiry_text,
    parse_data,
    payment_url,
    refund_params,
    status_outcome,
    to_amount,
    to_minor,
    vendor_time_zone,
)
from payops.money import is_known_currency

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

MSG_NO_KEY = "No MyFatoorah invoice id or payment id is recorded for this payment"
MSG_NO_TOKEN = "The MyFatoorah API token is not configured"


class MyFatoorahConnector(Connector):
    name: ClassVar[str] = "myfatoorah"
    capabilities: ClassVar[frozenset[str]] = frozenset({"capture", "refund", "void", "inquiry"})
    takes_payments: ClassVar[bool] = True
    attempt_inquiry_minutes: ClassVar[int] = 8
    required_credentials: ClassVar[tuple[str, ...]] = ("api_token",)
    # The customer's name, contacts, civil id and address, and the payer's IP address.
    # ("ExpiryDate" is the invoice's, not the card's, and stays.)
    personal_fields: ClassVar[frozenset[str]] = kit.field_set(
        "CustomerName CustomerEmail CustomerMobile CustomerCivilId CustomerAddress "
        "IpAddress CardHolderName"
    )

    @classmethod
    def default_operations(cls, operation_mode: str) -> frozenset[str]:
        # Capture and release exist only for accounts with Authorize-Capture enabled.
        if operation_mode == "authorize":
            return cls.capabilities
        return frozenset({"refund", "inquiry"})

    def __init__(self, config: ConnectorConfig) -> None:
        # Never raises: configuration problems are reported as a result at call time.
        super().__init__(config)
        self.client = kit.GatewayClient(
            "myfatoorah", base_url=self._base_url() or "", timeout=config.timeout_seconds
        )

    # -- configuration ----------------------------------------------------------------------
    @property
    def _token(self) -> str:
        return kit.credential(self.config, "api_token", strip=True)

    def _country(self) -> str:
        return (
            kit.text_option(self.config, "country")
            or kit.credential(self.config, "country", strip=True)
        ).upper()

    def _base_url(self) -> str | None:
        live = TEST_HOST if self.config.is_sandbox else LIVE_HOSTS.get(self._country())
        return kit.base_url(self.config, live)

    def _configuration_problem(self) -> str | None:
        if not self._token:
            return MSG_NO_TOKEN
        if self._base_url() is None:
            return "A live MyFatoorah configuration needs option country, one of " + ", ".join(
                sorted(LIVE_HOSTS)
            )
        return None

    def _auto_refund(self) -> bool:
        return kit.flag_option(self.config, "auto_refund")

    # -- the one send-and-parse point -------------------------------------------------------
    async def _call(
        self, path: str, payload: GatewayRequest, idempotency_key: str | None = None
    ) -> Answer:
        headers = {
            "Authorization": f"Bearer {self._token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        return classify(
            await self.client.request("POST", path, json=payload.body(), headers=headers)
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- incoming notifications -------------------------------------------------------------
    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """A webhook signed with the configuration's webhook secret (``MyFatoorah-Signature``,
        see ``notifications.py``): a refund names PayOps's reference (its ExternalIdentifier), and
        every event names the invoice."""
        if not notifications.verify_signature(body, headers, self.config.webhook_secret):
            raise NotificationRejected("notification is not authentic")
        try:
            notice = notifications.parse_notification(body, headers)
        except notifications.MyFatoorahWebhookError as exc:
            raise NotificationRejected(str(exc)) from None
        refs = {"invoice_id": notice.invoice_id} if notice.invoice_id else {}
        if notice.refund_id:
            refs["refund_id"] = notice.refund_id  # matched against our refunds' refund_id
        return Notification(reference=notice.reference, gateway_refs=refs)

    # -- results ----------------------------------------------------------------------------
    def _precheck(
        self, payment: PaymentRef, reference: str, *, inquiry: bool
    ) -> tuple[tuple[str, PaymentKeyType] | None, GatewayResult | None]:
        """The key to send, or the result of a request that cannot be sent at all."""
        problem = self._configuration_problem()
        key = self._payment_key(payment)
        if problem is None and key is not None:
            return key, None
        message = problem or MSG_NO_KEY
        outcome = Outcome.UNKNOWN if inquiry else Outcome.FAILED
        return None, simple(outcome, {"error": message}, reference, message)

    def _unsupported_currency(self, request: OperationRequest) -> GatewayResult:
        message = f"Currency {request.currency_code!r} cannot be sent to MyFatoorah"
        return simple(Outcome.FAILED, {"error": message}, request.reference_number, message)

    @staticmethod
    def _payment_key(payment: PaymentRef) -> tuple[str, PaymentKeyType] | None:
        refs = payment.gateway_refs or {}
        invoice_id = kit.ref(refs, "invoice_id")
        if invoice_id:
            return invoice_id, KEY_INVOICE_ID
        payment_id = kit.ref(refs, "payment_id")
        if payment_id:
            return payment_id, KEY_PAYMENT_ID
        return None

    async def _invoice_id(self, payment: PaymentRef) -> str | None:
        """The invoice id (GetRefundStatus takes no PaymentId): recorded, or looked up."""
        refs = payment.gateway_refs or {}
        invoice_id = kit.ref(refs, "invoice_id")
        if invoice_id:
            return invoice_id
        payment_id = kit.ref(refs, "payment_id")
        if not payment_id:
            return None
        answer = await self._call(
            GET_PAYMENT_STATUS, PaymentStatusRequest(Key=payment_id, KeyType=KEY_PAYMENT_ID)
        )
        found = parse_data(PaymentStatus, answer.data) if answer.kind == "ok" else None
        return found.InvoiceId if found is not None and found.InvoiceId else None

    # -- capture and release ----------------------------------------------------------------
    async def capture(self, request: OperationRequest) -> GatewayResult:
        return await self._update(request, OPERATION_CAPTURE)

    async def void(self, request: OperationRequest) -> GatewayResult:
        return await self._update(request, OPERATION_RELEASE)

    async def _update(
        self, request: OperationRequest, operation: Literal["capture", "release"]
    ) -> GatewayResult:
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
            Operation=operation,
            Amount=to_amount(request.amount, request.currency_code),
            Key=key[0],
            KeyType=key[1],
        )
        answer = await self._call(UPDATE_PAYMENT_STATUS, payload)
        if answer.kind != "ok":
            return not_ok(answer, reference)
        payment = parse_data(PaymentStatus, answer.data)
        if payment is None:
            # IsSuccess said yes, but the invoice cannot be read: let the reconciler confirm.
            return simple(Outcome.UNKNOWN, answer.raw, reference, MSG_UNPARSABLE)
        if operation == OPERATION_CAPTURE:
            return judge_capture(request, payment, answer.raw, inquiry=False)
        return judge_release(request, payment, answer.raw, inquiry=False)

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
            # Idempotency-Key covers only Kuwait and Saudi accounts and 250 minutes: look for a
            # refund already carrying this reference before creating one. Best effort: an
            # unreadable list does not stop us.
            answer = await self._call(
                GET_REFUND_STATUS, RefundStatusRequest(KeyType=KEY_INVOICE_ID, Key=invoice_id)
            )
            # GUESS: an invoice without refunds is listed as an empty RefundStatusResult; any
            # other answer only skips this check.
            listed = parse_data(RefundStatusList, answer.data) if answer.kind == "ok" else None
            if listed is not None and listed.by_external_identifier(reference):
                log.info("myfatoorah refund %s already exists; not sent again", reference)
                return judge_refunds(request, listed, answer.raw, invoice_id)
            key = (invoice_id, KEY_INVOICE_ID)
        # A refund is keyed by InvoiceId or PaymentId, which is all _payment_key returns.
        payload = MakeRefundRequest(
            KeyType=KEY_INVOICE_ID if key[1] == KEY_INVOICE_ID else KEY_PAYMENT_ID,
            Key=key[0],
            Amount=to_amount(request.amount, request.currency_code),
            Comment=f"PayOps refund {reference}",
            ServiceChargeOnCustomer=False,
            RefundChargeOnCustomer=False,
            ExternalIdentifier=reference,
        )
        answer = await self._call(MAKE_REFUND, payload, idempotency_key=reference)
        if answer.kind != "ok":
            return not_ok(answer, reference)
        created = parse_data(RefundCreated, answer.data)
        # RefundInvoiceId is a new invoice made for the refund, never the payment's invoice.
        refs: dict[str, Any] = {"invoice_id": invoice_id}
        if created is not None:
            refs.update(
                refund_id=created.RefundId,
                refund_reference=created.RefundReference,
                refund_invoice_id=created.RefundInvoiceId,
            )
            recorded = to_minor(created.Amount, request.currency_code)
            different = kit.mismatch(
                request.amount,
                request.currency_code,
                recorded,
                gateway="MyFatoorah",
                what="this refund",
                shown=created.Amount,
            )
            if different:
                return result(
                    Outcome.UNKNOWN,
                    answer.raw,
                    refund_params(
                        reference,
                        "mismatch",
                        different,
                        refund_id=created.RefundId,
                        refund_reference=created.RefundReference,
                    ),
                    different,
                    refs,
                )
            if self._auto_refund() and created.RefundId:
                settled = await self._auto_refund_result(request, created.RefundId, refs)
                if settled is not None:
                    return settled
        # IsSuccess: the refund request exists (even if Data could not be read); it is final
        # only once MyFatoorah executes it.
        return result(
            Outcome.PENDING,
            answer.raw,
            refund_params(
                reference,
                "queued",
                MSG_REFUND_QUEUED,
                refund_id=created.RefundId if created else None,
                refund_reference=created.RefundReference if created else None,
            ),
            MSG_REFUND_QUEUED,
            refs,
        )

    async def _auto_refund_result(
        self, request: OperationRequest, refund_id: str, refs: dict[str, Any]
    ) -> GatewayResult | None:
        """With Auto Refund the refund may be executed at once: read its status."""
        answer = await self._call(
            GET_REFUND_STATUS, RefundStatusRequest(KeyType=KEY_REFUND_ID, Key=refund_id)
        )
        listed = parse_data(RefundStatusList, answer.data) if answer.kind == "ok" else None
        if listed is None:
            return None
        entries = [r for r in listed.refunds if r.RefundId == refund_id]
        if (
            len(entries) != 1
            or status_outcome(REFUND_STATUS_OUTCOME, entries[0].RefundStatus) != Outcome.SUCCESS
        ):
            return None
        return judge_refund_entry(request, entries[0], answer.raw, refs)

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
                answer = await self._call(
                    GET_PAYMENT_STATUS, PaymentStatusRequest(Key=key[0], KeyType=key[1])
                )
                found = parse_data(PaymentStatus, answer.data) if answer.kind == "ok" else None
                if found is None:
                    return None
                if found.captured:
                    transaction = found.latest(*SUCCESS_STATUSES)
                    amount = (
                        to_minor(transaction.TransationValue, currency) if transaction else None
                    )
                    if amount is None:
                        amount = to_minor(found.InvoiceValue, currency)
                    if transaction is not None and transaction.PaymentId and amount:
                        listed.append(
                            GatewayOperation(
                                "capture", amount, Outcome.SUCCESS, transaction.PaymentId
                            )
                        )
                elif found.released:
                    transaction = found.latest("canceled")
                    if transaction is not None and transaction.PaymentId:
                        listed.append(
                            GatewayOperation(
                                "void", payment.amount, Outcome.SUCCESS, transaction.PaymentId
                            )
                        )
            invoice_id = await self._invoice_id(payment)
            if invoice_id is None:
                return None
            answer = await self._call(
                GET_REFUND_STATUS, RefundStatusRequest(KeyType=KEY_INVOICE_ID, Key=invoice_id)
            )
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
        """GetPaymentStatus by the recorded InvoiceId (or PaymentId); for an attempt whose
        create reply was lost, by PayOps's reference (CustomerReference)."""
        reference = payment.reference_number
        problem = self._configuration_problem()
        if problem is not None:
            return simple(Outcome.UNKNOWN, {"error": problem}, reference, problem)
        key: tuple[str, PaymentKeyType] = self._payment_key(payment) or (
            reference,
            KEY_CUSTOMER_REFERENCE,
        )
        answer = await self._call(
            GET_PAYMENT_STATUS, PaymentStatusRequest(Key=key[0], KeyType=key[1])
        )
        if answer.kind != "ok":
            return not_ok(answer, reference, inquiry=True)
        found = parse_data(PaymentStatus, answer.data)
        if found is None:
            return simple(Outcome.UNKNOWN, answer.raw, reference, MSG_UNPARSABLE)
        if key[1] == KEY_CUSTOMER_REFERENCE and not belongs_to(payment, found):
            message = "MyFatoorah answered about another invoice"
            return simple(Outcome.UNKNOWN, answer.raw, reference, message)
        return judge_payment(payment, found, answer.raw, now=datetime.now(UTC), zone=self._zone())

    # -- taking payments (spec: payment acceptance §4) ---------------------------------------
    def _zone(self) -> Any:
        return vendor_time_zone(
            self._country(), self.config.is_sandbox, kit.text_option(self.config, "time_zone")
        )

    def _payment_method_id(self) -> int | None:
        value = kit.text_option(self.config, "payment_method_id")
        return int(value) if value.isdigit() and int(value) > 0 else None

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutStart:
        """One invoice per attempt: ExecutePayment for the configured ``payment_method_id``
        (its ``PaymentURL``), else SendPayment with ``NotificationOption`` ``LNK`` (its
        ``InvoiceURL``; the customer picks the method on MyFatoorah's page). Each call makes a
        new invoice, so an attempt that already has one, or whose create reply was lost
        (``retry``), looks it up (InvoiceId, else CustomerReference) before creating again."""
        payment = request.payment
        reference = payment.reference_number
        problem = self._configuration_problem()
        if problem is None and not is_known_currency(payment.currency_code):
            problem = f"Currency {payment.currency_code!r} cannot be sent to MyFatoorah"
        if problem is not None:
            return CheckoutStart(Outcome.FAILED, raw={"error": problem}, message=problem)
        known = dict(payment.gateway_refs or {})
        if request.retry or kit.ref(known, "invoice_id"):
            reused = await self._existing_invoice(request)
            if reused is not None:
                return reused
        payload = self._invoice_request(request)
        answer = await self._call(
            EXECUTE_PAYMENT if isinstance(payload, ExecutePaymentRequest) else SEND_PAYMENT, payload
        )
        if answer.kind == "unknown":
            return CheckoutStart(Outcome.UNKNOWN, raw=answer.raw, message=answer.message)
        if answer.kind == "refused":
            return CheckoutStart(Outcome.FAILED, raw=answer.raw, message=answer.message)
        created = parse_data(InvoiceCreated, answer.data)
        url = payment_url(created.url) if created is not None else None
        if created is None or not created.InvoiceId or url is None:
            # IsSuccess, but no invoice or page to send the customer to: an invoice may exist.
            return CheckoutStart(Outcome.UNKNOWN, raw=answer.raw, message=MSG_UNPARSABLE)
        log.info("myfatoorah invoice created for attempt %s", reference)
        return CheckoutStart(
            Outcome.SUCCESS,
            method="GET",
            url=url,
            raw=answer.raw,
            gateway_refs={"invoice_id": created.InvoiceId, "payment_url": url},
        )

    async def _existing_invoice(self, request: CheckoutRequest) -> CheckoutStart | None:
        """The attempt's invoice if MyFatoorah has one (None: create one). The browser goes to
        the stored page when it is known and the invoice still takes a payment; otherwise
        straight back to PayOps, which confirms by GetPaymentStatus (a page never shown to
        anyone cannot be paid twice)."""
        payment = request.payment
        known = dict(payment.gateway_refs or {})
        invoice_id = kit.ref(known, "invoice_id")
        key: tuple[str, PaymentKeyType] = (
            (invoice_id, KEY_INVOICE_ID)
            if invoice_id
            else (payment.reference_number, KEY_CUSTOMER_REFERENCE)
        )
        answer = await self._call(
            GET_PAYMENT_STATUS, PaymentStatusRequest(Key=key[0], KeyType=key[1])
        )
        if answer.kind == "unknown":
            return CheckoutStart(Outcome.UNKNOWN, raw=answer.raw, message=answer.message)
        found = parse_data(PaymentStatus, answer.data) if answer.kind == "ok" else None
        if found is None or not found.InvoiceId or not belongs_to(payment, found):
            if invoice_id:
                # The recorded invoice cannot be read: never make a second one blindly.
                message = "The attempt's MyFatoorah invoice could not be read"
                return CheckoutStart(Outcome.UNKNOWN, raw=answer.raw, message=message)
            return None  # MyFatoorah has no invoice with this reference: create it
        url = payment_url(kit.ref(known, "payment_url"))
        if found.status in ("paid", "duplicatepayment", "canceled"):
            url = None  # nothing left to pay there: PayOps reads the result at once
        log.info(
            "myfatoorah invoice for attempt %s already exists; not created again",
            payment.reference_number,
        )
        return CheckoutStart(
            Outcome.SUCCESS,
            method="GET",
            url=url or request.return_url,
            raw=answer.raw,
            gateway_refs={
                k: v for k, v in (("invoice_id", found.InvoiceId), ("payment_url", url)) if v
            },
        )

    def _invoice_request(self, request: CheckoutRequest) -> GatewayRequest:
        payment = request.payment
        customer = request.customer or {}
        name = " ".join(
            part
            for part in (
                customer.get("first_name", "").strip(),
                customer.get("last_name", "").strip(),
            )
            if part
        )
        mobile = re.sub(r"[\s-]", "", customer.get("phone", "") or "")
        common: dict[str, Any] = {
            "InvoiceValue": to_amount(payment.amount, payment.currency_code),
            "DisplayCurrencyIso": payment.currency_code.upper(),
            "CallBackUrl": request.return_url,
            "ErrorUrl": request.failure_url,
            "CustomerEmail": (customer.get("email") or "").strip() or None,
            # MyFatoorah takes a local number of at most 11 digits (the country code apart).
            "CustomerMobile": mobile if mobile.isdigit() and len(mobile) <= 11 else None,
            "CustomerReference": payment.reference_number,
            "Language": "ar" if (request.language or "").lower().startswith("ar") else "en",
            "ExpiryDate": expiry_text(request.expires_at, self._zone()),
        }
        method = self._payment_method_id()
        if method is not None:
            return ExecutePaymentRequest(
                PaymentMethodId=method, CustomerName=name or None, **common
            )
        # SendPayment requires a name; without the customer's, a neutral one.
        return SendPaymentRequest(CustomerName=name or "Customer", **common)

    async def confirm_return(self, payment: PaymentRef, params: Mapping[str, str]) -> GatewayResult:
        """The browser's ``paymentId`` is only a hint: the invoice it names must be this
        attempt's (InvoiceId / CustomerReference); otherwise, or without one, the attempt's own
        invoice is read. Landing on ErrorUrl proves nothing either."""
        hint = str(params.get("paymentId") or params.get("Id") or "").strip()
        problem = self._configuration_problem()
        if hint and problem is None and re.fullmatch(r"[0-9A-Za-z]{1,64}", hint):
            answer = await self._call(
                GET_PAYMENT_STATUS, PaymentStatusRequest(Key=hint, KeyType=KEY_PAYMENT_ID)
            )
            found = parse_data(PaymentStatus, answer.data) if answer.kind == "ok" else None
            if found is not None and belongs_to(payment, found):
                return judge_payment(
                    payment, found, answer.raw, now=datetime.now(UTC), zone=self._zone()
                )
            if found is not None:
                log.warning(
                    "myfatoorah return for attempt %s named another invoice",
                    payment.reference_number,
                )
        return await self.inquire_payment(payment)

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
                return simple(Outcome.UNKNOWN, {"error": message}, reference, message)
            answer = await self._call(
                GET_REFUND_STATUS, RefundStatusRequest(KeyType=KEY_INVOICE_ID, Key=invoice_id)
            )
            if answer.kind != "ok":
                return not_ok(answer, reference, inquiry=True)
            listed = parse_data(RefundStatusList, answer.data)
            if listed is None:
                return simple(Outcome.UNKNOWN, answer.raw, reference, MSG_UNPARSABLE)
            return judge_refunds(request, listed, answer.raw, invoice_id)
        answer = await self._call(
            GET_PAYMENT_STATUS, PaymentStatusRequest(Key=key[0], KeyType=key[1])
        )
        if answer.kind != "ok":
            return not_ok(answer, reference, inquiry=True)
        payment = parse_data(PaymentStatus, answer.data)
        if payment is None:
            return simple(Outcome.UNKNOWN, answer.raw, reference, MSG_UNPARSABLE)
        if request.operation == "capture":
            return judge_capture(request, payment, answer.raw, inquiry=True)
        return judge_release(request, payment, answer.raw, inquiry=True)
