"""QPay (Qatar, QCB EZ-Connect) connector: refund (Action 6) and inquiry (Action 14).

Protocol: ``transformers.py`` (spec/gateway-protocol-check.md §8). QPay is a debit scheme,
purchase only: no capture, no void.

Configuration::

    payops gateway add qpay --code qpay-qar --mode purchase --currency QAR \
      --credentials '{"merchant_id": "…", "bank_id": "…", "secret_key": "…"}' [--production]

- credentials: ``merchant_id``, ``bank_id`` (the acquirer's code) and ``secret_key`` (the
  SecureHash secret);
- options: ``base_url`` (tests), ``lang`` (``en``/``ar``, default ``en``), ``partial_refunds``
  (default false: the public sources disagree on whether QPay takes partial refunds, so only a
  refund of the whole payment is sent unless the acquirer confirms partial ones),
  ``timeout_seconds``;
- payment references: ``pun`` (the payment's PUN; defaults to the attempt's reference number).

Taking payments (purchase only): ``start_checkout`` builds the signed Action 0 form (PUN = the
attempt's reference, amount in dirham minor units, ``ExtraFields_f14`` = the return URL) that the
customer's browser posts to QPay; QPay's page posts the signed ``Response.*`` result back there.
``confirm_return`` verifies its SecureHash in constant time and always inquires (Action 14); a
bad or missing hash is no information. An attempt QPay still does not know (8106) once its
window (option ``inquiry_window_minutes``, default 20) has passed is expired.

Every reply must carry a SecureHash that verifies with the secret; one that does not is never
believed (the outcome stays open and an operator looks). An accepted refund answers 5002
("pending") and QPay documents no way to learn its final state: the refund is ``refund_queued``,
and the reconciler asks Action 14 about the original payment, which can only tell that nothing
can have been refunded (the payment failed or does not exist); otherwise the queued-refund
review rule hands it to an operator. A refund whose reply is lost is never resent (its own PUN
would be a duplicate at best).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from payops.connectors import kit
from payops.connectors.base import (
    CheckoutRequest,
    CheckoutStart,
    Connector,
    ConnectorConfig,
    GatewayResult,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.connectors.qpay import decisions as decide
from payops.connectors.qpay import transformers as t

SANDBOX_URL = "https://pguat.qcb.gov.qa/qcb-pg/api/gateway/2.0"
PRODUCTION_URL = "https://pg-api.qpay.gov.qa/qcb-pg/api/gateway/2.0"
GATEWAY_PATH = "/qcb-pg/api/gateway/2.0"


class QpayConnector(Connector):
    name: ClassVar[str] = "qpay"
    capabilities: ClassVar[frozenset[str]] = frozenset({"refund", "inquiry"})
    required_credentials: ClassVar[tuple[str, ...]] = ("merchant_id", "bank_id", "secret_key")
    personal_fields: ClassVar[frozenset[str]] = kit.field_set(
        ("CardHolderName", "NationalID", "CardExpiryDate")
    )
    documents_refund_status: ClassVar[bool] = False
    takes_payments: ClassVar[bool] = True
    payment_modes: ClassVar[frozenset[str]] = frozenset({"purchase"})
    attempt_inquiry_minutes: ClassVar[int] = 20

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        override = kit.base_url(config, None)
        self.url = (
            (override + GATEWAY_PATH)
            if override
            else (SANDBOX_URL if config.is_sandbox else PRODUCTION_URL)
        )
        self.client = kit.GatewayClient("qpay", timeout=config.timeout_seconds)

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def _secret(self) -> str:
        return kit.credential(self.config, "secret_key")

    def _identity(self) -> dict[str, str]:
        return {
            "merchant_id": kit.credential(self.config, "merchant_id", strip=True),
            "bank_id": kit.credential(self.config, "bank_id", strip=True),
            "lang": kit.text_option(self.config, "lang", "en"),
        }

    async def _post(self, fields: dict[str, str]) -> tuple[kit.Reply, t.QpayReply | None]:
        reply = await self.client.request(
            "POST", self.url, form=t.signed(self._secret, fields), decode="text"
        )
        parsed = t.parse_reply(reply.body) if reply.ok and isinstance(reply.body, str) else None
        return reply, parsed

    async def _call(self, work: Any) -> GatewayResult:
        return await kit.guarded(
            work,
            budget=self.config.timeout_seconds + 2.0,
            on_timeout=lambda: kit.unknown("QPay did not answer in time", {"error": "timeout"}),
            on_error=lambda exc: kit.unknown("QPay call failed", {"error": type(exc).__name__}),
        )

    @staticmethod
    def pun(payment: PaymentRef) -> str:
        return kit.ref(payment.gateway_refs, "pun") or payment.reference_number

    # -- operations -------------------------------------------------------------------------
    async def capture(self, request: OperationRequest) -> GatewayResult:
        return kit.not_sent("QPay does not offer capture (purchase only)")

    async def void(self, request: OperationRequest) -> GatewayResult:
        return kit.not_sent("QPay does not offer void (purchase only)")

    async def refund(self, request: OperationRequest) -> GatewayResult:
        return await self._call(lambda: self._refund(request))

    async def _refund(self, request: OperationRequest) -> GatewayResult:
        if (
            not kit.flag_option(self.config, "partial_refunds")
            and request.amount != request.payment.amount
        ):
            return kit.not_sent(
                "QPay refunds are for the whole payment only on this "
                "configuration (option partial_refunds)"
            )
        original = self.pun(request.payment)
        try:
            fields = t.refund_fields(
                **self._identity(),
                amount_minor=request.amount,
                currency_code=request.currency_code,
                original_pun=original,
                refund_pun=request.reference_number,
                moment=datetime.now(UTC),
            )
        except t.QpayFormatError as exc:
            return kit.not_sent(f"Not sent to QPay: {exc}")
        reply, parsed = await self._post(fields)
        if not reply.delivered:
            return kit.not_sent(
                "QPay could not be reached; nothing was sent", {"error": kit.Fault.NOT_SENT.value}
            )
        problem = decide.unverified(reply, parsed, "refund", self._secret)
        if problem is not None:
            return problem
        assert parsed is not None
        return decide.refund_result(request, reply, parsed, original)

    # -- inquiries --------------------------------------------------------------------------
    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        return await self._call(lambda: self._inquire_payment(payment))

    async def _inquire(self, pun: str) -> tuple[kit.Reply, t.QpayReply | None]:
        return await self._post(t.inquiry_fields(**self._identity(), original_pun=pun))

    async def _inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        pun = self.pun(payment)
        reply, parsed = await self._inquire(pun)
        problem = decide.unverified(reply, parsed, "inquiry", self._secret)
        if problem is not None:
            return problem
        assert parsed is not None
        return decide.expired(
            decide.payment_result(pun, reply, parsed), self._window_passed(payment)
        )

    def _window_passed(self, payment: PaymentRef) -> bool:
        """Whether the attempt started through ``start_checkout`` (its ``requested_at``) is
        older than its inquiry window (option ``inquiry_window_minutes``, else Ottu's 20)."""
        started = kit.ref(payment.gateway_refs, "requested_at")
        if not started:
            return False
        try:
            moment = datetime.fromisoformat(started)
        except ValueError:
            return False
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        minutes = kit.float_option(
            self.config, "inquiry_window_minutes", float(self.attempt_inquiry_minutes)
        )
        return datetime.now(UTC) - moment >= timedelta(minutes=max(minutes, 1.0))

    # -- hosted checkout --------------------------------------------------------------------
    async def start_checkout(self, request: CheckoutRequest) -> CheckoutStart:
        """The signed Action 0 form, built here: nothing reaches QPay until the browser posts
        it. PUN = the attempt's reference; QPay posts the signed result to ``ExtraFields_f14``
        (the return URL)."""
        payment = request.payment
        moment = datetime.now(UTC)
        identity = self._identity()
        if request.language in ("en", "ar"):  # QPay's page in the customer's language
            identity["lang"] = request.language
        try:
            fields = t.payment_fields(
                **identity,
                amount_minor=payment.amount,
                currency_code=payment.currency_code,
                pun=payment.reference_number,
                return_url=request.return_url,
                payment_description=request.description or request.merchant_name or "Payment",
                moment=moment,
            )
        except t.QpayFormatError as exc:
            return CheckoutStart(Outcome.FAILED, message=f"Not sent to QPay: {exc}")
        # Sent before: a PUN QPay already paid is not offered again; its inquiry settles it.
        if request.retry and (held := await kit.held_already(self, payment, gateway="QPay")):
            return held
        return kit.form_post(
            self.url,
            t.signed(self._secret, fields),
            gateway_refs={"pun": fields["PUN"], "requested_at": moment.isoformat()},
            raw={
                "PUN": fields["PUN"],
                "Amount": fields["Amount"],
                "TransactionRequestDate": fields["TransactionRequestDate"],
            },
        )

    async def confirm_return(self, payment: PaymentRef, params: Mapping[str, str]) -> GatewayResult:
        """QPay's signed post-back counts only when its SecureHash verifies (constant time) and
        it names our MerchantID and this PUN; QPay is asked (Action 14) in every case. See
        ``decisions.settle_return``."""
        pun = self.pun(payment)
        signed = decide.signed_result(
            t.verified_return(params, self._secret), pun, self._identity()["merchant_id"]
        )
        server = await self.inquire_payment(payment)
        return decide.settle_return(signed, server)

    async def inquire_operation(self, request: OperationRequest) -> GatewayResult:
        return await self._call(lambda: self._inquire_operation(request))

    async def _inquire_operation(self, request: OperationRequest) -> GatewayResult:
        pun = self.pun(request.payment)
        reply, parsed = await self._inquire(pun)
        problem = decide.unverified(reply, parsed, "inquiry", self._secret)
        if problem is not None:
            return problem
        assert parsed is not None
        return decide.refund_follow_up(request, reply, parsed, pun)
