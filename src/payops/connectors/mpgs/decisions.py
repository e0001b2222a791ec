"""MPGS's decisions: a decoded reply becomes a ``GatewayResult``. Pure functions (no I/O).

An answer that approves something other than what was sent (another transaction id, type,
amount or currency) is unknown: a human decides.
"""

from __future__ import annotations

import logging
from typing import Any

from payops.connectors import kit
from payops.connectors.base import GatewayResult, OperationRequest, Outcome
from payops.connectors.kit import Reply
from payops.connectors.mpgs import transformers as t
from payops.connectors.mpgs.transformers import REDACTION

log = logging.getLogger("payops.connectors.mpgs")


def no_answer(reply: Reply) -> GatewayResult:
    fault = (reply.fault or kit.Fault.TRANSPORT).value
    return unknown(reply.raw(), f"MPGS did not answer: {fault}")


def transaction_result(request: OperationRequest, order_id: str, reply: Reply) -> GatewayResult:
    if not reply.answered:
        return no_answer(reply)
    status = reply.status or 0
    raw = raw_of(reply)
    if status >= 500:
        return unknown(raw, f"MPGS answered HTTP {status}")
    if reply.body is None:
        return unknown(raw, f"MPGS answered HTTP {status} with an unreadable body")
    parsed = t.parse_transaction(reply.body)
    if parsed is None:
        return unknown(raw, "MPGS reply does not have the documented shape")
    if not 200 <= status < 300:
        outcome = t.error_outcome(parsed.error.cause if parsed.error else None)
        return GatewayResult(
            outcome, raw, {"ref": order_id, "result": "ERROR"}, t.error_message(parsed.error)
        )
    return decide(request, order_id, parsed, raw)


def decide(
    request: OperationRequest, order_id: str, parsed: t.TransactionReply, raw: dict[str, Any]
) -> GatewayResult:
    outcome = t.transaction_outcome(
        parsed.result, parsed.gateway_code, parsed.error.cause if parsed.error else None
    )
    message = t.reply_message(parsed)
    params = t.transaction_params(parsed, order_id)
    txn = parsed.transaction
    if outcome in (Outcome.SUCCESS, Outcome.PENDING) and parsed.error is None:
        problem = mismatch(request, txn)
        if problem:
            # The gateway says yes to something other than what we sent: a human decides.
            log.warning(
                "mpgs reply for %s does not match the request: %s",
                request.reference_number,
                problem,
            )
            return GatewayResult(
                Outcome.UNKNOWN, raw, params, f"MPGS reply does not match the operation: {problem}"
            )
    refs = {"order_id": order_id}
    if txn is not None and txn.id:
        refs["operation_transaction_id"] = txn.id
    recorded = t.minor_units(txn.amount, request.currency_code) if txn is not None else None
    return GatewayResult(
        outcome,
        raw,
        params,
        message,
        refs,
        amount=recorded,
        currency_code=(txn.currency if txn is not None else None),
    )


def mismatch(request: OperationRequest, txn: t.TransactionInfo | None) -> str:
    if txn is None:
        return "no transaction in the reply"
    if txn.id is not None and txn.id != request.reference_number:
        return f"transaction id {txn.id!r}"
    if not t.type_matches(request.operation, txn.type):
        return f"transaction type {txn.type!r}"
    if request.operation == "void":
        return ""
    return (
        kit.mismatch(
            request.amount,
            request.currency_code,
            t.minor_units(txn.amount, request.currency_code),
            txn.currency,
            gateway="MPGS",
            what=f"this {request.operation}",
            shown=txn.amount,
        )
        or ""
    )


def raw_of(reply: Reply) -> dict[str, Any]:
    if not reply.answered:
        return reply.raw()
    if reply.body is None:
        return {"http_status": reply.status, "error": "unparsable reply"}
    raw = REDACTION.scrub(reply.body)
    if reply.status is not None and not 200 <= reply.status < 300:
        raw = {**raw, "http_status": reply.status}
    return raw


def unknown(raw: dict[str, Any], message: str) -> GatewayResult:
    return GatewayResult(Outcome.UNKNOWN, raw, {}, message)
