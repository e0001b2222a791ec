"""QPay's decisions: whether a reply is believed, and what it means for a refund or a payment.
Pure functions (no I/O)."""

from __future__ import annotations

from typing import Any

from payops.connectors import kit
from payops.connectors.base import GatewayResult, OperationRequest, Outcome
from payops.connectors.qpay import transformers as t

SCRUB = kit.redaction(card_keys=("CardNumber",))


def raw(reply: kit.Reply, parsed: t.QpayReply | None) -> dict[str, Any]:
    """What is kept of a reply: its decoded fields, else the transport's record."""
    if parsed is not None:
        return SCRUB.scrub(dict(parsed.fields))
    return reply.raw()


def unverified(
    reply: kit.Reply, parsed: t.QpayReply | None, what: str, secret: str
) -> GatewayResult | None:
    """None when the reply is a QPay reply whose SecureHash verifies; else the unknown result
    saying why (never believed)."""
    kept = raw(reply, parsed)
    if reply.status is None or reply.outcome_unknown:
        return kit.unknown(f"QPay did not confirm the {what}", kept)
    if parsed is None:
        return kit.unknown(f"QPay answered HTTP {reply.status} without a readable reply", kept)
    if not parsed.verified(secret):
        return kit.unknown(
            f"QPay's reply to the {what} does not carry a valid SecureHash "
            "(check the secret key); it is not believed",
            kept,
        )
    return None


def refund_result(
    request: OperationRequest, reply: kit.Reply, parsed: t.QpayReply, original_pun: str
) -> GatewayResult:
    """A verified Action 6 reply. An accepted one must echo this refund's PUN and amount."""
    kept = raw(reply, parsed)
    outcome, message = t.refund_outcome(parsed)
    refs = {
        "pun": original_pun,
        "refund_pun": request.reference_number,
        "confirmation_id": parsed.get("ConfirmationID_1"),
        "refund_status": parsed.get("Status_1"),
    }
    params = {
        "ref": original_pun,
        "result": parsed.get("Status_1") or parsed.get("EZConnectRequestStatus"),
    }
    if outcome in (Outcome.PENDING, Outcome.SUCCESS):
        echoed = (parsed.get("PUN_1"), parsed.get("Amount_1"))
        if echoed != (request.reference_number, str(request.amount)):
            return kit.unknown(
                f"QPay's reply is about PUN {echoed[0]!r} for {echoed[1]!r}, not this refund",
                kept,
                params,
                refs,
            )
    return kit.result(outcome, kept, params, message, refs)


def payment_result(pun: str, reply: kit.Reply, parsed: t.QpayReply) -> GatewayResult:
    """A verified Action 14 reply about the payment ``pun``."""
    kept = raw(reply, parsed)
    if parsed.get("Status") == "0000" and parsed.get("OriginalPUN") not in ("", pun):
        return kit.unknown(f"QPay answered about PUN {parsed.get('OriginalPUN')!r}", kept)
    outcome = t.inquiry_outcome(parsed)
    recorded = parsed.get("Amount").strip()
    amount = int(recorded) if recorded.isdigit() and outcome == Outcome.SUCCESS else None
    return kit.result(
        outcome,
        kept,
        {"ref": pun, "result": parsed.get("OriginalStatus") or parsed.get("Status")},
        t.inquiry_message(parsed),
        {"pun": pun, "confirmation_id": parsed.get("OriginalConfirmationID")},
        amount=amount,
        currency_code=t.CURRENCY if amount is not None else None,
    )


def refund_follow_up(
    request: OperationRequest, reply: kit.Reply, parsed: t.QpayReply, pun: str
) -> GatewayResult:
    """QPay has no refund inquiry: Action 14 on the original payment can only say that no
    refund can have happened (the payment failed or does not exist). Otherwise a queued (5002)
    refund stays pending (the queued-refund review rule takes it) and one whose reply was lost
    stays unknown (review at once)."""
    kept = raw(reply, parsed)
    status, original = parsed.get("Status"), parsed.get("OriginalStatus")
    if status == "8106" or (status == "0000" and original == "3000"):
        return kit.refused(
            f"QPay shows no paid payment {pun} to refund ({t.inquiry_message(parsed)})",
            kept,
            {"ref": pun},
        )
    note = (
        f"QPay documents no refund status; the original payment {pun} reads "
        f"{t.inquiry_message(parsed)}. Check refund PUN {request.reference_number} in "
        "QPay's merchant portal and resolve the operation."
    )
    if kit.ref(request.gateway_refs, "refund_status") == "5002":
        return kit.result(Outcome.PENDING, kept, {"ref": pun, "result": "5002"}, note)
    return kit.unknown(note, kept, {"ref": pun})
