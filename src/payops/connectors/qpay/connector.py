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

Every reply must carry a SecureHash that verifies with the secret; one that does not is never
believed (the outcome stays open and an operator looks). An accepted refund answers 5002
("pending") and QPay documents no way to learn its final state: the refund is ``refund_queued``,
and the reconciler asks Action 14 about the original payment, which can only tell that nothing
can have been refunded (the payment failed or does not exist); otherwise the queued-refund
review rule hands it to an operator. A refund whose reply is lost is never resent (its own PUN
would be a duplicate at best).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, ClassVar

from payops.connectors import kit
from payops.connectors.base import (
    Connector,
    ConnectorConfig,
    GatewayResult,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.connectors.qpay import transformers as t

SANDBOX_URL = "https://pguat.qcb.gov.qa/qcb-pg/api/gateway/2.0"
PRODUCTION_URL = "https://pg-api.qpay.gov.qa/qcb-pg/api/gateway/2.0"
GATEWAY_PATH = "/qcb-pg/api/gateway/2.0"
SCRUB = kit.redaction(card_keys=("CardNumber",))


class QpayConnector(Connector):
    name: ClassVar[str] = "qpay"
    capabilities: ClassVar[frozenset[str]] = frozenset({"refund", "inquiry"})
    required_credentials: ClassVar[tuple[str, ...]] = ("merchant_id", "bank_id", "secret_key")
    personal_fields: ClassVar[frozenset[str]] = kit.field_set(("CardHolderName", "NationalID",
                                                               "CardExpiryDate"))
    documents_refund_status: ClassVar[bool] = False

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        override = kit.base_url(config, None)
        self.url = (override + GATEWAY_PATH) if override else (
            SANDBOX_URL if config.is_sandbox else PRODUCTION_URL)
        self.client = kit.GatewayClient("qpay", timeout=config.timeout_seconds)

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def _secret(self) -> str:
        return kit.credential(self.config, "secret_key")

    def _identity(self) -> dict[str, str]:
        return {"merchant_id": kit.credential(self.config, "merchant_id", strip=True),
                "bank_id": kit.credential(self.config, "bank_id", strip=True),
                "lang": kit.text_option(self.config, "lang", "en")}

    async def _post(self, fields: dict[str, str]) -> tuple[kit.Reply, t.QpayReply | None]:
        reply = await self.client.request("POST", self.url, form=t.signed(self._secret, fields),
                                          decode="text")
        parsed = t.parse_reply(reply.body) if reply.ok and isinstance(reply.body, str) else None
        return reply, parsed

    @staticmethod
    def _raw(reply: kit.Reply, parsed: t.QpayReply | None) -> dict[str, Any]:
        if parsed is not None:
            return SCRUB.scrub(dict(parsed.fields))
        return reply.raw()

    async def _call(self, work: Any) -> GatewayResult:
        return await kit.guarded(
            work, budget=self.config.timeout_seconds + 2.0,
            on_timeout=lambda: kit.unknown("QPay did not answer in time", {"error": "timeout"}),
            on_error=lambda exc: kit.unknown("QPay call failed", {"error": type(exc).__name__}))

    @staticmethod
    def pun(payment: PaymentRef) -> str:
        return kit.ref(payment.gateway_refs, "pun") or payment.reference_number

    def _unverified(self, reply: kit.Reply, parsed: t.QpayReply | None,
                    what: str) -> GatewayResult | None:
        """None when the reply is a signed QPay reply; else the unknown result saying why."""
        raw = self._raw(reply, parsed)
        if reply.status is None or reply.outcome_unknown:
            return kit.unknown(f"QPay did not confirm the {what}", raw)
        if parsed is None:
            return kit.unknown(f"QPay answered HTTP {reply.status} without a readable reply", raw)
        if not parsed.verified(self._secret):
            return kit.unknown(f"QPay's reply to the {what} does not carry a valid SecureHash "
                               "(check the secret key); it is not believed", raw)
        return None

    # -- operations -------------------------------------------------------------------------
    async def capture(self, request: OperationRequest) -> GatewayResult:
        return kit.not_sent("QPay does not offer capture (purchase only)")

    async def void(self, request: OperationRequest) -> GatewayResult:
        return kit.not_sent("QPay does not offer void (purchase only)")

    async def refund(self, request: OperationRequest) -> GatewayResult:
        return await self._call(lambda: self._refund(request))

    async def _refund(self, request: OperationRequest) -> GatewayResult:
        if (not kit.flag_option(self.config, "partial_refunds")
                and request.amount != request.payment.amount):
            return kit.not_sent("QPay refunds are for the whole payment only on this "
                                "configuration (option partial_refunds)")
        original = self.pun(request.payment)
        try:
            fields = t.refund_fields(**self._identity(), amount_minor=request.amount,
                                     currency_code=request.currency_code, original_pun=original,
                                     refund_pun=request.reference_number,
                                     moment=datetime.now(timezone.utc))
        except t.QpayFormatError as exc:
            return kit.not_sent(f"Not sent to QPay: {exc}")
        reply, parsed = await self._post(fields)
        if not reply.delivered:
            return kit.not_sent("QPay could not be reached; nothing was sent",
                                {"error": kit.Fault.NOT_SENT.value})
        problem = self._unverified(reply, parsed, "refund")
        if problem is not None:
            return problem
        assert parsed is not None
        raw = self._raw(reply, parsed)
        outcome, message = t.refund_outcome(parsed)
        refs = {"pun": original, "refund_pun": request.reference_number,
                "confirmation_id": parsed.get("ConfirmationID_1"),
                "refund_status": parsed.get("Status_1")}
        params = {"ref": original, "result": parsed.get("Status_1")
                  or parsed.get("EZConnectRequestStatus")}
        if outcome in (Outcome.PENDING, Outcome.SUCCESS):
            echoed = (parsed.get("PUN_1"), parsed.get("Amount_1"))
            if echoed != (request.reference_number, str(request.amount)):
                return kit.unknown(f"QPay's reply is about PUN {echoed[0]!r} for {echoed[1]!r}, "
                                   "not this refund", raw, params, refs)
        return kit.result(outcome, raw, params, message, refs)

    # -- inquiries --------------------------------------------------------------------------
    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        return await self._call(lambda: self._inquire_payment(payment))

    async def _inquire(self, pun: str) -> tuple[kit.Reply, t.QpayReply | None]:
        return await self._post(t.inquiry_fields(**self._identity(), original_pun=pun))

    async def _inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        pun = self.pun(payment)
        reply, parsed = await self._inquire(pun)
        problem = self._unverified(reply, parsed, "inquiry")
        if problem is not None:
            return problem
        assert parsed is not None
        if parsed.get("Status") == "0000" and parsed.get("OriginalPUN") not in ("", pun):
            return kit.unknown(f"QPay answered about PUN {parsed.get('OriginalPUN')!r}",
                               self._raw(reply, parsed))
        outcome = t.inquiry_outcome(parsed)
        recorded = parsed.get("Amount").strip()
        amount = int(recorded) if recorded.isdigit() and outcome == Outcome.SUCCESS else None
        return kit.result(outcome, self._raw(reply, parsed),
                          {"ref": pun, "result": parsed.get("OriginalStatus") or
                           parsed.get("Status")},
                          t.inquiry_message(parsed),
                          {"pun": pun, "confirmation_id": parsed.get("OriginalConfirmationID")},
                          amount=amount, currency_code=t.CURRENCY if amount is not None else None)

    async def inquire_operation(self, request: OperationRequest) -> GatewayResult:
        return await self._call(lambda: self._inquire_operation(request))

    async def _inquire_operation(self, request: OperationRequest) -> GatewayResult:
        """QPay has no refund inquiry. Action 14 on the original payment can only say that no
        refund can have happened (the payment failed or does not exist)."""
        pun = self.pun(request.payment)
        reply, parsed = await self._inquire(pun)
        problem = self._unverified(reply, parsed, "inquiry")
        if problem is not None:
            return problem
        assert parsed is not None
        raw = self._raw(reply, parsed)
        status, original = parsed.get("Status"), parsed.get("OriginalStatus")
        if status == "8106" or (status == "0000" and original == "3000"):
            return kit.refused(f"QPay shows no paid payment {pun} to refund "
                               f"({t.inquiry_message(parsed)})", raw, {"ref": pun})
        queued = kit.ref(request.gateway_refs, "refund_status") == "5002"
        note = (f"QPay documents no refund status; the original payment {pun} reads "
                f"{t.inquiry_message(parsed)}. Check refund PUN {request.reference_number} in "
                "QPay's merchant portal and resolve the operation.")
        if queued:
            return kit.result(Outcome.PENDING, raw, {"ref": pun, "result": "5002"}, note)
        return kit.unknown(note, raw, {"ref": pun})
