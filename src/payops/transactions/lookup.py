"""How a client names a parent transaction (``session_id`` and/or ``order_no``), and finding it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from payops.db.models import PaymentTransaction
from payops.domain import messages
from payops.errors import FieldErrors, OperationFailed
from payops.transactions import repository
from payops.web.requests import identifier

LOOKUP_REQUIRED = (
    "You must provide either `session_id` or `order_no` to identify the PaymentTransaction."
)


def parse_lookup(body: dict[str, Any]) -> tuple[str | None, str | None]:
    """``(session_id, order_no)`` from a request body; at least one is required."""
    session_id = identifier("session_id", body.get("session_id"), required=False)
    order_no = identifier("order_no", body.get("order_no"), required=False)
    if session_id is None and order_no is None:
        raise FieldErrors({"non_field_errors": [LOOKUP_REQUIRED]})
    return session_id, order_no


@dataclass(frozen=True)
class Lookup:
    """How the client named the parent transaction."""

    order_no: str | None = None
    session_id: str | None = None

    @property
    def not_found_message(self) -> str:
        return (
            messages.SESSION_NOT_FOUND if self.session_id is not None else messages.ORDER_NOT_FOUND
        )

    def names_other_than(self, parent: PaymentTransaction) -> bool:
        """Both identifiers given (the SDK sends both) but the order_no is not this parent's."""
        return (
            self.session_id is not None
            and self.order_no is not None
            and parent.order_no != self.order_no
        )

    @property
    def label(self) -> str:
        return self.session_id or self.order_no or ""


async def find_or_fail(
    session: AsyncSession, lookup: Lookup, operation: str, *, for_update: bool = False
) -> PaymentTransaction:
    parent = await repository.find_parent(
        session, order_no=lookup.order_no, session_id=lookup.session_id, for_update=for_update
    )
    if parent is None:
        raise OperationFailed(lookup.not_found_message, operation)
    if lookup.names_other_than(parent):
        raise OperationFailed(messages.LOOKUP_MISMATCH, operation)
    return parent
