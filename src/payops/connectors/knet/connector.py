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
    PaymentRef,
)
from payops.connectors.knet import decisions as decide
from payops.connectors.knet import transformers as t

SANDBOX_HOST = "https://www.kpaytest.com.kw"
PRODUCTION_HOST = "https://www.kpay.com.kw"
PIPE_PATH = "/kpg/tranPipe.htm?param=tranInit"
PORTAL = {
    True: "https://www.kpaytest.com.kw/kpg/merchant.htm",
    False: "https://www.kpay.com.kw/portal/merchant.htm",
}


class KnetConnector(Connector):
    name: ClassVar[str] = "knet"
    capabilities: ClassVar[frozenset[str]] = frozenset({"refund", "inquiry"})
    required_credentials: ClassVar[tuple[str, ...]] = ("tranportal_id", "tranportal_password")
    # KNET documents no way to learn what became of a refund (decisions §13: such a refund goes to
    # an operator at once instead of waiting).
    documents_refund_status: ClassVar[bool] = False

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        host = kit.text_option(config, "host") or (
            SANDBOX_HOST if config.is_sandbox else PRODUCTION_HOST
        )
        if "://" not in host:
            host = f"https://{host}"
        self.client = kit.GatewayClient(
            "knet", base_url=kit.base_url(config, host) or host, timeout=config.timeout_seconds
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    @property
    def portal(self) -> str:
        return PORTAL[self.config.is_sandbox]

    # -- addressing -------------------------------------------------------------------------
    @staticmethod
    def track_id(payment: PaymentRef) -> str:
        return kit.ref(payment.gateway_refs, "track_id") or payment.reference_number

    def _target(self, payment: PaymentRef) -> t.Target:
        return t.payment_target(self.track_id(payment), kit.ref(payment.gateway_refs, "payment_id"))

    def _body(self, action: str, amount: str, target: t.Target) -> bytes:
        return t.request_body(
            tranportal_id=kit.credential(self.config, "tranportal_id", strip=True),
            password=kit.credential(self.config, "tranportal_password"),
            action=action,
            amount=amount,
            target=target,
        )

    async def _call(self, work: Any) -> GatewayResult:
        return await kit.guarded(
            work,
            budget=self.config.timeout_seconds + 2.0,
            on_timeout=lambda: kit.unknown("KNET did not answer in time", {"error": "timeout"}),
            on_error=lambda exc: kit.unknown("KNET call failed", {"error": type(exc).__name__}),
        )

    # -- operations -------------------------------------------------------------------------
    async def capture(self, request: OperationRequest) -> GatewayResult:
        return kit.not_sent("KNET does not offer capture (purchase only)")

    async def void(self, request: OperationRequest) -> GatewayResult:
        return kit.not_sent("KNET does not offer void (purchase only)")

    async def refund(self, request: OperationRequest) -> GatewayResult:
        return await self._call(lambda: self._refund(request))

    async def _refund(self, request: OperationRequest) -> GatewayResult:
        try:
            target = self._target(request.payment)
            amount = t.knet_amount(request.amount, request.currency_code)
        except t.KnetFormatError as exc:
            return kit.not_sent(f"Not sent to KNET: {exc}")
        reply = await self.client.request(
            "POST", PIPE_PATH, xml=self._body(t.ACTION_REFUND, amount, target), decode="text"
        )
        return decide.refund_result(request, reply, target, self.portal)

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
            "POST", PIPE_PATH, xml=self._body(t.ACTION_INQUIRY, amount, target), decode="text"
        )
        return decide.inquiry_result(payment, reply, target)

    async def inquire_operation(self, request: OperationRequest) -> GatewayResult:
        # KNET can be asked about a payment, not about a refund: an action-8 inquiry by track id
        # returns the purchase. Nothing is sent; the operation goes to an operator.
        try:
            track_id = self._target(request.payment).trackid
        except t.KnetFormatError:
            track_id = self.track_id(request.payment)
        return kit.unknown(
            "KNET cannot say whether this refund happened. "
            + decide.review_note(request, track_id, self.portal),
            {"error": "no refund status inquiry at KNET"},
        )
