"""Registering a payment taken at a real gateway outside PayOps (decisions §9): the work behind
``POST /b/payops/v1/import/``."""

from __future__ import annotations

from typing import Any

from payops import audit
from payops.auth.service import Principal
from payops.context import AppContext
from payops.errors import FieldErrors
from payops.gateways import repository as gateways
from payops.transactions import repository
from payops.transactions.service import TransactionError, import_transaction


async def register_import(
    ctx: AppContext,
    principal: Principal,
    *,
    pg_code: str,
    order_no: str | None,
    amount: int,
    currency_code: str,
    state: str,
    gateway_refs: dict[str, str],
) -> dict[str, Any]:
    """Create the paid (or authorized) parent and its attempt, audited; the answer's body."""
    async with ctx.db.write() as session:
        gateway = await gateways.get_by_code(session, pg_code)
        if gateway is None:
            raise FieldErrors({"pg_code": [f'Payment gateway code "{pg_code}" does not exist.']})
        if order_no and await repository.find_parent(
            session, order_no=order_no, include_deleted=True
        ):
            raise FieldErrors(
                {"order_no": ["Payment transaction with this order number already exists."]}
            )
        try:
            parent = await import_transaction(
                session,
                gateway=gateway,
                amount=amount,
                currency_code=currency_code,
                state=state,
                gateway_refs=gateway_refs,
                order_no=order_no,
            )
        except TransactionError as exc:
            raise FieldErrors({"non_field_errors": [str(exc)]}) from None
        audit.record(session, principal, "import", "success", parent, gateway_refs=gateway_refs)
        return {
            "session_id": parent.session_id,
            "order_no": parent.order_no,
            "state": parent.state,
            "pg_code": gateway.pg_code,
        }
