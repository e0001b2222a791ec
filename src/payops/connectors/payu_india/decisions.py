"""PayU India's decisions: what an action found by check_action_status means for the operation
PayOps sent. Pure functions (no I/O)."""

from __future__ import annotations

from typing import Any

from payops.connectors import kit
from payops.connectors.base import GatewayResult, OperationRequest, Outcome
from payops.connectors.payu_india import transformers as t

# What the operation is called in PayU's action list.
PAYU_ACTION = {"refund": ("refund",), "capture": ("capture",), "void": ("cancel", "refund")}


def judge_action(
    request: OperationRequest, action: t.Action, raw: dict[str, Any], mihpayid: str | None
) -> GatewayResult:
    """The operation's outcome from its action: of the right kind, for the amount sent (a void
    cancels the whole authorised amount), with its status mapped (unknown words pending)."""
    if action.action and action.action not in PAYU_ACTION.get(request.operation, ()):
        return kit.unknown(
            f"PayU action {action.request_id} is a {action.action}, not a {request.operation}", raw
        )
    outcome = t.action_outcome(action.status)
    expected = request.payment.amount if request.operation == "void" else request.amount
    recorded = t.to_minor(action.amount, request.currency_code)
    if recorded is not None and recorded != expected and outcome != Outcome.FAILED:
        return kit.unknown(
            f"PayU recorded a different amount ({action.amount}) for this {request.operation}", raw
        )
    refs = {
        "mihpayid": mihpayid,
        "request_id" if request.operation != "void" else "txn_update_id": action.request_id,
    }
    params = {"ref": mihpayid, "result": action.status, "token": action.token}
    return kit.result(outcome, raw, params, f"PayU action status {action.status or '?'}", refs)
