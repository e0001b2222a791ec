"""The one small interface every gateway connector implements.

A connector speaks one gateway's protocol and returns a normalised GatewayResult. It never touches
PayOps's database and never raises for a gateway problem: timeouts, resets, 5xx and unparsable
replies come back as ``Outcome.UNKNOWN`` so the caller can leave the operation for reconciliation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any, ClassVar

from payops.masked import Credentials, Masked, masked

# The caller's hard stop beyond a connector's own timeout: a connector that hangs past its
# configured timeout is treated as an unknown outcome, never waited on forever.
CALL_MARGIN_SECONDS = 5.0


class Outcome(str, Enum):
    SUCCESS = "success"
    FAILED = "failed"
    PENDING = "pending"  # accepted but not final (a queued refund, a payment still processing)
    UNKNOWN = "unknown"  # we cannot tell whether the gateway acted


@dataclass(frozen=True)
class GatewayResult:
    outcome: Outcome
    raw: dict[str, Any] = field(default_factory=dict)
    pg_params: dict[str, Any] = field(default_factory=dict)
    message: str = ""
    gateway_refs: dict[str, Any] = field(default_factory=dict)
    # What the gateway says it charged (minor units) and in which currency, when its reply says;
    # None when it does not. A payment's success is applied for this amount (decisions §13).
    amount: int | None = None
    currency_code: str | None = None
    # For a payment (an attempt) only: what a FAILED outcome means when it is not a decline,
    # "canceled" (the payer or merchant abandoned it) or "expired" (the gateway's window closed).
    payment_state: str | None = None
    # A SUCCESS an operator must still look at, e.g. MyFatoorah's DuplicatePayment (the customer
    # paid twice): the attempt is applied as paid and also flagged for review with this reason.
    review_reason: str = ""


@dataclass(frozen=True)
class PaymentRef:
    """What the gateway knows of a customer's payment attempt."""

    reference_number: str
    amount: int
    currency_code: str
    operation_mode: str
    gateway_refs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OperationRequest:
    operation: str  # capture | refund | void
    reference_number: str
    amount: int
    currency_code: str
    payment: PaymentRef
    # What the gateway told us about this operation before (for inquiries and reconciliation).
    gateway_refs: dict[str, Any] = field(default_factory=dict)
    # Gateway ids that belong to this payment's *other* operations: a gateway without merchant
    # references (N-Genius) must not mistake one of those for this operation when reconciling.
    known_gateway_ids: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Notification:
    """What an authentic incoming gateway notification is about. It is only a hint: PayOps
    confirms it by inquiry before changing anything."""

    # A reference PayOps sent to the gateway (an operation's or an attempt's reference_number).
    reference: str | None = None
    # The gateway's own identifiers of the payment (matched against stored gateway_refs).
    gateway_refs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GatewayOperation:
    """A capture, refund or void as the gateway's own books show it."""

    operation: str  # capture | refund | void
    amount: int  # minor units
    outcome: Outcome
    gateway_id: str  # the gateway's id of this operation


@dataclass(frozen=True)
class CheckoutRequest:
    """What PayOps asks of a gateway when a customer chooses it on PayOps's hosted page (the
    attempt has been recorded before this is sent). Every URL is built from PAYOPS_PUBLIC_URL and
    identifies the attempt by PayOps's own unguessable token in its path, never by a query
    parameter; the gateway may append its own parameters to them."""

    # The attempt: its reference is the merchant reference the gateway echoes (MPGS order.id,
    # Tabby reference_id, N-Genius merchantOrderReference, MyFatoorah CustomerReference, KNET
    # trackid, PayU txnid, QPay PUN). ``gateway_refs`` holds what an earlier start of this same
    # attempt stored (empty on the first start).
    payment: PaymentRef
    # Where the browser comes back (GET query or POST form, both accepted).
    return_url: str
    # Where the gateway sends a payer who cancels, and one whose payment failed (PayOps's return
    # endpoint with ``?outcome=cancel`` / ``?outcome=failure``: only a hint, never trusted).
    cancel_url: str
    failure_url: str
    # Where a gateway that posts the result server-to-server before the browser returns (KNET's
    # responseURL) posts it.
    response_url: str
    # The configuration's incoming-notification endpoint (/b/pg/notifications/{pg_code}).
    notification_url: str
    merchant_name: str = ""
    description: str = ""
    # Where a gateway with its own time-out redirect (MPGS's timeoutUrl) sends a payer whose
    # time ran out: PayOps's return endpoint with ``?outcome=timeout`` (a hint, never trusted).
    # Added for MPGS; empty means "use failure_url".
    timeout_url: str = ""
    # What the session knows of the customer: email, first_name, last_name, phone (may be empty).
    customer: Mapping[str, str] = field(default_factory=dict)
    language: str = "en"
    # When PayOps's session expires (the gateway's own window should not outlast it).
    expires_at: datetime | None = None
    # True when an earlier start of this attempt got no answer (a lost reply): a gateway that
    # creates a new object per call (Tabby, N-Genius, MyFatoorah) must look the payment up by
    # the attempt's reference first and reuse it rather than create a second one.
    retry: bool = False


@dataclass(frozen=True)
class CheckoutStart:
    """The gateway's answer to a CheckoutRequest: where to send the customer's browser.

    ``outcome`` is SUCCESS when the browser can go (``method``/``url``/``fields``), FAILED when the
    gateway refused (``message`` says why; the attempt fails and the customer may try again),
    UNKNOWN when the reply was lost (the attempt stays open; a new start is sent with
    ``retry=True``). ``gateway_refs`` are stored with the attempt before the browser is sent
    (session id, order reference, payment id, invoice id ...). A key starting with ``secret_``
    (MPGS's successIndicator) is kept on the server only: never shown in any response or page.
    """

    outcome: Outcome
    # GET: a plain redirect to ``url``. POST: the browser posts ``fields`` to ``url`` (an
    # auto-submitting form on PayOps's page: PayU, QPay).
    method: str = "GET"
    url: str = ""
    fields: Mapping[str, str] = field(default_factory=dict)
    gateway_refs: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict)
    message: str = ""


class NotificationRejected(ValueError):
    """Not authentic, or unreadable. The message is safe to log."""


@dataclass(frozen=True)
class ConnectorConfig:
    """What one connector is given: its configuration, never the process settings. Secrets are
    masked in ``repr`` (``payops.masked``): ``repr(config)`` shows no credential."""

    pg_code: str
    is_sandbox: bool
    # Decrypted credentials; any mapping is turned into ``Credentials`` (masked values).
    credentials: Mapping[str, Any]
    timeout_seconds: float = 30.0
    # Non-secret settings of the configuration (e.g. ``base_url`` to override the gateway host,
    # ``timeout_seconds``), as given to ``payops gateway add --option``.
    options: dict[str, Any] = field(default_factory=dict)
    # Secret the gateway signs or tags its incoming notifications with (decrypted, masked).
    webhook_secret: str = ""
    # The few deployment settings a connector declares it needs (``Connector.deployment``),
    # e.g. the sandbox's ledger path; empty for real gateways.
    deployment: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.credentials, Credentials):
            object.__setattr__(self, "credentials", Credentials(self.credentials))
        if not isinstance(self.webhook_secret, Masked):
            object.__setattr__(self, "webhook_secret", masked(self.webhook_secret or ""))


class Connector(ABC):
    name: ClassVar[str]
    # Operations this connector can perform: a subset of capture, refund, void, inquiry.
    capabilities: ClassVar[frozenset[str]]
    # Whether customers can pay through PayOps at this gateway (a hosted page or redirect flow).
    # A gateway without it serves operations on payments registered with the import API only,
    # and checkout sessions naming it are refused.
    takes_payments: ClassVar[bool] = False
    # Credential keys a configuration of this connector must provide (checked at `gateway add`).
    required_credentials: ClassVar[tuple[str, ...]] = ()
    # Keys of the gateway's replies that carry buyer personal data: redacted, at any depth,
    # before a reply is stored or shown (connectors/redaction.py). Ids, statuses, amounts, codes
    # and messages are evidence and are never listed here.
    personal_fields: ClassVar[frozenset[str]] = frozenset()
    # Whether the gateway documents a final status for a refund it queued. Where it does not,
    # nothing will ever finish a queued refund, so the reconciler hands it to an operator
    # (needs_review) at once instead of after PAYOPS_QUEUED_REVIEW_AFTER (decisions §13).
    documents_refund_status: ClassVar[bool] = True
    # Payment acceptance (``takes_payments``): the operation modes a configuration may use
    # (KNET and QPay are purchase-only: `gateway add` refuses authorize mode for them) ...
    payment_modes: ClassVar[frozenset[str]] = frozenset({"purchase", "authorize"})
    # ... minutes after which an attempt still pending is inquired automatically (Ottu's
    # defaults; a configuration's ``inquiry_window_minutes`` option overrides it) ...
    attempt_inquiry_minutes: ClassVar[int] = 10
    # ... and whether the gateway's server posts the result to ``CheckoutRequest.response_url``
    # before the browser returns (KNET), answered by ``receive_result``.
    posts_result: ClassVar[bool] = False

    def __init__(self, config: ConnectorConfig) -> None:
        self.config = config

    @classmethod
    def reports_refund_status(cls, options: Mapping[str, Any]) -> bool:
        """``documents_refund_status`` for one configuration (its non-secret options)."""
        return cls.documents_refund_status

    @classmethod
    def deployment(cls, settings: Any) -> dict[str, Any]:
        """The deployment settings this connector needs, taken from the process ``Settings``
        (``ConnectorConfig.deployment``). Gateways reached over the network need none."""
        return {}

    @classmethod
    def default_operations(cls, operation_mode: str) -> frozenset[str]:
        """What a new configuration enables when the merchant names nothing (`gateway add`)."""
        return cls.capabilities

    async def run(self, request: OperationRequest) -> GatewayResult:
        handler = {"capture": self.capture, "refund": self.refund, "void": self.void}
        return await handler[request.operation](request)

    @abstractmethod
    async def capture(self, request: OperationRequest) -> GatewayResult: ...

    @abstractmethod
    async def refund(self, request: OperationRequest) -> GatewayResult: ...

    @abstractmethod
    async def void(self, request: OperationRequest) -> GatewayResult: ...

    @abstractmethod
    async def inquire_payment(self, payment: PaymentRef) -> GatewayResult:
        """What happened to this payment attempt? (a late success on a pending/failed payment)"""

    @abstractmethod
    async def inquire_operation(self, request: OperationRequest) -> GatewayResult:
        """What happened to the operation sent under this reference? (for reconciliation)"""

    async def start_checkout(self, request: CheckoutRequest) -> CheckoutStart:
        """Create the payment at the gateway (session, order, invoice) or build the signed or
        encrypted request locally (KNET, PayU, QPay), and say where the browser goes. Only
        connectors with ``takes_payments`` implement it."""
        raise NotImplementedError

    async def confirm_return(self, payment: PaymentRef, params: Mapping[str, str]) -> GatewayResult:
        """The customer's browser came back (``params``: the return's query and form fields).
        They are only a hint: the result comes from a server-side read or a verified signature,
        checked against ``payment`` (amount, currency). A forged or missing value changes
        nothing: it yields PENDING or what the server-side read says, never a failure by
        itself. The default reads the payment's status."""
        return await self.inquire_payment(payment)

    def receive_result(self, payment: PaymentRef, params: Mapping[str, str]) -> GatewayResult:
        """For ``posts_result`` gateways (KNET): the result the gateway's server posted for this
        attempt. Decrypt or verify it and check it names this payment (track id, amount);
        raise NotificationRejected when it is not authentic. Must not call the gateway: the
        gateway waits for PayOps's answer."""
        raise NotImplementedError

    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify an incoming notification with ``config.webhook_secret`` and say what it is
        about; raise NotificationRejected when it is not authentic. Gateways that send no
        notifications keep this default."""
        raise NotImplementedError

    async def list_operations(self, payment: PaymentRef) -> list[GatewayOperation] | None:
        """Every capture/refund/void the gateway holds for this payment, including those done on
        the gateway's own dashboard; None when the gateway cannot list them (or did not answer).
        """
        return None

    async def aclose(self) -> None:
        return None
