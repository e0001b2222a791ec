"""The audit trail: who ran which operation on which transaction, and how it ended."""

from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from payops.db.models import AuditEntry, PaymentTransaction


class Actor(Protocol):
    """Who acted, as the audit trail names them (``auth.service.Principal`` is one)."""

    @property
    def kind(self) -> str: ...

    @property
    def audit_actor(self) -> str: ...


def record(
    session: AsyncSession,
    principal: Actor,
    action: str,
    result: str,
    parent: PaymentTransaction | None = None,
    *,
    order_no: str = "",
    **details: Any,
) -> None:
    session.add(
        AuditEntry(
            actor_type=principal.kind,
            actor=principal.audit_actor,
            action=action,
            transaction_id=parent.id if parent else None,
            session_id=parent.session_id if parent else "",
            order_no=(parent.order_no or "") if parent else order_no[:128],
            result=result,
            details=details,
        )
    )
