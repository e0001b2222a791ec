"""PayU India's decisions: what an action found by check_action_status means for the operation
PayOps sent. Pure functions (no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from payops.connectors import kit
from payops.connectors.base import GatewayResult, OperationRequest, Outcome, PaymentRef
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


# -- payments (hosted checkout) ----------------------------------------------------------------
def payment_result(
    payment: PaymentRef,
    found: t.PaymentStatus,
    raw: dict[str, Any],
    txnid: str,
    source: str = "verify_payment",
) -> GatewayResult:
    """A payment's status (verify_payment, or a return whose reverse hash verified) as the
    attempt's result: the amount PayU recorded is reported on a success (the framework compares
    it with the attempt's), a failure says whether the payer cancelled."""
    outcome = t.payment_outcome(found, payment.operation_mode)
    recorded = t.to_minor(found.amount, payment.currency_code)
    state = t.payment_state(found) if outcome == Outcome.FAILED else None
    success = outcome == Outcome.SUCCESS
    return replace(
        kit.result(
            outcome,
            raw,
            {"ref": found.mihpayid, "result": found.unmapped or found.status},
            f"PayU payment status {found.status} ({found.unmapped}) by {source}",
            {"mihpayid": found.mihpayid if found.found else None, "txnid": txnid},
            amount=recorded if success else None,
            currency_code=payment.currency_code if success and recorded is not None else None,
        ),
        payment_state=state,
    )


def posted_status(
    form: Mapping[str, str], key: str, salt: str, txnid: str
) -> t.PaymentStatus | None:
    """The browser's post-back as a payment status, only when it is PayU's: its reverse hash
    verifies with our salt (constant time) and it names our key and this attempt's txnid.
    Anything else (a forged, edited, missing or foreign post) is no information: None."""
    if not t.reverse_hash_matches(form, salt):
        return None
    if form.get("key", "") != key or form.get("txnid", "") != txnid:
        return None
    return t.PaymentStatus(
        txnid,
        str(form.get("mihpayid") or "") or None,
        str(form.get("status") or ""),
        str(form.get("unmappedstatus") or ""),
        str(form.get("amount") or "") or None,
        {name: form.get(name) for name in RETURN_EVIDENCE if name in form},
    )


# What is kept of a verified post-back (never the hash, key, card or customer fields).
RETURN_EVIDENCE = (
    "mihpayid",
    "txnid",
    "status",
    "unmappedstatus",
    "amount",
    "mode",
    "error",
    "error_Message",
    "bank_ref_num",
    "PG_TYPE",
    "net_amount_debit",
    "addedon",
)


def settle_return(
    payment: PaymentRef, posted: t.PaymentStatus | None, server: GatewayResult, txnid: str
) -> GatewayResult:
    """The attempt's result when the browser comes back. verify_payment (``server``) is the
    truth whenever it gives one. When PayU could not be asked (UNKNOWN), a post whose reverse
    hash verified settles it instead (the hash covers status, amount and txnid). A forged or
    missing post changes nothing: the server's answer, pending at worst, never a failure."""
    if server.outcome != Outcome.UNKNOWN or posted is None:
        return server
    found = payment_result(
        payment,
        posted,
        {"return": posted.raw, "verify_payment": server.raw},
        txnid,
        source="the signed return (verify_payment did not answer)",
    )
    return found
