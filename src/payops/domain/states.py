"""State names and the named sets of states, defined once.

Each state is a ``StrEnum`` member, equal to the string stored in the database and sent on the
wire, so ``parent.state == ParentState.PAID`` and ``parent.state == "paid"`` say the same thing.
Each named set is a tuple in a fixed order, so the messages and queries that list one are stable.
"""

from __future__ import annotations

from enum import StrEnum


class ParentState(StrEnum):
    """A parent transaction's state (Ottu's ``state``)."""

    CREATED = "created"
    PENDING = "pending"
    ATTEMPTED = "attempted"
    AUTHORIZED = "authorized"
    PAID = "paid"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    INVALIDED = "invalided"
    COD = "cod"


class OperationState(StrEnum):
    """An external operation's state (capture, refund, void): ``processing`` until the gateway's
    answer settles it; ``needs_review`` when nobody can confirm it (decisions §5, §13)."""

    PROCESSING = "processing"
    QUEUED = "queued"
    NEEDS_REVIEW = "needs_review"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REJECTED = "rejected"


class AttemptState(StrEnum):
    """A payment attempt's state; ``needs_review`` when the gateway confirmed another amount."""

    PENDING = "pending"
    SUCCESS = "success"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"  # the gateway's own payment window closed (GatewayResult.payment_state)
    ERROR = "error"
    NEEDS_REVIEW = "needs_review"


# -- parent transactions -----------------------------------------------------------------------
PARENT_STATES = tuple(ParentState)
# No payment has been taken yet: a customer may (still) pay, the checkout may be changed, and the
# payment may expire.
PAYABLE = (ParentState.CREATED, ParentState.PENDING, ParentState.ATTEMPTED)
EXPIRABLE = PAYABLE
CANCELABLE = (*PAYABLE, ParentState.COD)
# The money was taken (or held): answered from storage, importable, deleted softly.
SETTLED = (ParentState.PAID, ParentState.AUTHORIZED)
SOFT_DELETABLE = (*SETTLED, ParentState.COD)
# An inquiry may still learn something from the gateway.
INQUIRABLE = (ParentState.PENDING, ParentState.ATTEMPTED, ParentState.FAILED, ParentState.EXPIRED)
# The parent still acknowledges a payment the gateway confirms late (decisions §4).
LATE_SUCCESS = (*PAYABLE, ParentState.FAILED, ParentState.EXPIRED)

# -- operations --------------------------------------------------------------------------------
OPERATION_STATES = tuple(OperationState)
# The gateway's answer may still change the outcome: the reconciler asks about these.
OPEN = (OperationState.PROCESSING, OperationState.QUEUED)
# Money is reserved by these (their amount counts against what remains), and an operator may
# recheck them at the gateway.
RESERVING = (*OPEN, OperationState.NEEDS_REVIEW)
# No final answer was given to the client yet: a replay of the Tracking-Key waits or is refused.
UNSETTLED = (OperationState.PROCESSING, OperationState.NEEDS_REVIEW)
# The gateway accepted the operation (the wire's ``success: true``).
ACCEPTED = (OperationState.SUCCEEDED, OperationState.QUEUED)
# Ended without effect: the Tracking-Key may be used again.
WITHOUT_EFFECT = (OperationState.FAILED, OperationState.REJECTED)

# -- payment attempts --------------------------------------------------------------------------
ATTEMPT_STATES = tuple(AttemptState)
# The attempt may still succeed, or did: no new attempt may start beside it.
ATTEMPT_BLOCKING = (AttemptState.PENDING, AttemptState.SUCCESS, AttemptState.NEEDS_REVIEW)
# Nobody knows yet how the attempt ends.
ATTEMPT_UNDECIDED = (AttemptState.PENDING, AttemptState.NEEDS_REVIEW)
# A session that ended without a payment and takes none any more (the hosted page answers 410).
CLOSED_UNPAID = (ParentState.EXPIRED, ParentState.CANCELED)
# How an attempt ended when it was not a decline (GatewayResult.payment_state).
ATTEMPT_ENDED = (AttemptState.CANCELED, AttemptState.EXPIRED)
