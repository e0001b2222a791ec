"""PayU India connector: refund, capture of pre-authorised payments, void of an authorisation
(both through ``cancel_refund_transaction``) and inquiry, over PayU's postservice commands.

Protocol: ``transformers.py`` (spec/gateway-protocol-check.md §7; hosted checkout:
spec/gateways-payment-acceptance.md §6).

Configuration::

    payops gateway add payu_india --code payu-inr --mode purchase --currency INR \
      --credentials '{"merchant_key": "…", "salt": "…"}' [--production]

- credentials: ``merchant_key`` and ``salt`` (PayU gives separate test and production pairs);
- options: ``base_url`` (tests; both the postservice and the ``_payment`` host),
  ``timeout_seconds``, and ``default_first_name``/``default_email``/``default_phone`` for
  checkout sessions that do not carry them (PayU requires all three on every payment);
- payment references: ``mihpayid`` (PayU's payment id, needed by every command) and ``txnid``
  (the merchant's transaction id, for verify_payment; defaults to the attempt's reference).

PayOps's ``void`` of an authorised payment is ``cancel_refund_transaction`` for the full
authorised amount; PayU answers with a ``txn_update_id`` that is followed like a refund's
``request_id``. PayOps's own ``cancel`` (of an unpaid session) never reaches PayU.

Every command is accepted asynchronously (``error_code`` 102, queued): a refund becomes
``refund_queued``; a capture or void stays open and the reconciler follows its action id with
``check_action_status`` until PayU says SUCCESS or FAILURE. The token (``var2``) is the
operation's reference number, so an operation whose reply was lost is found again among the
payment's actions by its token, and is never sent twice.

Taking payments: ``start_checkout`` builds the ``_payment`` form (txnid = the attempt's
reference, amount in rupees with two decimals, request hash) that the customer's browser posts
to PayU; PayU posts the result back to ``surl`` (the return URL) or ``furl`` (the failure URL).
``confirm_return`` checks the reverse hash in constant time and always asks verify_payment,
whose answer wins; a bad or missing hash is no information.

Refund callbacks carry no signature: they are only a hint, confirmed with check_action_status.
The key and salt are never logged nor kept in a result (the form holding them is never stored).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import parse_qsl

from payops.connectors import kit
from payops.connectors.base import (
    CheckoutRequest,
    CheckoutStart,
    Connector,
    ConnectorConfig,
    GatewayResult,
    Notification,
    NotificationRejected,
    OperationRequest,
    Outcome,
    PaymentRef,
)
from payops.connectors.payu_india import decisions
from payops.connectors.payu_india import transformers as t

SANDBOX_HOST = "https://test.payu.in"
PRODUCTION_HOST = "https://info.payu.in"
# Where the customer's browser posts the ``_payment`` form (a different host in production).
CHECKOUT_SANDBOX_HOST = "https://test.payu.in"
CHECKOUT_PRODUCTION_HOST = "https://secure.payu.in"
CHECKOUT_PATH = "/_payment"
POSTSERVICE_PATH = "/merchant/postservice.php?form=2"
# Replies never hold the salt; a callback holds the merchant key, which is not kept either.
SCRUB = kit.redaction(drop=("hash", "salt", "key"), card_keys=("card_no", "cardnum"))


class PayuIndiaConnector(Connector):
    name: ClassVar[str] = "payu_india"
    capabilities: ClassVar[frozenset[str]] = frozenset({"capture", "refund", "void", "inquiry"})
    takes_payments: ClassVar[bool] = True
    attempt_inquiry_minutes: ClassVar[int] = 15
    required_credentials: ClassVar[tuple[str, ...]] = ("merchant_key", "salt")
    personal_fields: ClassVar[frozenset[str]] = kit.field_set(
        "email phone firstname lastname address1 address2 name_on_card customerName "
        "customerEmail customerPhone"
    )

    def __init__(self, config: ConnectorConfig) -> None:
        super().__init__(config)
        host = SANDBOX_HOST if config.is_sandbox else PRODUCTION_HOST
        self.client = kit.GatewayClient(
            "payu_india",
            base_url=kit.base_url(config, host) or host,
            timeout=config.timeout_seconds,
        )
        checkout_host = CHECKOUT_SANDBOX_HOST if config.is_sandbox else CHECKOUT_PRODUCTION_HOST
        self.checkout_url = (kit.base_url(config, checkout_host) or checkout_host) + CHECKOUT_PATH

    @classmethod
    def default_operations(cls, operation_mode: str) -> frozenset[str]:
        if operation_mode == "authorize":
            return cls.capabilities
        return frozenset({"refund", "inquiry"})

    async def aclose(self) -> None:
        await self.client.aclose()

    # -- plumbing ---------------------------------------------------------------------------
    def _form(self, command: str, *variables: str) -> dict[str, str]:
        return t.command_form(
            kit.credential(self.config, "merchant_key", strip=True),
            kit.credential(self.config, "salt"),
            command,
            *variables,
        )

    async def _send(self, command: str, *variables: str) -> kit.Reply:
        return await self.client.request(
            "POST", POSTSERVICE_PATH, form=self._form(command, *variables)
        )

    def _raw(self, reply: kit.Reply) -> dict[str, Any]:
        return reply.raw(SCRUB.scrub)

    async def _call(self, work: Any) -> GatewayResult:
        return await kit.guarded(
            work,
            budget=self.config.timeout_seconds * 2 + 2.0,
            on_timeout=lambda: kit.unknown("PayU did not answer in time", {"error": "timeout"}),
            on_error=lambda exc: kit.unknown("PayU call failed", {"error": type(exc).__name__}),
        )

    @staticmethod
    def mihpayid(payment: PaymentRef) -> str | None:
        return kit.ref(payment.gateway_refs, "mihpayid")

    # -- operations -------------------------------------------------------------------------
    async def refund(self, request: OperationRequest) -> GatewayResult:
        return await self._call(lambda: self._command(request, t.REFUND, request.amount))

    async def capture(self, request: OperationRequest) -> GatewayResult:
        return await self._call(lambda: self._command(request, t.CAPTURE, request.amount))

    async def void(self, request: OperationRequest) -> GatewayResult:
        # PayU cancels an authorisation only in full: the amount is the authorised amount.
        return await self._call(lambda: self._command(request, t.REFUND, request.payment.amount))

    async def _command(self, request: OperationRequest, command: str, amount: int) -> GatewayResult:
        mihpayid = self.mihpayid(request.payment)
        if not mihpayid:
            return kit.not_sent("Not sent to PayU: the payment's mihpayid is not known")
        try:
            variables = (
                mihpayid,
                t.token(request.reference_number),
                t.payu_amount(amount, request.currency_code),
            )
        except t.PayuFormatError as exc:
            return kit.not_sent(f"Not sent to PayU: {exc}")
        reply = await self._send(command, *variables)
        raw = self._raw(reply)
        if not reply.delivered:
            return kit.not_sent("PayU could not be reached; nothing was sent", raw)
        parsed = t.parse_command_reply(reply.body) if reply.ok else None
        if reply.outcome_unknown or (parsed is None and reply.ok):
            return kit.unknown(f"PayU did not confirm the {request.operation}", raw)
        if parsed is None:
            if reply.status is not None and 400 <= reply.status < 500:
                return kit.refused(f"PayU refused the request (HTTP {reply.status})", raw)
            return kit.unknown(f"PayU did not confirm the {request.operation}", raw)
        outcome = t.command_outcome(parsed)
        params = {
            "ref": mihpayid,
            "result": parsed.error_code,
            "pg_message": parsed.msg,
            "token": request.reference_number,
        }
        refs = {
            "mihpayid": mihpayid,
            "request_id": parsed.request_id,
            "txn_update_id": parsed.txn_update_id,
        }
        if outcome == Outcome.UNKNOWN and parsed.error_code in t.REPLAY_CODES:
            # PayU may already hold a request under this token: that request is the operation.
            # (For a capture, 109 also means "a second capture": then no action has our token.)
            found = await self._by_token(request, mihpayid)
            if found.outcome == Outcome.FAILED:
                return kit.refused(t.command_message(parsed), raw, params, refs)
            return found
        return kit.result(outcome, raw, params, t.command_message(parsed), refs)

    # -- inquiries --------------------------------------------------------------------------
    async def inquire_operation(self, request: OperationRequest) -> GatewayResult:
        return await self._call(lambda: self._inquire_operation(request))

    async def _inquire_operation(self, request: OperationRequest) -> GatewayResult:
        action_id = kit.ref(request.gateway_refs, "request_id") or kit.ref(
            request.gateway_refs, "txn_update_id"
        )
        mihpayid = self.mihpayid(request.payment)
        if action_id:
            reply = await self._send(t.ACTION_STATUS, action_id)
            actions = t.parse_actions(reply.body) if reply.ok else None
            if actions is None:
                return kit.unknown(
                    "PayU could not say what happened to the operation", self._raw(reply)
                )
            match = [a for a in actions if a.request_id == action_id]
            if not match:
                return kit.unknown(f"PayU has no action {action_id}", self._raw(reply))
            return decisions.judge_action(request, match[0], self._raw(reply), mihpayid)
        if not mihpayid:
            return kit.unknown("The payment's mihpayid is not known; PayU cannot be asked")
        return await self._by_token(request, mihpayid)

    async def _by_token(self, request: OperationRequest, mihpayid: str) -> GatewayResult:
        """Find the operation among every action of the payment by its token."""
        reply = await self._send(t.ACTION_STATUS, mihpayid, t.ALL_ACTIONS)
        raw = self._raw(reply)
        actions = t.parse_actions(reply.body) if reply.ok else None
        if actions is None:
            return kit.unknown("PayU could not say what happened to the operation", raw)
        mine = [a for a in actions if a.token == request.reference_number]
        if not mine:
            # PayU lists every action it logged for the payment: ours is not among them, so
            # PayU never took it (the request was lost before PayU logged it).
            return kit.refused(
                f"PayU has no action with token {request.reference_number} on payment {mihpayid}",
                raw,
                {"ref": mihpayid},
            )
        return decisions.judge_action(request, mine[0], raw, mihpayid)

    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        return await self._call(lambda: self._inquire_payment(payment))

    async def _inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        txnid = self.txnid(payment)
        reply = await self._send(t.VERIFY_PAYMENT, txnid)
        raw = self._raw(reply)
        found = t.parse_payment(reply.body, txnid) if reply.ok else None
        if found is None:
            return kit.unknown("PayU did not say what happened to the payment", raw)
        return decisions.payment_result(payment, found, raw, txnid)

    @staticmethod
    def txnid(payment: PaymentRef) -> str:
        return kit.ref(payment.gateway_refs, "txnid") or payment.reference_number

    # -- hosted checkout --------------------------------------------------------------------
    async def start_checkout(self, request: CheckoutRequest) -> CheckoutStart:
        """The ``_payment`` form, built and hashed here: nothing is sent to PayU until the
        browser posts it. The attempt's reference is the txnid, so a retry of the same attempt
        posts the same txnid, which PayU refuses once it has succeeded (never a second charge).
        """
        payment, customer = request.payment, request.customer

        def person(name: str) -> str:
            return (customer.get(name) or "").strip() or kit.text_option(
                self.config, f"default_{name}"
            )

        try:
            form = t.checkout_form(
                key=kit.credential(self.config, "merchant_key", strip=True),
                salt=kit.credential(self.config, "salt"),
                txnid=payment.reference_number,
                amount_minor=payment.amount,
                currency_code=payment.currency_code,
                productinfo=request.description or request.merchant_name or "Payment",
                firstname=person("first_name"),
                email=person("email"),
                phone=person("phone"),
                lastname=(customer.get("last_name") or ""),
                surl=request.return_url,
                furl=request.failure_url,
            )
        except t.PayuFormatError as exc:
            return CheckoutStart(Outcome.FAILED, message=f"Not sent to PayU: {exc}")
        # Sent before: when PayU already took this txnid, the browser goes nowhere.
        if request.retry and (held := await kit.held_already(self, payment, gateway="PayU")):
            return held
        return kit.form_post(
            self.checkout_url,
            form,
            gateway_refs={"txnid": form["txnid"]},
            raw={"txnid": form["txnid"], "amount": form["amount"]},
        )

    async def confirm_return(self, payment: PaymentRef, params: Mapping[str, str]) -> GatewayResult:
        """PayU's post to surl/furl is a hint: its reverse hash is checked (constant time) and
        verify_payment is asked in every case; see ``decisions.settle_return``."""
        txnid = self.txnid(payment)
        form = {str(k): str(v) for k, v in params.items()}
        posted = decisions.posted_status(
            form,
            kit.credential(self.config, "merchant_key", strip=True),
            kit.credential(self.config, "salt"),
            txnid,
        )
        server = await self.inquire_payment(payment)
        return decisions.settle_return(payment, posted, server, txnid)

    # -- refund callbacks (unsigned hints) --------------------------------------------------
    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        data: Any
        try:
            data = (
                json.loads(body)
                if body.strip().startswith(b"{")
                else dict(parse_qsl(body.decode(), keep_blank_values=True))
            )
        except (ValueError, UnicodeDecodeError):
            raise NotificationRejected("PayU callback is neither JSON nor a form") from None
        if isinstance(data, dict) and data.get("txnid") and not data.get("token"):
            return self._payment_webhook({str(k): str(v) for k, v in data.items()})
        if not isinstance(data, dict) or not data.get("mihpayid"):
            raise NotificationRejected("PayU callback names no mihpayid")
        key = kit.credential(self.config, "merchant_key", strip=True)
        if data.get("key") and str(data.get("key")) != key:
            raise NotificationRejected("PayU callback is for another merchant key")
        token = str(data.get("token") or "") or None
        return Notification(reference=token, gateway_refs={"mihpayid": str(data["mihpayid"])})

    def _payment_webhook(self, form: dict[str, str]) -> Notification:
        """A payment webhook (Successful / Failed) carries the return's fields and reverse hash:
        authentic only when the hash verifies with our salt and the key is ours. It is still
        only a hint, confirmed by verify_payment."""
        key = kit.credential(self.config, "merchant_key", strip=True)
        if not t.reverse_hash_matches(form, kit.credential(self.config, "salt")):
            raise NotificationRejected("PayU payment webhook hash does not verify")
        if form.get("key") != key:
            raise NotificationRejected("PayU payment webhook is for another merchant key")
        refs = {"txnid": form["txnid"]}
        if form.get("mihpayid"):
            refs["mihpayid"] = form["mihpayid"]
        return Notification(reference=form["txnid"], gateway_refs=refs)
