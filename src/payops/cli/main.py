"""The ``payops`` command line: database, server, users, API keys, gateways, transactions."""

from __future__ import annotations

import asyncio
import getpass
import json
import secrets
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import select

from payops import audit
from payops.auth import repository as auth_repo
from payops.auth.accounts import (
    AccountError,
    bump_credentials_version,
    check_new_password,
    check_new_username,
    set_active,
    set_password,
)
from payops.auth.permissions import ALL_PERMISSIONS, GRANTABLE_PERMISSIONS
from payops.auth.secrets import hash_password, new_api_key
from payops.auth.service import Principal
from payops.config import Settings, get_settings
from payops.connectors.registry import CONNECTORS
from payops.connectors.sandbox.connector import TEST_CARDS
from payops.context import AppContext
from payops.db.migrate import upgrade
from payops.db.models import (
    ApiKey,
    Operation,
    OutboxEvent,
    PaymentTransaction,
    User,
    UserPermission,
)
from payops.gateways import repository as gateway_repo
from payops.gateways.service import GatewayConfigError, add_gateway
from payops.money import AmountError, format_minor, parse_amount
from payops.transactions import repository as txn_repo
from payops.transactions.presenters import child_state
from payops.transactions.service import (
    TransactionError,
    import_transaction,
    new_parent,
    pay_with_sandbox,
)
from payops.webhooks import outbox

# Locals in tracebacks could hold passwords or keys: never print them.
app = typer.Typer(help="PayOps: payment operations for your gateways.", no_args_is_help=True,
                  pretty_exceptions_show_locals=False, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
user_app = typer.Typer(help="Dashboard/API users (Basic auth).", no_args_is_help=True)
apikey_app = typer.Typer(help="API keys (Api-Key auth).", no_args_is_help=True)
gateway_app = typer.Typer(help="Gateway configurations (MIDs).", no_args_is_help=True)
txn_app = typer.Typer(help="Transactions.", no_args_is_help=True)
ops_app = typer.Typer(help="Operations (child transactions) and their states.", no_args_is_help=True)
webhook_app = typer.Typer(help="Webhook settings: HMAC key, operations URL.", no_args_is_help=True)
webhook_key_app = typer.Typer(help="The merchant's webhook HMAC key.", no_args_is_help=True)
webhooks_app = typer.Typer(help="Outgoing webhook events and their delivery.", no_args_is_help=True)
secret_app = typer.Typer(help="The secret key that encrypts stored secrets.", no_args_is_help=True)
webhook_app.add_typer(webhook_key_app, name="key")
for sub, name in ((db_app, "db"), (user_app, "user"), (apikey_app, "apikey"),
                  (gateway_app, "gateway"), (txn_app, "txn"), (ops_app, "ops"),
                  (webhook_app, "webhook"), (webhooks_app, "webhooks"), (secret_app, "secret")):
    app.add_typer(sub, name=name)

# Piped or captured output gets full-width tables: a reference number cut to "GU9U4…" is useless
# to an operator's script.
console = Console(width=None if sys.stdout.isatty() else 200)
err = Console(stderr=True)
T = TypeVar("T")


def _fail(message: str) -> None:
    err.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code=1)


def _run(work: Callable[[AppContext], Awaitable[T]]) -> T:
    settings = get_settings()

    async def main() -> T:
        ctx = AppContext.build(settings)
        try:
            return await work(ctx)
        finally:
            await ctx.aclose()

    return asyncio.run(main())


def _emit(result: dict[str, Any], print_field: str | None) -> None:
    """A command's result as JSON, or one field of it alone (for shell scripts)."""
    if print_field:
        print(result.get(print_field, ""))
    else:
        console.print_json(json.dumps(result))


def _migrate(settings: Settings) -> None:
    settings.ensure_data_dir()
    upgrade(settings.effective_database_url)


# -- db / serve -----------------------------------------------------------------------------

@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema to the latest version."""
    settings = get_settings()
    _migrate(settings)
    console.print(f"database at [bold]{_safe_url(settings.effective_database_url)}[/bold] is up to date")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@app.command()
def serve(
    host: str = typer.Option(None, help="Bind address (default PAYOPS_HOST or 127.0.0.1)"),
    port: int = typer.Option(None, help="Port (default PAYOPS_PORT or 8000)"),
    migrate: bool = typer.Option(True, help="Apply migrations before starting"),
    workers: int = typer.Option(None, min=1, help="Worker processes (default PAYOPS_WORKERS, or "
                                "one per CPU core on PostgreSQL and one on SQLite); each gets a "
                                "share of PAYOPS_DB_POOL_TOTAL"),
) -> None:
    """Run the HTTP API (and the background loops) in one or more worker processes."""
    import os

    import uvicorn

    from payops.api import serving
    from payops.api.server import MAX_HEADER_BYTES, HeaderLimitedH11Protocol

    settings = get_settings()
    _require_public_url(settings, host or settings.host)
    count = workers or settings.effective_workers
    try:
        plan = serving.check_pool(settings, count)
    except serving.ServeConfigError as exc:
        _fail(str(exc))
    if migrate:
        _migrate(settings)
    _check_secrets()
    # The workers read their settings from the environment: tell them how many they are.
    os.environ["PAYOPS_WORKERS"] = str(count)
    if count > 1:  # the workers end with this process (api/serving.py)
        os.environ[serving.SUPERVISOR_ENV] = str(os.getpid())
    get_settings.cache_clear()
    metrics_dir = serving.prepare_metrics_dir()
    # Forwarded headers only from PAYOPS_TRUSTED_PROXIES (uvicorn alone would trust 127.0.0.1).
    trusted = settings.trusted_proxy_list
    console.print(f"serving on http://{host or settings.host}:{port or settings.port} with {plan}")
    try:
        uvicorn.run("payops.api.serving:serve_app", factory=True, workers=count,
                    host=host or settings.host, port=port or settings.port,
                    log_level="warning", access_log=False,
                    # h11 with a 16 KiB limit on the request line and headers (decisions.md).
                    http=HeaderLimitedH11Protocol, h11_max_incomplete_event_size=MAX_HEADER_BYTES,
                    proxy_headers=bool(trusted), forwarded_allow_ips=trusted or None,
                    # uvicorn replaces a worker that misses this deadline on a health check or
                    # at start-up. Its 5 s default killed busy workers (and the requests they
                    # held) on a loaded 2-core machine; a hung worker is still replaced.
                    timeout_worker_healthcheck=serving.WORKER_HEALTHCHECK_SECONDS)
    finally:
        serving.remove_metrics_dir(metrics_dir)


def is_loopback_host(host: str) -> bool:
    import ipaddress

    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may well be reachable from outside


def _require_public_url(settings: Settings, host: str) -> None:
    """Without PAYOPS_PUBLIC_URL, checkout links are built from the request's Host header, which
    a client chooses. That is harmless only when nobody but this machine can reach the server:
    so a non-loopback bind address, or trusting a reverse proxy, needs the URL set."""
    if settings.public_url:
        return
    if not is_loopback_host(host):
        _fail(f"set PAYOPS_PUBLIC_URL (e.g. https://pay.example.com) to serve on {host}: "
              "without it checkout links follow the client's Host header")
    # PAYOPS_TRUSTED_PROXIES (authentication settings) puts a proxy in front: same rule.
    if settings.trusted_proxy_list:
        _fail("set PAYOPS_PUBLIC_URL (e.g. https://pay.example.com) when trusting a proxy "
              "(PAYOPS_TRUSTED_PROXIES): without it checkout links follow the Host header")


def _check_secrets() -> None:
    """Stop with one line when PAYOPS_SECRET_KEY does not open the stored secrets."""
    from payops import stored_secrets
    from payops.gateways.crypto import SecretKeyMismatch

    try:
        _run(stored_secrets.startup)
    except SecretKeyMismatch as exc:
        _fail(str(exc))
    except ValueError as exc:  # not a Fernet key at all
        _fail(f"PAYOPS_SECRET_KEY is not a valid Fernet key: {exc}")


# -- secret key -------------------------------------------------------------------------------

@secret_app.command("rotate")
def secret_rotate() -> None:
    """Re-encrypt every stored secret under the first key of PAYOPS_SECRET_KEY."""
    from payops import stored_secrets
    from payops.gateways.crypto import SecretKeyMismatch

    try:
        summary = _run(stored_secrets.rotate)
    except SecretKeyMismatch as exc:
        _fail(str(exc))
    console.print(f"re-encrypted {summary.gateway_secrets} gateway secret(s) and "
                  f"{summary.settings} setting(s) under the first key; older keys can now be "
                  "removed from PAYOPS_SECRET_KEY")


@secret_app.command("new-key")
def secret_new_key() -> None:
    """Print a new Fernet key (put it first in PAYOPS_SECRET_KEY, then run `secret rotate`)."""
    from cryptography.fernet import Fernet

    print(Fernet.generate_key().decode())


# -- users ------------------------------------------------------------------------------------

@user_app.command("create")
def user_create(
    username: str,
    password: str = typer.Option(..., prompt=True, hide_input=True, confirmation_prompt=True),
    superuser: bool = typer.Option(False, help="Holds every permission"),
    permission: list[str] = typer.Option([], "--permission", "-p", help="Permission code; repeat"),
    first_name: str = "", last_name: str = "", email: str = "", phone: str = "",
) -> None:
    """Create a user with an argon2id-hashed password."""
    unknown = set(permission) - GRANTABLE_PERMISSIONS
    if unknown:
        _fail(f"unknown permission(s): {', '.join(sorted(unknown))}; "
              f"known: {', '.join(sorted(GRANTABLE_PERMISSIONS))}")
    try:
        check_new_username(username)  # one that Basic auth and the dashboard can sign in with
        check_new_password(password)  # at least 8 characters, at most what logins accept
    except AccountError as exc:
        _fail(str(exc.body["detail"]) if isinstance(exc.body, dict) else str(exc))

    async def work(ctx: AppContext) -> None:
        async with ctx.db.write() as session:
            if await auth_repo.user_by_username(session, username):
                _fail(f"user {username!r} exists")
            session.add(User(
                username=username, password_hash=hash_password(password), is_superuser=superuser,
                first_name=first_name, last_name=last_name, email=email, phone=phone,
                permissions=[UserPermission(code=code) for code in sorted(set(permission))],
            ))
            audit.record(session, _cli_actor(), "user.create", "success", username=username,
                         superuser=superuser, permissions=sorted(set(permission)))
    _run(work)
    console.print(f"created user [bold]{username}[/bold]")


@user_app.command("list")
def user_list() -> None:
    """List users and their permissions."""
    async def work(ctx: AppContext) -> list[User]:
        async with ctx.db.read() as session:
            return await auth_repo.list_users(session)
    table = Table("username", "superuser", "active", "permissions")
    for user in _run(work):
        table.add_row(user.username, "yes" if user.is_superuser else "no",
                      "yes" if user.is_active else "no",
                      ", ".join(sorted(p.code for p in user.permissions)) or "-")
    console.print(table)


@user_app.command("grant")
def user_grant(
    username: str,
    permissions: list[str] = typer.Argument(..., help="Permission codes, e.g. payment.refund"),
    revoke: bool = typer.Option(False, help="Take the permissions away instead"),
) -> None:
    """Grant (or with --revoke, remove) permission codes."""
    unknown = set(permissions) - GRANTABLE_PERMISSIONS
    if unknown:
        _fail(f"unknown permission(s): {', '.join(sorted(unknown))}")

    async def work(ctx: AppContext) -> list[str]:
        async with ctx.db.write() as session:
            user = await auth_repo.user_by_username(session, username)
            if user is None:
                _fail(f"no user {username!r}")
            assert user is not None
            held = {p.code: p for p in user.permissions}
            for code in permissions:
                if revoke and code in held:
                    user.permissions.remove(held[code])
                elif not revoke and code not in held:
                    user.permissions.append(UserPermission(code=code))
            bump_credentials_version(user)  # cached logins pick up the new permissions
            audit.record(session, _cli_actor(), "user.revoke" if revoke else "user.grant",
                         "success", username=username, permissions=sorted(set(permissions)))
            await session.flush()
            return sorted(p.code for p in user.permissions)
    now_held = _run(work)
    console.print(f"{username}: {', '.join(now_held) or 'no permissions'}")


def _cli_actor() -> Principal:
    """Who ran a CLI command, for the audit trail: the operating-system account."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return Principal("cli", f"cli:{name}"[:150], ALL_PERMISSIONS)


def _account_change(work: Callable[[AppContext], Awaitable[None]]) -> None:
    try:
        _run(work)
    except AccountError as exc:
        _fail(str(exc.body["detail"]) if isinstance(exc.body, dict) else str(exc))


@user_app.command("deactivate")
def user_deactivate(username: str) -> None:
    """Deactivate a user: every login, cached or not, is refused at once in every process."""
    actor = _cli_actor()
    _account_change(lambda ctx: set_active(ctx, username, False, actor=actor))
    console.print(f"deactivated user [bold]{username}[/bold]")


@user_app.command("activate")
def user_activate(username: str) -> None:
    """Activate a user again."""
    actor = _cli_actor()
    _account_change(lambda ctx: set_active(ctx, username, True, actor=actor))
    console.print(f"activated user [bold]{username}[/bold]")


@user_app.command("set-password")
def user_set_password(
    username: str,
    password_stdin: bool = typer.Option(
        False, "--password-stdin", help="Read the password from the first line of stdin (scripts)"),
) -> None:
    """Change a user's password; asked at a hidden prompt (or read from stdin), never taken as an
    argument, so it stays out of shell history and process lists. Cached logins end at once."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("New password", hide_input=True, confirmation_prompt=True)
    actor = _cli_actor()
    _account_change(lambda ctx: set_password(ctx, username, password, actor=actor))
    console.print(f"changed the password of user [bold]{username}[/bold]")


# -- API keys ---------------------------------------------------------------------------------

@apikey_app.command("create")
def apikey_create(
    name: str,
    expires_in_days: int = typer.Option(0, help="0 = never expires"),
) -> None:
    """Create an API key; the key is shown once and stored only as a hash."""
    if len(name) > 50:
        _fail("the name may have at most 50 characters")
    key, prefix, secret_hash = new_api_key()

    async def work(ctx: AppContext) -> None:
        async with ctx.db.write() as session:
            expires = (datetime.now(timezone.utc) + timedelta(days=expires_in_days)
                       if expires_in_days > 0 else None)
            session.add(ApiKey(prefix=prefix, secret_hash=secret_hash, name=name,
                               expires_at=expires))
            audit.record(session, _cli_actor(), "api_key.create", "success", prefix=prefix,
                         name=name, expires_in_days=expires_in_days)
    _run(work)
    console.print(f"API key [bold]{name}[/bold] (prefix {prefix}), shown only now:")
    print(key)


@apikey_app.command("revoke")
def apikey_revoke(prefix: str) -> None:
    """Revoke an API key by its prefix (the part before the dot)."""
    async def work(ctx: AppContext) -> bool:
        async with ctx.db.write() as session:
            key = await auth_repo.api_key_by_prefix(session, prefix.split(".")[0])
            if key is None:
                return False
            if key.revoked_at is None:
                key.revoked_at = datetime.now(timezone.utc)
                audit.record(session, _cli_actor(), "api_key.revoke", "success",
                             prefix=key.prefix, name=key.name)
            return True
    if not _run(work):
        _fail(f"no API key with prefix {prefix!r}")
    console.print(f"revoked API key {prefix.split('.')[0]}")


@apikey_app.command("list")
def apikey_list() -> None:
    """List API keys (never their secrets)."""
    async def work(ctx: AppContext) -> list[ApiKey]:
        async with ctx.db.read() as session:
            return await auth_repo.list_api_keys(session)
    table = Table("prefix", "name", "created", "expires", "revoked")
    for key in _run(work):
        table.add_row(key.prefix, key.name, str(key.created_at)[:19],
                      str(key.expires_at)[:19] if key.expires_at else "-",
                      str(key.revoked_at)[:19] if key.revoked_at else "-")
    console.print(table)


# -- gateways ---------------------------------------------------------------------------------

@gateway_app.command("add")
def gateway_add(
    connector: str = typer.Argument(..., help=f"Connector: {', '.join(CONNECTORS)}"),
    code: str = typer.Option(..., "--code", help="pg_code, unique"),
    mode: str = typer.Option("purchase", help="purchase or authorize"),
    currency: str = typer.Option(..., help="Default currency, e.g. KWD"),
    accept: list[str] = typer.Option([], "--accept", help="Another accepted currency; repeat"),
    operations: list[str] = typer.Option(
        [], "--operation", help="Enable only these operations; repeat (default: all supported)"),
    production: bool = typer.Option(False, help="Use the gateway's production host"),
    single_attempt: bool = typer.Option(False, help="A failed attempt fails the transaction"),
    credentials: str = typer.Option("{}", help="Gateway credentials as JSON (stored encrypted)"),
    option: list[str] = typer.Option(
        [], "--option", help="Non-secret setting KEY=VALUE, e.g. timeout_seconds=20; repeat"),
    webhook_secret: str = typer.Option("", help="Secret for the gateway's incoming webhooks"),
) -> None:
    """Add a gateway configuration."""
    try:
        creds = json.loads(credentials)
    except ValueError:
        _fail("--credentials must be a JSON object")
    if not isinstance(creds, dict):
        _fail("--credentials must be a JSON object")
    options: dict[str, Any] = {}
    for item in option:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(f"--option takes KEY=VALUE, got {item!r}")
        options[key] = value

    async def work(ctx: AppContext) -> None:
        async with ctx.db.write() as session:
            await add_gateway(
                session, ctx.settings, pg_code=code, connector=connector, operation_mode=mode,
                default_currency=currency, accepted_currencies=list(accept),
                is_sandbox=not production, credentials=creds,
                enabled_operations=list(operations) or None, multi_attempt=not single_attempt,
                options=options, webhook_secret=webhook_secret,
            )
            # The names of the credential fields only, never their values.
            audit.record(session, _cli_actor(), "gateway.add", "success", pg_code=code,
                         connector=connector, credentials=sorted(creds))
    try:
        _run(work)
    except (GatewayConfigError, ValueError) as exc:
        _fail(str(exc))
    console.print(f"added gateway [bold]{code}[/bold] ({connector}, {mode}, {currency.upper()})")


@gateway_app.command("list")
def gateway_list() -> None:
    """List gateway configurations (credentials are never shown)."""
    async def work(ctx: AppContext) -> list[Any]:
        async with ctx.db.read() as session:
            return await gateway_repo.list_all(session)
    table = Table("pg_code", "connector", "mode", "currency", "accepts", "operations", "sandbox")
    for gw in _run(work):
        table.add_row(gw.pg_code, gw.connector, gw.operation_mode, gw.default_currency,
                      ", ".join(gw.accepted_currencies), ", ".join(gw.enabled_operations),
                      "yes" if gw.is_sandbox else "no")
    console.print(table)


# -- transactions -----------------------------------------------------------------------------

@txn_app.command("create")
def txn_create(
    amount: str = typer.Option(..., help="Decimal amount, e.g. 25.000"),
    currency: str = typer.Option(..., help="Currency code, e.g. KWD"),
    pg_code: str = typer.Option(..., "--pg-code", help="Sandbox gateway configuration to pay at"),
    order_no: str = typer.Option(None, help="Merchant order number (default: generated)"),
    card: str = typer.Option("4111111111111111", help="Sandbox test card to pay with"),
    fee: str = typer.Option(None, help="Fee the customer pays on top"),
    webhook_url: str = typer.Option("", help="Merchant webhook URL for this transaction"),
    print_field: str = typer.Option(None, "--print", help="Print only this field (for scripts)"),
) -> None:
    """Create a transaction and pay it at a sandbox gateway with a test card."""
    try:
        minor = parse_amount(amount, currency)
        fee_minor = parse_amount(fee, currency) if fee else 0
    except (AmountError, ValueError) as exc:
        _fail(f"amount: {exc}")
    order = order_no or f"demo-{secrets.token_hex(4)}"
    if card.replace(" ", "") not in TEST_CARDS:
        _fail(f"not a sandbox test card; use one of {', '.join(TEST_CARDS)}")

    async def work(ctx: AppContext) -> dict[str, Any]:
        async with ctx.db.write() as session:
            gateway = await gateway_repo.get_by_code(session, pg_code)
            if gateway is None or gateway.connector != "sandbox":
                _fail(f"no sandbox gateway configuration {pg_code!r}")
            if currency.upper() not in gateway.accepted_currencies:
                _fail(f"{pg_code} does not accept {currency.upper()}")
            if await txn_repo.find_parent(session, order_no=order, include_deleted=True):
                _fail(f"order number {order!r} is taken")
            parent = new_parent(amount=minor, currency_code=currency, pg_codes=[pg_code],
                                order_no=order, fee=fee_minor, webhook_url=webhook_url)
            session.add(parent)
            await session.flush()
            parent_id = parent.id
        try:
            parent = await pay_with_sandbox(ctx.db, ctx.settings, parent_id, gateway,
                                            card.replace(" ", ""))
        except TransactionError as exc:
            _fail(str(exc))
        return {"order_no": parent.order_no, "session_id": parent.session_id,
                "state": parent.state, "amount": format_minor(parent.amount, parent.currency_code),
                "currency_code": parent.currency_code, "pg_code": pg_code}
    _emit(_run(work), print_field)


@txn_app.command("import")
def txn_import(
    pg_code: str = typer.Option(..., "--pg-code", help="Gateway configuration that took the payment"),
    amount: str = typer.Option(..., help="Amount paid or authorized, e.g. 25.000"),
    currency: str = typer.Option(..., help="Currency code"),
    state: str = typer.Option("paid", help="paid or authorized"),
    ref: list[str] = typer.Option(
        ..., "--ref", help="Gateway reference KEY=VALUE (e.g. order_id=ORD-7, payment_id=…); repeat"),
    order_no: str = typer.Option(None, help="Merchant order number"),
    print_field: str = typer.Option(None, "--print", help="Print only this field (for scripts)"),
) -> None:
    """Register a payment taken through a gateway outside PayOps, so it can be operated on."""
    try:
        minor = parse_amount(amount, currency)
    except (AmountError, ValueError) as exc:
        _fail(f"amount: {exc}")
    refs: dict[str, str] = {}
    for item in ref:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            _fail(f"--ref takes KEY=VALUE, got {item!r}")
        refs[key] = value

    async def work(ctx: AppContext) -> dict[str, Any]:
        async with ctx.db.write() as session:
            gateway = await gateway_repo.get_by_code(session, pg_code)
            if gateway is None:
                _fail(f"no gateway configuration {pg_code!r}")
            if order_no and await txn_repo.find_parent(session, order_no=order_no,
                                                       include_deleted=True):
                _fail(f"order number {order_no!r} is taken")
            try:
                parent = await import_transaction(
                    session, gateway=gateway, amount=minor, currency_code=currency, state=state,
                    gateway_refs=refs, order_no=order_no)
            except TransactionError as exc:
                _fail(str(exc))
            return {"order_no": parent.order_no, "session_id": parent.session_id,
                    "state": parent.state, "pg_code": pg_code}
    _emit(_run(work), print_field)


@txn_app.command("show")
def txn_show(
    order_no: str = typer.Argument(None, help="Order number"),
    session_id: str = typer.Option(None, help="Look up by session id instead"),
) -> None:
    """Show a transaction with its attempts and child transactions."""
    if not order_no and not session_id:
        _fail("give an order number or --session-id")

    async def work(ctx: AppContext) -> tuple[Any, list[Any], list[Any]]:
        async with ctx.db.read() as session:
            parent = await txn_repo.find_parent(session, order_no=order_no if not session_id else None,
                                                session_id=session_id, include_deleted=True)
            if parent is None:
                _fail("no such transaction")
            return (parent, await txn_repo.attempts(session, parent.id),
                    await txn_repo.operations(session, parent.id))
    parent, attempts, operations = _run(work)
    ccy = parent.currency_code
    money = lambda v: format_minor(v, ccy)  # noqa: E731
    summary = Table(show_header=False, title=f"transaction {parent.order_no or parent.session_id}")
    for label, value in (
        ("session_id", parent.session_id), ("order_no", parent.order_no or ""),
        ("state", parent.state + (" (deleted)" if parent.deleted_at else "")),
        ("amount", f"{money(parent.amount)} {ccy}"), ("fee", money(parent.fee)),
        ("gateway", parent.gateway_config.pg_code if parent.gateway_config else "-"),
        ("mode", parent.operation_mode or "-"),
        ("authorized", money(parent.authorized_total)), ("paid", money(parent.paid_total)),
        ("captured", money(parent.captured)), ("refunded", money(parent.refunded)),
        ("voided", money(parent.voided)),
    ):
        summary.add_row(label, value)
    console.print(summary)
    table = Table("attempt", "state", "amount", "gateway", "message", title="payment attempts")
    for attempt in attempts:
        table.add_row(attempt.reference_number, attempt.state, money(attempt.amount),
                      attempt.gateway_config.pg_code, attempt.message)
    console.print(table)
    table = Table("reference", "operation", "state", "child state", "amount", "child session_id",
                  "created", title="operations (child transactions)")
    for op in operations:
        table.add_row(op.reference_number, op.operation, op.state, child_state(op) or "-",
                      money(op.amount), op.child_session_id, str(op.created_at)[:19])
    console.print(table)


# -- operations and reconciliation -------------------------------------------------------------

OPERATION_STATES = ("processing", "queued", "needs_review", "succeeded", "failed", "rejected")


@ops_app.command("list")
def ops_list(
    state: list[str] = typer.Option(
        ["processing", "needs_review"], "--state", help="State to show; repeat"),
    limit: int = typer.Option(200, help="At most this many rows"),
) -> None:
    """List operations by state (default: the unresolved ones)."""
    unknown = set(state) - set(OPERATION_STATES)
    if unknown:
        _fail(f"unknown state(s): {', '.join(sorted(unknown))}; known: {', '.join(OPERATION_STATES)}")

    async def work(ctx: AppContext) -> list[tuple[Any, Any]]:
        async with ctx.db.read() as session:
            rows = await session.execute(
                select(Operation, PaymentTransaction)
                .join(PaymentTransaction, PaymentTransaction.id == Operation.transaction_id)
                .where(Operation.state.in_(state))
                .order_by(Operation.created_at).limit(limit)
            )
            return [tuple(row) for row in rows]
    table = Table("reference", "order_no", "operation", "state", "amount", "gateway", "asked",
                  "created", title=f"operations: {', '.join(state)}")
    rows = _run(work)
    for op, parent in rows:
        table.add_row(op.reference_number, parent.order_no or parent.session_id, op.operation,
                      op.state, f"{format_minor(op.amount, op.currency_code)} {op.currency_code}",
                      op.gateway_config.pg_code, str(op.reconcile_attempts),
                      str(op.created_at)[:19])
    console.print(table)
    console.print(f"{len(rows)} operation(s)")


OPERATOR_MAX = 100


def _operator(name: str | None) -> Any:
    """The CLI's actor: the operator named with --operator, recorded with the OS user."""
    import getpass

    from payops.auth.permissions import ALL_PERMISSIONS as every
    from payops.auth.service import Principal

    try:
        os_user = getpass.getuser()
    except (KeyError, OSError):
        os_user = "unknown"
    label = f"{name} (os user {os_user})" if name else f"cli (os user {os_user})"
    initiator = {"os_user": os_user, **({"operator": name} if name else {})}
    return Principal("cli", label[:150], frozenset(every), initiator)


def _review_call(work: Callable[[AppContext], Awaitable[dict[str, Any]]]) -> None:
    from payops.errors import ApiError

    try:
        result = _run(work)
    except ApiError as exc:
        body = exc.body if isinstance(exc.body, dict) else {}
        _fail(str(body.get("detail", exc.body)))
        return
    _emit(result, None)


@ops_app.command("recheck")
def ops_recheck(
    reference: str = typer.Argument(..., help="The operation's reference_number"),
    operator: str = typer.Option("", "--operator", help="Your name, for the audit trail"),
) -> None:
    """Ask the gateway about an open (processing, queued, needs_review) operation now and settle
    it; for a resolved one, check that the gateway agrees (an alert is raised if not)."""
    from payops.operations.review import recheck_operation

    _review_call(lambda ctx: recheck_operation(ctx, reference, _operator(operator.strip() or None)))


@ops_app.command("resolve")
def ops_resolve(
    reference: str = typer.Argument(..., help="The operation's reference_number"),
    outcome: str = typer.Option(..., "--outcome", help="succeeded or failed, as the gateway's "
                                "own dashboard shows it"),
    reason: str = typer.Option(..., "--reason", help="Why: what you checked"),
    evidence: str = typer.Option("", "--evidence", help="e.g. the gateway's transaction id"),
    operator: str = typer.Option(..., "--operator", help="Your name (recorded with the OS user)"),
) -> None:
    """Settle an operation in needs_review with an operator's decision (audited)."""
    from payops.operations.review import OUTCOMES, resolve_operation

    if outcome not in OUTCOMES:
        _fail(f"--outcome must be one of {', '.join(OUTCOMES)}")
    if not operator.strip():
        _fail("--operator must name you")
    if len(operator.strip()) > OPERATOR_MAX:
        # The audit's actor column holds the name with the OS user; longer, the OS user was cut.
        _fail(f"--operator may have at most {OPERATOR_MAX} characters")
    if not reason.strip():
        _fail("--reason is required")
    from payops.operations.review_endpoints import TEXT_MAX
    for name, text in (("--reason", reason), ("--evidence", evidence)):
        if len(text) > TEXT_MAX:  # the API's limit: one rule for both doors
            _fail(f"{name} may have at most {TEXT_MAX} characters")
    _review_call(lambda ctx: resolve_operation(
        ctx, reference, outcome=outcome, reason=reason, evidence=evidence,
        actor=_operator(operator.strip())))


@app.command()
def reconcile(
    older_than: float = typer.Option(
        None, help="Ask about processing operations older than this many seconds "
        "(default PAYOPS_RECONCILE_AFTER_SECONDS)"),
) -> None:
    """Settle open operations now by asking their gateways (safe beside a running server)."""
    from rich.progress import Progress

    from payops.operations.reconciler import reconcile_once

    settings = get_settings()
    if older_than is not None:
        settings = settings.model_copy(update={"reconcile_after_seconds": older_than})

    async def work(ctx: AppContext) -> Any:
        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("reconciling", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)
            return await reconcile_once(ctx, on_progress=advance)

    async def main() -> Any:
        ctx = AppContext.build(settings)
        try:
            return await work(ctx)
        finally:
            await ctx.aclose()
    summary = asyncio.run(main())
    table = Table("outcome", "operations", title="reconciliation")
    for outcome, count in sorted(summary.outcomes.items()):
        table.add_row(outcome, str(count))
    table.add_row("total examined", str(summary.examined))
    console.print(table)


# -- webhooks ---------------------------------------------------------------------------------

def _set_setting(key: str, value: str) -> None:
    async def work(ctx: AppContext) -> None:
        async with ctx.db.write() as session:
            await outbox.set_merchant_setting(session, key, value)
    _run(work)


@webhook_key_app.command("set")
def webhook_key_set(
    key: str = typer.Option(..., prompt=True, hide_input=True, help="The HMAC key"),
) -> None:
    """Set the HMAC key that signs webhooks and API responses (spec §7.3)."""
    if len(key) < 8:
        _fail("the key must have at least 8 characters")
    _set_setting(outbox.HMAC_KEY_SETTING, key)
    console.print("webhook HMAC key set")


@webhook_key_app.command("rotate")
def webhook_key_rotate() -> None:
    """Generate a new HMAC key; undelivered events are signed with it when sent."""
    key = secrets.token_urlsafe(32)
    _set_setting(outbox.HMAC_KEY_SETTING, key)
    console.print("new webhook HMAC key, shown only now:")
    print(key)


@webhook_app.command("operations-url")
def webhook_operations_url(url: str = typer.Argument(..., help="URL, or '' to clear")) -> None:
    """Set the merchant-wide URL that receives every operation webhook."""
    from payops.api.requests import url as valid_url
    from payops.errors import FieldErrors

    from payops.webhooks.targets import refuse_private_fields

    try:
        checked = valid_url("operations_url", url, max_length=2048) or ""
    except FieldErrors:
        _fail("enter an http(s) URL")
    try:
        asyncio.run(refuse_private_fields({"url": checked}, ("url",), allow_private=get_settings(
        ).webhook_allow_private))
    except FieldErrors:
        _fail("the URL's host is a loopback, private, link-local or metadata address "
              "(allowed only with PAYOPS_WEBHOOK_ALLOW_PRIVATE=true)")
    _set_setting(outbox.OPERATIONS_URL_SETTING, checked)
    console.print(f"operations webhook URL: {checked or '(none)'}")


@webhooks_app.command("deliver")
def webhooks_deliver() -> None:
    """Send every due webhook event now (one pass), beside or instead of `payops serve`."""
    from payops.webhooks.delivery import deliver_due

    async def work(ctx: AppContext) -> dict[str, int]:
        total: dict[str, int] = {}
        while True:
            outcomes = await deliver_due(ctx)
            if not outcomes:
                return total
            for state, count in outcomes.items():
                total[state] = total.get(state, 0) + count
    outcomes = _run(work)
    table = Table("outcome", "events", title="webhook delivery")
    for state, count in sorted(outcomes.items()):
        table.add_row(state, str(count))
    console.print(table)


@webhooks_app.command("list")
def webhooks_list(
    failed: bool = typer.Option(False, "--failed", help="Only events that failed for good"),
    limit: int = typer.Option(100, help="At most this many rows"),
) -> None:
    """List webhook events with their delivery state and last error."""
    async def work(ctx: AppContext) -> list[OutboxEvent]:
        async with ctx.db.read() as session:
            query = select(OutboxEvent).order_by(OutboxEvent.id.desc()).limit(limit)
            if failed:
                query = query.where(OutboxEvent.state == "failed")
            return list(await session.scalars(query))
    table = Table("id", "event id", "kind", "state", "tries", "target", "last error", "created")
    for event in _run(work):
        table.add_row(str(event.id), event.event_id, event.kind, event.state, str(event.attempts),
                      event.target_url[:60], event.last_error[:40], str(event.created_at)[:19])
    console.print(table)


@webhooks_app.command("retry")
def webhooks_retry(event: int = typer.Argument(..., help="Event id (the number in `list`)")) -> None:
    """Send a failed (or pending) event again, starting a fresh series of tries."""
    async def work(ctx: AppContext) -> str | None:
        async with ctx.db.write() as session:
            row = await session.get(OutboxEvent, event)
            if row is None:
                return None
            if row.state == "delivered":
                return "delivered"
            row.state, row.attempts = "pending", 0
            row.next_attempt_at = datetime.now(timezone.utc)
            return "pending"
    state = _run(work)
    if state is None:
        _fail(f"no webhook event {event}")
    if state == "delivered":
        _fail(f"event {event} was delivered already")
    console.print(f"event {event} queued for delivery")


# -- demo -------------------------------------------------------------------------------------

DEMO_USER = "demo"
DEMO_GATEWAYS = (("sandbox-kwd", "purchase", "KWD"), ("sandbox-auth-kwd", "authorize", "KWD"),
                 ("sandbox-usd", "purchase", "USD"))


@app.command()
def demo() -> None:
    """Prepare a playground: migrate, demo user, API key and sandbox gateways; print them."""
    settings = get_settings()
    _migrate(settings)
    password = secrets.token_urlsafe(12)
    key, prefix, secret_hash = new_api_key()
    hmac_key: list[str] = []

    async def work(ctx: AppContext) -> None:
        async with ctx.db.write() as session:
            user = await auth_repo.user_by_username(session, DEMO_USER)
            if user is None:
                session.add(User(username=DEMO_USER, password_hash=hash_password(password),
                                 is_superuser=True, first_name="Demo", last_name="Merchant"))
            else:
                user.password_hash = hash_password(password)
            session.add(ApiKey(prefix=prefix, secret_hash=secret_hash,
                               name=f"demo-{datetime.now(timezone.utc):%Y%m%d%H%M%S}"))
            if not await outbox.merchant_setting(session, outbox.HMAC_KEY_SETTING):
                await outbox.set_merchant_setting(
                    session, outbox.HMAC_KEY_SETTING, secrets.token_urlsafe(24))
            hmac_key.append(await outbox.merchant_setting(session, outbox.HMAC_KEY_SETTING))
            existing = {gw.pg_code for gw in await gateway_repo.list_all(session)}
            for code, mode, currency in DEMO_GATEWAYS:
                if code not in existing:
                    await add_gateway(session, ctx.settings, pg_code=code, connector="sandbox",
                                      operation_mode=mode, default_currency=currency)
    _run(work)
    table = Table(show_header=False, title="PayOps demo (sandbox only)")
    table.add_row("server", f"http://{settings.host}:{settings.port}")
    table.add_row("dashboard", f"http://{settings.host}:{settings.port}/dashboard "
                  f"(sign in as {DEMO_USER})")
    table.add_row("Basic user", DEMO_USER)
    table.add_row("password", password)
    table.add_row("API key", key)
    table.add_row("webhook HMAC key", hmac_key[0])
    table.add_row("gateways", ", ".join(code for code, _, _ in DEMO_GATEWAYS))
    console.print(table)
    env_file = settings.data_dir / "demo.env"
    env_file.write_text(
        f"PAYOPS_DEMO_USER={DEMO_USER}\nPAYOPS_DEMO_PASSWORD={password}\nPAYOPS_DEMO_API_KEY={key}\n"
    )
    env_file.chmod(0o600)
    console.print(f"(also written to {env_file} for the README walk-through)")


if __name__ == "__main__":
    app()
