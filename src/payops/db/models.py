"""Storage schema. Amounts are integer minor units (BIGINT); the currency gives their exponent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both SQLite (which drops tzinfo) and PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value


Money = BigInteger()


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(150), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    first_name: Mapped[str] = mapped_column(String(150), default="")
    last_name: Mapped[str] = mapped_column(String(150), default="")
    email: Mapped[str] = mapped_column(String(254), default="")
    phone: Mapped[str] = mapped_column(String(32), default="")
    is_superuser: Mapped[bool] = mapped_column(Boolean, default=False)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Bumped by every change to what the user's credentials grant (password, active, permissions):
    # each process's verified-password cache remembers the version it verified, so a change ends
    # cached logins at once in every process (decisions §11).
    credentials_version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))

    permissions: Mapped[list[UserPermission]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="selectin"
    )


class UserPermission(Base):
    __tablename__ = "user_permissions"
    __table_args__ = (UniqueConstraint("user_id", "code"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(String(64))

    user: Mapped[User] = relationship(back_populates="permissions")


class AuthFailureCounter(Base):
    """Failed logins in the current window for one throttle key, shared by every server process.

    Keys (``auth/throttle.py``): ``pair:<username digest>@<address>``, ``addr:<address>`` and
    ``user:<username digest>``; the digest is keyed, so the table never holds a typed username.
    Times are epoch milliseconds of the server clock.
    """

    __tablename__ = "auth_failures"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_ends_ms: Mapped[int] = mapped_column(BigInteger, index=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    secret_hash: Mapped[str] = mapped_column(String(128))
    name: Mapped[str] = mapped_column(String(50))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class GatewayConfig(Base):
    """A merchant account ("MID") at one gateway."""

    __tablename__ = "gateway_configs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pg_code: Mapped[str] = mapped_column(String(64), unique=True)
    connector: Mapped[str] = mapped_column(String(32))
    operation_mode: Mapped[str] = mapped_column(String(16))  # purchase | authorize
    default_currency: Mapped[str] = mapped_column(String(3))
    accepted_currencies: Mapped[list[str]] = mapped_column(JSON, default=list)
    is_sandbox: Mapped[bool] = mapped_column(Boolean, default=True)
    is_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    credentials_encrypted: Mapped[str] = mapped_column(Text, default="")
    # Non-secret connector settings: base_url override, timeout_seconds, ...
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    enabled_operations: Mapped[list[str]] = mapped_column(JSON, default=list)
    multi_attempt: Mapped[bool] = mapped_column(Boolean, default=True)
    inquiry_window_minutes: Mapped[int] = mapped_column(Integer, default=0)
    webhook_secret_encrypted: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Bumped by the ORM on every UPDATE of the row: processes cache a configuration and its
    # decrypted connector and rebuild them when the version they see changes (gateways/cache.py).
    # Change configurations through the ORM (or bump this column yourself).
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))

    __mapper_args__ = {"version_id_col": version}


class PaymentTransaction(Base):
    """The parent transaction: what the customer was asked to pay and its running totals."""

    __tablename__ = "payment_transactions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[str] = mapped_column(String(40), unique=True)
    order_no: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    type: Mapped[str] = mapped_column(String(32), default="e_commerce")
    payment_type: Mapped[str] = mapped_column(String(16), default="one_off")
    state: Mapped[str] = mapped_column(String(16), index=True)
    currency_code: Mapped[str] = mapped_column(String(3))
    amount: Mapped[int] = mapped_column(Money)
    fee: Mapped[int] = mapped_column(Money, default=0)
    # Set by the successful attempt: "purchase" → paid_total, "authorize" → authorized_total.
    operation_mode: Mapped[str | None] = mapped_column(String(16), nullable=True)
    paid_total: Mapped[int] = mapped_column(Money, default=0)
    authorized_total: Mapped[int] = mapped_column(Money, default=0)
    captured: Mapped[int] = mapped_column(Money, default=0)
    refunded: Mapped[int] = mapped_column(Money, default=0)
    voided: Mapped[int] = mapped_column(Money, default=0)
    # The gateway configuration that took the payment (null until an attempt succeeds).
    gateway_config_id: Mapped[int | None] = mapped_column(
        ForeignKey("gateway_configs.id"), nullable=True
    )
    pg_codes: Mapped[list[str]] = mapped_column(JSON, default=list)
    customer: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    extra: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    webhook_url: Mapped[str] = mapped_column(String(2000), default="")
    redirect_url: Mapped[str] = mapped_column(String(2000), default="")
    # Descriptive checkout fields stored as given and echoed (vendor_name, due_datetime,
    # shipping_address, ...); null on rows written before they were kept.
    details: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    language: Mapped[str] = mapped_column(String(8), default="en")
    message: Mapped[str] = mapped_column(Text, default="")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    gateway_config: Mapped[GatewayConfig | None] = relationship(lazy="selectin")


class PaymentAttempt(Base):
    """One try by the customer to pay, at one gateway."""

    __tablename__ = "payment_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("payment_transactions.id", ondelete="CASCADE"), index=True
    )
    gateway_config_id: Mapped[int] = mapped_column(ForeignKey("gateway_configs.id"))
    reference_number: Mapped[str] = mapped_column(String(20), unique=True)
    # pending|success|failed|canceled|error|needs_review (the gateway confirmed another amount)
    state: Mapped[str] = mapped_column(String(16))
    operation_mode: Mapped[str] = mapped_column(String(16))
    # The total asked of the customer (the parent's amount + fee when the attempt started) and
    # the fee within it: a success makes them the parent's amount and fee (decisions §13).
    amount: Mapped[int] = mapped_column(Money)
    fee: Mapped[int] = mapped_column(Money, default=0)
    currency_code: Mapped[str] = mapped_column(String(3))
    # The gateway's own identifiers for this payment (order id, payment id, track id, ...).
    gateway_refs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pg_response: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pg_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Gateway checkout (issue 17): PayOps's unguessable token naming this attempt in its
    # return, response and receipt URLs (stored as is, unique: a retried start must rebuild the
    # same URLs); where the customer's browser was sent ({"outcome", "method", "url", "fields",
    # "message", "returned"}), stored before it was sent; and why a success still needs an
    # operator's look (e.g. MyFatoorah's DuplicatePayment), "" when it does not.
    token: Mapped[str | None] = mapped_column(String(64), nullable=True)
    start: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    review_reason: Mapped[str] = mapped_column(Text, default="", server_default=text("''"))
    # Automatic inquiry of an attempt still pending (transactions/attempt_inquiry.py): how many
    # times PayOps asked the gateway on its own, when it asks next (null: the configuration's
    # window after created_at), and until when one worker holds the attempt (a lease).
    inquiry_count: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    next_inquiry_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    inquiry_claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # An operator's decision on an attempt in review: outcome, reason, evidence, who, when.
    resolution: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    gateway_config: Mapped[GatewayConfig] = relationship(lazy="selectin")


Index("uq_payment_attempts_token", PaymentAttempt.token, unique=True)


class Operation(Base):
    """An external operation (capture/refund/void): intent first, settled after the gateway answers.

    A settled success is the child transaction of the Ottu model, with its own ``child_session_id``.
    """

    __tablename__ = "operations"
    __table_args__ = (
        # A Tracking-Key is held by at most one live (not failed) operation of a parent.
        Index(
            "uq_operations_live_tracking_key",
            "transaction_id",
            "tracking_key",
            unique=True,
            sqlite_where=text("tracking_key IS NOT NULL AND state NOT IN ('failed', 'rejected')"),
            postgresql_where=text(
                "tracking_key IS NOT NULL AND state NOT IN ('failed', 'rejected')"
            ),
        ),
        # Reservations: the open operations of one parent, however many it settled before.
        Index("ix_operations_transaction_id_state", "transaction_id", "state"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Indexed by ix_operations_transaction_id_state (its leading column).
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("payment_transactions.id", ondelete="CASCADE")
    )
    gateway_config_id: Mapped[int] = mapped_column(ForeignKey("gateway_configs.id"))
    operation: Mapped[str] = mapped_column(String(16))  # capture | refund | void
    # processing → succeeded | queued | failed | rejected | needs_review
    state: Mapped[str] = mapped_column(String(16), index=True)
    amount: Mapped[int] = mapped_column(Money)
    currency_code: Mapped[str] = mapped_column(String(3))
    reference_number: Mapped[str] = mapped_column(String(20), unique=True)
    child_session_id: Mapped[str] = mapped_column(String(40), unique=True)
    tracking_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    source: Mapped[str] = mapped_column(String(8), default="input")
    initiator: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pg_response: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    pg_params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The gateway's own identifiers for this operation (capture id, refund id, ...).
    gateway_refs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The response as settled, returned verbatim to a retry with the same Tracking-Key.
    response: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    settled_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # Reconciliation: how often the gateway was asked, and until when a reconciler holds the row
    # (a lease, so several reconcilers never ask about one operation at once).
    reconcile_attempts: Mapped[int] = mapped_column(Integer, default=0)
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # What the request that first used the Tracking-Key asked for ("refund:5.000",
    # "capture:absent"): a key replays only a request with the same fingerprint (decisions §13).
    request_fingerprint: Mapped[str | None] = mapped_column(String(80), nullable=True)
    # When the gateway queued this refund (the queued-review clock; kept through needs_review).
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    # An operator's decision on a needs_review operation: outcome, reason, evidence, who, when.
    resolution: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)

    gateway_config: Mapped[GatewayConfig] = relationship(lazy="selectin")


class AuditEntry(Base):
    """Who did what to which transaction, whatever the outcome."""

    __tablename__ = "audit_trail"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor_type: Mapped[str] = mapped_column(String(16))  # user | api_key | cli | system
    actor: Mapped[str] = mapped_column(String(150))
    action: Mapped[str] = mapped_column(String(32))
    transaction_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    session_id: Mapped[str] = mapped_column(String(40), default="")
    order_no: Mapped[str] = mapped_column(String(128), default="")
    result: Mapped[str] = mapped_column(String(16))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class OutboxEvent(Base):
    """A merchant notification written in the transaction that caused it; delivered later."""

    __tablename__ = "outbox_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(32))  # payment | operation | disclosure
    transaction_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    target_url: Mapped[str] = mapped_column(String(2048))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    # pending → delivered | failed
    state: Mapped[str] = mapped_column(String(16), default="pending", index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # Also the delivery lease: a worker that takes an event moves this past the send's timeout.
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    last_error: Mapped[str] = mapped_column(String(255), default="")
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookAttempt(Base):
    """One try at delivering an outbox event: what the receiver answered, and how fast."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        ForeignKey("outbox_events.id", ondelete="CASCADE"), index=True
    )
    attempt: Mapped[int] = mapped_column(Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    latency_ms: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str] = mapped_column(String(255), default="")
    response_excerpt: Mapped[str] = mapped_column(Text, default="")


class GatewayInquiry(Base):
    """An inquiry that asked a gateway about a transaction: the basis of inquiry throttling."""

    __tablename__ = "gateway_inquiries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    transaction_id: Mapped[int] = mapped_column(
        ForeignKey("payment_transactions.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)


class MerchantSetting(Base):
    """Small key/value store for merchant-wide settings (HMAC key, operations webhook URL)."""

    __tablename__ = "merchant_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    # Bumped by the ORM on every UPDATE; the sum over all rows only grows (rows are never
    # deleted), so processes caching the settings reload when it changes (webhooks/outbox.py).
    version: Mapped[int] = mapped_column(Integer, server_default=text("1"))

    __mapper_args__ = {"version_id_col": version}


class DashboardSession(Base):
    """A signed-in dashboard user (issue 15). The cookie holds a random token; only its SHA-256
    is stored, so a copy of the database cannot be replayed as a session."""

    __tablename__ = "dashboard_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    # The user's credentials version at sign-in: a password change or deactivation ends the session.
    credentials_version: Mapped[int] = mapped_column(Integer, default=0)
    client_address: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


# Dashboard lists (issue 15): newest first by id, filtered by one column, stay index-only at a
# million rows; the home counters and the chart count by creation time.
Index("ix_payment_transactions_created_at", PaymentTransaction.created_at)
Index("ix_payment_transactions_state_id", PaymentTransaction.state, PaymentTransaction.id)
Index(
    "ix_payment_transactions_gateway_config_id_id",
    PaymentTransaction.gateway_config_id,
    PaymentTransaction.id,
)
Index(
    "ix_payment_transactions_currency_code_id",
    PaymentTransaction.currency_code,
    PaymentTransaction.id,
)
Index("ix_operations_created_at", Operation.created_at)
Index("ix_outbox_events_state_id", OutboxEvent.state, OutboxEvent.id)
# Automatic attempt inquiry and the attempt review queue look for the few pending / needs_review
# attempts among all of them.
Index("ix_payment_attempts_state_id", PaymentAttempt.state, PaymentAttempt.id)
