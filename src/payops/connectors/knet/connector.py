"""KNET (Kuwait) tranportal connector: refund (action 2) and inquiry (action 8).

Protocol: ``transformers.py`` (spec/gateway-protocol-check.md §6). KNET is a debit scheme,
purchase only: no capture, no void. Payments are taken on KNET's hosted page (a separate issue);
this connector serves payments registered with ``payops txn import``.

Configuration::

    payops gateway add knet --code knet-kwd --mode purchase --currency KWD \
      --credentials '{"tranportal_id": "…", "tranportal_password": "…"}' [--production]

- credentials: ``tranportal_id``, ``tranportal_password`` (the Terminal Resource Key is used only
  for the payment page's ``trandata`` and is not needed here);
- options: ``base_url`` (tests), ``host`` (KNET's host; the default is
  ``www.kpaytest.com.kw`` in sandbox and ``www.kpay.com.kw`` live), ``timeout_seconds``;
- payment references: ``track_id`` (defaults to the attempt's reference number) and
  ``payment_id``. A track id of at most 19 letters and digits addresses the payment (KNET's
  ``transid`` limit); otherwise the payment id does.

KNET has no refund reference, no idempotency and no refund-status inquiry. A refund is sent once:
when its reply is lost nothing can tell whether it happened, so it is never resent; the operation
goes to ``needs_review`` with the track id, payment id, amount and portal an operator needs to
check it, and ``payops ops resolve`` settles it.
"""

from __future__ import annotations

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
from payops.connectors.knet import transformers as t
from payops.money import AmountError, format_minor, from_decimal

SANDBOX_HOST = "https://www.kpaytest.com.kw"
PRODUCTION_HOST = "https://www.kpay.com.kw"
PIPE_PATH = "/kpg/tranPipe.htm?param=tranInit"
PORTAL = {True: "https://www.kpaytest.com.kw/kpg/merchant.htm",
          False: "https://www.kpay.com.kw/portal/merchant.htm"}


class KnetConnector(Connector):
    name: ClassVar[str] = "knet"
    capabilities: ClassVar[frozenset[str]] = frozenset({"refund", "inquiry"})
    required_credentials: ClassVar[tuple[str, ...]] = ("tranportal_id", "tranportal_password")
    # KNET documents no way to learn what became of a refund (decisions §13: such a refund goes to
    # an operator at once instead of waiting).
    documents_refund_status: ClassVar[bool] = False

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        host = kit.text_option(config, "host") or (SANDBOX_HOST if config.is_sandbox
                                                   else PRODUCTION_HOST)
        if "://" not in host:
            host = f"https://{host}"
        self.client = kit.GatewayClient("knet", base_url=kit.base_url(config, host) or host,
                                        timeout=config.timeout_seconds)

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- addressing -------------------------------------------------------------------------
    @staticmethod
    def track_id(payment: PaymentRef) -> str:
        return kit.ref(payment.gateway_refs, "track_id") or payment.reference_number

    def _target(self, payment: PaymentRef) -> t.Target:
        return t.payment_target(self.track_id(payment),
                                kit.ref(payment.gateway_refs, "payment_id"))

    def _body(self, action: str, amount: str, target: t.Target) -> bytes:
        return t.request_body(
            tranportal_id=kit.credential(self.config, "tranportal_id", strip=True),
            password=kit.credential(self.config, "tranportal_password"),
            action=action, amount=amount, target=target)

    async def _call(self, work: Any) -> GatewayResult:
        return await kit.guarded(
            work, budget=self.config.timeout_seconds + 2.0,
            on_timeout=lambda: kit.unknown("KNET did not answer in time", {"error": "timeout"}),
            on_error=lambda exc: kit.unknown("KNET call failed", {"error": type(exc).__name__}))

    # -- operations -------------------------------------------------------------------------
    async def capture(self, request: OperationRequest) -> GatewayResult:
        return kit.not_sent("KNET does not offer capture (purchase only)")

    async def void(self, request: OperationRequest) -> GatewayResult:
        return kit.not_sent("KNET does not offer void (purchase only)")

    async def refund(self, request: OperationRequest) -> GatewayResult:
        return await self._call(lambda: self._refund(request))

    def _review_note(self, request: OperationRequest, target: t.Target | None) -> str:
        payment = request.payment
        amount = format_minor(request.amount, request.currency_code)
        return (f"KNET has no refund status inquiry, so PayOps never resends this refund. "
                f"Check KNET's merchant portal ({PORTAL[self.config.is_sandbox]}) for a refund "
                f"of {amount} {request.currency_code} on track id "
                f"{target.trackid if target else self.track_id(payment)} / payment id "
                f"{kit.ref(payment.gateway_refs, 'payment_id') or '(unknown)'} made after this "
                f"operation was sent, then resolve operation {request.reference_number} "
                f"(payops ops resolve).")

    async def _refund(self, request: OperationRequest) -> GatewayResult:
        try:
            target = self._target(request.payment)
            amount = t.knet_amount(request.amount, request.currency_code)
        except t.KnetFormatError as exc:
            return kit.not_sent(f"Not sent to KNET: {exc}")
        reply = await self.client.request(
            "POST", PIPE_PATH, xml=self._body(t.ACTION_REFUND, amount, target), decode="text")
        refs = {"track_id": target.trackid, "payment_id": kit.ref(request.payment.gateway_refs,
                                                                    "payment_id")}
        if not reply.delivered:
            return kit.not_sent("KNET could not be reached; nothing was sent",
                                {"error": kit.Fault.NOT_SENT.value})
        parsed = t.parse_reply(reply.text.encode() if reply.text else
                               str(reply.body or "").encode())
        if reply.status is None or reply.outcome_unknown or parsed is None:
            if reply.status is not None and not reply.outcome_unknown and not reply.ok:
                # A 4xx without KNET's reply format: the pipe refused the request itself.
                return kit.refused(f"KNET refused the request (HTTP {reply.status})",
                                   reply.raw(), {"trackid": target.trackid})
            why = (reply.fault.value if reply.fault else
                   f"HTTP {reply.status}" if parsed is None else "no answer")
            return kit.unknown(f"KNET did not confirm the refund ({why}). "
                               + self._review_note(request, target), reply.raw(),
                               {"trackid": target.trackid}, refs)
        outcome = t.refund_outcome(parsed)
        message = t.reply_message(parsed)
        if outcome == Outcome.UNKNOWN:
            message = f"{message}. {self._review_note(request, target)}"
        refs.update({"refund_payid": parsed.get("payid"), "refund_tranid": parsed.get("tranid"),
                     "refund_ref": parsed.get("ref")})
        found = kit.result(outcome, parsed.evidence(), t.pg_params(parsed, target), message, refs,
                           amount=_minor(parsed), currency_code=t.CURRENCY
                           if parsed.amount is not None else None)
        return kit.check_recorded(found, request, gateway="KNET")

    # -- inquiries --------------------------------------------------------------------------
    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        return await self._call(lambda: self._inquire_payment(payment))

    async def _inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        try:
            target = self._target(payment)
            amount = t.knet_amount(payment.amount, payment.currency_code)
        except t.KnetFormatError as exc:
            return kit.unknown(f"Cannot ask KNET: {exc}")
        reply = await self.client.request(
            "POST", PIPE_PATH, xml=self._body(t.ACTION_INQUIRY, amount, target), decode="text")
        if reply.status is None:
            fault = (reply.fault or kit.Fault.TRANSPORT).value
            return kit.unknown(f"KNET did not answer ({fault})", reply.raw())
        parsed = t.parse_reply((reply.text or str(reply.body or "")).encode())
        if parsed is None or not reply.ok:
            return kit.unknown(f"KNET answered HTTP {reply.status} without a usable reply",
                               reply.raw())
        outcome = t.inquiry_outcome(parsed)
        refs = {"track_id": target.trackid, "payment_id": parsed.get("payid") or
                kit.ref(payment.gateway_refs, "payment_id"), "tranid": parsed.get("tranid")}
        recorded = _minor(parsed)
        if outcome == Outcome.SUCCESS and parsed.get("trackid") and target.udf5 == t.BY_TRACK_ID \
                and parsed.get("trackid") != target.trackid:
            return kit.unknown(f"KNET answered about track id {parsed.get('trackid')!r}, not "
                               f"{target.trackid!r}", parsed.evidence())
        return kit.result(outcome, parsed.evidence(), t.pg_params(parsed, target),
                          t.reply_message(parsed), refs, amount=recorded,
                          currency_code=t.CURRENCY if recorded is not None else None)

    async def inquire_operation(self, request: OperationRequest) -> GatewayResult:
        # KNET can be asked about a payment, not about a refund: an action-8 inquiry by track id
        # returns the purchase. Nothing is sent; the operation goes to an operator.
        target = None
        try:
            target = self._target(request.payment)
        except t.KnetFormatError:
            pass
        return kit.unknown("KNET cannot say whether this refund happened. "
                           + self._review_note(request, target),
                           {"error": "no refund status inquiry at KNET"})


def _minor(reply: t.KnetReply) -> int | None:
    value = reply.amount
    if value is None:
        return None
    try:
        return from_decimal(value, t.CURRENCY)
    except AmountError:
        return None
