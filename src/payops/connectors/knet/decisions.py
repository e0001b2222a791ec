"""KNET's decisions: what a tranportal reply means for a refund or a payment. Pure functions
(no I/O)."""

from __future__ import annotations

from payops.connectors import kit
from payops.connectors.base import GatewayResult, OperationRequest, Outcome, PaymentRef
from payops.connectors.knet import transformers as t
from payops.money import AmountError, format_minor, from_decimal


def recorded_minor(reply: t.KnetReply) -> int | None:
    """The reply's ``amt`` in fils, when it holds one."""
    value = reply.amount
    if value is None:
        return None
    try:
        return from_decimal(value, t.CURRENCY)
    except AmountError:
        return None


def amount_minor(text: str) -> int | None:
    """A KNET ``amt`` string (``12.500``) in fils; None when it is not one."""
    return recorded_minor(t.KnetReply({"amt": text, "result": ""}))


def review_note(request: OperationRequest, track_id: str, portal: str) -> str:
    """What an operator needs to check a refund KNET cannot be asked about."""
    payment_id = kit.ref(request.payment.gateway_refs, "payment_id") or "(unknown)"
    amount = format_minor(request.amount, request.currency_code)
    return (
        f"KNET has no refund status inquiry, so PayOps never resends this refund. "
        f"Check KNET's merchant portal ({portal}) for a refund of {amount} "
        f"{request.currency_code} on track id {track_id} / payment id {payment_id} made "
        f"after this operation was sent, then resolve operation {request.reference_number} "
        f"(payops ops resolve)."
    )


def refund_result(
    request: OperationRequest, reply: kit.Reply, target: t.Target, portal: str
) -> GatewayResult:
    """A refund's reply: CAPTURED is the only success; a refusal word or ``!ERROR!`` code a
    failure; a lost, unreadable or undocumented reply unknown, with the review note."""
    refs = {
        "track_id": target.trackid,
        "payment_id": kit.ref(request.payment.gateway_refs, "payment_id"),
    }
    if not reply.delivered:
        return kit.not_sent(
            "KNET could not be reached; nothing was sent", {"error": kit.Fault.NOT_SENT.value}
        )
    parsed = t.parse_reply((reply.text or str(reply.body or "")).encode())
    note = review_note(request, target.trackid, portal)
    if reply.status is None or reply.outcome_unknown or parsed is None:
        if reply.status is not None and not reply.outcome_unknown and not reply.ok:
            # A 4xx without KNET's reply format: the pipe refused the request itself.
            return kit.refused(
                f"KNET refused the request (HTTP {reply.status})",
                reply.raw(),
                {"trackid": target.trackid},
            )
        why = (
            reply.fault.value
            if reply.fault
            else f"HTTP {reply.status}"
            if parsed is None
            else "no answer"
        )
        return kit.unknown(
            f"KNET did not confirm the refund ({why}). {note}",
            reply.raw(),
            {"trackid": target.trackid},
            refs,
        )
    outcome = t.refund_outcome(parsed)
    message = t.reply_message(parsed)
    if outcome == Outcome.UNKNOWN:
        message = f"{message}. {note}"
    refs.update(
        {
            "refund_payid": parsed.get("payid"),
            "refund_tranid": parsed.get("tranid"),
            "refund_ref": parsed.get("ref"),
        }
    )
    recorded = recorded_minor(parsed)
    found = kit.result(
        outcome,
        parsed.evidence(),
        t.pg_params(parsed, target),
        message,
        refs,
        amount=recorded,
        currency_code=t.CURRENCY if recorded is not None else None,
    )
    return kit.check_recorded(found, request, gateway="KNET")


def inquiry_result(payment: PaymentRef, reply: kit.Reply, target: t.Target) -> GatewayResult:
    """An action-8 reply about a payment; an answer about another track id is not believed."""
    if reply.status is None:
        fault = (reply.fault or kit.Fault.TRANSPORT).value
        return kit.unknown(f"KNET did not answer ({fault})", reply.raw())
    parsed = t.parse_reply((reply.text or str(reply.body or "")).encode())
    if parsed is None or not reply.ok:
        return kit.unknown(f"KNET answered HTTP {reply.status} without a usable reply", reply.raw())
    outcome = t.inquiry_outcome(parsed)
    if (
        outcome == Outcome.SUCCESS
        and parsed.get("trackid")
        and target.udf5 == t.BY_TRACK_ID
        and parsed.get("trackid") != target.trackid
    ):
        return kit.unknown(
            f"KNET answered about track id {parsed.get('trackid')!r}, not {target.trackid!r}",
            parsed.evidence(),
        )
    refs = {
        "track_id": target.trackid,
        "payment_id": parsed.get("payid") or kit.ref(payment.gateway_refs, "payment_id"),
        "tranid": parsed.get("tranid"),
    }
    recorded = recorded_minor(parsed)
    return kit.result(
        outcome,
        parsed.evidence(),
        t.pg_params(parsed, target),
        t.reply_message(parsed),
        refs,
        amount=recorded,
        currency_code=t.CURRENCY if recorded is not None else None,
    )
