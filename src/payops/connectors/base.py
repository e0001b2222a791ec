"""The one small interface every gateway connector implements.

A connector speaks one gateway's protocol and returns a normalised GatewayResult. It never touches
PayOps's database and never raises for a gateway problem: timeouts, resets, 5xx and unparsable
replies come back as ``Outcome.UNKNOWN`` so the caller can leave the operation for reconciliation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
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
