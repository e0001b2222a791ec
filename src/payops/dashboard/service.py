"""What the dashboard's pages show and do. A thin layer: payment operations go through
``operations.service.run_operation`` exactly as the API's do (same rules, locks, audit and
webhooks); administration changes are written here and audited with the actor and address."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import secrets
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payops import audit
from payops.auth import accounts
from payops.auth import repository as auth_repo
from payops.auth.permissions import OPERATION_PERMISSIONS
from payops.auth.secrets import hash_password, new_api_key
from payops.auth.service import Principal
from payops.connectors.registry import connector_class
from payops.context import AppContext
from payops.dashboard import repository
from payops.dashboard.sessions import Visitor, superuser_permissions
from payops.db.models import (
    ApiKey,
    AuditEntry,
    GatewayConfig,
    Operation,
    OutboxEvent,
    PaymentAttempt,
    PaymentTransaction,
    User,
    UserPermission,
    WebhookAttempt,
)
from payops.domain.rules import (
    RuleViolation,
    capturable,
    check_external,
    check_internal,
    refundable,
)
from payops.errors import ApiError, TrackingKeyInProgress
from payops.gateways import repository as gateway_repo
from payops.gateways.service import gateway_facts, secret_box
from payops.money import format_minor
from payops.operations.service import run_operation, totals_of
from payops.transactions import repository as txn_repo
from payops.transactions.lookup import Lookup
from payops.transactions.presenters import child_state
from payops.webhooks import delivery

DASHBOARD_OPERATIONS = ("capture", "refund", "void", "cancel")
TRACKING_KEY = re.compile(r"^dash-[0-9a-f]{32}$")
REASON_MAX = 500
# A spreadsheet runs a cell starting with one of these as a formula, also after leading blanks
# (which some trim) and in their full-width forms (which some read as the ASCII ones).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
LEADING_BLANKS = " \u00a0\u3000"


class DashboardError(Exception):
    """A refusal shown to the operator as a page with this status and message."""

    status_code = 400

    def __init__(self, message: str, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code


class Forbidden(DashboardError):
    status_code = 403

    def __init__(self, message: str = "You do not have permission to do this.") -> None:
        super().__init__(message)


class PageNotFound(DashboardError):
    status_code = 404

    def __init__(self, message: str = "Not found.") -> None:
        super().__init__(message)


def require(visitor: Visitor, permission: str) -> None:
    if not visitor.can(permission):
        raise Forbidden()


def record(
    session: AsyncSession,
    visitor: Visitor,
    action: str,
    result: str,
    parent: PaymentTransaction | None = None,
    **details: Any,
) -> None:
    """An audit row for something done in the dashboard: who, what, and from which address."""
    audit.record(
        session,
        visitor.principal,
        action,
        result,
        parent,
        address=visitor.address,
        via="dashboard",
        **details,
    )


def money(minor: int, currency: str) -> str:
    return format_minor(minor, currency)


# -- transactions -----------------------------------------------------------------------------


@dataclass
class AllowedOperation:
    operation: str
    amount: str  # what remains, as a decimal string; "" for cancel
    editable: bool


@dataclass
class TransactionView:
    parent: PaymentTransaction
    amounts: dict[str, str]
    attempts: list[PaymentAttempt]
    timeline: list[dict[str, Any]]
    events: list[OutboxEvent]
    audit: list[AuditEntry]
    allowed: list[AllowedOperation] = field(default_factory=list)


def who(op: Operation) -> str:
    if op.source == "pg":
        return "the gateway's dashboard"
    initiator = op.initiator or {}
    return str(initiator.get("username") or "an API key")


async def transaction_view(ctx: AppContext, visitor: Visitor, session_id: str) -> TransactionView:
    async with ctx.db.read() as session:
        parent = await repository.parent_by_session_id(session, session_id)
        if parent is None:
            raise PageNotFound("No transaction with this session id.")
        totals = await totals_of(session, parent)
        attempts = await txn_repo.attempts(session, parent.id)
        operations = await txn_repo.operations(session, parent.id)
        events = await repository.events_of(session, parent.id)
        audit_rows = await repository.audit_of(session, parent.id)
        successful = await txn_repo.successful_attempt(session, parent.id, parent.gateway_config_id)
    ccy = parent.currency_code
    # Money the merchant holds: paid (or captured after an authorization) less refunds.
    paid = parent.paid_total if parent.operation_mode == "purchase" else parent.captured
    amounts = {
        "amount": money(parent.amount, ccy),
        "fee": money(parent.fee, ccy),
        "authorized": money(parent.authorized_total, ccy),
        "paid": money(paid, ccy),
        "captured": money(parent.captured, ccy),
        "refunded": money(parent.refunded, ccy),
        "voided": money(parent.voided, ccy),
        "remaining": money(max(paid - parent.refunded, 0), ccy),
        "capturable": money(capturable(totals), ccy),
        "refundable": money(refundable(totals), ccy),
    }
    timeline = [
        {
            "when": op.created_at,
            "settled": op.settled_at,
            "who": who(op),
            "source": op.source,
            "operation": op.operation,
            "state": op.state,
            "child_state": child_state(op) or "",
            "amount": money(op.amount, op.currency_code),
            "reference_number": op.reference_number,
            "gateway_reference": ", ".join(f"{k}: {v}" for k, v in (op.gateway_refs or {}).items()),
            "message": op.message,
        }
        for op in operations
    ]
    view = TransactionView(parent, amounts, attempts, timeline, events, audit_rows)
    if parent.deleted_at is not None:
        return view
    for operation in DASHBOARD_OPERATIONS:
        if not visitor.can(OPERATION_PERMISSIONS[operation]):
            continue
        if operation == "cancel":
            try:
                check_internal("cancel", parent.state)
            except RuleViolation:
                continue
            view.allowed.append(AllowedOperation("cancel", "", False))
            continue
        if parent.gateway_config is None or successful is None:
            continue
        try:
            limit = check_external(operation, totals, gateway_facts(parent.gateway_config), None)
        except RuleViolation:
            continue
        view.allowed.append(AllowedOperation(operation, money(limit, ccy), operation != "void"))
    return view


def new_tracking_key() -> str:
    """Made when the confirmation form is drawn: a double click, a resubmitted form or a retry
    after a lost answer carries the same key, and the service moves money once."""
    return f"dash-{secrets.token_hex(16)}"


@dataclass
class OperationOutcome:
    ok: bool
    message: str
    reference_number: str = ""
    status_code: int = 200
    # The same form (its Tracking-Key) was sent again while its operation was still running:
    # a double click. The first submission's result is what the operator should see.
    in_progress: bool = False


def _refusal_message(error: ApiError) -> str:
    body = error.body if isinstance(error.body, dict) else {}
    if "detail" in body:
        return str(body["detail"])
    parts = [
        f"{name}: {' '.join(map(str, errs))}"
        for name, errs in body.items()
        if isinstance(errs, list)
    ]
    return "; ".join(parts) or "The operation was refused."


async def operate(
    ctx: AppContext,
    visitor: Visitor,
    session_id: str,
    operation: str,
    *,
    amount: str,
    reason: str,
    tracking_key: str,
) -> OperationOutcome:
    if operation not in DASHBOARD_OPERATIONS:
        raise PageNotFound()
    require(visitor, OPERATION_PERMISSIONS[operation])
    reason = reason.strip()
    if not reason:
        raise DashboardError("Give a reason: it is kept in the audit log.")
    if len(reason) > REASON_MAX:
        raise DashboardError(f"The reason may have at most {REASON_MAX} characters.")
    if not TRACKING_KEY.match(tracking_key):
        raise DashboardError("This form is not valid any more; open it again.")
    raw_amount = amount.strip() if operation in ("capture", "refund") else None
    if operation in ("capture", "refund") and not raw_amount:
        raise DashboardError("Enter the amount.")
    lookup = Lookup(session_id=session_id)
    try:
        body = await run_operation(
            ctx,
            visitor.principal,
            lookup,
            operation,
            raw_amount,
            tracking_key if operation != "cancel" else None,
        )
    except ApiError as error:
        message = _refusal_message(error)
        result = "pending" if error.status_code == 504 else "refused"
        reference = (
            str(error.body.get("reference_number", "")) if isinstance(error.body, dict) else ""
        )
        in_progress = isinstance(error, TrackingKeyInProgress)
        if in_progress:  # a double click: show the first submission's operation
            reference = await _first_submission(ctx, session_id, tracking_key)
        outcome = OperationOutcome(
            False, message, reference, error.status_code, in_progress=in_progress
        )
    else:
        reference = str(body.get("reference_number", ""))
        result = "success"
        outcome = OperationOutcome(True, str(body.get("detail") or "Done."), reference)
    async with ctx.db.write() as session:
        parent = await repository.parent_by_session_id(session, session_id)
        record(
            session,
            visitor,
            f"dashboard.{operation}",
            result,
            parent,
            reason=reason,
            tracking_key=tracking_key,
            amount=raw_amount or "",
            reference_number=reference,
            status=outcome.status_code,
            message=outcome.message if not outcome.ok else "",
        )
    return outcome


async def _first_submission(ctx: AppContext, session_id: str, tracking_key: str) -> str:
    """The reference of the operation an earlier submission of the same form started, once it
    has left ``processing`` (or after a few seconds): its page then shows how it ended."""
    reference = ""
    for _ in range(FIRST_SUBMISSION_POLLS):
        async with ctx.db.read() as session:
            parent = await repository.parent_by_session_id(session, session_id)
            op = (
                await txn_repo.operation_by_tracking_key(session, parent.id, tracking_key)
                if parent is not None
                else None
            )
        if op is None:
            return reference
        reference = op.reference_number
        if op.state != "processing":
            return reference
        await asyncio.sleep(0.1)
    return reference


FIRST_SUBMISSION_POLLS = 50  # at 0.1 s: wait at most about 5 s for the first submission


# -- CSV export --------------------------------------------------------------------------------

CSV_COLUMNS = (
    "created_at",
    "order_no",
    "session_id",
    "state",
    "amount",
    "fee",
    "currency_code",
    "captured",
    "refunded",
    "voided",
    "gateway",
    "customer_email",
)


def escape_cell(value: Any) -> str:
    """A cell a spreadsheet shows as text: a leading formula character (after any blanks) gets a
    quote before the whole cell."""
    text = "" if value is None else str(value)
    return "'" + text if text.lstrip(LEADING_BLANKS).startswith(FORMULA_PREFIXES) else text


def csv_row(parent: PaymentTransaction, gateway_codes: dict[int, str]) -> list[str]:
    ccy = parent.currency_code
    values = (
        parent.created_at.strftime("%Y-%m-%d %H:%M:%S"),
        parent.order_no or "",
        parent.session_id,
        parent.state,
        money(parent.amount, ccy),
        money(parent.fee, ccy),
        ccy,
        money(parent.captured, ccy),
        money(parent.refunded, ccy),
        money(parent.voided, ccy),
        gateway_codes.get(parent.gateway_config_id or 0, ""),
        (parent.customer or {}).get("customer_email", ""),
    )
    return [escape_cell(v) for v in values]


async def export_csv(
    ctx: AppContext, flt: repository.TransactionFilter, batch: int = 500
) -> AsyncIterator[str]:
    """The whole filtered list, newest first, streamed a page at a time (a short read
    transaction per page, so a long download holds no transaction open)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    async with ctx.db.read() as session:
        codes = {g.id: g.pg_code for g in await gateway_repo.list_all(session)}
    cursor: int | None = None
    while True:
        async with ctx.db.read() as session:
            rows, cursor = await repository.transactions_page(session, flt, cursor, batch)
        for parent in rows:
            writer.writerow(csv_row(parent, codes))
        yield flush()
        if cursor is None:
            return


# -- home --------------------------------------------------------------------------------------


@dataclass
class Home:
    today: repository.Counters
    week: repository.Counters
    today_start: date
    week_start: date
    in_review: int
    processing: int
    webhooks_failing: int
    chart_days: list[date]
    chart_counts: list[int]


async def home(ctx: AppContext, now: datetime | None = None, chart_days: int = 14) -> Home:
    now = now or datetime.now(UTC)
    today = now.date()
    week_start = today - timedelta(days=6)
    days = [today - timedelta(days=n) for n in range(chart_days - 1, -1, -1)]
    async with ctx.db.read() as session:
        return Home(
            today=await repository.counters_since(session, repository.day_start(today)),
            week=await repository.counters_since(session, repository.day_start(week_start)),
            today_start=today,
            week_start=week_start,
            in_review=await repository.count_operations_in(session, ("needs_review",)),
            processing=await repository.count_operations_in(session, ("processing",)),
            webhooks_failing=await repository.count_events(session, "failed"),
            chart_days=days,
            chart_counts=await repository.operations_per_day(session, days),
        )


def bar_chart(
    days: list[date], counts: list[int], width: int = 560, height: int = 160
) -> dict[str, Any]:
    """Geometry of a bar chart drawn as SVG by the template (no script, no inline style)."""
    top = max(counts or [0]) or 1
    gap, left, bottom = 4, 28, 20
    slot = (width - left) / max(len(days), 1)
    bars = []
    for index, (day, count) in enumerate(zip(days, counts, strict=True)):
        bar_height = round((height - bottom - 10) * count / top, 1)
        bars.append(
            {
                "x": round(left + index * slot + gap / 2, 1),
                "width": round(slot - gap, 1),
                "y": round(height - bottom - bar_height, 1),
                "height": bar_height,
                "count": count,
                "label": day.strftime("%d"),
                "title": f"{day.isoformat()}: {count}",
                "label_x": round(left + index * slot + slot / 2, 1),
            }
        )
    return {
        "width": width,
        "height": height,
        "bars": bars,
        "top": top,
        "baseline": height - bottom,
        "left": left,
    }


# -- webhooks ----------------------------------------------------------------------------------


async def retry_event(ctx: AppContext, visitor: Visitor, event_id: int) -> str:
    """Start a fresh series of tries for an event that failed for good, and make the first now.
    Only failed events: a pending one may be in a worker's hands right now (its lease and its
    backoff share ``next_attempt_at``), and it is retried on its own schedule anyway. The
    delivery lease is taken as a worker takes it, so the event is never sent twice at once."""
    now = datetime.now(UTC)
    async with ctx.db.write() as session:
        event = await session.get(OutboxEvent, event_id, with_for_update=True)
        if event is None:
            raise PageNotFound("No such webhook event.")
        if event.state == "delivered":
            raise DashboardError("This event was delivered already.", 409)
        if event.state != "failed":
            raise DashboardError(
                "This event is still being tried on its own schedule; it can "
                "be retried by hand once it has failed.",
                409,
            )
        previous = event.state
        event.state, event.attempts, event.next_attempt_at = "pending", 0, now
        record(
            session,
            visitor,
            "webhook.retry",
            "requested",
            None,
            order_no="",
            event_id=event.event_id,
            previous_state=previous,
        )
    deadline = await delivery.claim(ctx, event_id)
    if deadline is None:
        return "pending"  # a worker took it first; it is being sent
    return await delivery.deliver_event(ctx, event_id, deadline)


# -- users -------------------------------------------------------------------------------------


def grantable_by(visitor: Visitor) -> list[str]:
    """Codes this administrator may give or take: those they hold themselves (no escalation)."""
    return sorted(superuser_permissions() if visitor.is_superuser else visitor.permissions)


async def create_user(
    ctx: AppContext,
    visitor: Visitor,
    *,
    username: str,
    password: str,
    email: str,
    superuser: bool,
    permissions: list[str],
) -> None:
    require(visitor, "admin.users")
    username = username.strip()
    if not accounts.USERNAME.fullmatch(username):
        raise DashboardError("A username has 1 to 150 letters, digits or . @ + - _.")
    try:
        accounts.check_new_password(password)
    except accounts.AccountError as error:
        raise DashboardError(
            str(error.body.get("detail", ""))
            if isinstance(error.body, dict)
            else "Choose another password."
        ) from None
    if superuser and not visitor.is_superuser:
        raise Forbidden("Only a superuser can create a superuser.")
    codes = sorted(set(permissions))
    if set(codes) - set(grantable_by(visitor)):
        raise Forbidden("You can only grant permissions you hold.")
    async with ctx.db.write() as session:
        if await auth_repo.user_by_username(session, username):
            raise DashboardError(f"A user named {username} exists.", 409)
        session.add(
            User(
                username=username,
                password_hash=hash_password(password),
                email=email.strip()[:254],
                is_superuser=superuser,
                permissions=[UserPermission(code=c) for c in codes],
            )
        )
        record(
            session,
            visitor,
            "user.create",
            "success",
            None,
            username=username,
            superuser=superuser,
            permissions=codes,
        )


async def _managed_user(session: AsyncSession, visitor: Visitor, username: str) -> User:
    user = await auth_repo.user_by_username(session, username)
    if user is None:
        raise PageNotFound("No such user.")
    if user.is_superuser and not visitor.is_superuser:
        raise Forbidden("Only a superuser can change a superuser.")
    if not visitor.is_superuser and not {p.code for p in user.permissions} <= set(
        grantable_by(visitor)
    ):
        # Otherwise an admin.users holder could reset the password of a colleague holding more
        # (payment.resolve, admin.api_keys …) and sign in as them: a grant by another door.
        raise Forbidden("You can only change users whose permissions you hold.")
    return user


async def set_permissions(
    ctx: AppContext, visitor: Visitor, username: str, wanted: list[str]
) -> tuple[list[str], list[str]]:
    """Make the user hold exactly ``wanted`` among the codes the visitor may manage.
    Returns (granted, revoked)."""
    require(visitor, "admin.users")
    manageable = set(grantable_by(visitor))
    wanted_set = set(wanted)
    if wanted_set - manageable:
        raise Forbidden("You can only grant permissions you hold.")
    async with ctx.db.write() as session:
        user = await _managed_user(session, visitor, username)
        held = {p.code: p for p in user.permissions}
        granted = sorted(wanted_set - set(held))
        revoked = sorted((set(held) & manageable) - wanted_set)
        for code in revoked:
            user.permissions.remove(held[code])
        for code in granted:
            user.permissions.append(UserPermission(code=code))
        if granted or revoked:
            accounts.bump_credentials_version(user)
        if granted:
            record(
                session,
                visitor,
                "user.grant",
                "success",
                None,
                username=username,
                permissions=granted,
            )
        if revoked:
            record(
                session,
                visitor,
                "user.revoke",
                "success",
                None,
                username=username,
                permissions=revoked,
            )
    return granted, revoked


async def list_users(ctx: AppContext) -> list[User]:
    async with ctx.db.read() as session:
        return await auth_repo.list_users(session)


async def get_user(ctx: AppContext, username: str) -> User:
    async with ctx.db.read() as session:
        user = await auth_repo.user_by_username(session, username)
    if user is None:
        raise PageNotFound("No such user.")
    return user


# -- API keys ----------------------------------------------------------------------------------


async def list_api_keys(ctx: AppContext) -> list[ApiKey]:
    async with ctx.db.read() as session:
        return await auth_repo.list_api_keys(session)


async def create_api_key(
    ctx: AppContext, visitor: Visitor, name: str, expires_in_days: int
) -> tuple[str, str]:
    """Only superusers: a key holds every payment permission. Returns (key, prefix)."""
    require(visitor, "admin.api_keys")
    if not visitor.is_superuser:
        raise Forbidden(
            "Only a superuser can create API keys: a key holds every payment permission."
        )
    name = name.strip()
    if not name or len(name) > 50:
        raise DashboardError("Give the key a name of at most 50 characters.")
    if expires_in_days < 0 or expires_in_days > 3650:
        raise DashboardError("The expiry is 0 (never) to 3650 days.")
    key, prefix, secret_hash = new_api_key()
    expires = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None
    async with ctx.db.write() as session:
        session.add(ApiKey(prefix=prefix, secret_hash=secret_hash, name=name, expires_at=expires))
        record(
            session,
            visitor,
            "api_key.create",
            "success",
            None,
            prefix=prefix,
            name=name,
            expires_in_days=expires_in_days,
        )
    return key, prefix


async def revoke_api_key(ctx: AppContext, visitor: Visitor, prefix: str) -> None:
    require(visitor, "admin.api_keys")
    if not visitor.is_superuser:
        raise Forbidden("Only a superuser can revoke API keys.")
    async with ctx.db.write() as session:
        key = await auth_repo.api_key_by_prefix(session, prefix)
        if key is None:
            raise PageNotFound("No such API key.")
        if key.revoked_at is None:
            key.revoked_at = datetime.now(UTC)
            record(
                session, visitor, "api_key.revoke", "success", None, prefix=prefix, name=key.name
            )


# -- gateways ----------------------------------------------------------------------------------


async def list_gateways(ctx: AppContext) -> list[GatewayConfig]:
    async with ctx.db.read() as session:
        return await gateway_repo.list_all(session)


async def get_gateway(ctx: AppContext, pg_code: str) -> GatewayConfig:
    async with ctx.db.read() as session:
        gateway = await gateway_repo.get_by_code(session, pg_code)
    if gateway is None:
        raise PageNotFound("No such gateway configuration.")
    return gateway


def gateway_capabilities(gateway: GatewayConfig) -> list[str]:
    try:
        return sorted(connector_class(gateway.connector).capabilities)
    except ValueError:
        return []


async def update_gateway(
    ctx: AppContext,
    visitor: Visitor,
    pg_code: str,
    *,
    enabled: bool,
    operations: list[str],
    credentials: str,
) -> None:
    """Enable/disable, choose the operations, and replace (never show) the credentials."""
    require(visitor, "admin.gateways")
    async with ctx.db.write() as session:
        gateway = await gateway_repo.get_by_code(session, pg_code)
        if gateway is None:
            raise PageNotFound("No such gateway configuration.")
        cls = connector_class(gateway.connector)
        wanted = sorted(set(operations))
        if set(wanted) - cls.capabilities:
            raise DashboardError(
                f"{gateway.connector} cannot perform: "
                f"{', '.join(sorted(set(wanted) - cls.capabilities))}."
            )
        changes: dict[str, Any] = {}
        if gateway.is_enabled != enabled:
            gateway.is_enabled = enabled
            changes["enabled"] = enabled
        if sorted(gateway.enabled_operations or []) != wanted:
            changes["operations"] = {
                "before": sorted(gateway.enabled_operations or []),
                "after": wanted,
            }
            gateway.enabled_operations = wanted
        if credentials.strip():
            try:
                values = json.loads(credentials)
            except (ValueError, RecursionError):  # RecursionError: nested too deeply (was a 500)
                raise DashboardError("Credentials must be a JSON object.") from None
            if not isinstance(values, dict):
                raise DashboardError("Credentials must be a JSON object.")
            missing = [k for k in cls.required_credentials if not values.get(k)]
            if missing:
                raise DashboardError(
                    f"{gateway.connector} needs credentials: {', '.join(missing)}."
                )
            gateway.credentials_encrypted = secret_box(ctx.settings).seal(values)
            # Only the names of the fields, never their values.
            changes["credentials_replaced"] = sorted(values)
        if changes:
            record(session, visitor, "gateway.update", "success", None, pg_code=pg_code, **changes)


# -- audit -------------------------------------------------------------------------------------


async def audit_sign_in(ctx: AppContext, username: str, address: str, result: str) -> None:
    async with ctx.db.write() as session:
        audit.record(
            session,
            Principal("user", username[:150], frozenset()),
            "dashboard.sign_in",
            result,
            None,
            address=address,
            via="dashboard",
        )


async def set_user_active(ctx: AppContext, visitor: Visitor, username: str, active: bool) -> None:
    """Deactivate (or activate again) through the account service; a deactivated user's
    sessions end at once (their credentials version changes)."""
    require(visitor, "admin.users")
    async with ctx.db.read() as session:
        await _managed_user(session, visitor, username)
    if not active and username == visitor.username:
        raise DashboardError("You cannot deactivate your own account.", 409)
    await _account_change(accounts.set_active(ctx, username, active, actor=visitor.principal))
    async with ctx.db.write() as session:
        record(
            session,
            visitor,
            "dashboard.user.activate" if active else "dashboard.user.deactivate",
            "success",
            None,
            username=username,
        )


async def reset_password(ctx: AppContext, visitor: Visitor, username: str, password: str) -> None:
    require(visitor, "admin.users")
    async with ctx.db.read() as session:
        await _managed_user(session, visitor, username)
    await _account_change(accounts.set_password(ctx, username, password, actor=visitor.principal))
    async with ctx.db.write() as session:
        record(session, visitor, "dashboard.user.set_password", "success", None, username=username)


async def _account_change(change: Awaitable[None]) -> None:
    try:
        await change
    except accounts.AccountError as error:
        body = error.body if isinstance(error.body, dict) else {}
        raise DashboardError(str(body.get("detail", "Not possible.")), error.status_code) from None


# -- page reads -------------------------------------------------------------------------------


async def transactions_page(
    ctx: AppContext, flt: repository.TransactionFilter, before: int | None
) -> tuple[list[PaymentTransaction], int | None, list[GatewayConfig]]:
    """One page of the transactions list, the cursor of the next, and the configured gateways
    (for the filter's choices)."""
    async with ctx.db.read() as session:
        rows, cursor = await repository.transactions_page(session, flt, before)
        configured = await repository.gateways(session)
    return rows, cursor, configured


async def operation_on(ctx: AppContext, reference: str, parent_id: int) -> Operation | None:
    """The operation with this reference if it belongs to this parent (a page's "just done")."""
    async with ctx.db.read() as session:
        op = await repository.operation_by_reference(session, reference[:20])
    return op if op is not None and op.transaction_id == parent_id else None


async def events_page(
    ctx: AppContext, state: str, before: int | None
) -> tuple[list[OutboxEvent], int | None, dict[int, PaymentTransaction]]:
    """One page of webhook events, the next cursor, and the parents they are about."""
    async with ctx.db.read() as session:
        rows, cursor = await repository.events_page(session, state, before)
        parents = await repository.parents_by_ids(
            session, {e.transaction_id for e in rows if e.transaction_id}
        )
    return rows, cursor, parents


async def event_detail(
    ctx: AppContext, event_id: int
) -> tuple[OutboxEvent, list[WebhookAttempt], PaymentTransaction | None]:
    """One webhook event, its delivery attempts and its parent; PageNotFound if none."""
    async with ctx.db.read() as session:
        event = await repository.event(session, event_id)
        if event is None:
            raise PageNotFound("No such webhook event.")
        attempts = await repository.attempts_of_event(session, event_id)
        parents = await repository.parents_by_ids(
            session, {event.transaction_id} if event.transaction_id else set()
        )
    return event, attempts, parents.get(event.transaction_id or 0)


async def audit_page(
    ctx: AppContext, actor: str, action: str, before: int | None
) -> tuple[list[AuditEntry], int | None]:
    async with ctx.db.read() as session:
        return await repository.audit_page(session, actor[:150], action[:32], before)


async def record_visit(
    ctx: AppContext, visitor: Visitor, action: str, result: str, **details: Any
) -> None:
    """An audit row, in its own transaction, for a dashboard action whose work is done."""
    async with ctx.db.write() as session:
        record(session, visitor, action, result, None, **details)
