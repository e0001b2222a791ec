"""`payops txn …`: create (sandbox), import and show transactions."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING, Any

import typer
from rich.table import Table

from payops.cli.common import check_currency, check_print_field, console, emit, fail, run
from payops.cli.gateways import key_values

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from payops.context import AppContext
    from payops.db.models import GatewayConfig

app = typer.Typer(help="Transactions.", no_args_is_help=True)

CREATED_FIELDS = ("order_no", "session_id", "state", "amount", "currency_code", "pg_code")
IMPORTED_FIELDS = ("order_no", "session_id", "state", "pg_code")
PRINT_HELP = "Print only this field (for scripts): {}"


def _minor(option: str, amount: str, currency: str) -> int:
    from payops.money import AmountError, parse_amount

    try:
        return parse_amount(amount, currency)
    except (AmountError, ValueError) as exc:
        fail(
            f"{option} {amount!r} is not an amount in {currency.upper()}: {exc} (write e.g. 25.000)"
        )


async def _gateway_for_new_order(
    session: AsyncSession, pg_code: str, order_no: str | None, *, sandbox: bool
) -> GatewayConfig:
    """The gateway configuration a new transaction goes to, with its order number still free;
    or one line saying which is wrong."""
    from payops.gateways import repository as gateway_repo
    from payops.transactions import repository as txn_repo

    gateway = await gateway_repo.get_by_code(session, pg_code)
    if gateway is None or (sandbox and gateway.connector != "sandbox"):
        kind = "sandbox " if sandbox else ""
        fail(f"no {kind}gateway configuration {pg_code!r}; see `payops gateway list`")
    if order_no and await txn_repo.find_parent(session, order_no=order_no, include_deleted=True):
        fail(f"order number {order_no!r} is taken; choose another --order-no")
    return gateway


@app.command("create")
def txn_create(
    amount: str = typer.Option(..., help="Decimal amount, e.g. 25.000"),
    currency: str = typer.Option(..., help="Currency code, e.g. KWD"),
    pg_code: str = typer.Option(..., "--pg-code", help="Sandbox gateway configuration to pay at"),
    order_no: str = typer.Option(None, help="Merchant order number (default: generated)"),
    card: str = typer.Option("4111111111111111", help="Sandbox test card to pay with"),
    fee: str = typer.Option(None, help="Fee the customer pays on top"),
    webhook_url: str = typer.Option("", help="Merchant webhook URL for this transaction"),
    print_field: str = typer.Option(
        None, "--print", help=PRINT_HELP.format(", ".join(CREATED_FIELDS))
    ),
) -> None:
    """Create a transaction and pay it at a sandbox gateway with a test card."""
    from payops.connectors.sandbox.connector import TEST_CARDS

    check_print_field(print_field, CREATED_FIELDS)
    currency = check_currency("--currency", currency)
    minor = _minor("--amount", amount, currency)
    fee_minor = _minor("--fee", fee, currency) if fee else 0
    order = order_no or f"demo-{secrets.token_hex(4)}"
    if card.replace(" ", "") not in TEST_CARDS:
        fail(f"not a sandbox test card; use one of {', '.join(TEST_CARDS)}")

    async def work(ctx: AppContext) -> dict[str, Any]:
        from payops.money import format_minor
        from payops.transactions.service import TransactionError, new_parent, pay_with_sandbox

        async with ctx.db.write() as session:
            gateway = await _gateway_for_new_order(session, pg_code, order, sandbox=True)
            if currency not in gateway.accepted_currencies:
                fail(
                    f"{pg_code} does not accept {currency}; it accepts "
                    f"{', '.join(gateway.accepted_currencies)}"
                )
            parent = new_parent(
                amount=minor,
                currency_code=currency,
                pg_codes=[pg_code],
                order_no=order,
                fee=fee_minor,
                webhook_url=webhook_url,
            )
            session.add(parent)
            await session.flush()
            parent_id = parent.id
        try:
            parent = await pay_with_sandbox(
                ctx.db, ctx.settings, parent_id, gateway, card.replace(" ", "")
            )
        except TransactionError as exc:
            fail(str(exc))
        return {
            "order_no": parent.order_no,
            "session_id": parent.session_id,
            "state": parent.state,
            "amount": format_minor(parent.amount, parent.currency_code),
            "currency_code": parent.currency_code,
            "pg_code": pg_code,
        }

    emit(run(work), print_field)


@app.command("import")
def txn_import(
    pg_code: str = typer.Option(
        ..., "--pg-code", help="Gateway configuration that took the payment"
    ),
    amount: str = typer.Option(..., help="Amount paid or authorized, e.g. 25.000"),
    currency: str = typer.Option(..., help="Currency code"),
    state: str = typer.Option("paid", help="paid or authorized"),
    ref: list[str] = typer.Option(
        ..., "--ref", help="Gateway reference KEY=VALUE (e.g. order_id=ORD-7, payment_id=…); repeat"
    ),
    order_no: str = typer.Option(None, help="Merchant order number"),
    print_field: str = typer.Option(
        None, "--print", help=PRINT_HELP.format(", ".join(IMPORTED_FIELDS))
    ),
) -> None:
    """Register a payment taken through a gateway outside PayOps, so it can be operated on."""
    check_print_field(print_field, IMPORTED_FIELDS)
    currency = check_currency("--currency", currency)
    minor = _minor("--amount", amount, currency)
    refs = key_values("--ref", ref, empty_values=False)

    async def work(ctx: AppContext) -> dict[str, Any]:
        from payops.transactions.service import TransactionError, import_transaction

        async with ctx.db.write() as session:
            gateway = await _gateway_for_new_order(session, pg_code, order_no, sandbox=False)
            try:
                parent = await import_transaction(
                    session,
                    gateway=gateway,
                    amount=minor,
                    currency_code=currency,
                    state=state,
                    gateway_refs=refs,
                    order_no=order_no,
                )
            except TransactionError as exc:
                fail(str(exc))
            return {
                "order_no": parent.order_no,
                "session_id": parent.session_id,
                "state": parent.state,
                "pg_code": pg_code,
            }

    emit(run(work), print_field)


@app.command("show")
def txn_show(
    order_no: str = typer.Argument(None, help="Order number"),
    session_id: str = typer.Option(None, help="Look up by session id instead"),
) -> None:
    """Show a transaction with its attempts and child transactions."""
    from payops.money import format_minor
    from payops.transactions.presenters import child_state

    if not order_no and not session_id:
        fail("give an order number or --session-id")

    async def work(ctx: AppContext) -> tuple[Any, list[Any], list[Any]]:
        from payops.transactions import repository as txn_repo

        async with ctx.db.read() as session:
            parent = await txn_repo.find_parent(
                session,
                order_no=order_no if not session_id else None,
                session_id=session_id,
                include_deleted=True,
            )
            if parent is None:
                fail("no such transaction; check the order number (or give --session-id)")
            return (
                parent,
                await txn_repo.attempts(session, parent.id),
                await txn_repo.operations(session, parent.id),
            )

    parent, attempts, operations = run(work)
    ccy = parent.currency_code
    money = lambda v: format_minor(v, ccy)  # noqa: E731
    summary = Table(show_header=False, title=f"transaction {parent.order_no or parent.session_id}")
    for label, value in (
        ("session_id", parent.session_id),
        ("order_no", parent.order_no or ""),
        ("state", parent.state + (" (deleted)" if parent.deleted_at else "")),
        ("amount", f"{money(parent.amount)} {ccy}"),
        ("fee", money(parent.fee)),
        ("gateway", parent.gateway_config.pg_code if parent.gateway_config else "-"),
        ("mode", parent.operation_mode or "-"),
        ("authorized", money(parent.authorized_total)),
        ("paid", money(parent.paid_total)),
        ("captured", money(parent.captured)),
        ("refunded", money(parent.refunded)),
        ("voided", money(parent.voided)),
    ):
        summary.add_row(label, value)
    console.print(summary)
    table = Table("attempt", "state", "amount", "gateway", "message", title="payment attempts")
    for attempt in attempts:
        table.add_row(
            attempt.reference_number,
            attempt.state,
            money(attempt.amount),
            attempt.gateway_config.pg_code,
            attempt.message,
        )
    console.print(table)
    table = Table(
        "reference",
        "operation",
        "state",
        "child state",
        "amount",
        "child session_id",
        "created",
        title="operations (child transactions)",
    )
    for op in operations:
        table.add_row(
            op.reference_number,
            op.operation,
            op.state,
            child_state(op) or "-",
            money(op.amount),
            op.child_session_id,
            str(op.created_at)[:19],
        )
    console.print(table)
