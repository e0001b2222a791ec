"""QPay's decisions: whether a reply is believed, and what it means for a refund or a payment.
Pure functions (no I/O)."""

from __future__ import annotations

from dataclasses import replace
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


# -- payments (hosted checkout) ------------------------------------------------------------------
# What is kept of a verified post-back: never the hash, the card holder's name or the card.
RETURN_EVIDENCE = (
    "PUN",
    "MerchantModuleSessionID",
    "Status",
    "StatusMessage",
    "Amount",
    "CurrencyCode",
    "ConfirmationID",
    "AcquirerID",
    "BankID",
    "EZConnectResponseDate",
    "Lang",
)


def signed_result(signed: t.QpayReply | None, pun: str, merchant_id: str) -> GatewayResult | None:
    """The result of a post-back whose SecureHash verified, when it is about this attempt (our
    MerchantID, this PUN); None otherwise (a genuine post of another attempt is no information
    about this one). ``0000`` is paid; any other status failed (QPay publishes no separate code
    for a payer's cancel). The amount and currency QPay signed are reported as recorded."""
    if signed is None or signed.get("PUN") != pun or signed.get("MerchantID") != merchant_id:
        return None
    status = signed.get("Status").strip()
    kept = {name: signed.get(name) for name in RETURN_EVIDENCE if name in signed.fields}
    recorded = signed.get("Amount").strip()
    amount = int(recorded) if recorded.isdigit() else None
    outcome = Outcome.SUCCESS if status == "0000" else Outcome.FAILED
    return kit.result(
        outcome,
        {"return": kept},
        {"ref": pun, "result": status},
        f"QPay signed result {status}: {signed.get('StatusMessage')}".strip(),
        {"pun": pun, "confirmation_id": signed.get("ConfirmationID")},
        amount=amount if outcome == Outcome.SUCCESS else None,
        currency_code=t.currency_of(signed.get("CurrencyCode"))
        if outcome == Outcome.SUCCESS
        else None,
    )


def settle_return(signed: GatewayResult | None, server: GatewayResult) -> GatewayResult:
    """The attempt's result when the browser comes back: the inquiry's final answer (paid, or
    failed) wins; when it has none (in progress, not found yet, no answer, or only the inferred
    expiry) a verified signed result settles it; without one, the inquiry's answer stands (a
    forged or missing post changes nothing)."""
    final = server.outcome == Outcome.SUCCESS or (
        server.outcome == Outcome.FAILED and server.payment_state != "expired"
    )
    if final or signed is None:
        return server
    return signed


def expired(result: GatewayResult, window_passed: bool) -> GatewayResult:
    """Inquiry ``8106`` (unfounded transaction) once the attempt's window has passed: the payer
    never completed it, so it is expired (spec §7.3, INFERRED); before that, still pending."""
    if (
        result.outcome == Outcome.PENDING
        and window_passed
        and result.pg_params.get("result") == "8106"
    ):
        return replace(
            result,
            outcome=Outcome.FAILED,
            payment_state="expired",
            message=f"{result.message} (the attempt's window has passed: expired)",
        )
    return result
