"""KNET (Kuwait) tranportal connector: the payment page (action 1, AES ``trandata``), refund
(action 2) and inquiry (action 8).

Protocol: ``transformers.py`` (spec/gateway-protocol-check.md §6) and ``payment.py``
(spec/gateways-payment-acceptance.md §5). KNET is a debit scheme, purchase only: no capture, no
void, and ``gateway add`` refuses authorize mode.

Taking a payment: ``start_checkout`` builds the encrypted request locally (nothing is sent) and
sends the browser to ``PaymentHTTP.htm?param=paymentInit``; the attempt's reference number is the
``trackid``. KNET's server then posts the result to PayOps's response URL: ``receive_result``
decrypts it and checks the track id against the attempt, without any network call (KNET waits
for the ``REDIRECT=`` line). When the browser reaches PayOps's receipt URL, ``confirm_return``
confirms by inquiry (action 8); the decrypted result alone is never believed (no MAC).

Configuration::

    payops gateway add knet --code knet-kwd --mode purchase --currency KWD \
      --credentials '{"tranportal_id": "…", "tranportal_password": "…"}' [--production]

- credentials: ``tranportal_id``, ``tranportal_password``, and ``resource_key`` (the 16-character
  Terminal Resource Key; needed only to take payments: it encrypts the payment page's
  ``trandata`` and decrypts KNET's posted result);
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

import logging
from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar
from urllib.parse import urlencode

from payops.connectors import kit
from payops.connectors.base import (
    CheckoutRequest,
    CheckoutStart,
    Connector,
    ConnectorConfig,
    GatewayResult,
    NotificationRejected,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.connectors.knet import decisions as decide
from payops.connectors.knet import payment as pay
from payops.connectors.knet import transformers as t

log = logging.getLogger(__name__)

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
    takes_payments: ClassVar[bool] = True
    payment_modes: ClassVar[frozenset[str]] = frozenset({"purchase"})
    attempt_inquiry_minutes: ClassVar[int] = 8
    posts_result: ClassVar[bool] = True

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

    # -- taking payments ----------------------------------------------------------------------
    def _resource_key(self) -> str:
        return kit.credential(self.config, "resource_key") or kit.credential(
            self.config, "terminal_resource_key"
        )

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutStart:
        """Build the purchase request locally and send the browser to KNET's page. Nothing is
        created at KNET until the customer pays, so a retry simply builds it again."""
        payment = request.payment
        tranportal_id = kit.credential(self.config, "tranportal_id", strip=True)
        password = kit.credential(self.config, "tranportal_password")
        key = self._resource_key()
        problem = None
        if not (tranportal_id and password):
            problem = "The KNET tranportal id and password are not configured"
        elif len(key.encode("utf-8")) != 16:
            problem = "The KNET terminal resource key (16 characters) is not configured"
        try:
            amount = t.knet_amount(payment.amount, payment.currency_code)
            track_id = pay.check_track_id(self.track_id(payment))
        except ValueError as exc:  # KnetFormatError too
            problem = problem or f"Not sent to KNET: {exc}"
        if (
            problem is None
            and not self.config.is_sandbox
            and not all(
                url.startswith("https://") for url in (request.response_url, request.failure_url)
            )
        ):
            # K-064 §2.3: KNET posts only to an HTTPS responseURL with a valid certificate.
            problem = "KNET needs HTTPS response and error URLs (PAYOPS_PUBLIC_URL)"
        if problem is not None:
            return CheckoutStart(Outcome.FAILED, raw={"error": problem}, message=problem)
        plaintext = pay.purchase_plaintext(
            tranportal_id=tranportal_id,
            password=password,
            amount=amount,
            language=pay.language(request.language),
            response_url=request.response_url,
            error_url=request.failure_url,
            track_id=track_id,
        )
        trandata = pay.encrypt(plaintext, key)
        query = urlencode(
            {
                "param": "paymentInit",
                "trandata": trandata,
                "tranportalId": tranportal_id,
                "responseURL": request.response_url,
                "errorURL": request.failure_url,
            }
        )
        url = f"{self.client.url(pay.PAGE_PATH)}?{query}"
        return CheckoutStart(
            Outcome.SUCCESS,
            method="GET",
            url=url,
            gateway_refs={"track_id": track_id},
            raw={"trackid": track_id, "amt": amount},
        )

    def receive_result(self, payment: PaymentRef, params: Mapping[str, str]) -> GatewayResult:
        """KNET's server posted the result: decrypt ``trandata`` with the terminal key and check
        that it names this attempt's track id. No network call. A refusal (``NOT CAPTURED``,
        ``DENIED BY RISK``) is a failure and ``CANCELED`` a cancellation; ``CAPTURED`` is only a
        claim (no MAC) and comes back PENDING, with the amount KNET states, until the inquiry
        of ``confirm_return`` confirms it."""
        key = self._resource_key()
        trandata = str(params.get("trandata") or "")
        if len(key.encode("utf-8")) != 16:
            raise NotificationRejected("the KNET terminal resource key is not configured")
        if not trandata:
            raise NotificationRejected("no trandata in KNET's post")
        try:
            posted = pay.read_result(trandata, key)
        except pay.EnvelopeError as exc:
            raise NotificationRejected(str(exc)) from None
        expected = self.track_id(payment)
        if posted.track_id != expected:
            raise NotificationRejected("KNET's result names another track id")
        outcome, state = pay.posted_outcome(posted.result)
        recorded = decide.amount_minor(posted.amount)
        message = f"KNET posted result {posted.result or '(empty)'}"
        if outcome == Outcome.SUCCESS:
            # Spec §5.2/§5.3: paid is "CAPTURED, confirmed by inquiry". The envelope has no MAC,
            # so a success is only a claim here; confirm_return's inquiry settles it.
            outcome = Outcome.PENDING
            message += "; to be confirmed by inquiry"
        refs = {
            "track_id": expected,
            "payment_id": posted.get("paymentid"),
            "tranid": posted.get("tranid"),
        }
        params_out = {
            "result": posted.result,
            "trackid": expected,
            "payid": posted.get("paymentid") or None,
            "tranid": posted.get("tranid"),
            "ref": posted.get("ref"),
            "auth": posted.get("auth"),
            "postdate": posted.get("postdate"),
        }
        found = kit.result(
            outcome,
            {"posted": posted.evidence(), "trandata": trandata},
            {k: v for k, v in params_out.items() if v},
            message,
            refs,
            amount=recorded,
            currency_code=t.CURRENCY if recorded is not None else None,
        )
        return replace(found, payment_state=state)

    async def confirm_return(self, payment: PaymentRef, params: Mapping[str, str]) -> GatewayResult:
        """The browser reached PayOps's receipt (or error) URL: KNET's inquiry (action 8) is
        the answer. What the browser carries (``Error``, ``ErrorText``, ``result``) is never
        trusted."""
        found = await self.inquire_payment(payment)
        if found.outcome == Outcome.FAILED and found.pg_params.get("result", "").upper() in (
            "CANCELED",
            "CANCELLED",
        ):
            return replace(found, payment_state="canceled")
        return found

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
