"""Checkout API: payment sessions that a customer pays on the hosted page."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payops import audit
from payops.auth.service import Principal
from payops.checkout.schemas import format_duration, validate_checkout
from payops.context import AppContext
from payops.db.models import GatewayConfig, PaymentTransaction
from payops.domain import messages
from payops.domain.rules import payment_terms_locked
from payops.domain.states import PAYABLE
from payops.errors import DetailError, FieldErrors, NotFound
from payops.gateways import repository as gateways
from payops.gateways.service import supported_operations, takes_payments
from payops.money import format_minor
from payops.transactions import repository
from payops.transactions.presenters import child_state, child_transaction
from payops.transactions.service import DEFAULT_LIFETIME, new_parent

CHANGEABLE_STATES = PAYABLE
ORDER_NO_TAKEN = "Payment transaction with this order number already exists."
ADDRESS_TO_CUSTOMER = {
    "line1": "customer_address_line1",
    "line2": "customer_address_line2",
    "city": "customer_address_city",
    "state": "customer_address_state",
    "country": "customer_address_country",
    "postal_code": "customer_address_postal_code",
}
CUSTOMER_KEYS = (
    "customer_id",
    "customer_email",
    "customer_first_name",
    "customer_last_name",
    "customer_phone",
    "customer_phone_2",
    "customer_birthdate",
)
# Descriptive fields kept in ``details`` and echoed as given.
DETAIL_KEYS = ("due_datetime", "vendor_name", "product_type", "unit_code", "shipping_address")


async def enabled_gateways(session: AsyncSession) -> dict[str, GatewayConfig]:
    return {gw.pg_code: gw for gw in await gateways.list_enabled(session)}


def checkout_url(base_url: str, session_id: str) -> str:
    return f"{base_url.rstrip('/')}/checkout/{session_id}"


def _apply(parent: PaymentTransaction, values: dict[str, Any]) -> None:
    customer = dict(parent.customer or {})
    for key in CUSTOMER_KEYS:
        if key in values:
            customer[key] = values[key]
    if "billing_address" in values:
        for key, target in ADDRESS_TO_CUSTOMER.items():
            customer[target] = values["billing_address"].get(key, "")
    parent.customer = customer
    if any(key in values for key in DETAIL_KEYS):
        details = dict(parent.details or {})
        details.update({key: values[key] for key in DETAIL_KEYS if key in values})
        parent.details = details
    for key in (
        "type",
        "currency_code",
        "pg_codes",
        "extra",
        "webhook_url",
        "redirect_url",
        "language",
        "amount",
    ):
        if key in values:
            setattr(parent, key, values[key])
    if "order_no" in values:
        parent.order_no = values["order_no"] or None
    if "expiration_time" in values:
        parent.expires_at = parent.created_at + values["expiration_time"]


async def _order_no_free(
    session: AsyncSession, order_no: str | None, parent_id: int | None
) -> None:
    if not order_no:
        return
    other = await repository.find_parent(session, order_no=order_no, include_deleted=True)
    if other is not None and other.id != parent_id:
        raise FieldErrors({"order_no": [ORDER_NO_TAKEN]})


async def create(
    ctx: AppContext, principal: Principal, body: dict[str, Any], base_url: str
) -> dict[str, Any]:
    async with ctx.db.write() as session:
        gateways = await enabled_gateways(session)
        values = validate_checkout(body, partial=False, enabled_gateways=gateways)
        await _order_no_free(session, values.get("order_no"), None)
        parent = new_parent(
            amount=values["amount"],
            currency_code=values["currency_code"],
            pg_codes=values["pg_codes"],
            lifetime=values.get("expiration_time", DEFAULT_LIFETIME),
        )
        _apply(parent, values)
        session.add(parent)
        await session.flush()
        audit.record(session, principal, "checkout.create", "success", parent)
        return await checkout_body(session, parent, gateways, base_url)


async def _get(
    session: AsyncSession, session_id: str, *, for_update: bool = False
) -> PaymentTransaction:
    parent = await repository.find_parent(session, session_id=session_id, for_update=for_update)
    if parent is None:
        raise NotFound()
    return parent


async def retrieve(ctx: AppContext, session_id: str, base_url: str) -> dict[str, Any]:
    async with ctx.db.read() as session:
        parent = await _get(session, session_id)
        return await checkout_body(session, parent, await enabled_gateways(session), base_url)


async def update(
    ctx: AppContext,
    principal: Principal,
    session_id: str,
    body: dict[str, Any],
    base_url: str,
    *,
    partial: bool,
) -> dict[str, Any]:
    async with ctx.db.write() as session:
        parent = await _get(session, session_id, for_update=True)
        if parent.state not in CHANGEABLE_STATES:
            raise DetailError(f"A transaction in state {parent.state} cannot be changed.", 400)
        gateways = await enabled_gateways(session)
        values = validate_checkout(
            body, partial=partial, enabled_gateways=gateways, current_currency=parent.currency_code
        )
        changed_terms = [
            name
            for name, current in (
                ("amount", parent.amount),
                ("currency_code", parent.currency_code),
                ("pg_codes", list(parent.pg_codes)),
            )
            if name in values and values[name] != current
        ]
        if changed_terms and payment_terms_locked(
            parent.state, [a.state for a in await repository.attempts(session, parent.id)]
        ):
            raise DetailError(messages.PAYMENT_TERMS_LOCKED, 400)
        if "currency_code" in changed_terms and "amount" not in values:
            raise FieldErrors({"amount": ["Send the amount again when the currency changes."]})
        if (
            "pg_codes" not in values
            and "currency_code" in values
            and not any(
                values["currency_code"] in gw.accepted_currencies
                for code, gw in gateways.items()
                if code in parent.pg_codes
            )
        ):
            raise FieldErrors(
                {
                    "currency_code": [
                        f"None of the payment gateways in pg_codes accepts {values['currency_code']}."
                    ]
                }
            )
        await _order_no_free(session, values.get("order_no"), parent.id)
        _apply(parent, values)
        audit.record(
            session, principal, "checkout.update", "success", parent, fields=sorted(values)
        )
        return await checkout_body(session, parent, gateways, base_url)


def billing_text(parent: PaymentTransaction) -> str:
    """Ottu's ``billing`` (a string in its schema): what the customer is charged, for display.
    The raw values are in ``amount_details``."""
    currency = parent.currency_code
    total = f"{format_minor(parent.amount + parent.fee, currency)} {currency}"
    if not parent.fee:
        return f"Total {total}"
    return (
        f"Amount {format_minor(parent.amount, currency)} {currency}, fee "
        f"{format_minor(parent.fee, currency)} {currency}, total {total}"
    )


async def checkout_body(
    session: AsyncSession,
    parent: PaymentTransaction,
    gateways: dict[str, GatewayConfig],
    base_url: str,
) -> dict[str, Any]:
    currency = parent.currency_code
    money = lambda v: format_minor(v, currency)  # noqa: E731
    url = checkout_url(base_url, parent.session_id)
    customer = parent.customer or {}
    operations = await repository.operations(session, parent.id)
    lifetime = (parent.expires_at - parent.created_at) if parent.expires_at else DEFAULT_LIFETIME
    methods = [
        {
            "code": code,
            "name": gw.pg_code,
            "pg": gw.connector,
            "type": "sandbox" if gw.is_sandbox else "production",
            "amount": money(parent.amount),
            "currency_code": currency,
            "fee": money(parent.fee),
            "fee_description": "",
            "icon": "",
            "flow": "redirect",
            "redirect_url": url,
            "operation": gw.operation_mode,
        }
        for code in parent.pg_codes
        if (gw := gateways.get(code)) is not None
    ]
    details = parent.details or {}
    settled = parent.gateway_config if parent.gateway_config_id else None
    return {
        "session_id": parent.session_id,
        "checkout_url": url,
        "checkout_short_url": url,
        # The page the customer pays on: PayOps's hosted page is its checkout_url.
        "checkout_page_url": url,
        # The gateway that took the payment; null until one did.
        "settled_pg_code": settled.pg_code if settled is not None else None,
        "billing": billing_text(parent),
        # Never generated by PayOps (the features that make them are refused at create).
        "qr_code_url": "",
        "attachment_short_url": "",
        "sdk_setup_preload_payload": None,
        "state": parent.state,
        "type": parent.type,
        "payment_type": parent.payment_type,
        "amount": money(parent.amount),
        "currency_code": currency,
        "fee": money(parent.fee),
        "amount_details": {
            "currency_code": currency,
            "amount": money(parent.amount),
            "total": money(parent.amount + parent.fee),
            "fee": money(parent.fee),
        },
        "paid_amount": money(parent.paid_total if parent.state == "paid" else parent.captured),
        "captured_amount": money(parent.captured),
        "refunded_amount": money(parent.refunded),
        "voided_amount": money(parent.voided),
        "operation": parent.operation_mode or (methods[0]["operation"] if methods else "purchase"),
        "pg_codes": list(parent.pg_codes),
        "payment_methods": methods,
        "order_no": parent.order_no,
        **{key: customer.get(key, "") for key in CUSTOMER_KEYS},
        "billing_address": {
            key: customer.get(target, "") for key, target in ADDRESS_TO_CUSTOMER.items()
        },
        "extra": parent.extra or {},
        **{key: details.get(key, {} if key == "shipping_address" else "") for key in DETAIL_KEYS},
        "expiration_time": format_duration(lifetime),
        "expires_at": parent.expires_at.isoformat() if parent.expires_at else None,
        "webhook_url": parent.webhook_url,
        "redirect_url": parent.redirect_url,
        "language": parent.language,
        "transactions": [
            child_transaction(op, parent) for op in operations if child_state(op) is not None
        ],
        "created": parent.created_at.isoformat(),
    }


async def payment_methods(
    ctx: AppContext,
    *,
    kind: str | None,
    operation: str | None,
    currencies: set[str],
    pg_names: set[str],
) -> list[dict[str, Any]]:
    """The enabled gateway configurations a checkout may use, as Ottu lists payment methods,
    narrowed by the request's filters (an empty filter narrows nothing)."""
    async with ctx.db.read() as session:
        configured = await enabled_gateways(session)
    methods = []
    for code, gw in sorted(configured.items()):
        if kind and gw.is_sandbox != (kind == "sandbox"):
            continue
        if operation and gw.operation_mode != operation:
            continue
        if currencies and not currencies & set(gw.accepted_currencies):
            continue
        if pg_names and gw.connector not in pg_names:
            continue
        methods.append(
            {
                "code": code,
                "name": code,
                "pg": gw.connector,
                "is_sandbox": gw.is_sandbox,
                "logo": "",
                "wallets": [],
                "default_currency": gw.default_currency,
                "accepted_currencies": list(gw.accepted_currencies),
                "operation": gw.operation_mode,
                "operations": sorted(supported_operations(gw) - {"inquiry"}),
                "is_tokenizable": False,
                "auto_debit_enabled": False,
                "payment_services": [],
                "tags": [],
                # Whether customers can pay at it through PayOps (a checkout session may name it);
                # payments taken elsewhere are registered with the import API.
                "takes_payments": takes_payments(gw),
            }
        )
    return methods
