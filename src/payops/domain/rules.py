"""Which operation is allowed in which state, and for how much (decisions §3–§4).

Pure functions over plain values: no I/O, no clock, no database. Amounts are integer minor units.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from payops.domain import messages
from payops.domain.states import (
    ATTEMPT_UNDECIDED,
    CANCELABLE,
    EXPIRABLE,
    INQUIRABLE,
    LATE_SUCCESS,
    SETTLED,
    SOFT_DELETABLE,
)
from payops.money import format_minor

EXTERNAL_OPERATIONS = ("capture", "refund", "void")
INTERNAL_OPERATIONS = ("cancel", "expire", "delete")
ALL_OPERATIONS = EXTERNAL_OPERATIONS + INTERNAL_OPERATIONS

ANSWERED_FROM_STORAGE = SETTLED


class RuleViolation(Exception):
    """An operation the rules refuse; ``message`` is the client-facing text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Totals:
    """A parent transaction's money, including what operations in flight have reserved."""

    state: str
    currency_code: str
    operation_mode: str | None = None  # "purchase" | "authorize" once paid/authorized
    amount: int = 0
    fee: int = 0
    captured: int = 0
    refunded: int = 0
    voided: int = 0
    reserved_capture: int = 0
    reserved_refund: int = 0
    void_in_flight: bool = False


@dataclass(frozen=True)
class GatewayFacts:
    supported_operations: frozenset[str]
    default_currency: str


def capturable(t: Totals) -> int:
    if t.state != "authorized" or t.voided or t.void_in_flight:
        return 0
    return max(t.amount + t.fee - t.captured - t.reserved_capture, 0)


def refundable(t: Totals) -> int:
    if t.state == "paid":
        base = t.amount
    elif t.state == "authorized" and not t.voided:
        base = min(t.captured, t.amount)
    else:
        return 0
    return max(base - t.refunded - t.reserved_refund, 0)


def voidable(t: Totals) -> bool:
    return (
        t.state == "authorized"
        and t.captured == 0
        and t.reserved_capture == 0
        and t.voided == 0
        and not t.void_in_flight
        and t.refunded == 0
        and t.reserved_refund == 0
    )


def _state_allows(operation: str, t: Totals) -> bool:
    if operation == "capture":
        return t.state == "authorized" and not t.voided and not t.void_in_flight
    if operation == "refund":
        if t.state == "paid":
            return True
        return t.state == "authorized" and t.captured > 0 and not t.voided
    if operation == "void":
        return voidable(t)
    raise ValueError(f"not an external operation: {operation}")


def check_external(operation: str, t: Totals, gateway: GatewayFacts, requested: int | None) -> int:
    """The amount (minor units) the operation may run for, or RuleViolation.

    ``requested`` None means "all that is still capturable/refundable"; it is ignored for void,
    which always covers the whole authorization with its fee.
    """
    if not _state_allows(operation, t):
        raise RuleViolation(messages.NOT_ALLOWED)
    if operation not in gateway.supported_operations:
        raise RuleViolation(messages.NOT_SUPPORTED)
    if t.currency_code.upper() != gateway.default_currency.upper():
        raise RuleViolation(messages.FOREIGN_CURRENCY)
    if operation == "void":
        return t.amount + t.fee
    limit, kind = (
        (capturable(t), "capturable") if operation == "capture" else (refundable(t), "refundable")
    )
    amount = limit if requested is None else requested
    if amount <= 0 or amount > limit:
        raise RuleViolation(
            messages.EXCEEDS.format(
                kind=kind, amount=format_minor(limit, t.currency_code), currency=t.currency_code
            )
        )
    return amount


class DeleteKind(str, Enum):
    SOFT = "soft"
    HARD = "hard"


def check_internal(operation: str, state: str) -> str | DeleteKind:
    """The new parent state for cancel/expire, the kind of delete, or RuleViolation."""
    if operation == "cancel":
        if state in CANCELABLE:
            return "canceled"
    elif operation == "expire":
        if state in EXPIRABLE:
            return "expired"
    elif operation == "delete":
        return DeleteKind.SOFT if state in SOFT_DELETABLE else DeleteKind.HARD
    else:
        raise ValueError(f"not an internal operation: {operation}")
    raise RuleViolation(messages.NOT_ALLOWED)


class InquiryPath(str, Enum):
    STORAGE = "storage"
    GATEWAY = "gateway"


def inquiry_path(state: str) -> InquiryPath:
    if state in ANSWERED_FROM_STORAGE:
        return InquiryPath.STORAGE
    if state in INQUIRABLE:
        return InquiryPath.GATEWAY
    raise RuleViolation(messages.NOT_ALLOWED)


def state_after_attempt(attempt_result: str, operation_mode: str, multi_attempt: bool) -> str:
    """Parent state after a customer's payment attempt ends (spec §6.1)."""
    if attempt_result == "success":
        return "authorized" if operation_mode == "authorize" else "paid"
    if attempt_result == "pending":
        return "pending"
    if attempt_result == "cod":
        return "cod"
    if attempt_result == "canceled":
        return "attempted" if multi_attempt else "expired"
    return "attempted" if multi_attempt else "failed"


LATE_SUCCESS_STATES = LATE_SUCCESS


def payment_terms_locked(state: str, attempt_states: list[str]) -> bool:
    """May an attempt on this parent still succeed? Then its amount, currency and gateways are
    fixed (decisions §13): a pending attempt, or any attempt on a parent that still takes a late
    success (§4)."""
    if any(attempt in ATTEMPT_UNDECIDED for attempt in attempt_states):
        return True
    return state in LATE_SUCCESS_STATES and bool(attempt_states)
